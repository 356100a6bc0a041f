//! The one error type of the crate.

/// Invalid MoE settings.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting out of its domain, named in the message.
    #[error("invalid MoE configuration: {0}")]
    Config(String),
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
