//! Fairness-aware LoRA against full fine-tuning: one epoch of 10 steps (batch 64, 32 px images,
//! the study's ViT: width 64, 4 layers, 8 px patches, `configs/lora-fashion-mnist.toml`) of
//! - `full`: every weight of the classifier trained (`trainer::lora::pretrain`),
//! - `erm`: LoRA r 8 on q and v, tower frozen, new head,
//! - `orth`, `adv`, `ent`: the developer's LoRA step with the method's term (Adv and Ent include
//!   the auditor's forward and backward on its own batch every step), auditor in the process.
//!
//! The sensitive adapter of Orth and Ent is trained once before the timing. Reported: the
//! interleaved median time per step and the heap peak of one epoch above what is held before.
//!
//! `cargo bench -p fairvlm-benches --bench lora_step` (from the repository root).

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use fair_data::LabelledImages;
use trainer::lora::{self, Auditor, LocalAuditor, LoraExperiment};

type B = Autodiff<Flex>;

#[global_allocator]
static ALLOC: fairvlm_benches::Counting = fairvlm_benches::Counting;

const STEPS: usize = 10;

/// 640 images of 32 x 32 with task and sensitive labels (their content does not change the
/// cost of a step).
fn images() -> LabelledImages {
    let n = 64 * STEPS;
    let images = (0..n * 3 * 32 * 32).map(|i| ((i * 2654435761usize) >> 7) as u8).collect();
    let col = |f: fn(usize) -> i64| (0..n).map(f).collect::<Vec<i64>>();
    LabelledImages { size: 32, images, labels: [("task".into(), col(|i| (i % 2) as i64)), ("sensitive".into(), col(|i| ((i / 3) % 2) as i64))].into() }
}

fn main() {
    fairvlm_benches::keep_freed_memory();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = root.join("configs/lora-fashion-mnist.toml");
    let device = Default::default();
    let data = images();
    let developer = data.with_labels(&[("task", "task")]).expect("task");
    let auditor_data = data.with_labels(&[("sensitive", "sensitive")]).expect("sensitive");
    let exp = |method: &str| LoraExperiment::from_file_with(&config, &[format!("method=\"{method}\""), "optim.epochs=1".into()]).expect("config");
    let base = lora::pretrain::<B>(&exp("erm"), &data, "task", 1, &device).expect("base");
    let methods = ["full", "erm", "orth", "adv", "ent"];
    let mut auditors: Vec<Auditor<B>> = methods
        .iter()
        .map(|m| {
            let method = if *m == "full" { "erm" } else { m };
            let mut a = Auditor::new(&exp(method), base.clone(), auditor_data.clone(), "sensitive", &device).expect("auditor");
            if matches!(*m, "orth" | "ent") {
                a.train_sensitive().expect("sensitive adapter");
            }
            a
        })
        .collect();
    let mut run = |k: usize| -> f64 {
        let t = std::time::Instant::now();
        if methods[k] == "full" {
            std::hint::black_box(lora::pretrain::<B>(&exp("erm"), &developer, "task", 1, &device).expect("full"));
        } else {
            let e = exp(methods[k]);
            std::hint::black_box(lora::train_developer::<B>(&e, &base, &developer, "task", &mut LocalAuditor(&mut auditors[k]), &device).expect("lora"));
        }
        t.elapsed().as_secs_f64() * 1e3 / STEPS as f64
    };
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    let mut peaks = vec![0.0; methods.len()];
    for (k, p) in peaks.iter_mut().enumerate() {
        let live = fairvlm_benches::live();
        fairvlm_benches::reset_peak();
        run(k);
        *p = mib(fairvlm_benches::peak() - live);
    }
    let rounds = 7;
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); methods.len()];
    for _ in 0..rounds {
        for (k, t) in times.iter_mut().enumerate() {
            t.push(run(k));
        }
    }
    println!("interleaved medians over {rounds} epochs of {STEPS} steps, batch 64 (ms per step; heap peak of an epoch):");
    let mut med = vec![];
    for (k, t) in times.iter_mut().enumerate() {
        t.sort_by(f64::total_cmp);
        med.push(t[t.len() / 2]);
        println!("  {}: {:.1} ms, {:.1} MiB", methods[k], med[k], peaks[k]);
    }
    for k in 1..methods.len() {
        println!("  {} / full: {:.2}x", methods[k], med[k] / med[0]);
    }
}
