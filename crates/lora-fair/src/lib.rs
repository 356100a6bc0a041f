//! LoRA on burn with Hugging Face peft's conventions, for fairness-aware fine-tuning where a
//! fairness auditor and a model developer exchange only adapters.
//!
//! - [`LoraConfig`]: rank, `lora_alpha`, dropout, rsLoRA; [`LoraConfig::scaling`].
//! - [`LoraLinear`]: a linear layer that may carry a [`LoraAdapter`] (`A [r, in]`
//!   Kaiming-uniform, `B [out, r]` zero), with merge and unmerge; without an adapter it is
//!   `burn::nn::Linear` with the same record keys.
//! - [`save_adapters`] / [`load_adapters`]: peft's adapter folder (`adapter_model.safetensors`,
//!   `adapter_config.json`).
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
mod peft;

/// Whether a module path is targeted, with peft's rule for a list of `target_modules`: the
/// path equals an entry or ends with `.` + entry.
///
/// ```
/// let targets = ["q_proj", "fc1"];
/// assert!(lora_fair::is_target("encoder.layers.0.self_attn.q_proj", &targets));
/// assert!(!lora_fair::is_target("encoder.layers.0.self_attn.k_proj", &targets));
/// assert!(!lora_fair::is_target("encoder.layers.0.mlp.xfc1", &targets));
/// ```
pub fn is_target<S: AsRef<str>>(path: &str, targets: &[S]) -> bool {
    targets.iter().any(|t| {
        let t = t.as_ref();
        path == t || path.ends_with(&format!(".{t}"))
    })
}

pub use error::{Error, Result};
pub use linear::{linear, LoraAdapter, LoraConfig, LoraLinear};
pub use peft::{load_adapters, save_adapters, AdapterConfig};
