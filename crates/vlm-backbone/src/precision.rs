//! Mixed precision, as PyTorch's autocast: inside [`autocast`], the towers' matrix products
//! (the attention projections and scores, the MLPs) run in f16 or bf16 while the parameters,
//! their gradients and the optimiser state stay f32, and layer norms and softmax stay f32.
//! The cast's gradient is cast back to the parameter's type by burn's autodiff.

use std::cell::Cell;

use burn::prelude::*;
use burn::tensor::FloatDType;
use serde::{Deserialize, Serialize};

/// The float type of the towers' matrix products (`optim.precision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// Products in f16 (a loss scaler keeps small gradients from underflowing).
    F16,
    /// Products in bf16 (f32's range: no loss scaling).
    Bf16,
}

impl Precision {
    /// The half type, or `None` for f32.
    pub fn half(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::F16 => Some(FloatDType::F16),
            Precision::Bf16 => Some(FloatDType::BF16),
        }
    }
}

thread_local! {
    static ACTIVE: Cell<Precision> = const { Cell::new(Precision::F32) };
}

/// Runs this thread's tower forwards in `precision` until the guard is dropped (the previous
/// setting then returns).
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// use vlm_backbone::{autocast, Mlp, Activation, Precision};
///
/// let device = Default::default();
/// let mlp = Mlp::<Flex>::new(8, 16, Activation::QuickGelu, &device);
/// let x = Tensor::<Flex, 2>::ones([2, 8], &device);
/// let full = mlp.forward(x.clone());
/// let half = {
///     let _bf16 = autocast(Precision::Bf16);
///     mlp.forward(x)
/// };
/// assert_eq!(half.dtype(), full.dtype()); // f32 in and out
/// let diff = full.sub(half).abs().max().into_scalar();
/// assert!(diff > 0.0 && diff < 0.05); // rounded to bf16's 8 bits, not more
/// ```
pub fn autocast(precision: Precision) -> Autocast {
    Autocast { previous: ACTIVE.with(|a| a.replace(precision)) }
}

/// The guard of [`autocast`].
#[must_use = "the precision returns to the previous one when the guard is dropped"]
pub struct Autocast {
    previous: Precision,
}

impl Drop for Autocast {
    fn drop(&mut self) {
        ACTIVE.with(|a| a.set(self.previous));
    }
}

/// This thread's precision.
pub fn precision() -> Precision {
    ACTIVE.with(Cell::get)
}

/// `x` in this thread's half type (unchanged under f32).
pub(crate) fn to_half<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    match precision().half() {
        Some(dtype) => x.cast(dtype),
        None => x,
    }
}
