//! QuickGELU, `x · σ(1.702 x)` (OpenAI CLIP's activation).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::cast::{classify, from_autodiff, from_plain, AdTensor, Cpu};
use crate::kernels::{new_tensor, par_map, par_map2, quick_gelu_backward, quick_gelu_forward, values};

/// `x · σ(1.702 x)`, one pass each way on the CPU backend (see the crate's documentation).
///
/// ```
/// use burn::backend::{Autodiff, Flex};
/// use burn::prelude::*;
/// let x = Tensor::<Autodiff<Flex>, 1>::from_floats([0.5], &Default::default()).require_grad();
/// let y = fused_ops::quick_gelu(x.clone());
/// let grads = y.backward();
/// let dx = x.grad(&grads).unwrap().into_scalar();
/// let s = 1.0 / (1.0 + (-0.851f32).exp());
/// assert!((dx - (s + 0.851 * s * (1.0 - s))).abs() < 1e-6);
/// ```
pub fn quick_gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match classify(x) {
        Cpu::Autodiff(x) => from_autodiff(autodiff(x)),
        Cpu::Plain(x) => from_plain(forward(&x)),
        Cpu::Other(x) => x.clone() * sigmoid(x * 1.702),
    }
}

fn forward(x: &FlexTensor) -> FlexTensor {
    let v = values(x);
    new_tensor(x.layout().shape().clone(), |y| par_map(&v, y, quick_gelu_forward))
}

#[derive(Debug)]
struct QuickGeluBackward;

impl Backward<Flex, 1> for QuickGeluBackward {
    /// The input.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        if let Some(parent) = parent {
            let (x, g) = (values(&ops.state), values(&g));
            let dx = new_tensor(ops.state.layout().shape().clone(), |dx| par_map2(&x, &g, dx, quick_gelu_backward));
            grads.register::<Flex>(parent.id, dx);
        }
    }
}

fn autodiff(x: AdTensor) -> AdTensor {
    match QuickGeluBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let y = forward(&x.primitive);
            prep.finish(x.primitive, y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive)),
    }
}
