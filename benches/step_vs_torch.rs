//! fairvlm's training step against PyTorch's, side by side: same model, same batch, same thread
//! count, alternating rounds in one run.
//!
//! - `clip`: the synthetic benchmark's CLIP (`configs/benchmark-clip.toml`, preset `small`) at
//!   batch 32, through the trainer's own `Trainer::step` (the batch from the prepared split,
//!   forward, InfoNCE, backward, AdamW);
//! - `vit`: OpenAI CLIP's ViT-B/16 image tower (224 px) with a linear head at batch 8, through
//!   `trainer::lora::Fit::step` (cross-entropy, backward, AdamW over every weight).
//!
//! The peer, `benches/peer/train_step.py`, builds the same model with transformers and runs the
//! same step on the batch this bench writes (`target/step-batch-<model>.safetensors`). Each round
//! times `STEPS` steps of fairvlm, then `STEPS` of PyTorch; the first round warms both up and is
//! not counted. Reported: the median step, samples/s, their ratio (fairvlm over PyTorch: above
//! 1 is fairvlm faster) and each process's peak resident set.
//!
//! `cargo bench -p fairvlm-benches --bench step_vs_torch -- clip|vit [rounds]` (from the
//! repository root; the peer runs under `.venv-torch/bin/python`, or `FAIRVLM_TORCH_PYTHON`).
//! Threads: `FAIRVLM_BENCH_THREADS` (default 2) for both sides.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use fair_data::LabelledImages;
use safetensors::{serialize_to_file, Dtype, View};
use trainer::recipes::{dispatch, Recipe, WithRecipe};
use trainer::{Experiment, ExperimentData, Trainer};

/// The CPU backend under test: Flex (fairvlm's), or another of burn's by the bench's features.
#[cfg(not(any(feature = "ndarray", feature = "tch")))]
type Cpu = Flex;
#[cfg(feature = "ndarray")]
type Cpu = burn::backend::NdArray;
#[cfg(feature = "tch")]
type Cpu = burn::backend::LibTorch;

type B = Autodiff<Cpu>;

#[global_allocator]
static ALLOC: fairvlm_benches::Counting = fairvlm_benches::Counting;

/// One side's step.
trait Step {
    fn run(&mut self) -> f64;
}

struct ClipStep<R: Recipe<B>> {
    trainer: Trainer<B, R>,
    rows: Vec<usize>,
}

impl<R: Recipe<B>> Step for ClipStep<R> {
    fn run(&mut self) -> f64 {
        // The same rows every step, as the peer's one batch.
        self.trainer.step(&self.rows, 1).unwrap_or_else(|e| panic!("step: {e}")).loss
    }
}

struct Build(Experiment, ExperimentData, usize);

impl WithRecipe<B> for Build {
    type Output = Box<dyn Step>;
    fn with<R: Recipe<B>>(self) -> Box<dyn Step> {
        let Build(exp, data, batch) = self;
        let trainer = Trainer::<B, R>::new(&exp, data, &Default::default()).unwrap_or_else(|e| panic!("trainer: {e}"));
        Box::new(ClipStep { trainer, rows: (0..batch).collect() })
    }
}

/// A tensor for the batch file.
struct Raw(Dtype, Vec<usize>, Vec<u8>);

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.0
    }
    fn shape(&self) -> &[usize] {
        &self.1
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        (&self.2[..]).into()
    }
    fn data_len(&self) -> usize {
        self.2.len()
    }
}

