//! Adding a method without touching the run loop: a group-reweighted CLIP ("weighted ERM")
//! defined here, outside the crate, runs on `trainer::run` with evaluation, checkpoints,
//! resume and reports. docs/design.md walks through this file.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use trainer::recipes::contrastive::{ContrastiveLoss, Forward, Losses};
use trainer::recipes::{Contrastive, StepInput};
use trainer::{run, Experiment};

mod common;
use common::{quiet, scratch, tiny, B};

/// CLIP's symmetric InfoNCE with each pair's two terms weighted by the inverse frequency of
/// its race group in the batch, so that every group weighs the same in the loss.
struct WeightedErm;

impl ContrastiveLoss for WeightedErm {
    const NAME: &'static str = "weighted-erm";

    fn new(_exp: &Experiment) -> trainer::Result<Self> {
        Ok(WeightedErm)
    }

    fn loss<Bk: AutodiffBackend>(&self, model: &vlm_backbone::Clip<Bk>, input: &StepInput<'_, Bk>) -> trainer::Result<Losses<Bk>> {
        let f = Forward::of(model, input)?;
        let n = f.logits.dims()[0];
        let codes = &input.batch.attributes.column("race")?.codes;
        let count = |c: i64| codes.iter().filter(|&&d| d == c).count() as f32;
        let weights: Vec<f32> = codes.iter().map(|&c| 1.0 / count(c)).collect();
        let w = Tensor::<Bk, 1>::from_floats(weights.as_slice(), input.device);
        let eye = Tensor::<Bk, 2>::eye(n, input.device);
        // The log-probability of the matching text for each image, and of the matching image
        // for each text.
        let image_to_text = (log_softmax(f.logits.clone(), 1) * eye.clone()).sum_dim(1).reshape([n]);
        let text_to_image = (log_softmax(f.logits.transpose(), 1) * eye).sum_dim(1).reshape([n]);
        let per_pair = (image_to_text + text_to_image) * -0.5;
        let total = (per_pair * w.clone()).sum() / w.sum();
        let v = total.clone().into_scalar().elem::<f64>();
        Ok(Losses { total, clip: v, fair: None, fol: None, by_group: Vec::new() })
    }
}

#[test]
fn a_recipe_defined_outside_the_crate_trains_evaluates_and_resumes_on_the_one_loop() {
    let exp = tiny("clip", 3);
    let device = Default::default();
    let whole = scratch("weighted-erm");
    let full = run::<B, Contrastive<B, WeightedErm>>(&exp, &quiet(whole.clone()), &device).expect("train");
    let report = full.report.expect("report");
    assert_eq!(report.method, "weighted-erm");
    let h = &full.history;
    assert!(h.iter().all(|l| l.loss.is_finite() && l.validation.auc.is_some()));
    assert!(h[2].loss < h[0].loss, "{} -> {}", h[0].loss, h[2].loss);
    assert!(whole.join("report.html").is_file() && whole.join("best.safetensors").is_file());

    // Killed after one epoch and resumed: the same run.
    let parts = scratch("weighted-erm-parts");
    let mut opts = quiet(parts.clone());
    opts.stop_after = Some(1);
    run::<B, Contrastive<B, WeightedErm>>(&exp, &opts, &device).expect("first part");
    opts.resume = true;
    opts.stop_after = None;
    let resumed = run::<B, Contrastive<B, WeightedErm>>(&exp, &opts, &device).expect("resumed");
    for (a, b) in h.iter().zip(&resumed.history) {
        assert_eq!((a.loss, &a.validation), (b.loss, &b.validation), "epoch {}", a.epoch);
    }
    std::fs::remove_dir_all(&whole).ok();
    std::fs::remove_dir_all(&parts).ok();
}
