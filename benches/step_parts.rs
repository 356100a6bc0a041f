//! The ViT-B/16 classifier step of `step_vs_torch` (batch 8, 224 px, AdamW) split into its
//! forward pass (with the loss), backward pass and optimiser update, timed to completion: where
//! the step's time goes. The peer's split: `benches/peer/train_step.py --model vit-b16 --parts`.
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
}
