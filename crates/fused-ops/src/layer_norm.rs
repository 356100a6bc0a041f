//! Layer norm over the last dimension.
//!
//! burn's CPU backend has a fused layer norm forward, but under autodiff burn composes it (and
//! so its backward) from a dozen single-threaded operations. Here it is one pass each way,
//! rows split across the rayon pool, the weight's and bias's gradients summed per task.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{Shape, TensorPrimitive};
use rayon::prelude::*;

use crate::cast::{classify, from_autodiff, from_plain, AdTensor, Cpu};
use crate::kernels::{layer_norm_rows, layer_norm_rows_backward, new_tensor, rows_per_task, values};

/// `(x − μ) / √(σ² + ε) · γ + β` over the last dimension of `x` (biased variance), as burn's
/// `LayerNorm`; on the CPU backend one pass each way (see the crate's documentation).
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let device = Default::default();
/// let x = Tensor::<Flex, 2>::from_floats([[1.0, 3.0]], &device);
/// let y = fused_ops::layer_norm(x, Tensor::ones([2], &device), Some(Tensor::zeros([2], &device)), 0.0);
/// assert_eq!(y.into_data().to_vec::<f32>().unwrap(), vec![-1.0, 1.0]);
/// ```
pub fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>, gamma: Tensor<B, 1>, beta: Option<Tensor<B, 1>>, eps: f64) -> Tensor<B, D> {
    let d = gamma.dims()[0];
    let beta = beta.unwrap_or_else(|| gamma.zeros_like());
    match (classify(x), classify(gamma), classify(beta)) {
        (Cpu::Autodiff(x), Cpu::Autodiff(g), Cpu::Autodiff(b)) => from_autodiff(autodiff(x, g, b, eps as f32, d)),
        (Cpu::Plain(x), Cpu::Plain(g), Cpu::Plain(b)) => from_plain(forward(&x, &g, &b, eps as f32, d).0),
        (x, g, b) => Tensor::from_primitive(TensorPrimitive::Float(B::layer_norm(
            x.into_tensor().into_primitive().tensor(),
            g.into_tensor().into_primitive().tensor(),
            Some(b.into_tensor().into_primitive().tensor()),
            eps,
        ))),
    }
}

/// The output, and each row's mean and `1 / √(σ² + ε)`.
fn forward(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, eps: f32, d: usize) -> (FlexTensor, Vec<f32>, Vec<f32>) {
    let (xv, gv, bv) = (values(x), values(gamma), values(beta));
    let rows = xv.len() / d.max(1);
    let (mut mean, mut rstd) = (vec![0.0f32; rows], vec![0.0f32; rows]);
    let per = rows_per_task(d);
    let y = new_tensor(x.layout().shape().clone(), |y| {
        y.par_chunks_mut(per * d)
            .zip(xv.par_chunks(per * d))
            .zip(mean.par_chunks_mut(per).zip(rstd.par_chunks_mut(per)))
            .for_each(|((y, x), (m, r))| layer_norm_rows(x, &gv, &bv, eps, y, m, r));
    });
    (y, mean, rstd)
}

#[derive(Debug)]
struct LayerNormBackward;

impl Backward<Flex, 3> for LayerNormBackward {
    /// x, γ, the rows' means and `1 / √(σ² + ε)`.
    type State = (FlexTensor, FlexTensor, Vec<f32>, Vec<f32>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [px, pg, pb] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let (x, gamma, mean, rstd) = ops.state;
        let d = gamma.layout().shape()[0];
        let (xv, gv, wv) = (values(&x), values(&g), values(&gamma));
        let per = rows_per_task(d);
        let mut sums: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
        let dx = new_tensor(x.layout().shape().clone(), |dx| {
            sums = dx
                .par_chunks_mut(per * d)
                .zip(xv.par_chunks(per * d).zip(gv.par_chunks(per * d)))
                .zip(mean.par_chunks(per).zip(rstd.par_chunks(per)))
                .map(|((dx, (x, g)), (m, r))| {
                    let (mut dgamma, mut dbeta) = (vec![0.0f64; d], vec![0.0f64; d]);
                    layer_norm_rows_backward(x, g, &wv, m, r, dx, &mut dgamma, &mut dbeta);
                    (dgamma, dbeta)
                })
                .collect();
        });
        // The tasks' partial sums, added in task order (deterministic).
        let (mut dgamma, mut dbeta) = (vec![0.0f64; d], vec![0.0f64; d]);
        for (sg, sb) in &sums {
            dgamma.iter_mut().zip(sg).for_each(|(o, v)| *o += v);
            dbeta.iter_mut().zip(sb).for_each(|(o, v)| *o += v);
        }
        let tensor = |v: &[f64]| new_tensor(Shape::new([d]), |out| out.iter_mut().zip(v).for_each(|(o, &v)| *o = v as f32));
        if let Some(node) = px {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = pg {
            grads.register::<Flex>(node.id, tensor(&dgamma));
        }
        if let Some(node) = pb {
            grads.register::<Flex>(node.id, tensor(&dbeta));
        }
    }
}

fn autodiff(x: AdTensor, gamma: AdTensor, beta: AdTensor, eps: f32, d: usize) -> AdTensor {
    match LayerNormBackward.prepare::<NoCheckpointing>([x.node.clone(), gamma.node.clone(), beta.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (y, mean, rstd) = forward(&x.primitive, &gamma.primitive, &beta.primitive, eps, d);
            prep.finish((x.primitive, gamma.primitive, mean, rstd), y)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&x.primitive, &gamma.primitive, &beta.primitive, eps, d).0),
    }
}
