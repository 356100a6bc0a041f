//! Reading an experiment: parse the TOML, apply overrides, validate the common sections and
//! the active method's (its recipe decides what it reads).

use std::path::Path;

use crate::config::Experiment;
use crate::error::{Error, Result};
use crate::recipes;

impl Experiment {
    /// Parses and validates TOML; `origin` names the text in errors (usually the file).
    ///
    /// The active method's sections are checked, the others' only parsed:
    ///
    /// ```
    /// use trainer::Experiment;
    /// let bad_blur = "[fairclip]\nblur = 0.0\n";
    /// let err = Experiment::from_toml_str(&format!("method = \"fairclip\"\n{bad_blur}"), "exp.toml").unwrap_err();
    /// assert!(err.to_string().contains("fairclip.blur"));
    /// assert!(Experiment::from_toml_str(&format!("method = \"clip\"\n{bad_blur}"), "exp.toml").is_ok());
    /// ```
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let exp = Experiment::parse(text, origin)?;
        exp.validate_common().and_then(|()| recipes::validate(&exp)).map_err(|message| Error::Config { origin: origin.into(), message })?;
        Ok(exp)
    }

    /// Reads, parses and validates a config file; relative data paths become relative to it.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_with(path, &[])
    }

    /// [`Experiment::from_file`] with `key=value` overrides (dotted keys, TOML values; a value
    /// that is not TOML is taken as a string), e.g. `optim.epochs=1` or `method=fairclip`.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("exp-{}.toml", std::process::id()));
    /// std::fs::write(&path, "[optim]\nepochs = 8\n")?;
    /// let exp = trainer::Experiment::from_file_with(&path, &["optim.epochs=2".into(), "method=fairclip".into()])?;
    /// assert_eq!(exp.optim.epochs, 2);
    /// assert_eq!(exp.method, trainer::Method::Fairclip);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_file_with(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = Experiment::read_text(path, overrides)?;
        let mut exp = Self::from_toml_str(&text, &path.display().to_string())?;
        exp.resolve_paths(path);
        Ok(exp)
    }
}
