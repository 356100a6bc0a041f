//! QuickGELU, `x · σ(1.702 x)` (OpenAI CLIP's activation).

use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use burn::tensor::activation::sigmoid;

use crate::cast::{classify, from_autodiff, from_plain, Cpu};
use crate::kernels::{new_tensor, par_map, par_map2, quick_gelu_backward, quick_gelu_forward, values};
use crate::unary::{unary, Keep};

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
        Cpu::Autodiff(x) => from_autodiff(unary(x, forward, backward, Keep::Input)),
        Cpu::Plain(x) => from_plain(forward(&x)),
        Cpu::Other(x) => x.clone() * sigmoid(x * 1.702),
    }
}

fn forward(x: &FlexTensor) -> FlexTensor {
    let v = values(x);
    new_tensor(x.layout().shape().clone(), |y| par_map(&v, y, quick_gelu_forward))
}

/// The input's gradient from the input and the output's gradient.
fn backward(x: &FlexTensor, g: &FlexTensor) -> FlexTensor {
    let (xv, gv) = (values(x), values(g));
    new_tensor(x.layout().shape().clone(), |dx| par_map2(&xv, &gv, dx, quick_gelu_backward))
}
