//! `fairvlm export`: a finished run's model as a folder Hugging Face transformers (and peft)
//! read, with a model card.

use std::path::Path;

use crate::config::Experiment;
use crate::error::{Error, Result};

/// What of a CLIP run `fairvlm export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tower {
    /// The whole dual encoder: a `CLIPModel`.
    #[default]
    Both,
    /// The image tower alone: a `CLIPVisionModel`.
    Vision,
    /// The text tower alone: a `CLIPTextModel` (with the tokenizer).
    Text,
}

/// Writes the CLIP of a finished CLIP or FairCLIP run (`run`, its weights `checkpoint`) as a
/// Hugging Face folder `out` (`config.json`, `model.safetensors`, the run's `tokenizer.json`
/// where the text tower is written, and the model card `README.md`): the whole `CLIPModel`,
/// or one tower as the class of its layout (`CLIPVisionModel` or `ViTModel`, `CLIPTextModel` or
/// `BertModel`: a tower started from a ViT or BERT checkpoint keeps its layout). It is what `[model.vision]` and
/// `[model.text]` can start another run from, and what transformers' `from_pretrained` reads
/// (docs/weights.md).
pub fn export_clip_run(run: &Path, checkpoint: &Path, out: &Path, tower: Tower) -> Result<()> {
    let exp = Experiment::from_file(&run.join("config.toml"))?;
    if !matches!(exp.method, crate::Method::Clip | crate::Method::Fairclip) {
        return Err(Error::Invalid(format!("{}: method {:?} is not a plain CLIP (clip or fairclip): it has no CLIPModel form", run.display(), exp.method)));
    }
    let tokenizer_path = run.join("tokenizer.json");
    let tokenizer = fair_data::TextTokenizer::from_file(&tokenizer_path, exp.data.context_length)?;
    let mut cfg = exp.model.clip_config(tokenizer.vocab_size(), tokenizer.context_length()).map_err(Error::Invalid)?;
    crate::towers::with_tokenizer_ids(&mut cfg.text, &tokenizer);
    let device = Default::default();
    if tower == Tower::Both && (!cfg.vision.clip_layout || cfg.text.bert_layout) {
        return Err(Error::Invalid(format!(
            "{}: a CLIPModel holds only CLIP-layout towers, and this run's {} tower is in {}'s layout: export one tower at a time (--tower vision, --tower text)",
            run.display(),
            if cfg.text.bert_layout { "text" } else { "image" },
            if cfg.text.bert_layout { "BERT" } else { "ViTModel" }
        )));
    }
    let model = crate::checkpoint::load_safetensors(cfg.init::<burn::backend::Flex>(&device), checkpoint)?;
    match tower {
        Tower::Both => vlm_backbone::save_clip(&model, &cfg, out)?,
        Tower::Vision => vlm_backbone::save_vision_tower(&model.vision_model, &cfg.vision, out)?,
        Tower::Text => vlm_backbone::save_text_tower(&model.text_model, &cfg.text, out)?,
    }
    if tower != Tower::Vision {
        std::fs::copy(&tokenizer_path, out.join("tokenizer.json")).map_err(crate::checkpoint::io_err(&tokenizer_path))?;
    }
    let card = out.join("README.md");
    let class = match tower {
        Tower::Both => "CLIPModel",
        Tower::Vision if cfg.vision.clip_layout => "CLIPVisionModel",
        Tower::Vision => "ViTModel",
        Tower::Text if cfg.text.bert_layout => "BertModel",
        Tower::Text => "CLIPTextModel",
    };
    std::fs::write(&card, model_card(run, checkpoint, &exp, tower, class)?).map_err(crate::checkpoint::io_err(&card))
}

