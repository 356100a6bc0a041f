//! The ViT-B/16 classifier step of `step_vs_torch` (batch 8, 224 px, AdamW) split into its
//! forward pass (with the loss), backward pass and optimiser update, timed to completion: where
//! the step's time goes. The peer's split: `benches/peer/train_step.py --model vit-b16 --parts`.
//!
//! Then the optimiser alone, burn's AdamW against the trainer's (fused) one, alternating on the
//! same gradients, for this ViT-B/16 and for the benchmark's CLIP (preset `small`, many small
//! tensors): `optimiser A/B`.
//!
//! `cargo bench -p fairvlm-benches --bench step_parts`

use burn::backend::{Autodiff, Flex};
use burn::optim::GradientsParams;
use burn::prelude::*;
use std::time::Instant;
#[global_allocator]
static ALLOC: fairvlm_benches::Counting = fairvlm_benches::Counting;
type B = Autodiff<Flex>;
fn main() {
    fairvlm_benches::keep_freed_memory();
    let threads: usize = std::env::var("FAIRVLM_BENCH_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(2);
    if let Err(e) = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global() {
        panic!("rayon: {e}");
    }
    // As the `fairvlm` binary: every step on a thread of the CPU backend's pool.
    fused_ops::on_pool(run);
}

fn run() {
    let d = Default::default();
    let cfg = vlm_backbone::VitClassifierConfig::new(vlm_backbone::VisionTransformerConfig::vit_b16(), 2);
    let mut model = cfg.init::<B>(&d);
    // The trainer's optimiser (burn's AdamW, one fused pass per parameter).
    let mut opt = trainer::Optim::<B, vlm_backbone::VitClassifier<B>>::adamw(None, 0.01);
    let x = Tensor::<B, 4>::random([8, 3, 224, 224], burn::tensor::Distribution::Default, &d);
    let y = Tensor::<B, 1, Int>::from_ints([0, 1, 0, 1, 0, 1, 0, 1], &d);
    // Two warm-up steps (the allocator grows to the step's peak), then three timed.
    for i in 0..5 {
        let t0 = Instant::now();
        let logits = model.forward(x.clone());
        let loss = burn::nn::loss::CrossEntropyLossConfig::new().init(&d).forward(logits, y.clone());
        let _v = loss.clone().into_scalar();
        let t1 = Instant::now();
        let grads = loss.backward();
        let t2 = Instant::now();
        let g = GradientsParams::from_grads(grads, &model);
        model = opt.step(1e-4, model, g);
        let _ = model.classifier.weight.val().sum().into_scalar();
        let t3 = Instant::now();
        println!(
            "{}: forward {:.0} ms, backward {:.0} ms, optimiser {:.0} ms",
            if i < 2 { "warm-up" } else { "step" },
            (t1 - t0).as_secs_f64() * 1e3,
            (t2 - t1).as_secs_f64() * 1e3,
            (t3 - t2).as_secs_f64() * 1e3
        );
    }
    optimiser_ab("ViT-B/16", model, 5);
    let exp = trainer::Experiment::from_file(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/benchmark-clip.toml")))
        .unwrap_or_else(|e| panic!("configs/benchmark-clip.toml: {e}"));
    let clip = exp.model.clip_config(1000, 40).unwrap_or_else(|e| panic!("{e}")).init::<B>(&d);
    optimiser_ab("CLIP small", clip, 50);
}

/// Medians of `rounds` AdamW updates of `model` by burn's optimiser and by the trainer's,
/// alternating, each on the same gradients (random, one per parameter), each called as the
/// recipes call it (on a clone of the model they keep).
fn optimiser_ab<M: burn::module::AutodiffModule<B>>(name: &str, model: M, rounds: usize) {
    struct RandomGrads<'a>(&'a mut GradientsParams);
    impl burn::module::ModuleVisitor<B> for RandomGrads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            let g = Tensor::<Flex, D>::random(param.shape(), burn::tensor::Distribution::Normal(0.0, 1e-3), &Default::default());
            self.0.register::<Flex, D>(param.id, g);
        }
    }
    let grads_of = |m: &M| {
        Flex::seed(&Default::default(), 5);
        let mut grads = GradientsParams::new();
        m.visit(&mut RandomGrads(&mut grads));
        grads
    };
    let mut burn_opt = burn::optim::AdamWConfig::new().with_weight_decay(0.01).init::<B, M>();
    let mut fused = trainer::Optim::<B, M>::adamw(None, 0.01);
    let (mut a, mut b) = (model.clone(), model);
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for i in 0..rounds + 1 {
        let (ga, gb) = (grads_of(&a), grads_of(&b));
        let t0 = Instant::now();
        a = burn::optim::Optimizer::step(&mut burn_opt, 1e-4, a.clone(), ga);
        let t1 = Instant::now();
        b = fused.step(1e-4, b.clone(), gb);
        let t2 = Instant::now();
        // The first update allocates the moments: not timed.
        if i > 0 {
            ta.push((t1 - t0).as_secs_f64() * 1e3);
            tb.push((t2 - t1).as_secs_f64() * 1e3);
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("optimiser A/B, {name}: burn's AdamW {:.2} ms, fused {:.2} ms (medians of {rounds})", median(ta), median(tb));
}
