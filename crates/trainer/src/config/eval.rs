//! `[eval]`: evaluation and model selection.

use serde::{Deserialize, Serialize};

/// The split that picks the best epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectOn {
    /// Validation AUC (default; the clean protocol).
    Validation,
    /// Test AUC, as the official FairCLIP and Fair-MoE code does.
    Test,
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Model selection split.
    pub select_on: SelectOn,
    /// Zero-shot prompts of class 0 and class 1.
    pub prompts: [String; 2],
    /// Bootstrap replicates for the intervals of the final report (0: none).
    pub bootstrap: usize,
    /// Threshold of the hard predictions.
    pub threshold: f64,
    /// Samples per inference batch.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self { select_on: SelectOn::Validation, prompts: ["A photo of non-glaucoma".into(), "A photo of glaucoma".into()], bootstrap: 200, threshold: 0.5, batch_size: 128 }
    }
}

impl EvalConfig {
    /// The bootstrap of the final report's intervals (`None` when `bootstrap = 0`).
    pub fn bootstrap(&self, seed: u64) -> Option<fair_metrics::Bootstrap> {
        (self.bootstrap > 0).then(|| fair_metrics::Bootstrap::new(self.bootstrap, seed))
    }
}