fn f32s<const D: usize>(t: Tensor<Flex, D>) -> Raw {
    let shape = t.dims().to_vec();
    let v = t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_else(|e| panic!("{e:?}"));
    Raw(Dtype::F32, shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

fn i64s(v: &[i64], shape: Vec<usize>) -> Raw {
    Raw(Dtype::I64, shape, v.iter().flat_map(|x| x.to_le_bytes()).collect())
}

/// fairvlm's CLIP step and the batch it trains on.
fn clip(root: &Path) -> (Box<dyn Step>, Vec<(&'static str, Raw)>, usize) {
    let config = root.join("configs/benchmark-clip.toml");
    let exp = Experiment::from_file(&config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let data = ExperimentData::load(&exp, None).unwrap_or_else(|e| panic!("benchmark data: {e}"));
    let batch = exp.optim.batch_size;
    let rows: Vec<usize> = (0..batch).collect();
    let b = data.train.batch::<Flex>(&rows, &Default::default()).unwrap_or_else(|e| panic!("batch: {e}"));
    let token_shape = b.tokens.dims().to_vec();
    let tokens = b.tokens.into_data().convert::<i64>().to_vec::<i64>().unwrap_or_else(|e| panic!("{e:?}"));
    let tensors = vec![("images", f32s(b.images)), ("tokens", i64s(&tokens, token_shape))];
    (dispatch::<B, _>(exp.method, Build(exp, data, batch)), tensors, batch)
}

struct VitStep {
    fit: trainer::lora::Fit<'static, B>,
    rows: Vec<usize>,
}

impl Step for VitStep {
    fn run(&mut self) -> f64 {
        self.fit.step(&self.rows, 1).unwrap_or_else(|e| panic!("step: {e}"))
    }
}

/// fairvlm's ViT-B/16 classifier step and its batch (8 images of 224 px, 2 classes).
fn vit() -> (Box<dyn Step>, Vec<(&'static str, Raw)>, usize) {
    let (batch, size) = (8, 224);
    let images = (0..batch * 3 * size * size).map(|i| ((i * 2654435761usize) >> 7) as u8).collect();
    let labels: Vec<i64> = (0..batch as i64).map(|i| i % 2).collect();
    let set: &'static LabelledImages = Box::leak(Box::new(LabelledImages { size, images, labels: [("task".into(), labels.clone())].into() }));
    let overrides: Vec<String> =
        ["model.patch_size=16", "model.width=768", "model.layers=12", "model.heads=12", "optim.lr=1e-4", "optim.weight_decay=0.01"].map(String::from).into();
    let exp = trainer::lora::LoraExperiment::from_toml_str_with("", "vit-b16", &overrides).unwrap_or_else(|e| panic!("config: {e}"));
    let device: &'static burn::tensor::Device<B> = Box::leak(Box::default());
    let model = exp.classifier(size, 2).init::<B>(device);
    let fit = trainer::lora::Fit::new(model, set, &set.labels["task"], &exp, device);
    let rows: Vec<usize> = (0..batch).collect();
    let images = f32s(trainer::lora::image_batch::<Flex>(set, &rows, &Default::default()));
    (Box::new(VitStep { fit, rows }), vec![("images", images), ("labels", i64s(&labels, vec![batch]))], batch)
}

/// The PyTorch peer process, answering one JSON line per command.
struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Peer {
    fn start(root: &Path, model: &str, batch_file: &Path, threads: usize) -> Peer {
        let python = std::env::var_os("FAIRVLM_TORCH_PYTHON").map_or_else(|| root.join(".venv-torch/bin/python"), PathBuf::from);
        let mut child = Command::new(&python)
            .arg(root.join("benches/peer/train_step.py"))
            .args(["--model", model, "--threads", &threads.to_string(), "--batch"])
            .arg(batch_file)
            .env("OMP_NUM_THREADS", threads.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e} (make it with: python3 -m venv .venv-torch && .venv-torch/bin/pip install torch transformers)", python.display()));
        let (stdin, stdout) = (child.stdin.take().expect("piped"), BufReader::new(child.stdout.take().expect("piped")));
        let mut peer = Peer { child, stdin, stdout };
        println!("peer: {}", peer.read()["ready"]);
        peer
    }

    fn read(&mut self) -> HashMap<String, serde_json::Value> {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap_or_else(|e| panic!("peer: {e}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("peer said {line:?}: {e}"))
    }

    fn ask(&mut self, command: &str) -> HashMap<String, serde_json::Value> {
        writeln!(self.stdin, "{command}").and_then(|_| self.stdin.flush()).unwrap_or_else(|e| panic!("peer: {e}"));
        self.read()
    }

    fn steps(&mut self, k: usize) -> Vec<f64> {
        self.ask(&format!("steps {k}"))["ms"].as_array().map(|a| a.iter().filter_map(|v| v.as_f64()).collect()).unwrap_or_default()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.child.wait();
    }
}

/// This process's peak resident set (VmHWM), MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok()).map_or(f64::NAN, |kb| kb / 1024.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn main() {
    fairvlm_benches::keep_freed_memory();
    let threads: usize = std::env::var("FAIRVLM_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    // burn-flex parallelises through rayon's global pool; as in the `fairvlm` binary, every
    // step runs on one of its threads.
    rayon_pool(threads);
    fused_ops::on_pool(|| run(threads));
}

fn run(threads: usize) {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let which = args.first().map_or("clip", String::as_str);
    let rounds: usize = args.get(1).and_then(|r| r.parse().ok()).unwrap_or(5);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let (mut step, tensors, batch, peer_model, steps) = match which {
        "clip" => {
            let (s, t, b) = clip(&root);
            (s, t, b, "clip-small", 10)
        }
        "vit" => {
            let (s, t, b) = vit();
            (s, t, b, "vit-b16", 2)
        }
        other => panic!("unknown model '{other}': expected clip or vit"),
    };
    let batch_file = root.join(format!("target/step-batch-{which}.safetensors"));
    serialize_to_file(tensors.iter().map(|(n, r)| (*n, r)), None, &batch_file).unwrap_or_else(|e| panic!("{}: {e}", batch_file.display()));
    // Without the peer (`FAIRVLM_BENCH_NO_PEER=1`) only fairvlm's step runs: for profiling.
    let mut peer = std::env::var_os("FAIRVLM_BENCH_NO_PEER").is_none().then(|| Peer::start(&root, peer_model, &batch_file, threads));
    let (mut ours, mut theirs, mut paired) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=rounds {
        let mine: Vec<f64> = (0..steps)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(step.run());
                t.elapsed().as_secs_f64() * 1e3
            })
            .collect();
        let peer_ms = peer.as_mut().map_or_else(Vec::new, |p| p.steps(steps));
        println!("round {round}{}: fairvlm {:.1} ms, torch {:.1} ms (median step)", if round == 0 { " (warm-up)" } else { "" }, median(mine.clone()), median(peer_ms.clone()));
        if round > 0 {
            paired.push(median(peer_ms.clone()) / median(mine.clone()));
            ours.extend(mine);
            theirs.extend(peer_ms);
        }
    }
    let (a, b) = (median(ours), median(theirs));
    let torch_rss = peer.as_mut().and_then(|p| p.ask("rss")["peak_rss_mib"].as_f64()).unwrap_or(f64::NAN);
    println!("{which}, batch {batch}, {threads} threads, {rounds} rounds of {steps} steps each, backend {}:", std::any::type_name::<Cpu>());
    println!("  fairvlm: {a:.1} ms per step, {:.2} samples/s, peak RSS {:.0} MiB", batch as f64 * 1e3 / a, peak_rss_mib());
    println!("  torch:   {b:.1} ms per step, {:.2} samples/s, peak RSS {torch_rss:.0} MiB", batch as f64 * 1e3 / b);
    println!("  ratio (fairvlm samples/s over torch's): {:.2}", b / a);
    // The machine's speed drifts over minutes; each round's two medians are taken a few seconds
    // apart, so their ratio is the paired comparison.
    let (lo, hi) = (paired.iter().copied().fold(f64::INFINITY, f64::min), paired.iter().copied().fold(0.0, f64::max));
    println!("  ratio per round: median {:.2}, range {lo:.2} to {hi:.2}", median(paired));
}

fn rayon_pool(threads: usize) {
    if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global() {
        panic!("rayon: {e}");
    }
}
