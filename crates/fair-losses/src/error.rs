//! The one error type of the crate.

/// Invalid arguments to a loss.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Shapes that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A parameter outside its domain.
    #[error("invalid parameter: {0}")]
    Parameter(String),
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
