//! One training step (batch, forward, loss, backward, modulation, AdamW update) of each
//! method, through the trainer's own `Trainer::step` (the run loop's), on the benchmark
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
use criterion::{criterion_group, criterion_main, Criterion};
use trainer::recipes::{dispatch, Recipe, WithRecipe};
use trainer::{Experiment, ExperimentData, Trainer};

type B = Autodiff<Flex>;

#[global_allocator]
static ALLOC: fairvlm_benches::Counting = fairvlm_benches::Counting;

/// One method's training step as `fairvlm train` runs it: [`Trainer::step`] on the shipped
/// config, over consecutive rows of the training split.
trait Step {
    fn run(&mut self) -> f64;
}

struct Stepper<R: Recipe<B>> {
    trainer: Trainer<B, R>,
    batch: usize,
    cursor: usize,
}

impl<R: Recipe<B>> Step for Stepper<R> {
    fn run(&mut self) -> f64 {
        let n = self.trainer.data().train.len();
        if self.cursor + self.batch > n {
            self.cursor = 0;
        }
        let rows: Vec<usize> = (self.cursor..self.cursor + self.batch).collect();
        self.cursor += self.batch;
        self.trainer.step(&rows, 1).unwrap_or_else(|e| panic!("step: {e}")).loss
    }
}

struct Build(Experiment, ExperimentData);

impl WithRecipe<B> for Build {
    type Output = Box<dyn Step>;
    fn with<R: Recipe<B>>(self) -> Box<dyn Step> {
        let Build(exp, data) = self;
        let trainer = Trainer::<B, R>::new(&exp, data, &Default::default()).unwrap_or_else(|e| panic!("trainer: {e}"));
        Box::new(Stepper { trainer, batch: exp.optim.batch_size, cursor: 0 })
    }
}

fn step_of(method: &str) -> Box<dyn Step> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = root.join(format!("configs/benchmark-{method}.toml"));
    let exp = Experiment::from_file(&config).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let data = ExperimentData::load(&exp, None).unwrap_or_else(|e| panic!("benchmark data: {e}"));
    dispatch::<B, _>(exp.method, Build(exp, data))
}

const METHODS: [&str; 7] = ["clip", "fo-moe", "fairclip", "fair-moe", "late-fusion", "ogm-ge", "multifair"];

fn train_step(c: &mut Criterion) {
    fairvlm_benches::keep_freed_memory();
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let mut steps: Vec<(&str, Box<dyn Step>)> = Vec::new();
    for method in METHODS {
        // What the method holds: its prepared splits, model, optimiser state (after a step).
        let before = fairvlm_benches::live();
        let mut step = step_of(method);
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
