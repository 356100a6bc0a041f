//! FO-MoE's feature-level mixture of experts on a pooled feature (the image `[CLS]` output
//! or the text end-of-text feature), one expert per group of the chosen attribute.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use fused_ops::softmax;

use crate::error::{Error, Result};
use crate::expert::{Expert, ExpertActivation};
use crate::routing::top_k_mask;
use crate::token::MoeOutput;

/// How the feature MoE mixes its experts.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum FeatureRouting {
    /// Every expert, weighted by the gate's softmax (the official code).
    Dense,
    /// The k largest gate weights (the paper's `Top_r(softmax(G(x)), k)`).
    TopK(usize),
}

/// Settings of a [`FeatureMoe`]. Defaults are the code's: dense softmax, experts `d → 4d → d`
/// with ReLU, gate `d → d/4` (QuickGELU) `→ M`.
#[derive(Config, Debug)]
pub struct FeatureMoeConfig {
    /// Feature width d.
    pub width: usize,
    /// Number of experts M² (the code: the number of groups of the attribute).
    pub experts: usize,
    /// Expert hidden width (default 4d).
    pub hidden: Option<usize>,
    /// Mixing rule.
    #[config(default = "FeatureRouting::Dense")]
    pub routing: FeatureRouting,
}

/// The feature-level MoE.
#[derive(Module, Debug)]
pub struct FeatureMoe<B: Backend> {
    /// Gate, first layer (then QuickGELU).
    pub gate_fc1: Linear<B>,
    /// Gate, second layer (then softmax).
    pub gate_fc2: Linear<B>,
    /// The experts.
    pub experts: Vec<Expert<B>>,
    /// Top-k, or 0 for dense.
    pub top_k: usize,
}

impl FeatureMoeConfig {
    /// A randomly initialised feature MoE (the code initialises it randomly).
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<FeatureMoe<B>> {
        let top_k = match self.routing {
            FeatureRouting::Dense => 0,
            FeatureRouting::TopK(k) => k,
        };
        if self.experts == 0 || top_k > self.experts || self.width < 4 {
            return Err(Error::Config(format!("feature MoE: {} experts, top_k {top_k}, width {}: expected >= 1 expert, top_k <= experts, width >= 4", self.experts, self.width)));
        }
        let hidden = self.hidden.unwrap_or(4 * self.width);
        Ok(FeatureMoe {
            gate_fc1: LinearConfig::new(self.width, self.width / 4).init(device),
            gate_fc2: LinearConfig::new(self.width / 4, self.experts).init(device),
            experts: (0..self.experts).map(|_| Expert::new(self.width, hidden, ExpertActivation::Relu, device)).collect(),
            top_k,
        })
    }
}

impl<B: Backend> FeatureMoe<B> {
    /// `Σ_n w_n E_n(f)` for features `[batch, width]`; no residual (the code discards it).
    pub fn forward(&self, f: Tensor<B, 2>) -> MoeOutput<B, 2> {
        let gate = ExpertActivation::QuickGelu.apply(self.gate_fc1.forward(f.clone()));
        let probs = softmax(self.gate_fc2.forward(gate), 1);
        let routing = if self.top_k > 0 { probs.clone() * top_k_mask(probs.clone(), self.top_k, 1) } else { probs.clone() };
        let mut out: Option<Tensor<B, 2>> = None;
        for (n, e) in self.experts.iter().enumerate() {
            let y = e.forward(f.clone()) * routing.clone().narrow(1, n, 1);
            out = Some(match out {
                Some(o) => o + y,
                None => y,
            });
        }
        MoeOutput { output: out.unwrap_or_else(|| f.zeros_like()), routing, probs }
    }
}