/// The model card of an exported run (the folder's README.md): what was trained on which data
/// with which method, its test metrics per group from the run's report.json, its intended use
/// and the limits of its fairness evaluation.
fn model_card(run: &Path, checkpoint: &Path, exp: &Experiment, tower: Tower, class: &str) -> Result<String> {
    let report_path = run.join("report.json");
    let report: Option<serde_json::Value> = std::fs::read_to_string(&report_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let pct = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{:.2}", 100.0 * x));
    let data = match exp.data.source {
        crate::config::DataSource::Synthetic => "the built-in synthetic FairVLMed-like benchmark (docs/datasets.md in the fairvlm repository), not patient data".to_string(),
        _ => format!("{:?} data from `{}`", exp.data.source, exp.data.root.as_ref().map_or("-".into(), |r| r.display().to_string())),
    };
    let mut md = format!(
        "---\nlibrary_name: transformers\ntags:\n- clip\n- fairness\n- fairvlm\n---\n\n# {} fine-tuned with fairvlm ({})\n\n{} exported by `fairvlm export` from the run `{}` (weights: `{}`).\n\n",
        if exp.model.vision.weights.is_some() { "CLIP" } else { "CLIP trained from random weights" },
        exp.method.name(),
        match tower {
            Tower::Both => "A CLIP dual encoder (`CLIPModel`)".to_string(),
            Tower::Vision => format!("The image tower (`{class}`) of a CLIP dual encoder, without its projection to the joint space"),
            Tower::Text => format!("The text tower (`{class}`) of a CLIP dual encoder, without its projection to the joint space"),
        },
        run.display(),
        checkpoint.file_name().map_or("-".into(), |f| f.to_string_lossy().into_owned()),
    );
    md.push_str(&format!(
        "## Training\n\n- Method: `{}`{}.\n- Data: {data}.\n- Optimiser: {:?}, learning rate {}, {} epochs, batch {}, seed {}.\n",
        exp.method.name(),
        if exp.method == crate::Method::Fairclip {
            format!(" (FairCLIP's Sinkhorn regulariser on `{}`, λ = {})", exp.fairclip.attribute, exp.fairclip.lambda)
        } else {
            String::new()
        },
        exp.optim.optimizer,
        exp.optim.lr,
        exp.optim.epochs,
        exp.optim.batch_size,
        exp.seed,
    ));
    match &report {
        None => md.push_str("\nThe run has no report.json: no evaluation is recorded for this model.\n"),
        Some(r) => {
            let samples = &r["samples"];
            md.push_str(&format!(
                "- Splits: {} training, {} validation, {} test subjects; the epoch kept ({}) is the best on {} AUC.\n\n## Evaluation (test split)\n\nZero-shot scores against the run's prompts, threshold {}. Overall AUC {}, accuracy {}.\n\n| attribute | group | n | AUC | TPR | FPR |\n|---|---|---|---|---|---|\n",
                samples[0], samples[1], samples[2], r["best_epoch"], r["selected_on"].as_str().unwrap_or("validation"),
                r["test"]["threshold"], pct(&r["test"]["overall"]["auc"]), pct(&r["test"]["overall"]["accuracy"]),
            ));
            let attrs = r["test"]["attributes"].as_object().cloned().unwrap_or_default();
            for (a, m) in &attrs {
                for (g, v) in m["groups"].as_object().cloned().unwrap_or_default() {
                    md.push_str(&format!("| {a} | {g} | {} | {} | {} | {} |\n", v["n"], pct(&v["auc"]), pct(&v["tpr"]), pct(&v["fpr"])));
                }
            }
            md.push_str("\n| attribute | ES-AUC | DPD | DEOdds (equalized odds) |\n|---|---|---|---|\n");
            for (a, m) in &attrs {
                md.push_str(&format!("| {a} | {} | {} | {} |\n", pct(&m["es_auc"]), pct(&m["dpd"]), pct(&m["eod"])));
            }
        }
    }
    md.push_str(LIMITS);
    Ok(md)
}

/// The model card's closing sections, shared by every export.
const LIMITS: &str = "\n## Intended use\n\nResearch on fairness methods for vision-language classification (glaucoma screening from fundus images and notes is the setting fairvlm's methods come from). Not a medical device: it has not been validated for diagnosis, and a model trained on synthetic data says nothing about patients.\n\n## Limits of the fairness evaluation\n\n- Only the attributes in the table were audited; other groups, and intersections not listed, may fare worse.\n- Small groups have wide sampling error: read a group's AUC with its n, and prefer bootstrap intervals (`fair-metrics report --bootstrap`).\n- Rates (TPR, FPR, DPD, DEOdds) depend on the threshold above; another operating point gives other gaps.\n- The test split comes from the same source as the training data: a shift in population, device or protocol is not measured here.\n";

/// How `fairvlm export` writes a LoRA run's adapters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LoraForm {
    /// Folded into the tower: one `CLIPVisionModel`.
    #[default]
    Merged,
    /// Apart: `base/` (a `CLIPVisionModel`) and `adapter/` (a peft LoRA folder on it).
    Adapter,
}

