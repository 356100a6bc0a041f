//! `cargo xtask reproduce foundation`: the pretrained CLIP of the studies' fine-tuning regime.
//! `configs/foundation-clip.toml` trains the benchmark's CLIP once on a large, unbiased
//! synthetic corpus; `fairvlm export` writes it as a Hugging Face CLIPModel folder, which the
//! fine-tuning runs load through `[model.vision]` and `[model.text]`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::study_run;
use crate::util::{build_fairvlm, run};

/// The foundation's run and its export (kept while the run's stamp holds).
pub fn foundation(root: &Path, fairvlm: &Path, device: &str) -> Result<PathBuf> {
    let dir = root.join("runs/reproduce-foundation");
    let out = dir.join("clip");
    let j = study_run(fairvlm, root, &out, "configs/foundation-clip.toml", device, &[])?;
    let hf = dir.join("hf");
    // Re-exported whenever the run is newer than the export.
    let newer = |a: &Path, b: &Path| -> bool {
        let time = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        matches!((time(a), time(b)), (Some(x), Some(y)) if x > y) || time(b).is_none()
    };
    if newer(&out.join("best.safetensors"), &hf.join("model.safetensors")) {
        run(Command::new(fairvlm).current_dir(root).args(["export", "--run"]).arg(&out).arg("--output").arg(&hf))?;
    }
    let auc = j["test"]["overall"]["auc"].as_f64().context("the foundation's report has a test AUC")?;
    println!("foundation CLIP: test AUC {:.2} on its own corpus, exported to {}", 100.0 * auc, hf.display());
    Ok(hf)
}

/// `cargo xtask reproduce foundation`.
pub fn reproduce_foundation(root: &Path, device: &str) -> Result<()> {
    let fairvlm = build_fairvlm(root, device)?;
    foundation(root, &fairvlm, device).map(|_| ())
}

/// The settings every fine-tuning run adds: both towers, projections and logit scale from the
/// foundation (`hf`), with the papers' optimiser (FairCLIP's script: Adam, lr 1e-5, betas
/// (0.1, 0.1), ε 1e-6, weight decay 6e-5, batch 32, 10 epochs, no warm-up).
pub fn finetune_sets(hf: &Path) -> Vec<String> {
    let hf = hf.display();
    vec![
        format!("model.vision.weights=\"{hf}\""),
        format!("model.text.weights=\"{hf}\""),
        "optim.optimizer=\"adam\"".into(),
        "optim.lr=1e-5".into(),
        "optim.betas=[0.1, 0.1]".into(),
        "optim.eps=1e-6".into(),
        "optim.weight_decay=6e-5".into(),
        "optim.epochs=10".into(),
        "optim.warmup_steps=0".into(),
    ]
}

/// Benchmark v2 (`fair_data::SynthConfig::benchmark_v2`, docs/datasets.md) as `--set` overrides.
pub fn benchmark_v2_sets() -> Vec<String> {
    vec![
        r#"data.synthetic.effects=[{ attribute = "race", value = 0, sign = "pallor" }]"#.into(),
        r#"data.synthetic.shortcut={ attribute = "race", value = 1, agreement = 0.85, modality = "image" }"#.into(),
        r#"data.synthetic.test_oversample={ attribute = "race", min_per_group = 1000 }"#.into(),
    ]
}

/// Where a study's runs start and on which benchmark: the from-scratch regime on the first
/// benchmark (the studies' original form), or the papers' regime (fine-tuning the foundation)
/// on benchmark v2.
#[derive(Debug, Clone)]
pub struct Regime {
    /// The foundation's export, in the fine-tuning regime.
    pub foundation: Option<PathBuf>,
    /// Benchmark v2 rather than the first one.
    pub v2: bool,
}

impl Regime {
    /// Fine-tuning the foundation (trained first if needed) on benchmark `v2` or the first.
    pub fn finetune(root: &Path, fairvlm: &Path, device: &str, v2: bool) -> Result<Self> {
        Ok(Self { foundation: Some(foundation(root, fairvlm, device)?), v2 })
    }

    /// The settings the regime adds to every run.
    pub fn sets(&self) -> Vec<String> {
        let mut sets = self.foundation.as_deref().map(finetune_sets).unwrap_or_default();
        if self.v2 {
            sets.extend(benchmark_v2_sets());
        }
        sets
    }

    /// The prefix of the regime's run folders and document sections ("" for the original).
    pub fn prefix(&self) -> &'static str {
        match (self.foundation.is_some(), self.v2) {
            (false, false) => "",
            (false, true) => "v2-",
            (true, false) => "ft-",
            (true, true) => "ft-v2-",
        }
    }

    /// The regime in a table's text.
    pub fn describe(&self) -> String {
        format!(
            "Regime: {}; benchmark {}",
            if self.foundation.is_some() {
                "fine-tuning the foundation CLIP (`cargo xtask reproduce foundation`) with the papers' optimiser (Adam, lr 1e-5, betas (0.1, 0.1), 10 epochs)"
            } else {
                "from random weights, the configs' optimiser"
            },
            if self.v2 {
                "v2 (docs/datasets.md: a shortcut for Black patients, rim pallor for Asian patients, 1,000+ test subjects per race group)"
            } else {
                "v1 (the default synthetic benchmark)"
            }
        )
    }
}
