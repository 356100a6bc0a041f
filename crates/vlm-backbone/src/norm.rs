//! Layer norm with burn's `LayerNorm` record (`gamma`, `beta`, `epsilon`: checkpoints and the
//! Hugging Face key mapping are unchanged), whose forward is [`fused_ops::layer_norm`]: one
//! pass each way on the CPU backend under autodiff, where burn composes a dozen operations.

use burn::module::{Module, Param};
use burn::prelude::*;

/// Sizes of a [`LayerNorm`] (burn's `LayerNormConfig`).
#[derive(Config, Debug)]
pub struct LayerNormConfig {
    /// Width of the normalised (last) dimension.
    pub d_model: usize,
    /// Added to the variance.
    #[config(default = 1e-5)]
    pub epsilon: f64,
}

impl LayerNormConfig {
    /// γ ones, β zeros.
    pub fn init<B: Backend>(&self, device: &B::Device) -> LayerNorm<B> {
        LayerNorm { gamma: Param::from_tensor(Tensor::ones([self.d_model], device)), beta: Some(Param::from_tensor(Tensor::zeros([self.d_model], device))), epsilon: self.epsilon }
    }
}

/// `(x − μ) / √(σ² + ε) · γ + β` over the last dimension.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// use vlm_backbone::LayerNormConfig;
/// let device = Default::default();
/// let ln = LayerNormConfig::new(2).with_epsilon(0.0).init::<Flex>(&device);
/// let y = ln.forward(Tensor::<Flex, 2>::from_floats([[1.0, 3.0]], &device));
/// assert_eq!(y.into_data().to_vec::<f32>().unwrap(), vec![-1.0, 1.0]);
/// ```
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    /// The scale γ.
    pub gamma: Param<Tensor<B, 1>>,
    /// The shift β.
    pub beta: Option<Param<Tensor<B, 1>>>,
    /// ε.
    pub epsilon: f64,
}

impl<B: Backend> LayerNorm<B> {
    /// Normalises `x` over its last dimension.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        fused_ops::layer_norm(x, self.gamma.val(), self.beta.as_ref().map(Param::val), self.epsilon)
    }
}