/// Writes a fairness-aware LoRA run (`run`: the folder `fairvlm lora run` or `lora developer`
/// wrote; `base`: the base it was trained from) as a folder transformers and peft read
/// ([`vlm_backbone::save_vit_classifier`]: the tower, the head as `classifier.safetensors`),
/// with a model card from the run's `audit.json`. Unl's negated base is the base written.
pub fn export_lora_run(run: &Path, base: &Path, out: &Path, form: LoraForm) -> Result<()> {
    use crate::lora;
    type B = burn::backend::Flex;
    let exp = lora::LoraExperiment::from_file_with(&run.join("lora.toml"), &[])?;
    let device = Default::default();
    let (base_model, info) = lora::load_base::<B>(&exp, base, &device)?;
    let model = lora::load_developer::<B>(run, &exp, &base_model, &device)?;
    let classes = model.classifier.weight.dims()[1];
    let projections = exp.lora.projections();
    let targets: Vec<&str> = projections.iter().map(String::as_str).collect();
    let peft = (form == LoraForm::Adapter).then(|| lora_fair::AdapterConfig::new(&exp.lora.config(), &targets, Some("base")));
    vlm_backbone::save_vit_classifier(&model, &exp.classifier(info.image_size, classes), out, peft.as_ref())?;
    let card = out.join("README.md");
    std::fs::write(&card, lora_card(run, &exp, form)).map_err(crate::checkpoint::io_err(&card))
}

/// The model card of an exported LoRA run: method, the audit of its `audit.json` where the run
/// has one, how to load it, the limits.
fn lora_card(run: &Path, exp: &crate::lora::LoraExperiment, form: LoraForm) -> String {
    let audit: Option<crate::lora::LoraAudit> = std::fs::read_to_string(run.join("audit.json")).ok().and_then(|t| serde_json::from_str(&t).ok());
    let pct = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.2}", 100.0 * x));
    let mut md = format!(
        "---\nlibrary_name: {}\ntags:\n- lora\n- fairness\n- fairvlm\n---\n\n# A ViT fine-tuned with fairness-aware LoRA ({})\n\nExported by `fairvlm export` from the run `{}`. A ViT in CLIP's layout with LoRA adapters (r {}, alpha {}) on {}, and a linear head on the pooled class token.\n\n## Loading\n\n{}\n\nThe head, which transformers has no class for, is `classifier.safetensors`: `logits = pooler_output @ classifier.weight.T + classifier.bias`.\n\n",
        if form == LoraForm::Adapter { "peft" } else { "transformers" },
        exp.method.name(),
        run.display(),
        exp.lora.r,
        exp.lora.alpha,
        exp.lora.projections().join(", "),
        match form {
            LoraForm::Merged => "The adapters are merged into the tower: `CLIPVisionModel.from_pretrained(folder)`.",
            LoraForm::Adapter =>
                "The base and the adapter are apart: `PeftModel.from_pretrained(CLIPVisionModel.from_pretrained(folder / \"base\"), folder / \"adapter\")`. For Unl the base is the one the developer trained on, with the sensitive direction already subtracted.",
        },
    );
    match audit {
        None => md.push_str("The run has no audit.json: no evaluation is recorded for this model.\n"),
        Some(a) => {
            md.push_str(&format!(
                "## Audit\n\nOn the audit split ({} images, threshold 0.5), sensitive attribute `{}`: accuracy {}, AUC {}, demographic parity ratio {}, TPR ratio {}, FPR ratio {} (ratios: min / max over groups, 1 = parity).\n\n| group | accuracy | precision | recall | FPR | selection rate |\n|---|---|---|---|---|---|\n",
                a.n,
                a.attribute.as_deref().unwrap_or("sensitive"),
                pct(Some(a.accuracy)),
                pct(a.auc),
                pct(a.dp_ratio),
                pct(a.tpr_ratio),
                pct(a.fpr_ratio),
            ));
            for (g, v) in &a.groups {
                md.push_str(&format!("| {g} | {} | {} | {} | {} | {} |\n", pct(Some(v[0])), pct(Some(v[1])), pct(Some(v[2])), pct(Some(v[3])), pct(Some(v[4]))));
            }
        }
    }
    md.push_str(LIMITS);
    md
}
