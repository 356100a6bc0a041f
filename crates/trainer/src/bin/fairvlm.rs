//! `fairvlm`: train and audit fair vision-language models.
//!
//! - `fairvlm train --config FILE.toml [--device cpu|cuda|wgpu] [--out DIR] [--resume] [--set KEY=VALUE]`
//! - `fairvlm eval --run DIR [--checkpoint FILE] [--split test|validation] [--format md|json]`
//! - `fairvlm synth --out DIR [--config FILE.toml]`

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use burn::backend::{Autodiff, Flex};
use clap::{Parser, Subcommand, ValueEnum};
use trainer::{Experiment, RunOptions};

#[derive(Parser)]
#[command(name = "fairvlm", version, about = "Train and audit fair vision-language models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    Cpu,
    Cuda,
    Wgpu,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Md,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Train a method and report its fairness on the test split.
    Train {
        /// The experiment (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Backend: cpu (default unless built with cuda or wgpu), cuda, wgpu.
        #[arg(long, value_enum)]
        device: Option<DeviceArg>,
        /// Run folder (default runs/<config name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Continue the run in --out after its last completed epoch.
        #[arg(long)]
        resume: bool,
        /// Override a config value: --set optim.epochs=2 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Evaluate a run's checkpoint again.
    Eval {
        /// The run folder (holds config.toml, tokenizer.json and the checkpoints).
        #[arg(long)]
        run: PathBuf,
        /// Weights (default <run>/best.safetensors).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// test or validation.
        #[arg(long, default_value = "test")]
        split: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "md")]
        format: FormatArg,
        /// Backend.
        #[arg(long, value_enum)]
        device: Option<DeviceArg>,
    },
    /// Write the synthetic benchmark in Harvard-FairVLMed's format (Harvard-FairVision's, with
    /// OCT volumes, for a multimodal config with `multimodal.pairing = "oct"`).
    Synth {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Take [data.synthetic] from this experiment (default: the built-in benchmark).
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn default_device() -> DeviceArg {
    if cfg!(feature = "cuda") {
        DeviceArg::Cuda
    } else if cfg!(feature = "wgpu") {
        DeviceArg::Wgpu
    } else {
        DeviceArg::Cpu
    }
}

/// Runs `$body` with `B` bound to the autodiff backend and `device` to its device.
macro_rules! with_backend {
    ($dev:expr, |$b:ident, $device:ident| $body:expr) => {
        match $dev {
            DeviceArg::Cpu => {
                type $b = Autodiff<Flex>;
                let $device = Default::default();
                $body
            }
            DeviceArg::Cuda => {
                #[cfg(feature = "cuda")]
                {
                    type $b = Autodiff<burn::backend::Cuda>;
                    let $device = Default::default();
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                bail!("this fairvlm was built without CUDA: rebuild with --features cuda")
            }
            DeviceArg::Wgpu => {
                #[cfg(feature = "wgpu")]
                {
                    type $b = Autodiff<burn::backend::Wgpu>;
                    let $device = Default::default();
                    $body
                }
                #[cfg(not(feature = "wgpu"))]
                bail!("this fairvlm was built without wgpu: rebuild with --features wgpu")
            }
        }
    };
}

fn run() -> Result<()> {
    match Cli::parse().command {
        Command::Train { config, device, out, resume, quiet, set } => {
            let exp = Experiment::from_file_with(&config, &set)?;
            let out = out.unwrap_or_else(|| PathBuf::from("runs").join(config.file_stem().unwrap_or_default()));
            let opts = RunOptions { out: out.clone(), resume, progress: !quiet, stop_after: None };
            let outcome = with_backend!(device.unwrap_or_else(default_device), |B, device| trainer::train::<B>(&exp, &opts, &device)?);
            let report = outcome.report.context("the run stopped before its last epoch")?;
            println!("{}", report.markdown().split("\n## Training").next().unwrap_or_default());
            println!("reports in {}", out.display());
        }
        Command::Eval { run, checkpoint, split, format, device } => {
            let ckpt = checkpoint.unwrap_or_else(|| run.join("best.safetensors"));
            let report = with_backend!(device.unwrap_or_else(default_device), |B, device| trainer::evaluate_run::<B>(&run, &ckpt, &split, &device)?);
            let fmt = match format {
                FormatArg::Md => fair_metrics::Format::Markdown,
                FormatArg::Json => fair_metrics::Format::Json,
            };
            print!("{}", report.render(fmt));
        }
        Command::Synth { out, config } => {
            let exp = match config {
                Some(c) => Experiment::from_file(&c)?,
                None => Experiment::default(),
            };
            let n = trainer::write_synthetic(&exp, &out)?;
            println!("wrote {} / {} / {} subjects (Training / Validation / Test) to {}", n[0], n[1], n[2], out.display());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
