//! The image and text towers of an experiment: the preset's, or a Hugging Face checkpoint's
//! (`[model.vision]` / `[model.text]`), with the tokenizer's padding and end ids.

use std::path::Path;

use burn::prelude::*;
use vlm_backbone::{Clip, TextTransformer, VisionTransformer};

use crate::checkpoint::{materialized, seeded, DrawBackend};
use crate::config::Experiment;
use crate::data::ExperimentData;
use crate::error::{Error, Result};

/// The CLIP dual encoder of an experiment, seeded with its seed, towers loaded from their
/// checkpoints; `with_moe` inserts the FO-MoE layers of `[moe]` (their experts are copies of
/// the freshly initialised or pretrained MLPs). Seeding, creating and drawing happen under
/// one lock (burn's generator is global and parameters are drawn lazily); the parameters are
/// drawn on the CPU whatever `B` is, so a seed gives the same model on every backend.
pub fn init_clip<B: Backend>(exp: &Experiment, data: &ExperimentData, with_moe: bool, device: &B::Device) -> Result<Clip<B>> {
    seeded(device, exp.seed, |d| build_clip::<B>(exp, data, with_moe, d), |d| build_clip::<DrawBackend>(exp, data, with_moe, d))
}

fn build_clip<B: Backend>(exp: &Experiment, data: &ExperimentData, with_moe: bool, device: &B::Device) -> Result<Clip<B>> {
    let mut cfg = exp.model.clip_config(data.tokenizer.vocab_size(), data.tokenizer.context_length()).map_err(Error::Invalid)?;
    with_tokenizer_ids(&mut cfg.text, &data.tokenizer);
    let mut model = load_pretrained(exp, cfg.init(device))?;
    if with_moe {
        model = materialized(model);
        let attribute = &exp.fairclip.attribute;
        let groups = data.attribute_groups(attribute)?;
        exp.moe.validate(groups, attribute).map_err(Error::Invalid)?;
        model = model.with_fo_moe(&exp.moe.config(groups), device).map_err(|e| Error::Invalid(format!("[moe]: {e}")))?;
    }
    Ok(materialized(model))
}

/// Sets the towers named in `[model.vision]` / `[model.text]` from their checkpoints; a
/// `CLIPModel` named for both also brings its projections and logit scale.
fn load_pretrained<B: Backend>(exp: &Experiment, model: Clip<B>) -> Result<Clip<B>> {
    if let (Some(v), true) = (&exp.model.vision.weights, exp.model.is_whole_clip()) {
        let (model, report) = vlm_backbone::Checkpoint::open(v)?.load_clip(model)?;
        loaded("CLIPModel", v, &report);
        return Ok(model);
    }
    let (vision_model, text_model) = load_towers(exp, model.vision_model, Some(model.text_model))?;
    let text_model = text_model.ok_or_else(|| Error::Invalid("the text tower went missing".into()))?;
    Ok(Clip { vision_model, text_model, ..model })
}

/// The text tower pads and pools with the tokenizer's ids: its padding id (the attention
/// mask of bidirectional towers, mean pooling) and its end id (end-token pooling), whatever
/// the checkpoint's config.json says.
pub(crate) fn with_tokenizer_ids(text: &mut vlm_backbone::TextTransformerConfig, tokenizer: &fair_data::TextTokenizer) {
    text.pad_token_id = tokenizer.pad_id() as usize;
    text.eos_token_id = Some(tokenizer.end_id() as usize);
    text.bos_token_id = Some(tokenizer.start_id() as usize);
}

/// Sets an image tower and a text tower from the `[model.vision]` / `[model.text]`
/// checkpoints, where named (the text tower only with `pretrained = true`).
pub(crate) fn load_towers<B: Backend>(
    exp: &Experiment,
    mut vision: VisionTransformer<B>,
    mut text: Option<TextTransformer<B>>,
) -> Result<(VisionTransformer<B>, Option<TextTransformer<B>>)> {
    if let Some(v) = &exp.model.vision.weights {
        let (tower, report) = vlm_backbone::Checkpoint::open(v)?.load_vision(vision)?;
        loaded("image tower", v, &report);
        vision = tower;
    }
    if let (Some(t), true) = (&exp.model.text.weights, exp.model.text.pretrained) {
        if let Some(tower) = text.take() {
            let (tower, report) = vlm_backbone::Checkpoint::open(t)?.load_text(tower)?;
            loaded("text tower", t, &report);
            text = Some(tower);
        }
    }
    Ok((vision, text))
}

fn loaded(what: &str, path: &Path, report: &vlm_backbone::LoadReport) {
    tracing::info!("{what}: {} tensors from {}", report.applied, path.display());
    if !report.unused.is_empty() {
        tracing::warn!("{what}: unused checkpoint keys: {}", report.unused.join(", "));
    }
}
