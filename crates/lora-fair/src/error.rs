//! The one error type of the crate.

/// Invalid LoRA settings or adapters.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting outside its domain.
    #[error("invalid LoRA setting: {0}")]
    Setting(String),
    /// Tensors whose shapes do not fit the layer.
    #[error("shape mismatch: {0}")]
    Shape(String),
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
