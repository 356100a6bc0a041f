//! FO-MoE's token-level mixture of experts: a gate per token, top-k experts per token, at most
//! `capacity` tokens per expert in each sequence (the paper's `Top_c(Top_r(W, k), α)`), and the
//! experts run only on the tokens routed to them.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;
use fused_ops::softmax;

use crate::error::{Error, Result};
use crate::expert::{Expert, ExpertActivation};
use crate::routing::route_with_capacity;

/// How many tokens each expert may take per sequence.
#[derive(Config, Debug, Copy, PartialEq)]
pub enum Capacity {
    /// The official code: `int(reference · rate · k / experts)` with a fixed reference token
    /// count (197, ViT-B/16's, for every tower and size).
    Reference {
        /// Token count the capacity is computed from.
        tokens: usize,
        /// Capacity rate C.
        rate: f64,
    },
    /// The paper: `int((N + 1) · rate · k / experts)` from the sequence's real token count.
    FromTokens {
        /// Capacity rate C.
        rate: f64,
    },
    /// No capacity limit (plain top-k MoE).
    Unlimited,
}

/// Settings of a [`TokenMoe`]. Defaults are the official FO-MoE's: 10 experts, top 3,
/// capacity rate 0.8 against 197 tokens, ReLU experts, `out − x`.
#[derive(Config, Debug)]
pub struct TokenMoeConfig {
    /// Token width D.
    pub width: usize,
    /// Expert hidden width (CLIP: 4D).
    pub hidden: usize,
    /// Number of experts M¹.
    #[config(default = 10)]
    pub experts: usize,
    /// Experts per token k¹.
    #[config(default = 3)]
    pub top_k: usize,
    /// Expert capacity.
    #[config(default = "Capacity::Reference { tokens: 197, rate: 0.8 }")]
    pub capacity: Capacity,
    /// Divide each token's kept weights by their sum (the code does not).
    #[config(default = false)]
    pub renormalize: bool,
    /// Return `Σ_n w_n E_n(x) − x` (the code, so that the block's residual adds the MoE
    /// output minus the normalised input) instead of `Σ_n w_n E_n(x)` (the paper).
    #[config(default = true)]
    pub subtract_input: bool,
    /// Expert activation.
    #[config(default = "ExpertActivation::Relu")]
    pub activation: ExpertActivation,
}

/// The token-level MoE.
#[derive(Module, Debug)]
pub struct TokenMoe<B: Backend> {
    /// Gate, first layer (D → D/4, then ReLU).
    pub gate_fc1: Linear<B>,
    /// Gate, second layer (D/4 → M, then softmax).
    pub gate_fc2: Linear<B>,
    /// The experts.
    pub experts: Vec<Expert<B>>,
    /// k.
    pub top_k: usize,
    /// Capacity rule.
    pub capacity: Capacity,
    /// Renormalise kept weights.
    pub renormalize: bool,
    /// Subtract the input from the output.
    pub subtract_input: bool,
}

/// A forward pass: the output and the routing weights, exposed for FOL.
#[derive(Debug, Clone)]
pub struct MoeOutput<B: Backend, const D: usize> {
    /// The layer's output.
    pub output: Tensor<B, D>,
    /// Routing weights after top-k and capacity, `[rows, experts]` (rows = tokens × samples
    /// for the token MoE, samples for the feature MoE); differentiable.
    pub routing: Tensor<B, 2>,
    /// The gate's softmax probabilities before routing, `[rows, experts]`.
    pub probs: Tensor<B, 2>,
}

impl TokenMoeConfig {
    fn check(&self) -> Result<()> {
        if self.experts == 0 || self.top_k == 0 || self.top_k > self.experts {
            return Err(Error::Config(format!("top_k = {} with {} experts: expected 1 <= top_k <= experts", self.top_k, self.experts)));
        }
        if self.width < 4 {
            return Err(Error::Config(format!("width = {}: the gate needs at least 4", self.width)));
        }
        Ok(())
    }

