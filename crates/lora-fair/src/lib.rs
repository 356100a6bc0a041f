//! LoRA on burn with Hugging Face peft's conventions, for fairness-aware fine-tuning where a
//! fairness auditor and a model developer exchange only adapters.
//!
//! - [`LoraConfig`]: rank, `lora_alpha`, dropout, rsLoRA; [`LoraConfig::scaling`].
//! - [`LoraLinear`]: a linear layer that may carry a [`LoraAdapter`] (`A [r, in]`
//!   Kaiming-uniform, `B [out, r]` zero), with merge and unmerge; without an adapter it is
//!   `burn::nn::Linear` with the same record keys.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::nn::LinearConfig;
//! use lora_fair::{LoraConfig, LoraLinear};
//!
//! let device = Default::default();
//! let layer = LoraLinear::from(LinearConfig::new(64, 64).init::<Flex>(&device));
//! let layer = layer.with_adapter(&LoraConfig::new().with_r(4).with_alpha(8.0), &device)?;
//! assert_eq!(layer.trainable_parameters(), 2 * 4 * 64);
//! # Ok::<(), lora_fair::Error>(())
//! ```

#![warn(missing_docs)]

mod error;
mod linear;

pub use error::{Error, Result};
pub use linear::{LoraAdapter, LoraConfig, LoraLinear};
