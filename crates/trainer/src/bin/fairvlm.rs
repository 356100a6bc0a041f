//! `fairvlm`: train and audit fair vision-language models.
//!
//! One vocabulary across the subcommands: `--run` is a run folder (written by `train`, `lora
//! run`, `lora developer`; read by `eval`, `export`, `lora audit`), `-o/--output` anything else
//! a command writes, `--format md|json|csv`, `--split`, `--device` checked choices, `-q/--quiet`.
//! Old spellings (`--out`, `lora audit --model`) still work, with a warning, until the next
//! release.
//!
//! - `fairvlm train --config FILE.toml [--device cpu|cuda|wgpu] [--run DIR] [--resume] [--set KEY=VALUE]`
//! - `fairvlm eval --run DIR [--checkpoint best|last|FILE] [--split test|validation] [--format md|json|csv] [-o FILE]`
//! - `fairvlm export --run DIR -o FOLDER [--tower both|vision|text] [--lora merged|adapter --base FILE]`
//! - `fairvlm data check --config FILE.toml [--format md|json]`: the dataset card (counts,
//!   prevalence per group, unknown values, small test groups, unreadable files, image sizes)
//! - `fairvlm synth -o DIR [--config FILE.toml]`
//! - `fairvlm throughput [--device cpu|cuda|wgpu] [--weights DIR] [--batch 64] [--iters 10]`:
//!   forward images per second of a ViT-B/16 image tower
//! - `fairvlm lora prepare | pretrain | auditor | developer | audit | run`: fairness-aware LoRA
//!   with a fairness auditor; `auditor` and `developer` are separate processes that share
//!   only the exchange folder.

use std::path::PathBuf;
use std::process::ExitCode;

#[path = "fairvlm/usage.rs"]
mod usage;

use anyhow::{Context, Result};
use burn::backend::{Autodiff, Flex};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use trainer::{Experiment, RunOptions};

#[derive(Parser)]
#[command(name = "fairvlm", version, about = "Train and audit fair vision-language models")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Only warnings and errors, no progress bars.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// More log detail (-v debug, -vv trace).
    #[arg(long, short, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
}

#[derive(Clone, Copy, ValueEnum)]
enum DeviceArg {
    /// burn's CPU backend, Flex, with fairvlm's fused kernels (the fastest on the CPU).
    Cpu,
    Cuda,
    Wgpu,
    /// burn's NdArray CPU backend (`--features ndarray` or `openblas`; slower, see
    /// docs/benchmarks.md).
    Ndarray,
    /// LibTorch on the CPU through burn-tch (`--features tch`, PyTorch 2.9.0's libtorch).
    Libtorch,
}

#[derive(Clone, Copy, ValueEnum)]
enum BenchmarkArg {
    V1,
    V2,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Md,
    Json,
}

/// What of a CLIP run `fairvlm export` writes.
#[derive(Clone, Copy, ValueEnum)]
enum TowerArg {
    Both,
    Vision,
    Text,
}

/// How `fairvlm export` writes a LoRA run's adapters.
#[derive(Clone, Copy, ValueEnum)]
enum LoraFormArg {
    Merged,
    Adapter,
}

/// The formats of a fairness report (`fair-metrics report --format`).
#[derive(Clone, Copy, ValueEnum)]
enum ReportFormatArg {
    Md,
    Json,
    Csv,
}

