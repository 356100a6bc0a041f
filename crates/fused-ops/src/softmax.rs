//! Softmax over a dimension, fused when it is the last one.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use rayon::prelude::*;

use crate::cast::{classify, from_autodiff, from_plain, AdTensor, Cpu};
use crate::kernels::{new_tensor, rows_per_task, softmax_rows, softmax_rows_backward, values};

/// burn's `softmax(x, dim)`; over the last dimension on the CPU backend, one pass each way
/// (see the crate's documentation).
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let x = Tensor::<Flex, 2>::from_floats([[0.0, 0.0], [1.0, 1.0]], &Default::default());
/// let y = fused_ops::softmax(x, 1).into_data().to_vec::<f32>().unwrap();
/// assert_eq!(y, vec![0.5; 4]);
/// ```
pub fn softmax<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    if dim + 1 != D {
        return burn::tensor::activation::softmax(x, dim);
    }
    match classify(x) {
        Cpu::Autodiff(x) => from_autodiff(autodiff(x)),
        Cpu::Plain(x) => from_plain(forward(&x)),
        Cpu::Other(x) => burn::tensor::activation::softmax(x, dim),
    }
}

fn last_dim(t: &FlexTensor) -> usize {
    let shape = t.layout().shape();
    shape[shape.num_dims() - 1]
}

fn forward(x: &FlexTensor) -> FlexTensor {
    let d = last_dim(x);
    let v = values(x);
    new_tensor(x.layout().shape().clone(), |y| {
        let step = rows_per_task(d) * d;
        y.par_chunks_mut(step).zip(v.par_chunks(step)).for_each(|(y, x)| softmax_rows(x, y, d));
    })
}

#[derive(Debug)]
struct SoftmaxBackward;

impl Backward<Flex, 1> for SoftmaxBackward {
    /// The output.
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [parent] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        if let Some(parent) = parent {
            let d = last_dim(&ops.state);
            let (y, g) = (values(&ops.state), values(&g));
            let dx = new_tensor(ops.state.layout().shape().clone(), |dx| {
                let step = rows_per_task(d) * d;
                dx.par_chunks_mut(step).zip(y.par_chunks(step)).zip(g.par_chunks(step)).for_each(|((dx, y), g)| softmax_rows_backward(y, g, dx, d));
            });
            grads.register::<Flex>(parent.id, dx);
        }
    }
}

fn autodiff(x: AdTensor) -> AdTensor {
    match SoftmaxBackward.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let y = forward(&x.primitive);
            prep.finish(y.clone(), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive)),
    }
}