    /// A randomly initialised MoE.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Result<TokenMoe<B>> {
        self.check()?;
        let experts = (0..self.experts).map(|_| Expert::new(self.width, self.hidden, self.activation, device)).collect();
        Ok(self.assemble(experts, device))
    }

    /// An MoE whose every expert is a copy of a pretrained MLP (`fc1`, `fc2`), as FO-MoE
    /// initialises it; the gate is random.
    pub fn init_from_mlp<B: Backend>(&self, fc1: &Linear<B>, fc2: &Linear<B>, device: &B::Device) -> Result<TokenMoe<B>> {
        self.check()?;
        let [d_in, h] = fc1.weight.dims();
        if d_in != self.width || h != self.hidden {
            return Err(Error::Config(format!("MLP is {d_in} -> {h}, the MoE expects {} -> {}", self.width, self.hidden)));
        }
        let experts = (0..self.experts).map(|_| Expert::from_layers(fc1, fc2, self.activation)).collect();
        Ok(self.assemble(experts, device))
    }

    fn assemble<B: Backend>(&self, experts: Vec<Expert<B>>, device: &B::Device) -> TokenMoe<B> {
        TokenMoe {
            gate_fc1: LinearConfig::new(self.width, self.width / 4).init(device),
            gate_fc2: LinearConfig::new(self.width / 4, self.experts).init(device),
            experts,
            top_k: self.top_k,
            capacity: self.capacity,
            renormalize: self.renormalize,
            subtract_input: self.subtract_input,
        }
    }
}

impl<B: Backend> TokenMoe<B> {
    /// Tokens per expert and sequence for sequences of `tokens` tokens.
    pub fn capacity_for(&self, tokens: usize) -> usize {
        let (m, k) = (self.experts.len() as f64, self.top_k as f64);
        match self.capacity {
            Capacity::Reference { tokens: r, rate } => (r as f64 * rate * k / m) as usize,
            Capacity::FromTokens { rate } => (tokens as f64 * rate * k / m) as usize,
            Capacity::Unlimited => tokens,
        }
        .max(1)
    }

    /// Routes the tokens of `x` `[batch, tokens, width]` and mixes the experts' outputs.
    pub fn forward(&self, x: Tensor<B, 3>) -> MoeOutput<B, 3> {
        let [b, t, d] = x.dims();
        let m = self.experts.len();
        let probs = softmax(self.gate_fc2.forward(burn::tensor::activation::relu(self.gate_fc1.forward(x.clone()))), 2);
        let mut routing = route_with_capacity(probs.clone(), self.top_k, self.capacity_for(t));
        if self.renormalize {
            routing = routing.clone() / routing.sum_dim(2).clamp_min(1e-9);
        }
        let flat_x = x.clone().reshape([b * t, d]);
        let flat_r = routing.reshape([b * t, m]);
        // Which rows each expert serves, read once on the host.
        let kept: Vec<f32> = flat_r.clone().detach().greater_elem(0.0).float().into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default();
        let mut out = flat_x.zeros_like();
        let device = x.device();
        for (n, expert) in self.experts.iter().enumerate() {
            let rows: Vec<i64> = (0..b * t).filter(|&r| kept.get(r * m + n).is_some_and(|&v| v > 0.0)).map(|r| r as i64).collect();
            if rows.is_empty() {
                continue;
            }
            let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(rows.clone(), [rows.len()]), &device);
            let y = expert.forward(flat_x.clone().select(0, idx.clone())) * flat_r.clone().select(0, idx.clone()).narrow(1, n, 1);
            out = out.select_assign(0, idx, y, IndexingUpdateOp::Add);
        }
        let mut output = out.reshape([b, t, d]);
        if self.subtract_input {
            output = output - x;
        }
        MoeOutput { output, routing: flat_r, probs: probs.reshape([b * t, m]) }
    }
}
