//! fairvlm's experiments: a TOML [`Experiment`], one [`recipes::Recipe`] per method (CLIP,
//! FairCLIP, FO-MoE, Fair-MoE, late fusion, OGM-GE, MultiFair), the one run loop ([`train`])
//! that evaluates fairness after every epoch, checkpoints atomically and resumes exactly, and
//! the final reports (JSON, Markdown, HTML with SVG plots); fairness-aware LoRA with a
//! privacy-preserving auditor in [`lora`]. Generic over burn's backend; the `fairvlm` binary
//! picks CPU (Flex), CUDA or wgpu.
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

mod checkpoint;
mod config;
mod data;
pub mod device_check;
mod epochs;
mod error;
mod evaluate;
mod experiment;
mod export;
mod html;
mod keys;
mod lock;
mod log;
pub mod lora;
mod optim;
mod parallel;
pub mod parity;
pub mod recipes;
mod reevaluate;
mod report;
mod run;
mod throughput;
mod towers;

pub use checkpoint::{load_safetensors, save_safetensors};
pub use config::{
    DataConfig, DataSource, EvalConfig, Experiment, FairClipConfig, FolConfig, Method, ModelConfig, MultimodalConfig, OnErrorConfig, OptimConfig, OptimizerKind, PairingConfig,
    Preset, SelectOn, TextTower, VisionTower,
};
pub use data::{write_synthetic, ExperimentData};
pub use error::{Error, Result};
pub use evaluate::{attributes, report, AttributeMetrics, EpochMetrics};
pub use export::{export_clip_run, export_lora_run, LoraForm, Tower};
pub use keys::{config_markdown, config_toml, defaults_for, Key, KEYS};
pub use lock::RunLock;
pub use log::{EpochLog, MultimodalLog};
pub use optim::{LossScaler, Optim, Schedule};
pub use parallel::{devices, serve_orchestrator, Nodes, Replica};
pub use reevaluate::evaluate_run;
pub use report::{FinalReport, Roc};
pub use run::{run, train, train_on, RunOptions, TrainOutcome, Trainer};
pub use throughput::{forward_times, throughput_model};
pub use towers::init_clip;
