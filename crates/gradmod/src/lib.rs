//! Gradient modulation between `backward()` and the optimiser step, generic over burn's
//! backend: what OGM-GE, CGGM and MultiFair do to the gradients of a multimodal model.
//!
//! - Primitives on [`ParamSet`]s (an encoder, a head): [`scale`], [`scale_with_noise`] (Gaussian
//!   enhancement), [`global_norm`] and [`clip_global_norm`], [`flatten`], [`cosine`] and
//!   [`pcgrad`].
//! - [`OgmGe`]: the discrepancy ratio from the unimodal logits, `k = 1 − tanh(α·ρ)` for the
//!   dominant modality, GE noise, an epoch window.
//! - [`ModalityBalance`] and [`direction_loss`]: CGGM-style balancing from auxiliary heads.
//! - [`GroupModulation`]: MultiFair's per-group factors, EMA and trigger, in the code's
//!   reading or the faithful one ([`MultiFairMode`]).
//! - [`OgmGe`] and [`MultiFairSettings`] are also the `[ogm]` and `[multifair]` tables of an
//!   experiment file (serde, unknown keys refused, every key optional).
//!
//! ```
//! use burn::backend::{Autodiff, Flex};
//! use burn::nn::LinearConfig;
//! use burn::optim::GradientsParams;
//! use burn::prelude::*;
//! use gradmod::{clip_global_norm, scale, ParamSet};
//!
//! type B = Autodiff<Flex>;
//! let device = Default::default();
//! let (fundus, text) = (LinearConfig::new(4, 2).init::<B>(&device), LinearConfig::new(4, 2).init::<B>(&device));
//! let x = Tensor::<B, 2>::ones([8, 4], &device);
//! let loss = (fundus.forward(x.clone()) + text.forward(x)).sum();
//! let mut grads = GradientsParams::from_grads(loss.backward(), &(fundus.clone(), text.clone()));
//! scale::<Flex>(&mut grads, &ParamSet::of(&fundus), 0.3)?;      // slow the dominant modality
//! let all = ParamSet::of(&fundus).union(&ParamSet::of(&text));
//! let norm = clip_global_norm::<Flex>(&mut grads, &all, 0.8)?;
//! assert!(norm > 0.8);
//! # Ok::<(), gradmod::Error>(())
//! ```

#![warn(missing_docs)]

mod balance;
mod error;
mod grads;
mod multifair;
mod ogm;

pub use balance::{direction_loss, ModalityBalance};
pub use error::{Error, Result};
pub use grads::{clip_global_norm, cosine, flatten, global_norm, pcgrad, scale, scale_with_noise, unflatten, ParamSet};
pub use multifair::{GroupModulation, MultiFairMode, MultiFairSettings};
pub use ogm::{OgmCoefficients, OgmGe};
