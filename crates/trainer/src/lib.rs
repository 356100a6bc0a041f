//! fairvlm's experiments: a TOML [`Experiment`], the method recipes (`clip`, `fairclip`), a
//! training loop that evaluates fairness after every epoch, checkpoints atomically and
//! resumes, and the final reports (JSON, Markdown, HTML with SVG plots). Generic over burn's
//! backend; the `fairvlm` binary picks CPU (Flex), CUDA or wgpu.
//!
//! ```no_run
//! use burn::backend::{Autodiff, Flex};
//! use trainer::{train, Experiment, RunOptions};
//!
//! let exp = Experiment::from_file("configs/benchmark-clip.toml".as_ref())?;
//! let outcome = train::<Autodiff<Flex>>(&exp, &RunOptions::new("runs/clip"), &Default::default())?;
//! let report = outcome.report.expect("ran to the end");
//! println!("ES-AUC (race) {:?}", report.test.attributes["race"].es_auc);
//! # Ok::<(), trainer::Error>(())
//! ```

#![warn(missing_docs)]

mod config;
mod data;
mod error;
mod evaluate;
mod html;
pub mod lora;
mod multimodal;
mod recipe;
mod report;
mod throughput;
mod train;

pub use config::{
    attribute_groups, CapacityRule, DataConfig, DataSource, EvalConfig, Experiment, FairClipConfig, FolConfig, FolFormConfig, FusionConfig, Method, ModelConfig, MoeConfig,
    MultiFairConfig, MultiFairModeConfig, MultimodalConfig, OgmConfig, OnErrorConfig, OptimConfig, OptimizerKind, PairingConfig, Preset, SelectOn, TextTower, VariantConfig, VisionTower,
};
pub use data::{group_name, write_synthetic, ExperimentData};
pub use error::{Error, Result};
pub use evaluate::{attributes, evaluate, predict, report, AttributeMetrics, EpochMetrics};
pub use multimodal::{MultimodalTrainer, StepStats};
pub use recipe::{loss, GroupLoaders, Losses};
pub use report::{FinalReport, Roc};
pub use throughput::{forward_times, throughput_model};
pub use train::{init_model, load_safetensors, save_safetensors, train, EpochLog, MultimodalLog, RunOptions, TrainOutcome};

use std::path::Path;

use burn::prelude::*;

/// Evaluates a finished run's checkpoint (`best.safetensors`, `last.safetensors` or any file
/// with the same model) on a split (`test` or `validation`), with the run's own config and
/// tokenizer.
pub fn evaluate_run<B: Backend>(run: &Path, checkpoint: &Path, split: &str, device: &B::Device) -> Result<fair_metrics::Report> {
    let exp = Experiment::from_file(&run.join("config.toml"))?;
    let tokenizer = fair_data::TextTokenizer::from_file(&run.join("tokenizer.json"), exp.data.context_length)?;
    let data = ExperimentData::load(&exp, Some(tokenizer))?;
    let prepared = match split {
        "test" => &data.test,
        "validation" => &data.validation,
        other => return Err(Error::Invalid(format!("split '{other}': expected test or validation"))),
    };
    let scores = if exp.method.is_multimodal() {
        multimodal::predict_checkpoint::<B>(&exp, &data, prepared, checkpoint, device)?
    } else {
        let model = load_safetensors(init_model::<B>(&exp, &data, device)?, checkpoint)?;
        predict(&model, prepared, &data.prompt_tokens, exp.eval.batch_size, device)
    };
    report(&exp, prepared, scores, exp.eval.bootstrap(exp.seed))
}
