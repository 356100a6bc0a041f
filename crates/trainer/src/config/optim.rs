//! `[optim]`: the optimiser and its schedule.

use serde::{Deserialize, Serialize};

/// Optimisers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam with L2 weight decay added to the gradient (PyTorch `Adam`, the papers' choice).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
    /// SGD with momentum `optim.momentum` (no dampening) and L2 weight decay added to the
    /// gradient: PyTorch's `SGD(momentum=0.9, weight_decay=1e-4)`, OGM-GE's optimiser.
    Sgd,
}

/// `[optim]`. Defaults: FairCLIP's `finetune_*.sh` (Adam, lr 1e-5, betas (0.1, 0.1), eps 1e-6,
/// weight decay 6e-5, batch 32, 10 epochs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Adam, AdamW or SGD.
    pub optimizer: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// Adam's β₁, β₂.
    pub betas: [f64; 2],
    /// Adam's ε.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// SGD's momentum (0.9); the other optimisers ignore it.
    pub momentum: f64,
    /// Samples per step.
    pub batch_size: usize,
    /// Passes over the training split.
    pub epochs: usize,
    /// Linear warm-up of the learning rate over this many steps (0: none, as the papers).
    pub warmup_steps: usize,
    /// Learning rate of the text tower (CLIP methods), for a pretrained text encoder
    /// fine-tuned beside an image tower trained from scratch; unset: `lr`. Warm-up scales both.
    pub text_lr: Option<f64>,
    /// The float type of the towers' matrix products: `f32`, or mixed precision with f32
    /// weights and optimiser state, `bf16` or `f16` (with dynamic loss scaling). For GPUs;
    /// the CPU backend computes half products through f32 and gains nothing.
    pub precision: vlm_backbone::Precision,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerKind::Adam,
            lr: 1e-5,
            betas: [0.1, 0.1],
            eps: 1e-6,
            weight_decay: 6e-5,
            momentum: 0.9,
            batch_size: 32,
            epochs: 10,
            warmup_steps: 0,
            text_lr: None,
            precision: vlm_backbone::Precision::F32,
        }
    }
}
