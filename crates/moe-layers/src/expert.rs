//! One expert: a two-layer MLP `fc2(σ(fc1(x)))` (Fair-MoE's `E(x) = T̃ σ(W̃ x)`).

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// Expert and gate activations.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum ExpertActivation {
    /// ReLU (the official FO-MoE experts).
    Relu,
    /// CLIP's `x · sigmoid(1.702 x)` (the feature-MoE gate).
    QuickGelu,
}

impl ExpertActivation {
    /// Applies the activation.
    pub fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            ExpertActivation::Relu => relu(x),
            ExpertActivation::QuickGelu => fused_ops::quick_gelu(x),
        }
    }
}

/// A two-layer MLP expert.
#[derive(Module, Debug)]
pub struct Expert<B: Backend> {
    /// Input to hidden.
    pub fc1: Linear<B>,
    /// Hidden to output.
    pub fc2: Linear<B>,
    /// Hidden activation.
    pub activation: ExpertActivation,
}

impl<B: Backend> Expert<B> {
    /// A randomly initialised expert `width -> hidden -> width`.
    pub fn new(width: usize, hidden: usize, activation: ExpertActivation, device: &B::Device) -> Self {
        Self { fc1: LinearConfig::new(width, hidden).init(device), fc2: LinearConfig::new(hidden, width).init(device), activation }
    }

    /// An expert whose weights are copies of the given layers (FO-MoE initialises every expert
    /// from the pretrained MLP). The copies are new parameters: training one expert does not
    /// move the others.
    pub fn from_layers(fc1: &Linear<B>, fc2: &Linear<B>, activation: ExpertActivation) -> Self {
        let copy = |l: &Linear<B>| Linear {
            weight: burn::module::Param::from_tensor(l.weight.val().detach()),
            bias: l.bias.as_ref().map(|b| burn::module::Param::from_tensor(b.val().detach())),
        };
        Self { fc1: copy(fc1), fc2: copy(fc2), activation }
    }

    /// `fc2(σ(fc1(x)))`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        self.fc2.forward(self.activation.apply(self.fc1.forward(x)))
    }
}
