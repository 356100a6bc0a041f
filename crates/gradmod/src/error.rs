//! The one error type of the crate.

/// Invalid arguments to a modulation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter of a rank the crate does not handle (1 to 6 are).
    #[error("parameter of rank {0}: gradient modulation handles ranks 1 to 6")]
    Rank(usize),
    /// Inputs whose sizes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A setting outside its domain.
    #[error("invalid setting: {0}")]
    Setting(String),
    /// A batch statistic that could not be computed.
    #[error(transparent)]
    Metric(#[from] fair_metrics::Error),
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
