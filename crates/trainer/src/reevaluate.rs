//! Evaluating a finished run's checkpoint again (`fairvlm evaluate`).

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use fair_data::Prepared;

use crate::config::Experiment;
use crate::data::ExperimentData;
use crate::error::{Error, Result};
use crate::evaluate::report;
use crate::recipes::{self, Recipe, WithRecipe};

/// Evaluates a finished run's checkpoint (`best.safetensors`, `last.safetensors` or any file
/// with the same model) on a split (`test` or `validation`), with the run's own config and
/// tokenizer.
pub fn evaluate_run<B: AutodiffBackend>(run: &Path, checkpoint: &Path, split: &str, device: &B::Device) -> Result<fair_metrics::Report> {
    let exp = Experiment::from_file(&run.join("config.toml"))?;
    let tokenizer = fair_data::TextTokenizer::from_file(&run.join("tokenizer.json"), exp.data.context_length)?;
    let data = ExperimentData::load(&exp, Some(tokenizer))?;
    let prepared = match split {
        "test" => &data.test,
        "validation" => &data.validation,
        other => return Err(Error::Invalid(format!("split '{other}': expected test or validation"))),
    };
    struct Eval<'a, B: AutodiffBackend>(&'a Experiment, &'a ExperimentData, &'a Prepared, &'a Path, &'a B::Device);
    impl<B: AutodiffBackend> WithRecipe<B> for Eval<'_, B> {
        type Output = Result<Vec<f64>>;
        fn with<R: Recipe<B>>(self) -> Self::Output {
            let Eval(exp, data, split, checkpoint, device) = self;
            let mut recipe = R::new(exp, data, device)?;
            recipe.load_weights(checkpoint, device)?;
            Ok(recipe.predict(split, device)?.positive)
        }
    }
    let scores = recipes::dispatch::<B, _>(exp.method, Eval(&exp, &data, prepared, checkpoint, device))?;
    report(&exp, prepared, scores, exp.eval.bootstrap(exp.seed))
}

/// Writes the CLIP of a finished CLIP or FairCLIP run (`run`, its weights `checkpoint`) as a
/// Hugging Face `CLIPModel` folder `out` (`config.json`, `model.safetensors`) with the run's
/// `tokenizer.json`: what `[model.vision]` and `[model.text]` can start another run from, and
/// what transformers' `CLIPModel.from_pretrained` reads (docs/weights.md).
pub fn export_clip_run(run: &Path, checkpoint: &Path, out: &Path) -> Result<()> {
    let exp = Experiment::from_file(&run.join("config.toml"))?;
    if !matches!(exp.method, crate::Method::Clip | crate::Method::Fairclip) {
        return Err(Error::Invalid(format!("{}: method {:?} is not a plain CLIP (clip or fairclip): it has no CLIPModel form", run.display(), exp.method)));
    }
    let tokenizer_path = run.join("tokenizer.json");
    let tokenizer = fair_data::TextTokenizer::from_file(&tokenizer_path, exp.data.context_length)?;
    let mut cfg = exp.model.clip_config(tokenizer.vocab_size(), tokenizer.context_length()).map_err(Error::Invalid)?;
    crate::towers::with_tokenizer_ids(&mut cfg.text, &tokenizer);
    let device = Default::default();
    let model = crate::checkpoint::load_safetensors(cfg.init::<burn::backend::Flex>(&device), checkpoint)?;
    vlm_backbone::save_clip(&model, &cfg, out)?;
    std::fs::copy(&tokenizer_path, out.join("tokenizer.json")).map_err(crate::checkpoint::io_err(&tokenizer_path))?;
    let card = out.join("README.md");
    std::fs::write(&card, model_card(run, checkpoint, &exp)?).map_err(crate::checkpoint::io_err(&card))
}

/// The model card of an exported run (the folder's README.md): what was trained on which data
/// with which method, its test metrics per group from the run's report.json, its intended use
/// and the limits of its fairness evaluation.
pub fn model_card(run: &Path, checkpoint: &Path, exp: &Experiment) -> Result<String> {
    let report_path = run.join("report.json");
    let report: Option<serde_json::Value> = std::fs::read_to_string(&report_path).ok().and_then(|t| serde_json::from_str(&t).ok());
    let pct = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{:.2}", 100.0 * x));
    let data = match exp.data.source {
        crate::config::DataSource::Synthetic => "the built-in synthetic FairVLMed-like benchmark (docs/datasets.md in the fairvlm repository), not patient data".to_string(),
        _ => format!("{:?} data from `{}`", exp.data.source, exp.data.root.as_ref().map_or("-".into(), |r| r.display().to_string())),
    };
    let mut md = format!(
        "---\nlibrary_name: transformers\ntags:\n- clip\n- fairness\n- fairvlm\n---\n\n# {} fine-tuned with fairvlm ({})\n\nA CLIP dual encoder (`CLIPModel`) exported by `fairvlm export` from the run `{}` (weights: `{}`).\n\n",
        if exp.model.vision.weights.is_some() { "CLIP" } else { "CLIP trained from random weights" },
        exp.method.name(),
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
    md.push_str(
        "\n## Intended use\n\nResearch on fairness methods for vision-language classification (glaucoma screening from fundus images and notes is the setting fairvlm's methods come from). Not a medical device: it has not been validated for diagnosis, and a model trained on synthetic data says nothing about patients.\n\n## Limits of the fairness evaluation\n\n- Only the attributes in the table were audited; other groups, and intersections not listed, may fare worse.\n- Small groups have wide sampling error: read a group's AUC with its n, and prefer bootstrap intervals (`fair-metrics report --bootstrap`).\n- Rates (TPR, FPR, DPD, DEOdds) depend on the threshold above; another operating point gives other gaps.\n- The test split comes from the same source as the training data: a shift in population, device or protocol is not measured here.\n",
    );
    Ok(md)
}
