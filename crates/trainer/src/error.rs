//! The one error type of the crate.

use std::path::PathBuf;

/// What can go wrong in an experiment.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A config file that does not parse or holds a bad value; the message names the key.
    #[error("{origin}: {message}")]
    Config {
        /// The file (or "inline").
        origin: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A checkpoint or run folder that cannot be used.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Data loading.
    #[error(transparent)]
    Data(#[from] fair_data::Error),
    /// A loss refused its inputs.
    #[error(transparent)]
    Loss(#[from] fair_losses::Error),
    /// Metrics.
    #[error(transparent)]
    Metrics(#[from] fair_metrics::Error),
    /// A pretrained checkpoint that cannot be loaded, or a model that cannot be built.
    #[error(transparent)]
    Weights(#[from] vlm_backbone::Error),
    /// Gradient modulation (OGM-GE, MultiFair) refused its inputs or its saved statistics.
    #[error("gradient modulation: {0}")]
    Modulation(#[from] gradmod::Error),
    /// Something the data cannot support (an empty split, a group with no samples, ...).
    #[error("{0}")]
    Invalid(String),
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