/// A run's weights named by `--checkpoint`: `best` or `last` in the run folder, else a file.
fn checkpoint_path(run: &std::path::Path, checkpoint: &str) -> PathBuf {
    match checkpoint {
        "best" | "last" => run.join(format!("{checkpoint}.safetensors")),
        path => PathBuf::from(path),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Train a method and report its fairness on the test split.
    Train {
        /// The experiment (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Backend: cpu (default unless built with cuda or wgpu), cuda, wgpu; ndarray and
        /// libtorch where built with their features.
        #[arg(long, value_enum)]
        device: Option<DeviceArg>,
        /// The run folder to write (default runs/<config name>).
        #[arg(long, alias = "out")]
        run: Option<PathBuf>,
        /// Continue the run in --run after its last completed epoch.
        #[arg(long)]
        resume: bool,
        /// Override a config value: --set optim.epochs=2 (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Data-parallel replicas on this node: devices 0..N of the backend (the CPU backend's
        /// replicas share its one device). Each computes its shard of every batch; gradients
        /// are averaged with burn-collective's all-reduce (docs/scaling.md).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
        devices: u16,
        /// Processes (nodes) of a multi-node run; each runs this command with its own
        /// --node-rank and --node-address, all with the same --orchestrator.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..), requires_ifs = [("2..", "orchestrator")])]
        nodes: u16,
        /// This node's rank (0 writes the run folder).
        #[arg(long, default_value_t = 0)]
        node_rank: u16,
        /// The orchestrator every node reaches (`fairvlm collective-orchestrator`), ws://host:port.
        #[arg(long, requires = "node_address")]
        orchestrator: Option<String>,
        /// This node's address for the others, ws://host:port (its data port).
        #[arg(long)]
        node_address: Option<String>,
    },
    /// The one-shot device check: the parity suite against the CPU, a short training, ViT-B/16
    /// training throughput in f32 and bf16 with model FLOPs utilisation, the input pipeline's
    /// feeding rate; writes one JSON (docs/gpu.md).
    GpuCheck {
        /// cuda or wgpu (default: the build's GPU backend).
        #[arg(long, value_enum)]
        device: Option<DeviceArg>,
        /// The JSON to write.
        #[arg(short, long, alias = "out", default_value = "gpu-check.json")]
        output: PathBuf,
        /// Sizes for the software device: a small ViT at batch 4 instead of ViT-B/16 at 64, a
        /// tiny smoke training instead of an epoch of the benchmark, 4 pipeline batches.
        #[arg(long)]
        quick: bool,
        /// The device's peak dense f32 TFLOPS, for the MFU (an H200's: 67).
        #[arg(long)]
        peak_f32_tflops: Option<f64>,
        /// The device's peak dense bf16 TFLOPS (an H200's: 989).
        #[arg(long)]
        peak_bf16_tflops: Option<f64>,
    },
    /// Serve burn-collective's orchestrator for a multi-node run (`train --nodes`) until stopped.
    CollectiveOrchestrator {
        /// The port the nodes reach it on.
        #[arg(long, default_value_t = 3000)]
        port: u16,
    },
    /// Evaluate a run's checkpoint again.
    Eval {
        /// The run folder (holds config.toml, tokenizer.json and the checkpoints).
        #[arg(long)]
        run: PathBuf,
        /// Weights: best (the epoch selected on validation), last, or a file with the run's
        /// model.
        #[arg(long, default_value = "best")]
        checkpoint: String,
        /// The split to evaluate.
        #[arg(long, default_value = "test", value_parser = ["test", "validation"])]
        split: String,
        /// Output format: md, json (the fair-metrics tool's) or csv (one value per line).
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormatArg,
        /// Output file; default: standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Backend.
        #[arg(long, value_enum)]
        device: Option<DeviceArg>,
    },
    /// Write a run's model as a folder Hugging Face transformers reads, with a model card
    /// (README.md): a CLIP or FairCLIP run as a CLIPModel (or one tower: CLIPVisionModel,
    /// CLIPTextModel), also the start of another run through [model.vision] / [model.text]; a
    /// LoRA run (`fairvlm lora run`) as a CLIPVisionModel with its adapters merged, or as a
    /// base and a peft adapter, the head beside it (docs/weights.md).
    Export {
        /// The run folder: a training run's (config.toml, tokenizer.json, checkpoints) or a LoRA
        /// run's (lora.toml, adapter/, head.safetensors).
        #[arg(long)]
        run: PathBuf,
        /// The folder to write.
        #[arg(short, long, alias = "out")]
        output: PathBuf,
        /// Weights of a training run: best (the epoch selected on validation), last, or a file
        /// with the run's model.
        #[arg(long, default_value = "best")]
        checkpoint: String,
        /// What of a CLIP run to write: both towers (CLIPModel), vision (CLIPVisionModel, or
        /// ViTModel for a tower started from a ViT) or text (CLIPTextModel, or BertModel for a
        /// BERT tower; with the tokenizer).
        #[arg(long, value_enum, default_value = "both")]
        tower: TowerArg,
        /// A LoRA run's adapters: merged into the tower, or adapter (base/ and a peft
        /// adapter/ folder).
        #[arg(long, value_enum, default_value = "merged")]
        lora: LoraFormArg,
        /// A LoRA run's base (from `fairvlm lora pretrain`); needed for LoRA runs.
        #[arg(long)]
        base: Option<PathBuf>,
    },
    /// Write the synthetic benchmark in Harvard-FairVLMed's format (Harvard-FairVision's, with
    /// OCT volumes, for a multimodal config with `multimodal.pairing = "oct"`).
    Synth {
        /// The folder to write.
        #[arg(short, long, alias = "out")]
        output: PathBuf,
        /// Take [data.synthetic] from this experiment (default: the built-in benchmark).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Forward images per second of an image tower (OpenAI CLIP's ViT-B/16 with random
    /// weights, or a checkpoint's), without gradients: the median of the timed passes.
    Throughput {
        /// A Hugging Face checkpoint folder whose image tower to time.
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Images per forward pass.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// Timed passes (after 2 untimed ones).
        #[arg(long, default_value_t = 10)]
        iters: usize,
        /// cpu, cuda or wgpu (default: the build's GPU backend, else cpu).
        #[arg(long, value_enum)]
        device: Option<DeviceArg>,
    },
    /// Fairness-aware LoRA with a privacy-preserving auditor (Erm, Unl, Adv, Orth, Ent).
    Lora {
        #[command(subcommand)]
        command: LoraCommand,
    },
    /// Inspect an experiment's data.
    Data {
        #[command(subcommand)]
        command: DataCommand,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell), e.g.
    /// `fairvlm completions bash > ~/.local/share/bash-completion/completions/fairvlm`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Experiment configs: every key with its default and meaning, and checking a file.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a complete experiment config: every key with its default, each preceded by its
    /// meaning (optional keys commented out). `fairvlm train` reads it back as the defaults.
    Print {
        /// The method whose defaults to print.
        #[arg(long, default_value = "clip", value_parser = trainer::Method::ALL.map(trainer::Method::name))]
        method: String,
        /// Print docs/config.md (every key, default and meaning as Markdown tables) instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Read and validate an experiment config (with overrides) without training; exits 2 with
    /// the key and the problem when it is invalid.
    Check {
        /// The experiment (TOML).
        config: PathBuf,
        /// Override a config value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
}

#[derive(Subcommand)]
enum DataCommand {
    /// Reads every file of the experiment's data once and prints a dataset card: counts per
    /// split, label prevalence per group of every attribute and pair of attributes, unknown
    /// values, the smallest test groups, files that fail to read, image sizes; warns of test
    /// groups too small for a stable AUC. Exits with status 1 when a file fails to read.
    Check {
        /// The experiment (TOML); its [data] section is read.
        #[arg(long)]
        config: PathBuf,
        /// Override a config value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "md")]
        format: FormatArg,
    },
    /// Streams one epoch of a split through the input pipeline ([data.pipeline]) as training
    /// would, without a model, and prints the images per second as JSON: whether the input
    /// keeps up with the device. Also prints the mean normalised pixel value, to compare the
    /// preprocessing with another implementation's.
    Throughput {
        /// The experiment (TOML); its [data] and model.image_size are read.
        #[arg(long)]
        config: PathBuf,
        /// Override a config value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// The split to stream.
        #[arg(long, default_value = "train", value_parser = ["train", "validation", "test"])]
        split: String,
        /// Images per batch (default optim.batch_size).
        #[arg(long)]
        batch: Option<usize>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SourceArg {
    FashionMnist,
    Fundus,
    Utkface,
    Celeba,
    /// A dataset in the generic format, its columns named by --config's [data.folder].
    Folder,
}

/// What every LoRA role is given: the experiment and the pretrained base.
#[derive(clap::Args)]
struct RoleArgs {
    /// The LoRA experiment (TOML).
    #[arg(long)]
    config: PathBuf,
    /// Override a config value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// The pretrained base (from `fairvlm lora pretrain`).
    #[arg(long)]
    base: PathBuf,
    /// Backend.
    #[arg(long, value_enum)]
    device: Option<DeviceArg>,
}

#[derive(Subcommand)]
enum LoraCommand {
    /// Writes the parties' files: pretrain.npz, developer.npz (task labels only), auditor.npz
    /// (sensitive labels only), audit.npz.
    Prepare {
        /// Dataset.
        #[arg(long, value_enum)]
        source: SourceArg,
        /// Its folder (Fashion-MNIST IDX files, UTKFace images, CelebA root); not for fundus
        /// nor folder (whose root is --config's data.root).
        #[arg(long)]
        root: Option<PathBuf>,
        /// Source folder: the experiment whose [data] (root, [data.folder]) names the columns.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The folder to write.
        #[arg(short, long, alias = "out")]
        output: PathBuf,
        /// Task label (UTKFace, CelebA).
        #[arg(long, default_value = "gender")]
        task: String,
        /// Sensitive label (fundus: race, gender, ethnicity, language; UTKFace, CelebA: a label
        /// name; folder: an attribute column).
        #[arg(long, default_value = "race")]
        sensitive: String,
        /// Fashion-MNIST: P(tint = task label) in the training pools.
        #[arg(long, default_value_t = 0.8)]
        correlation: f64,
        /// Fashion-MNIST: P(tint = task label) in the audit split (0.5: independent).
        #[arg(long, default_value_t = 0.5)]
        audit_correlation: f64,
        /// Fundus: the synthetic benchmark, v1 (the default one) or v2 (docs/datasets.md,
        /// "Benchmark v2": a shortcut and a group-specific sign).
        #[arg(long, value_enum, default_value = "v1")]
        benchmark: BenchmarkArg,
        /// Image side.
        #[arg(long, default_value_t = 32)]
        size: usize,
        /// Share of the training pool given to the auditor.
        #[arg(long, default_value_t = 0.5)]
        auditor_fraction: f64,
        /// Cap on the pretraining images.
        #[arg(long)]
        max_pretrain: Option<usize>,
        /// Seed of the tint draw, the fundus benchmark's draw and the pools.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Pretrains the base classifier on pretrain.npz (label `class`).
    Pretrain {
        /// The LoRA experiment (TOML).
        #[arg(long)]
        config: PathBuf,
        /// Override a config value (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// pretrain.npz.
        #[arg(long)]
        data: PathBuf,
        /// Pretraining epochs.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
        /// The checkpoint to write (a `.json` with its sizes is written beside it).
        #[arg(short, long, alias = "out")]
        output: PathBuf,
        /// Backend.
        #[arg(long, value_enum)]
        device: Option<DeviceArg>,
    },
    /// The auditor: trains its sensitive adapter on auditor.npz and answers the developer
    /// through the exchange folder until it finishes.
    Auditor {
        #[command(flatten)]
        role: RoleArgs,
        /// auditor.npz (label `sensitive`).
        #[arg(long)]
        data: PathBuf,
        /// The folder the two roles share (adapters and gradients cross it, never labels).
        #[arg(long)]
        exchange: PathBuf,
        /// Seconds to wait for the developer.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// The developer: fine-tunes on developer.npz (label `task`), talking to the auditor only
    /// through the exchange folder; writes its adapter and head to --out.
    Developer {
        #[command(flatten)]
        role: RoleArgs,
        /// developer.npz (label `task`).
        #[arg(long)]
        data: PathBuf,
        /// The folder the two roles share (adapters and gradients cross it, never labels).
        #[arg(long)]
        exchange: PathBuf,
        /// The run folder to write: the developer's adapter and head.
        #[arg(long, alias = "out")]
        run: PathBuf,
        /// Seconds to wait for the auditor.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
    },
    /// Audits a developer's model on audit.npz (task and sensitive labels).
    Audit {
        /// The pretrained base (from `fairvlm lora pretrain`).
        #[arg(long)]
        base: PathBuf,
        /// The developer's run folder (`lora developer` or `lora run`).
        #[arg(long, alias = "model")]
        run: PathBuf,
        /// audit.npz (task and sensitive labels).
        #[arg(long)]
        data: PathBuf,
        /// Output format: md, json or csv (one value per line).
        #[arg(long, value_enum, default_value = "md")]
        format: ReportFormatArg,
        /// Backend.
        #[arg(long, value_enum)]
        device: Option<DeviceArg>,
    },
    /// Both roles in one process (in-memory exchange), then the audit; writes
    /// <out>/audit.json, <out>/predictions.csv (the audit set: label, score, sensitive group),
    /// <out>/developer.json and the developer's adapter and head.
    Run {
        #[command(flatten)]
        role: RoleArgs,
        /// The prepared folder (developer.npz, auditor.npz, audit.npz).
        #[arg(long)]
        data: PathBuf,
        /// The run folder to write.
        #[arg(long, alias = "out")]
        run: PathBuf,
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
                let $device: burn::tensor::Device<$b> = Default::default();
                $body
            }
            DeviceArg::Cuda => optional_backend!("cuda", "CUDA", burn::backend::Cuda, |$b, $device| $body),
            DeviceArg::Wgpu => optional_backend!("wgpu", "wgpu", burn::backend::Wgpu, |$b, $device| $body),
            DeviceArg::Ndarray => optional_backend!("ndarray", "NdArray", burn::backend::NdArray, |$b, $device| $body),
            DeviceArg::Libtorch => optional_backend!("tch", "LibTorch", burn::backend::LibTorch, |$b, $device| $body),
        }
    };
}

/// One arm of [`with_backend`]: the backend `$backend` where the binary was built with
/// `$feature`, else an error saying how to rebuild.
macro_rules! optional_backend {
    ($feature:literal, $name:literal, $backend:ty, |$b:ident, $device:ident| $body:expr) => {{
        #[cfg(feature = $feature)]
        {
            type $b = Autodiff<$backend>;
            let $device: burn::tensor::Device<$b> = Default::default();
            $body
        }
        #[cfg(not(feature = $feature))]
        return Err(Usage(concat!("this fairvlm was built without ", $name, ": rebuild with --features ", $feature).into()).into());
    }};
}

/// Logs of the libraries go to stderr, at the level the flags ask for.
fn init_logging(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => tracing::Level::WARN,
        (false, 0) => tracing::Level::INFO,
        (false, 1) => tracing::Level::DEBUG,
        (false, _) => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_max_level(level).with_target(false).without_time().init();
}

fn run() -> Result<ExitCode> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    init_logging(cli.quiet, cli.verbose);
    for warning in usage::warnings(&matches, std::env::args_os().skip(1)) {
        tracing::warn!("{warning}");
    }
    let quiet = cli.quiet;
    match cli.command {
        Command::Train { config, device, run, resume, set, devices, nodes, node_rank, orchestrator, node_address } => {
            let exp = Experiment::from_file_with(&config, &set)?;
            let out = run.unwrap_or_else(|| PathBuf::from("runs").join(config.file_stem().unwrap_or_default()));
            let nodes = match (nodes, orchestrator, node_address) {
                (1, None, _) => None,
                (count, Some(orchestrator), Some(address)) => Some(trainer::Nodes { count: count.into(), rank: node_rank.into(), orchestrator, address }),
                _ => return Err(Usage("--nodes > 1 needs --orchestrator and --node-address".into()).into()),
            };
            let follower = nodes.as_ref().is_some_and(|n| n.rank > 0);
            let opts = RunOptions { out: out.clone(), resume, progress: !quiet && !follower, stop_after: None, nodes };
            let outcome = with_backend!(device.unwrap_or_else(default_device), |B, _device| trainer::train_on::<B>(&exp, &opts, &trainer::devices::<B>(devices.into()))?);
            if follower {
                println!("node {node_rank}: done; the reports are written by node 0");
                return Ok(ExitCode::SUCCESS);
            }
            let report = outcome.report.context("the run stopped before its last epoch")?;
            println!("{}", report.markdown().split("\n## Training").next().unwrap_or_default());
            println!("reports in {}", out.display());
        }
        Command::GpuCheck { device, output: out, quick, peak_f32_tflops, peak_bf16_tflops } => {
            let arg = device.unwrap_or_else(default_device);
            let name = device_name(arg);
            let json = with_backend!(arg, |B, device| gpu_check::<B>(&device, name, quick, [peak_f32_tflops, peak_bf16_tflops])?);
            std::fs::write(&out, serde_json::to_string_pretty(&json)? + "\n").with_context(|| format!("writing {}", out.display()))?;
            println!("{}", serde_json::to_string_pretty(&json)?);
            println!("wrote {}", out.display());
            if json["parity"]["passed"] != serde_json::Value::Bool(true) || json.to_string().contains("\"error\"") {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::CollectiveOrchestrator { port } => {
            eprintln!("burn-collective orchestrator on port {port}; stop it with Ctrl-C");
            trainer::serve_orchestrator(port)?;
        }
        Command::Export { run, output, checkpoint, tower, lora, base } => {
            return export(&matches, &run, &output, &checkpoint, tower, lora, base.as_deref()).map(|()| ExitCode::SUCCESS)
        }
        Command::Eval { run, checkpoint, split, format, output, device } => {
            let ckpt = checkpoint_path(&run, &checkpoint);
            let report = with_backend!(device.unwrap_or_else(default_device), |B, device| trainer::evaluate_run::<B>(&run, &ckpt, &split, &device)?);
            let text = report.render(match format {
                ReportFormatArg::Md => fair_metrics::Format::Markdown,
                ReportFormatArg::Json => fair_metrics::Format::Json,
                ReportFormatArg::Csv => fair_metrics::Format::Csv,
            });
            match output {
                Some(path) => std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?,
                None => print!("{text}"),
            }
        }
        Command::Synth { output: out, config } => {
            let exp = match config {
                Some(c) => Experiment::from_file(&c)?,
                None => Experiment::default(),
            };
            let n = trainer::write_synthetic(&exp, &out)?;
            println!("wrote {} / {} / {} subjects (Training / Validation / Test) to {}", n[0], n[1], n[2], out.display());
        }
        Command::Throughput { weights, batch, iters, device } => {
            if batch == 0 || iters == 0 {
                return Err(Usage("--batch and --iters must be at least 1".into()).into());
            }
            let mut times = with_backend!(device.unwrap_or_else(default_device), |B, device| {
                type Inner = <B as burn::tensor::backend::AutodiffBackend>::InnerBackend;
                let vit = trainer::throughput_model::<Inner>(weights.as_deref(), &device)?;
                trainer::forward_times(&vit, batch, 2, iters, &device)
            });
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2];
            println!("batch {batch}: median {:.1} ms per pass, {:.1} images/s ({} passes, fastest {:.1} ms)", median * 1e3, batch as f64 / median, times.len(), times[0] * 1e3);
        }
        Command::Lora { command } => lora(command)?,
        Command::Data { command } => return data(command),
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "fairvlm", &mut script);
            if let Err(e) = std::io::Write::write_all(&mut std::io::stdout(), &script) {
                if e.kind() != std::io::ErrorKind::BrokenPipe {
                    return Err(e.into());
                }
            }
        }
        Command::Config { command: ConfigCommand::Print { method, markdown } } => {
            let method = trainer::Method::from_name(&method).context("--method: checked by the parser")?;
            print!("{}", if markdown { trainer::config_markdown() } else { trainer::config_toml(method) });
        }
        Command::Config { command: ConfigCommand::Check { config, set } } => {
            let exp = Experiment::from_file_with(&config, &set)?;
            println!("{}: a valid {} experiment", config.display(), exp.method.name());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `fairvlm export`: a LoRA run (it has lora.toml) or a training run.
fn export(
    matches: &clap::ArgMatches,
    run: &std::path::Path,
    output: &std::path::Path,
    checkpoint: &str,
    tower: TowerArg,
    lora: LoraFormArg,
    base: Option<&std::path::Path>,
) -> Result<()> {
    let given = |flag: &str| usage::given(matches, flag);
    if run.join("lora.toml").is_file() {
        for flag in ["checkpoint", "tower"].into_iter().filter(|f| given(f)) {
            tracing::warn!("--{flag} is ignored for a LoRA run ({} has lora.toml)", run.display());
        }
        let base = base.ok_or_else(|| Usage(format!("--base: {} is a LoRA run; name the base it was trained from (fairvlm lora pretrain's checkpoint)", run.display())))?;
        let form = match lora {
            LoraFormArg::Merged => trainer::LoraForm::Merged,
            LoraFormArg::Adapter => trainer::LoraForm::Adapter,
        };
        trainer::export_lora_run(run, base, output, form)?;
        println!(
            "wrote {} ({}classifier.safetensors, README.md: the model card)",
            output.display(),
            if form == trainer::LoraForm::Merged { "config.json, model.safetensors: a CLIPVisionModel; " } else { "base/: a CLIPVisionModel, adapter/: its peft LoRA adapter; " }
        );
        return Ok(());
    }
    for flag in ["lora", "base"].into_iter().filter(|f| given(f)) {
        tracing::warn!("--{flag} is ignored: {} is not a LoRA run (no lora.toml)", run.display());
    }
    let tower = match tower {
        TowerArg::Both => trainer::Tower::Both,
        TowerArg::Vision => trainer::Tower::Vision,
        TowerArg::Text => trainer::Tower::Text,
    };
    trainer::export_clip_run(run, &checkpoint_path(run, checkpoint), output, tower)?;
    println!("wrote {} (config.json, model.safetensors, {}README.md: the model card)", output.display(), if tower == trainer::Tower::Vision { "" } else { "tokenizer.json, " });
    Ok(())
}

fn lora(command: LoraCommand) -> Result<()> {
    use fair_data::LabelledImages;
    use trainer::lora;
    let read = |p: &PathBuf| LabelledImages::read(p).with_context(|| format!("reading {}", p.display()));
    match command {
        LoraCommand::Prepare { source, root, config, output: out, task, sensitive, correlation, audit_correlation, benchmark, size, auditor_fraction, max_pretrain, seed } => {
            let need_root = || root.clone().ok_or_else(|| anyhow::Error::from(Usage("--root: the dataset folder is needed for this source".into())));
            let sizes = match source {
                SourceArg::FashionMnist => {
                    let tint = fair_data::TintConfig { correlation, audit_correlation, size, seed, ..Default::default() };
                    fair_data::prepare_fashion_mnist(&need_root()?, &out, &tint, auditor_fraction, max_pretrain)?
                }
                SourceArg::Fundus => {
                    let synth = match benchmark {
                        BenchmarkArg::V1 => fair_data::SynthConfig::default(),
                        BenchmarkArg::V2 => fair_data::SynthConfig::benchmark_v2(),
                    };
                    fair_data::prepare_fundus(&out, &fair_data::SynthConfig { seed, ..synth }, &sensitive, size, auditor_fraction)?
                }
                SourceArg::Utkface => fair_data::prepare_faces(&fair_data::load_utkface(&need_root()?)?, &out, &task, &sensitive, size, 0.2, auditor_fraction, seed)?,
                SourceArg::Celeba => fair_data::prepare_faces(&fair_data::load_celeba(&need_root()?)?, &out, &task, &sensitive, size, 0.2, auditor_fraction, seed)?,
                SourceArg::Folder => {
                    let exp = Experiment::from_file(&config.ok_or_else(|| Usage("--config: the experiment whose [data.folder] names the columns".into()))?)?;
                    let d = &exp.data;
                    let root = d.root.as_deref().context("data.root: the dataset folder")?;
                    let opts = fair_data::LoadOptions { filter_unknown: Some(false), on_error: d.on_error.into(), ..Default::default() };
                    let data = fair_data::load_folder(root, &d.folder, &opts)?;
                    fair_data::prepare_folder(&data, &d.folder, &out, &sensitive, size, auditor_fraction, seed)?
                }
            };
            println!("{}", serde_json::to_string(&sizes)?);
        }
        LoraCommand::Pretrain { config, set, data, epochs, output: out, device } => {
            let exp = lora::LoraExperiment::from_file_with(&config, &set)?;
            let set_ = read(&data)?;
            let classes = lora::classes_of(set_.label("class")?, "class")?;
            with_backend!(device.unwrap_or_else(default_device), |B, device| {
                let model = lora::pretrain::<B>(&exp, &set_, "class", epochs, &device)?;
                let labels = set_.label("class")?;
                // Scored without the autodiff graph: each forward would otherwise keep its activations.
                let s = lora::scores_multiclass(&burn::module::AutodiffModule::valid(&model), &set_, &device);
                let acc = s.iter().zip(labels).filter(|(p, l)| **p as i64 == **l).count() as f64 / labels.len().max(1) as f64;
                lora::save_base(&out, &model, lora::BaseInfo { image_size: set_.size, classes })?;
                println!("pretrained on {} images, {classes} classes: training accuracy {acc:.4}; wrote {}", set_.len(), out.display());
            });
        }
        LoraCommand::Auditor { role: RoleArgs { config, set, base, device }, data, exchange, timeout } => {
            let exp = lora::LoraExperiment::from_file_with(&config, &set)?;
            let set_ = read(&data)?;
            with_backend!(device.unwrap_or_else(default_device), |B, device| {
                let (base, _) = lora::load_base::<B>(&exp, &base, &device)?;
                let mut auditor = lora::Auditor::new(&exp, base, set_, "sensitive", &device)?;
                let rounds = lora::serve_files(&mut auditor, &exchange, std::time::Duration::from_secs(timeout))?;
                println!("auditor: {} method, {rounds} gradient rounds answered", exp.method.name());
            });
        }
        LoraCommand::Developer { role: RoleArgs { config, set, base, device }, data, exchange, run: out, timeout } => {
            let exp = lora::LoraExperiment::from_file_with(&config, &set)?;
            let set_ = read(&data)?;
            with_backend!(device.unwrap_or_else(default_device), |B, device| {
                let (base, _) = lora::load_base::<B>(&exp, &base, &device)?;
                let mut link = lora::FileLink::<B>::new(&exchange, &exp, std::time::Duration::from_secs(timeout));
                let (model, log, negated) = lora::train_developer::<B>(&exp, &base, &set_, "task", &mut link, &device)?;
                lora::save_developer(&out, &exp, &model, negated.as_ref())?;
                std::fs::write(out.join("developer.json"), serde_json::to_string_pretty(&log)?)?;
                println!(
                    "developer: {} in {:.1} s, {} of {} parameters trained; wrote {}",
                    exp.method.name(),
                    log.seconds,
                    log.trainable_parameters,
                    log.total_parameters,
                    out.display()
                );
            });
        }
        LoraCommand::Audit { base, run: model, data, format, device } => {
            let exp = lora::LoraExperiment::from_file_with(&model.join("lora.toml"), &[])?;
            let set_ = read(&data)?;
            let report = with_backend!(device.unwrap_or_else(default_device), |B, device| {
                let (base, _) = lora::load_base::<<B as burn::tensor::backend::AutodiffBackend>::InnerBackend>(&exp, &base, &device)?;
                let m = lora::load_developer::<<B as burn::tensor::backend::AutodiffBackend>::InnerBackend>(&model, &exp, &base, &device)?;
                lora::audit(&lora::scores(&m, &set_, &device), set_.label("task")?, set_.label("sensitive")?)?
            });
            let report = named(report, data.parent())?;
            let rows = [(exp.method.name().to_string(), report)];
            match format {
                ReportFormatArg::Json => println!("{}", serde_json::to_string_pretty(&rows[0].1)?),
                ReportFormatArg::Md => print!("{}", lora::audit_markdown(&rows)),
                ReportFormatArg::Csv => print!("{}", lora::audit_csv(&rows)),
            }
        }
        LoraCommand::Run { role: RoleArgs { config, set, base, device }, data, run: out } => {
            let exp = lora::LoraExperiment::from_file_with(&config, &set)?;
            let (dev, aud, test) = (read(&data.join("developer.npz"))?, read(&data.join("auditor.npz"))?, read(&data.join("audit.npz"))?);
            let report = with_backend!(device.unwrap_or_else(default_device), |B, device| {
                let (base, _) = lora::load_base::<B>(&exp, &base, &device)?;
                let mut auditor = lora::Auditor::new(&exp, base.clone(), aud, "sensitive", &device)?;
                let (model, log, negated) = lora::train_developer::<B>(&exp, &base, &dev, "task", &mut lora::LocalAuditor(&mut auditor), &device)?;
                lora::save_developer(&out, &exp, &model, negated.as_ref())?;
                std::fs::write(out.join("developer.json"), serde_json::to_string_pretty(&log)?)?;
                let m = burn::module::AutodiffModule::valid(&model);
                let scores = lora::scores(&m, &test, &device);
                (lora::audit(&scores, test.label("task")?, test.label("sensitive")?)?, scores)
            });
            let (report, scores) = report;
            let report = named(report, Some(&data))?;
            write_lora_predictions(&out.join("predictions.csv"), &scores, test.label("task")?, test.label("sensitive")?, &data)?;
            std::fs::write(out.join("audit.json"), serde_json::to_string_pretty(&report)?)?;
            print!("{}", lora::audit_markdown(&[(exp.method.name().to_string(), report)]));
        }
    }
    Ok(())
}

/// The audit set's predictions as `label,score,<sensitive>` (the layout of a training run's
/// predictions.csv), the groups named by the `parties.json` in `data` where there is one: what
/// paired comparisons of two runs resample.
fn write_lora_predictions(path: &std::path::Path, scores: &[f64], task: &[i64], sensitive: &[i64], data: &std::path::Path) -> Result<()> {
    let labels: Option<fair_data::PartyLabels> = std::fs::read_to_string(data.join("parties.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let column = labels.as_ref().map_or("sensitive", |l| l.sensitive.as_str());
    let mut csv = format!("label,score,{column}\n");
    for ((score, t), s) in scores.iter().zip(task).zip(sensitive) {
        let group = labels.as_ref().and_then(|l| usize::try_from(*s).ok().and_then(|k| l.values.get(k))).cloned().unwrap_or_else(|| s.to_string());
        csv.push_str(&format!("{t},{score},{group}\n"));
    }
    std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))
}

/// The audit with its groups named by the `parties.json` in `dir`, if there is one.
fn named(report: trainer::lora::LoraAudit, dir: Option<&std::path::Path>) -> Result<trainer::lora::LoraAudit> {
    let Some(path) = dir.map(|d| d.join("parties.json")).filter(|p| p.is_file()) else { return Ok(report) };
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let labels: fair_data::PartyLabels = serde_json::from_str(&text).with_context(|| format!("{}: not a parties.json", path.display()))?;
    Ok(report.named(&labels))
}

/// `fairvlm data check` and `fairvlm data throughput`.
fn data(command: DataCommand) -> Result<ExitCode> {
    let (config, set, format) = match command {
        DataCommand::Check { config, set, format } => (config, set, format),
        DataCommand::Throughput { config, set, split, batch } => return input_throughput(&config, &set, &split, batch).map(|()| ExitCode::SUCCESS),
    };
    let exp = Experiment::from_file_with(&config, &set)?;
    let data = trainer::ExperimentData::load(&exp, None)?;
    let name = exp.data.root.as_ref().map_or_else(|| "the built-in synthetic benchmark".to_string(), |r| r.display().to_string());
    let card = data.card(&name, exp.data.pipeline.threads());
    match format {
        FormatArg::Md => print!("{}", card.markdown()),
        FormatArg::Json => println!("{}", card.json()?),
    }
    Ok(if card.failures.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// One epoch of a split, in order, through the pipeline onto the CPU backend.
fn input_throughput(config: &std::path::Path, set: &[String], split: &str, batch: Option<usize>) -> Result<()> {
    let exp = Experiment::from_file_with(config, set)?;
    let start = std::time::Instant::now();
    let data = trainer::ExperimentData::load(&exp, None)?;
    let index_seconds = start.elapsed().as_secs_f64();
    let prepared = match split {
        "train" => &data.train,
        "validation" => &data.validation,
        "test" => &data.test,
        other => return Err(Usage(format!("--split {other}: expected train, validation or test")).into()),
    };
    let batch = batch.unwrap_or(exp.optim.batch_size).max(1);
    let device = Default::default();
    let start = std::time::Instant::now();
    let mut stream = prepared.in_order(batch);
    let (mut images, mut sum) = (0usize, 0f64);
    while let Some(b) = stream.next_batch::<Flex>(&device) {
        let b = b?;
        images += b.images.dims()[0];
        sum += b.images.into_data().iter::<f32>().map(f64::from).sum::<f64>();
    }
    let seconds = start.elapsed().as_secs_f64();
    let size = prepared.image_size;
    let out = serde_json::json!({
        "images": images,
        "seconds": seconds,
        "images_per_second": images as f64 / seconds,
        "index_seconds": index_seconds,
        "workers": exp.data.pipeline.threads(),
        "prefetch": exp.data.pipeline.prefetch,
        "batch": batch,
        "size": size,
        "mean_pixel": sum / (images * 3 * size * size).max(1) as f64,
    });
    println!("{out}");
    Ok(())
}

/// mimalloc instead of glibc's malloc: the CPU backend allocates every tensor of a step afresh,
/// and glibc hands the large blocks back to the kernel, which then faults them in again page
/// by page on the next step (docs/benchmarks.md, "Training step against PyTorch").
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps freed memory mapped for the next step: mimalloc's `purge_delay` (position 15 of
/// mimalloc v3's `mi_option_t`, which libmimalloc-sys does not name) to -1, "never purge"; its
/// default, 10 ms, returned a step's memory to the kernel between steps (the benchmark's CLIP
/// step took 110 ms instead of 70).
fn keep_freed_memory() {
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one of mimalloc's integer options before any thread but this one exists.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// An error in what the command line asked for (exit status 2, as clap's own).
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The exit status of a failed command: 2 when the user's input is at fault (arguments, a
/// config, a file that is not there or not valid, data a method cannot use), 1 when running
/// failed (a diverged training, a write that failed).
fn exit_status(e: &anyhow::Error) -> u8 {
    let usage = e.chain().any(|c| {
        c.downcast_ref::<Usage>().is_some()
            || c.downcast_ref::<trainer::Error>().is_some_and(trainer::Error::is_usage)
            || c.downcast_ref::<fair_data::Error>().is_some()
            || c.downcast_ref::<fair_metrics::Error>().is_some()
    });
    if usage {
        2
    } else {
        1
    }
}

fn main() -> ExitCode {
    keep_freed_memory();
    // On a thread of the CPU backend's pool: its parallel passes then start without a
    // hand-off to the pool and back (fused_ops::on_pool).
    match fused_ops::on_pool(run) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            ExitCode::from(exit_status(&e))
        }
    }
}

/// The error and its causes, `: `-separated, leaving out a cause whose text the message
/// already holds (the libraries' errors name their cause, which anyhow would print twice).
fn chain(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain().map(|c| c.to_string()) {
        if text.is_empty() {
            text = cause;
        } else if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn device_name(d: DeviceArg) -> &'static str {
    match d {
        DeviceArg::Cpu => "cpu",
        DeviceArg::Cuda => "cuda",
        DeviceArg::Wgpu => "wgpu",
        DeviceArg::Ndarray => "ndarray",
        DeviceArg::Libtorch => "libtorch",
    }
}

/// `fairvlm gpu-check` on backend `B`: each part runs even when another failed, and a failure
/// is recorded as `{"error": ...}` in its place.
fn gpu_check<B: burn::tensor::backend::AutodiffBackend>(device: &burn::tensor::Device<B>, name: &str, quick: bool, peaks: [Option<f64>; 2]) -> Result<serde_json::Value> {
    use serde_json::json;
    use trainer::device_check as dc;
    let start = std::time::Instant::now();
    let scratch = std::env::temp_dir().join(format!("fairvlm-gpu-check-{}", std::process::id()));
    let or_error = |r: trainer::Result<serde_json::Value>| r.unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let benchmark = |sets: &[&str]| Experiment::from_file_with(std::path::Path::new("configs/benchmark-clip.toml"), &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>());
    eprintln!("gpu-check on {name}: parity suite");
    let parity = or_error(dc::parity_suite::<B>(device, &scratch));
    eprintln!("gpu-check: smoke training");
    let smoke = or_error(if quick {
        trainer::parity::experiment("clip").and_then(|mut e| {
            e.optim.epochs = 2;
            dc::smoke::<B>(&e, device, &scratch)
        })
    } else {
        benchmark(&["optim.epochs=1", "eval.bootstrap=0"]).and_then(|e| dc::smoke::<B>(&e, device, &scratch))
    });
    let (vit, batch) = if quick { (vlm_backbone::VisionTransformerConfig::new(32, 8, 64, 2, 4), 4) } else { (vlm_backbone::VisionTransformerConfig::vit_b16(), 64) };
    eprintln!("gpu-check: image tower training throughput, f32");
    let vit_f32 = dc::vit_training::<B>(&vit, batch, if quick { 3 } else { 10 }, peaks[0], device);
    eprintln!("gpu-check: image tower training throughput, bf16");
    let vit_bf16 = match name {
        #[cfg(feature = "cuda")]
        "cuda" => {
            type H = Autodiff<burn::backend::Cuda<burn::tensor::bf16>>;
            dc::vit_training::<H>(&vit, batch, if quick { 3 } else { 10 }, peaks[1], &Default::default())
        }
        _ => json!({ "skipped": "bf16 is measured on CUDA; wgpu's shading languages have no bf16 type" }),
    };
    eprintln!("gpu-check: input pipeline");
    let pipeline = or_error(benchmark(&[]).and_then(|e| dc::pipeline_rate::<B>(&e, 64, if quick { 4 } else { 20 }, device)));
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(json!({
        "device": name,
        "quick": quick,
        "fairvlm": env!("CARGO_PKG_VERSION"),
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "parity": parity,
        "smoke": smoke,
        "vit_f32": vit_f32,
        "vit_bf16": vit_bf16,
        "pipeline": pipeline,
        "seconds": start.elapsed().as_secs_f64(),
    }))
}

#[cfg(test)]
mod cli_tests {
    use clap::CommandFactory;

    /// Every argument of every subcommand, by path, that has no help text.
    fn without_help(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
        for arg in cmd.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
            if arg.get_help().is_none() && !arg.is_hide_set() {
                out.push(format!("{path} {}", arg.get_id()));
            }
        }
        for sub in cmd.get_subcommands() {
            if sub.get_about().is_none() {
                out.push(format!("{path} {} (the subcommand)", sub.get_name()));
            }
            without_help(sub, &format!("{path} {}", sub.get_name()), out);
        }
    }

    #[test]
    fn every_flag_and_subcommand_has_help() {
        let mut missing = Vec::new();
        without_help(&super::Cli::command(), "fairvlm", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
        super::Cli::command().debug_assert();
    }
}
