//! CLIP's symmetric contrastive loss.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::error::{Error, Result};

/// `log(sum(exp(x)))` along `dim` (kept as size 1), stable for large values. The maximum is
/// detached: it cancels in the value and its gradient, so the gradient is the softmax.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let x = Tensor::<Flex, 2>::from_floats([[1.0, 2.0, 3.0]], &Default::default());
/// let v: f32 = fair_losses::log_sum_exp(x, 1).into_scalar();
/// assert!((v - 3.407_606).abs() < 1e-5);
/// ```
pub fn log_sum_exp<B: Backend, const D: usize>(x: Tensor<B, D>, dim: usize) -> Tensor<B, D> {
    let m = x.clone().detach().max_dim(dim);
    (x - m.clone()).exp().sum_dim(dim).log() + m
}

/// CLIP's loss: `(CE(L, arange(B)) + CE(Lᵀ, arange(B))) / 2` for the image-text logits
/// `L = exp(logit_scale) · î t̂ᵀ` of a batch of matching pairs (row i of `logits_per_image`
/// scores image i against every text).
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let logits = Tensor::<Flex, 2>::from_floats([[10.0, 0.0], [0.0, 10.0]], &Default::default());
/// let loss: f32 = fair_losses::clip_contrastive_loss(logits)?.into_scalar();
/// assert!(loss < 1e-4);
/// # Ok::<(), fair_losses::Error>(())
/// ```
pub fn clip_contrastive_loss<B: Backend>(logits_per_image: Tensor<B, 2>) -> Result<Tensor<B, 1>> {
    let [n, m] = logits_per_image.dims();
    if n != m || n == 0 {
        return Err(Error::Shape(format!("logits must be a non-empty square matrix, got {n}x{m}")));
    }
    let device = logits_per_image.device();
    let targets = Tensor::<B, 1, Int>::arange(0..n as i64, &device).reshape([n, 1]);
    let ce = |logits: Tensor<B, 2>| -> Tensor<B, 1> { log_softmax(logits, 1).gather(1, targets.clone()).mean().neg() };
    Ok((ce(logits_per_image.clone()) + ce(logits_per_image.transpose())) / 2.0)
}
