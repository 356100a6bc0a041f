//! Fairness losses as pure functions of burn tensors, generic over the backend.
//!
//! - [`clip_contrastive_loss`]: CLIP's symmetric InfoNCE.
//! - [`sinkhorn_divergence`]: the debiased Sinkhorn divergence exactly as geomloss's
//!   `SamplesLoss("sinkhorn", p=2)` computes it (tensorised backend, epsilon-scaling), which is
//!   FairCLIP's distance between the similarity distributions of a batch and of each group.
//! - [`pair_similarities`] and [`fairclip_regularizer`]: FairCLIP's regulariser, in the
//!   official code's form and in the paper-aligned form ([`FairClipVariant`]).
//! - [`surrogate_auc`] and [`surrogate_auc_gap`]: MultiFair's pairwise-logistic AUC surrogate
//!   and the group gap on it.
//! - [`fol_term`]: Fair-MoE's Fairness-Oriented Loss on MoE routing weights, in the paper's and
//!   the code's form ([`FolForm`]).
//!
//! - [`lora_orthogonality`], [`mean_entropy`], [`gradient_reversal`]: the fairness terms of
//!   fairness-aware LoRA (Orth, Ent, Adv).
//!
//! Every function works on any backend; with an autodiff backend, gradients flow as in the
//! PyTorch reference (for the Sinkhorn divergence: only through the last soft-min, by the
//! envelope theorem, as geomloss does). Formulas: docs/methods.md.

#![warn(missing_docs)]

mod auc;
mod clip;
mod error;
mod fairclip;
mod fol;
mod lora;
mod sinkhorn;

pub use auc::{surrogate_auc, surrogate_auc_gap};
pub use clip::{clip_contrastive_loss, log_sum_exp};
pub use error::{Error, Result};
pub use fairclip::{fairclip_group_divergences, fairclip_regularizer, official_similarities, pair_similarities, FairClipVariant};
pub use fol::{fol_term, routing_variance, FolForm};
pub use lora::{gradient_reversal, lora_orthogonality, mean_entropy, AdapterPair};
pub use sinkhorn::{epsilon_schedule, sinkhorn_divergence, SinkhornConfig};
