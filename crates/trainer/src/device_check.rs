//! The one-shot device check (`fairvlm gpu-check`, `cargo xtask gpu-check`): on a device
//! backend, the parity suite against the CPU ([`crate::parity`]), a short training, the
//! training throughput of the ViT-B/16 image tower with its model FLOPs utilisation, and the
//! rate at which the input pipeline feeds the device; one JSON object for
//! docs/benchmarks.md.

use std::path::Path;
use std::time::Instant;

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use serde_json::{json, Value};
use vlm_backbone::VisionTransformerConfig;

use crate::config::Experiment;
use crate::data::ExperimentData;
use crate::error::Result;
use crate::parity::{self, Tolerances};
use crate::run::{train, RunOptions};

/// The methods whose training step the check compares with the CPU.
pub const METHODS: [&str; 7] = ["clip", "fairclip", "fo-moe", "fair-moe", "late-fusion", "ogm-ge", "multifair"];

/// The parity suite on `device`: every method's step and the kernels, with each comparison's
/// worst relative difference and tolerance, and whether all passed.
pub fn parity_suite<B: AutodiffBackend>(device: &B::Device, scratch: &Path) -> Result<Value> {
    let mut sections = serde_json::Map::new();
    let mut passed = true;
    let mut record = |name: &str, diffs: Vec<parity::Difference>| {
        let worst = diffs.iter().filter(|d| d.relative.is_finite()).map(|d| d.relative / d.tolerance).fold(0.0f64, f64::max);
        let failed: Vec<String> = diffs.iter().filter(|d| !d.ok()).map(ToString::to_string).collect();
        passed &= failed.is_empty();
        sections.insert(name.to_string(), json!({ "comparisons": diffs.len(), "worst_share_of_tolerance": worst, "failed": failed }));
    };
    for method in METHODS {
        let dir = scratch.join(format!("parity-{method}"));
        let diffs = parity::recipe_step::<B>(&parity::experiment(method)?, device, &dir, Tolerances::default())?;
        let _ = std::fs::remove_dir_all(&dir);
        record(method, diffs);
    }
    record("kernels", parity::kernels::<B>(device, Tolerances::default())?);
    Ok(json!({ "passed": passed, "checks": sections }))
}

/// A short training of `exp` on `device` (the first epoch's samples per second and AUC).
pub fn smoke<B: AutodiffBackend>(exp: &Experiment, device: &B::Device, scratch: &Path) -> Result<Value> {
    let out = scratch.join("smoke");
    let _ = std::fs::remove_dir_all(&out);
    let start = Instant::now();
    let outcome = train::<B>(exp, &RunOptions { progress: false, ..RunOptions::new(&out) }, device)?;
    let epochs: Vec<Value> = outcome
        .history
        .iter()
        .map(|l| json!({ "epoch": l.epoch, "loss": l.loss, "samples_per_second": l.samples_per_second, "train_seconds": l.train_seconds, "validation_auc": l.validation.auc }))
        .collect();
    let _ = std::fs::remove_dir_all(&out);
    Ok(json!({ "method": exp.method.name(), "seconds": start.elapsed().as_secs_f64(), "epochs": epochs }))
}

/// Model FLOPs of one forward pass of a ViT on one image: the matrix products (patch embedding,
/// attention projections, attention scores and mixing, MLP), two FLOPs per multiply-add.
pub fn vit_forward_flops(c: &VisionTransformerConfig) -> f64 {
    let patches = (c.image_size / c.patch_size).pow(2) as f64;
    let (t, d) = (patches + 1.0, c.width as f64);
    let m = c.intermediate_size.unwrap_or(4 * c.width) as f64;
    let per_layer = 2.0 * t * d * (3.0 * d) + 2.0 * 2.0 * t * t * d + 2.0 * t * d * d + 2.0 * 2.0 * t * d * m;
    2.0 * patches * (c.channels * c.patch_size * c.patch_size) as f64 * d + c.layers as f64 * per_layer
}

/// Training throughput of the image tower `cfg` at `batch`: forward, a loss, backward, timed
/// to completion over `iters` passes after two untimed ones; with the model FLOPs rate
/// (backward counted as twice the forward) and its share of `peak_tflops` where given.
pub fn vit_training<B: AutodiffBackend>(cfg: &VisionTransformerConfig, batch: usize, iters: usize, peak_tflops: Option<f64>, device: &B::Device) -> Value {
    let vit = cfg.init::<B>(device);
    let images = Tensor::<B, 4>::random([batch, cfg.channels, cfg.image_size, cfg.image_size], burn::tensor::Distribution::Normal(0.0, 1.0), device);
    let mut times = Vec::with_capacity(iters);
    for i in 0..iters + 2 {
        let start = Instant::now();
        let loss = vit.forward(images.clone()).powi_scalar(2).mean();
        let grads = loss.backward();
        // Reading one gradient back waits for the whole backward pass.
        let g = vit.embeddings.patch_embedding.weight.grad(&grads).map(|g| g.sum().into_data());
        drop(g);
        if i >= 2 {
            times.push(start.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let flops = 3.0 * vit_forward_flops(cfg) * batch as f64;
    let tflops = flops / median / 1e12;
    json!({
        "batch": batch,
        "image_size": cfg.image_size,
        "seconds_per_step_median": median,
        "samples_per_second": batch as f64 / median,
        "model_tflops_per_step": flops / 1e12,
        "achieved_tflops": tflops,
        "peak_tflops": peak_tflops,
        "mfu": peak_tflops.map(|p| tflops / p),
    })
}

/// How fast the input pipeline of `exp` puts training batches of `batch` on `device`
/// (decoding, preprocessing, the copy to the device), over at most `batches` batches.
pub fn pipeline_rate<B: AutodiffBackend>(exp: &Experiment, batch: usize, batches: usize, device: &B::Device) -> Result<Value> {
    let data = ExperimentData::load(exp, None)?;
    let rows: Vec<usize> = (0..data.train.len()).collect();
    let plan: Vec<Vec<usize>> = rows.chunks(batch).take(batches).map(<[usize]>::to_vec).collect();
    let n: usize = plan.iter().map(Vec::len).sum();
    let start = Instant::now();
    let mut stream = data.train.stream(plan);
    while let Some(b) = stream.next_batch::<B>(device) {
        let b = b?;
        let _ = b.images.slice([0..1, 0..1, 0..1, 0..1]).into_data();
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(
        json!({ "images": n, "batch": batch, "image_size": data.train.image_size, "decoding_threads": exp.data.pipeline.workers, "seconds": seconds, "images_per_second": n as f64 / seconds }),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn vit_b16_forward_is_35_gflops() {
        // 17.56 G multiply-adds: the figure usually quoted for ViT-B/16 at 224 px.
        let flops = super::vit_forward_flops(&vlm_backbone::VisionTransformerConfig::vit_b16());
        assert_eq!(flops, 35_126_120_448.0);
    }
}
