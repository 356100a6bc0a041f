//! One training step (forward, loss, backward, AdamW update) of each method on the benchmark
//! model (`configs/benchmark-*.toml`, preset `small`, batch 32, 3 group batches for the
//! group-aware methods), CPU backend: FO-MoE against the same model without MoE (`clip`),
//! Fair-MoE against FairCLIP, and OGM-GE and MultiFair against late fusion (fundus + note).
//! Before the timings it prints, per method, the heap it holds (prepared splits, model,
//! optimiser state) and the peak one step adds, counted by the allocator below.
//!
//! `cargo bench -p fairvlm-benches --bench train_step` (from the repository root).

use std::hint::black_box;
use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use criterion::{criterion_group, criterion_main, Criterion};
use trainer::{init_model, loss, Experiment, ExperimentData, GroupLoaders, MultimodalTrainer};
use vlm_backbone::Clip;

type B = Autodiff<Flex>;

#[global_allocator]
static ALLOC: fairvlm_benches::Counting = fairvlm_benches::Counting;

/// Everything one method's step needs, built as `fairvlm train` builds it.
struct Step {
    exp: Experiment,
    data: ExperimentData,
    model: Option<Clip<B>>,
    optim: burn::optim::adaptor::OptimizerAdaptor<burn::optim::AdamW, Clip<B>, B>,
    groups: GroupLoaders,
    cursor: usize,
}

impl Step {
    fn new(method: &str) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let config = root.join(format!("configs/benchmark-{method}.toml"));
        let exp = Experiment::from_file(&config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        let data = ExperimentData::load(&exp, None).unwrap_or_else(|e| panic!("benchmark data: {e}"));
        let device = Default::default();
        let model = init_model::<B>(&exp, &data, &device).unwrap_or_else(|e| panic!("model: {e}"));
        let o = &exp.optim;
        let optim = AdamWConfig::new()
            .with_beta_1(o.betas[0] as f32)
            .with_beta_2(o.betas[1] as f32)
            .with_epsilon(o.eps as f32)
            .with_weight_decay(o.weight_decay as f32)
            .init::<B, Clip<B>>();
        let groups = GroupLoaders::new(&exp, &data.train).unwrap_or_else(|e| panic!("group loaders: {e}"));
        Step { exp, data, model: Some(model), optim, groups, cursor: 0 }
    }

    /// One optimiser step on the next batch of the training split; returns the loss.
    fn run(&mut self) -> f64 {
        let device = Default::default();
        let bs = self.exp.optim.batch_size;
        if self.cursor + bs > self.data.train.len() {
            self.cursor = 0;
        }
        let idx: Vec<usize> = (self.cursor..self.cursor + bs).collect();
        self.cursor += bs;
        let batch = self.data.train.batch::<B>(&idx, &device);
        let model = self.model.take().unwrap_or_else(|| unreachable!());
        let losses = loss(&self.exp, &model, batch, &mut self.groups, &self.data.train, &device).unwrap_or_else(|e| panic!("loss: {e}"));
        let value = losses.clip;
        let grads = GradientsParams::from_grads(losses.total.backward(), &model);
        self.model = Some(self.optim.step(self.exp.optim.lr, model, grads));
        value
    }
}

/// A multimodal method's step, through the trainer's own [`MultimodalTrainer`].
struct MultimodalStep {
    trainer: MultimodalTrainer<B>,
    data: ExperimentData,
    batch: usize,
    cursor: usize,
}

impl MultimodalStep {
    fn new(method: &str) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let config = root.join(format!("configs/benchmark-{method}.toml"));
        let exp = Experiment::from_file(&config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
        let data = ExperimentData::load(&exp, None).unwrap_or_else(|e| panic!("benchmark data: {e}"));
        let trainer = MultimodalTrainer::new(&exp, &data, &Default::default()).unwrap_or_else(|e| panic!("trainer: {e}"));
        MultimodalStep { trainer, data, batch: exp.optim.batch_size, cursor: 0 }
    }

    fn run(&mut self) -> f64 {
        if self.cursor + self.batch > self.data.train.len() {
            self.cursor = 0;
        }
        let idx: Vec<usize> = (self.cursor..self.cursor + self.batch).collect();
        self.cursor += self.batch;
        self.trainer.step(&self.data.train, &idx, 1, &Default::default()).unwrap_or_else(|e| panic!("step: {e}")).loss
    }
}

/// One method's step, of either kind.
enum AnyStep {
    Clip(Box<Step>),
    Multimodal(Box<MultimodalStep>),
}

impl AnyStep {
    fn new(method: &str) -> Self {
        match method {
            "late-fusion" | "ogm-ge" | "multifair" => AnyStep::Multimodal(Box::new(MultimodalStep::new(method))),
            _ => AnyStep::Clip(Box::new(Step::new(method))),
        }
    }

    fn run(&mut self) -> f64 {
        match self {
            AnyStep::Clip(s) => s.run(),
            AnyStep::Multimodal(s) => s.run(),
        }
    }
}

const METHODS: [&str; 7] = ["clip", "fo-moe", "fairclip", "fair-moe", "late-fusion", "ogm-ge", "multifair"];

fn train_step(c: &mut Criterion) {
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let mut steps: Vec<(&str, AnyStep)> = Vec::new();
    for method in METHODS {
        // What the method holds: its prepared splits, model, optimiser state (after a step).
        let before = fairvlm_benches::live();
        let mut step = AnyStep::new(method);
        step.run();
        let live = fairvlm_benches::live();
        fairvlm_benches::reset_peak();
        step.run();
        let peak = fairvlm_benches::peak() - live;
        println!("{method}: holds {:.1} MiB (data, model, optimiser); one step peaks {:.1} MiB above that", mib(live.saturating_sub(before)), mib(peak));
        steps.push((method, step));
    }
    // Interleaved rounds: on a shared machine the speed drifts over the seconds criterion
    // spends on one method, so the ratios are taken from steps timed side by side.
    let rounds = 15;
    let mut times: Vec<Vec<f64>> = vec![Vec::with_capacity(rounds); steps.len()];
    for _ in 0..rounds {
        for (k, (_, step)) in steps.iter_mut().enumerate() {
            let t = std::time::Instant::now();
            black_box(step.run());
            times[k].push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let medians: Vec<f64> = times.iter_mut().map(median).collect();
    let of = |m: &str| METHODS.iter().position(|x| *x == m).map_or(f64::NAN, |k| medians[k]);
    println!("interleaved medians over {rounds} rounds (ms):");
    for (m, t) in METHODS.iter().zip(&medians) {
        println!("  {m}: {t:.1}");
    }
    for (a, b) in [("fo-moe", "clip"), ("fair-moe", "fairclip"), ("ogm-ge", "late-fusion"), ("multifair", "late-fusion")] {
        println!("  {a} / {b}: {:.2}x", of(a) / of(b));
    }
    let mut group = c.benchmark_group("train_step");
    group.sample_size(20);
    for (method, step) in &mut steps {
        group.bench_function(*method, |b| b.iter(|| black_box(step.run())));
    }
    group.finish();
}

criterion_group!(benches, train_step);
criterion_main!(benches);
