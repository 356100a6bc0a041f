//! Softmax over a dimension, fused when it is the last one.

use burn::backend::flex::FlexTensor;
use burn::prelude::*;
use rayon::prelude::*;

use crate::cast::{classify, from_autodiff, from_plain, Cpu};
use crate::kernels::{new_tensor, rows_per_task, softmax_rows_backward, softmax_rows_inplace, values};
use crate::unary::{unary, Keep};

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
        Cpu::Autodiff(x) => from_autodiff(unary(x, forward, backward, Keep::Output)),
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
        y.copy_from_slice(&v);
        let step = rows_per_task(d) * d;
        y.par_chunks_mut(step).for_each(|y| softmax_rows_inplace(y, d));
    })
}

/// The input's gradient from the output and the output's gradient.
fn backward(y: &FlexTensor, g: &FlexTensor) -> FlexTensor {
    let d = last_dim(y);
    let (yv, gv) = (values(y), values(g));
    new_tensor(y.layout().shape().clone(), |dx| {
        let step = rows_per_task(d) * d;
        dx.par_chunks_mut(step).zip(yv.par_chunks(step)).zip(gv.par_chunks(step)).for_each(|((dx, y), g)| softmax_rows_backward(y, g, dx, d));
    })
}
