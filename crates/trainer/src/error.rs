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
    /// Training produced a non-finite loss; the message names the settings that can cause it.
    #[error("{0}")]
    Diverged(String),
}

impl Error {
    /// Whether the error is about what the user gave (a config key, a file that is not there or
    /// not what it should be, data a method cannot use: exit status 2) rather than a failure
    /// while running (a diverged training, a write that failed: exit status 1).
    ///
    /// ```
    /// let e = trainer::Experiment::from_toml_str("[optim]\nlearnig_rate = 1\n", "x.toml").unwrap_err();
    /// assert!(e.is_usage());
    /// assert!(!trainer::Error::Diverged("the loss is NaN".into()).is_usage());
    /// ```
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == std::io::ErrorKind::NotFound,
            Error::Diverged(_) | Error::Loss(_) | Error::Modulation(_) => false,
            Error::Config { .. } | Error::Checkpoint { .. } | Error::Data(_) | Error::Metrics(_) | Error::Weights(_) | Error::Invalid(_) => true,
        }
    }
}

/// Result alias of the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
