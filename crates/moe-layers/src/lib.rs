//! Mixture-of-experts layers on burn, generic over the backend, for Fair-MoE (arXiv
//! 2502.06094):
//!
//! - [`TokenMoe`]: FO-MoE's token-level MoE, top-k experts per token and an expert capacity
//!   per sequence (`Top_c(Top_r(W, k), α)`), experts run only on their tokens; the official
//!   code's choices (10 experts, top 3, capacity 0.8 against 197 tokens, ReLU, `out − x`) as
//!   defaults, the paper's by switch ([`Capacity::FromTokens`], `subtract_input = false`).
//! - [`FeatureMoe`]: the feature-level MoE on pooled features, dense (code) or top-k (paper).
//! - [`load_balancing_loss`]: the Switch-Transformer auxiliary loss, optional.
//!
//! Every forward returns its routing weights ([`MoeOutput::routing`]) for losses such as FOL.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::prelude::*;
//! use moe_layers::{Capacity, TokenMoeConfig};
//!
//! let device = Default::default();
//! let moe = TokenMoeConfig::new(16, 64).with_capacity(Capacity::FromTokens { rate: 0.8 }).init::<Flex>(&device)?;
//! let x = Tensor::<Flex, 3>::random([2, 10, 16], burn::tensor::Distribution::Default, &device);
//! let out = moe.forward(x);
//! assert_eq!(out.output.dims(), [2, 10, 16]);
//! assert_eq!(out.routing.dims(), [20, 10]); // tokens x samples, experts
//! # Ok::<(), moe_layers::Error>(())
//! ```

#![warn(missing_docs)]

mod error;
mod expert;
mod feature;
mod routing;
mod token;

pub use error::{Error, Result};
pub use expert::{Expert, ExpertActivation};
pub use feature::{FeatureMoe, FeatureMoeConfig, FeatureRouting};
pub use routing::{route_with_capacity, top_k_mask};
pub use token::{Capacity, MoeOutput, TokenMoe, TokenMoeConfig};

use burn::prelude::*;

/// Switch Transformer's load-balancing loss `M · Σ_n f_n · P_n`, with `f_n` the fraction of
/// routed (row, expert) assignments that go to expert n and `P_n` the mean gate probability
/// of n; 1 when perfectly balanced. `routing` and `probs` as in [`MoeOutput`].
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let d = Default::default();
/// let p = Tensor::<Flex, 2>::from_floats([[0.5, 0.5], [0.5, 0.5]], &d);
/// let l = moe_layers::load_balancing_loss(p.clone(), p);
/// assert!((l.into_scalar() - 1.0).abs() < 1e-6);
/// ```
pub fn load_balancing_loss<B: Backend>(routing: Tensor<B, 2>, probs: Tensor<B, 2>) -> Tensor<B, 1> {
    let m = probs.dims()[1] as f64;
    let assigned = routing.detach().greater_elem(0.0).float();
    let f = assigned.clone().sum_dim(0) / assigned.sum().clamp_min(1.0).reshape([1, 1]);
    let p = probs.mean_dim(0);
    (f * p).sum() * m
}
