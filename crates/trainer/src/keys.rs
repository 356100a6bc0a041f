//! Every key of an experiment config and what it means: the one source of `fairvlm config
//! print`'s comments and of docs/config.md (a test checks that both are complete and that the
//! document is current).

use crate::config::{Experiment, Method, OptimizerKind};

/// A key (`section.key`; `[]` marks an array of tables) and what it means.
pub struct Key {
    /// `section.key`, as in `--set`.
    pub key: &'static str,
    /// What it sets.
    pub meaning: &'static str,
}

const fn k(key: &'static str, meaning: &'static str) -> Key {
    Key { key, meaning }
}

/// The meaning of a key, if it is one.
pub fn meaning(key: &str) -> Option<&'static str> {
    KEYS.iter().find(|k| k.key == key).map(|k| k.meaning)
}

/// The default experiment of `method`: the defaults, with what the method requires where the
/// defaults do not give it (the multimodal methods train with AdamW, OGM-GE on the concat head).
///
/// ```
/// use trainer::{defaults_for, Method, OptimizerKind};
/// assert_eq!(defaults_for(Method::Multifair).optim.optimizer, OptimizerKind::Adamw);
/// ```
pub fn defaults_for(method: Method) -> Experiment {
    let mut exp = Experiment { method, ..Experiment::default() };
    if method.is_multimodal() {
        exp.optim.optimizer = OptimizerKind::Adamw;
    }
    if method == Method::OgmGe {
        exp.multimodal.fusion = vlm_backbone::Fusion::Concat;
    }
    exp
}

/// The default experiment of `method` ([`defaults_for`]) as a complete TOML: every key with its
/// default value, each preceded by its meaning; keys without a default (optional settings) are
/// written commented out. Read back, it is that experiment.
///
/// ```
/// use trainer::{config_toml, defaults_for, Experiment, Method};
/// let text = config_toml(Method::Fairclip);
/// assert!(text.contains("# Seed of the data order"));
/// let back = Experiment::from_toml_str(&text, "printed").unwrap();
/// assert_eq!(back, defaults_for(Method::Fairclip));
/// ```
pub fn config_toml(method: Method) -> String {
    let defaults = toml::Value::try_from(defaults_for(method)).unwrap_or(toml::Value::Table(Default::default()));
    let mut out = format!("# A fairvlm experiment: every key with its default (method \"{}\"). docs/config.md lists them.\n", method.name());
    write_table("", Some(&defaults), &mut out);
    out
}

/// Writes the keys directly in `table` with their values in `value` (commented out where unset,
/// or all of them when the table itself is unset), then its sub-tables, each under its header.
/// TOML needs a table's own keys before any sub-table's header, hence that order.
fn write_table(table: &str, value: Option<&toml::Value>, out: &mut String) {
    let children: Vec<&str> = KEYS.iter().map(|k| k.key).filter(|k| parent(k) == table).collect();
    for key in children.iter().filter(|k| !is_table(k)) {
        let name = key.rsplit('.').next().unwrap_or(key);
        out.push_str(&comment(meaning(key).unwrap_or("")));
        match value.and_then(|v| v.get(name)) {
            Some(v) => out.push_str(&format!("{name} = {v}\n")),
            None => out.push_str(&format!("# {name} = ...\n")),
        }
    }
    for sub in children.iter().filter(|k| is_table(k)) {
        let about = comment(meaning(sub).unwrap_or(""));
        match sub.strip_suffix("[]") {
            Some(array) => {
                let elements = value.and_then(|v| v.get(array.rsplit('.').next().unwrap_or(array))).and_then(toml::Value::as_array).filter(|a| !a.is_empty());
                match elements {
                    Some(elements) => {
                        for e in elements {
                            out.push_str(&format!("\n{about}[[{array}]]\n"));
                            write_table(sub, Some(e), out);
                        }
                    }
                    None => {
                        out.push_str(&format!("\n{about}# [[{array}]]\n"));
                        write_table(sub, None, out);
                    }
                }
            }
            None => {
                let v = value.and_then(|v| v.get(sub.rsplit('.').next().unwrap_or(sub)));
                out.push_str(&format!("\n{about}{}[{sub}]\n", if v.is_some() { "" } else { "# " }));
                write_table(sub, v, out);
            }
        }
    }
}

/// The section a key is in ("" for the top level).
fn parent(key: &str) -> &str {
    key.rsplit_once('.').map_or("", |(p, _)| p)
}

/// Whether a key names a table (some key lies below it).
fn is_table(key: &str) -> bool {
    KEYS.iter().any(|k| k.key.strip_prefix(key).is_some_and(|rest| rest.starts_with('.')))
}

/// `# meaning` lines (none for an empty meaning).
fn comment(meaning: &str) -> String {
    if meaning.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let mut line = String::from("#");
    for word in meaning.split_whitespace() {
        if line.len() + word.len() > 98 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
    out
}

/// docs/config.md: every key, its default and its meaning, by section.
pub fn config_markdown() -> String {
    let defaults: toml::Value = toml::Value::try_from(Experiment::default()).unwrap_or(toml::Value::Table(Default::default()));
    let mut md = String::from(
        "# Experiment configs\n\nEvery key of a `fairvlm train` config, its default and its meaning. `fairvlm config print [--method M]` prints the same as a commented TOML that `fairvlm train` reads back as the defaults; `fairvlm config check FILE` validates a config. Generated from `crates/trainer/src/keys.rs` (`fairvlm config print --markdown`); a test fails when this file is stale.\n",
    );
    let mut section = "\u{0}".to_string();
    for key in KEYS {
        if is_table(key.key) {
            continue;
        }
        let p = parent(key.key);
        if p != section {
            section = p.to_string();
            let title = if section.is_empty() { "top level".to_string() } else { format!("`[{}]`", section.replace("[]", "")) };
            md.push_str(&format!("\n## {title}\n\n"));
            if let Some(m) = meaning(&section).filter(|m| !m.is_empty()) {
                md.push_str(&format!("{m}\n\n"));
            }
            md.push_str("| key | default | meaning |\n|---|---|---|\n");
        }
        let value = lookup(&defaults, key.key).map_or("(unset)".to_string(), |v| format!("`{}`", v.to_string().replace('|', "\\|")));
        md.push_str(&format!("| `{}` | {value} | {} |\n", key.key.rsplit('.').next().unwrap_or(key.key), key.meaning.replace('|', "\\|")));
    }
    md
}

/// The default of a dotted key (`a.b[].c` reads the first element of `a.b`).
fn lookup<'a>(v: &'a toml::Value, key: &str) -> Option<&'a toml::Value> {
    key.split('.').try_fold(v, |v, part| match part.strip_suffix("[]") {
        Some(name) => v.get(name)?.as_array()?.first(),
        None => v.get(part),
    })
}

/// Every key. Sections are listed before their keys.
pub const KEYS: &[Key] = &[
    k("seed", "Seed of the data order, the initialisation and the synthetic data (`Experiment::synthetic`)."),
    k("method", "The method: `clip`, `fairclip`, `fair-moe`, `fo-moe`, `late-fusion`, `ogm-ge` or `multifair` (docs/methods.md)."),
    k("data", "Where the data come from and how they are read."),
    k("data.source", "`synthetic`, `fairvlmed`, `fairvision` or `folder`."),
    k("data.root", "The dataset folder (every source but `synthetic`); relative paths are relative to the config file."),
    k("data.summary_csv", "A summary CSV whose text replaces the npz notes (FairCLIP trains on the GPT-4 summaries: `gpt-4_summarized_notes.csv`)."),
    k("data.filter_unknown", "Drop samples with an unknown (-1) attribute; unset does what FairCLIP does (drop them from validation and test only)."),
    k("data.on_error", "Unreadable files: `fail` (default) or `skip` (counted and reported)."),
    k("data.vocab_size", "Vocabulary of a tokenizer trained here (without `model.text.tokenizer`)."),
    k("data.context_length", "Tokens per text (CLIP: 77)."),
    k("data.note_chars", "FairCLIP truncates notes to this many characters before tokenising."),
    k("data.synthetic", "The synthetic benchmark (source `synthetic`): `fair_data::SynthConfig`'s fields, with `[[data.synthetic.effects]]` entries for `fair_data::GroupEffect`; unset fields are the default benchmark's."),
    k("data.synthetic.seed", "Seed of everything."),
    k("data.synthetic.image_size", "Images are `image_size x image_size`."),
    k("data.synthetic.sizes", "Subjects per split: training, validation, test."),
    k("data.synthetic.prevalence", "Probability of glaucoma before group shifts (FairVLMed: about one half)."),
    k("data.synthetic.text_signal", "Probability that a note states the finding (else it is uninformative)."),
    k("data.synthetic.demographic_leakage", "Probability that a note mentions the patient's age, race and gender."),
    k("data.synthetic.effects[]", "Group effects."),
    k("data.synthetic.effects[].attribute", "The attribute (`race`, `gender`, `ethnicity`, `language`)."),
    k("data.synthetic.effects[].value", "The group's code."),
    k("data.synthetic.effects[].signal", "Multiplies the glaucoma signal in the image (the cup enlargement): below 1, the disease is harder to see in this group."),
    k("data.synthetic.effects[].prevalence_shift", "Added to the probability of glaucoma in this group."),
    k("data.synthetic.effects[].brightness", "Added to pixel intensities (0-255 scale)."),
    k("data.synthetic.effects[].contrast", "Multiplies the contrast around the image mean."),
    k("data.synthetic.effects[].blur", "Passes of a 3x3 box blur."),
    k("data.synthetic.effects[].label_noise", "Probability that the recorded label is flipped."),
    k("data.synthetic.effects[].note_signal", "Multiplies the probability that this group's notes state the finding: below 1, the text is less informative for the group (a fast but group-biased modality)."),
    k("data.synthetic.effects[].sign", "How glaucoma shows in this group's images: the cup enlarges (every group by default) or the neuroretinal rim pales while the cup keeps its healthy size. A group whose sign differs is the setting that expert specialisation (Fair-MoE) is meant for."),
    k("data.synthetic.shortcut", "A spurious shortcut (none by default)."),
    k("data.synthetic.shortcut.attribute", "The attribute (`race`, `gender`, `ethnicity`, `language`)."),
    k("data.synthetic.shortcut.value", "The group's code."),
    k("data.synthetic.shortcut.agreement", "Fraction of the group's training and validation subjects whose artefact agrees with their diagnosis (0.5: no shortcut, 1: a perfect one)."),
    k("data.synthetic.shortcut.modality", "Where the artefact shows."),
    k("data.synthetic.test_oversample", "Extra test subjects for small groups (none by default)."),
    k("data.synthetic.test_oversample.attribute", "The attribute whose groups are filled up (`race`, `gender`, `ethnicity`, `language`)."),
    k("data.synthetic.test_oversample.min_per_group", "Test subjects wanted in each known group."),
    k("data.oct", "The synthetic OCT volumes (`multimodal.pairing = \"oct\"` with source `synthetic`)."),
    k("data.oct.depth", "B-scans per volume."),
    k("data.oct.size", "Side of a B-scan."),
    k("data.oct.signal", "Fraction of the nerve-fibre layer lost in glaucoma."),
    k("data.oct.noise", "Standard deviation of the speckle noise (0-255 scale)."),
    k("data.folder", "The columns of a generic dataset (source `folder`): label, classes, text, split, attributes, value order, missing-value tokens."),
    k("data.folder.metadata", "The metadata file, relative to the root. Unset: `metadata.csv` or `metadata.jsonl` in the root (with a split column), else one in each split folder (`train/`, `validation/`, `test/`)."),
    k("data.folder.file_column", "The column of image paths, relative to the metadata file's folder."),
    k("data.folder.label", "The label column."),
    k("data.folder.classes", "The label values: the negative class, then the positive one."),
    k("data.folder.text", "The text column (clinical note, caption); unset: no text."),
    k("data.folder.split_column", "The split column (values `train`/`training`, `validation`/`val`/`valid`, `test`/`testing`), read when the metadata is one file."),
    k("data.folder.attributes", "The sensitive-attribute columns."),
    k("data.folder.order", "An attribute's values in the order reports list them (`[data.folder.order]`); any other value is an error. Unset: the values in sorted order."),
    k("data.folder.missing", "Attribute cells that mean \"unknown\" (compared after trimming, ignoring case)."),
    k("data.pipeline", "The streaming input pipeline: decoding threads, batches read ahead, cache size."),
    k("data.pipeline.workers", "Decoding threads (0: one per core, at most 8)."),
    k("data.pipeline.prefetch", "Batches decoded ahead of the one training uses (at least one per worker: each worker decodes a whole batch)."),
    k("data.pipeline.cache_mib", "Preprocessed images kept in memory, in MiB (0: no cache, every epoch decodes again)."),
    k("data.limits", "Caps on what a data file may make the readers allocate (image pixels, array bytes, compression ratio)."),
    k("data.limits.max_pixels", "Largest image accepted, width x height, in pixels."),
    k("data.limits.max_array_bytes", "Largest array (npz entry or `.npy` file) accepted, in bytes after decompression."),
    k("data.limits.max_ratio", "Largest decompressed-to-compressed ratio of an npz entry (deflate's own maximum is about 1,032)."),
    k("model", "Model sizes."),
    k("model.preset", "Starting sizes (default `small`)."),
    k("model.image_size", "Input side in pixels."),
    k("model.patch_size", "Patch side."),
    k("model.vision_width", "Image tower width."),
    k("model.vision_layers", "Image tower layers."),
    k("model.vision_heads", "Image tower heads."),
    k("model.text_width", "Text tower width."),
    k("model.text_layers", "Text tower layers."),
    k("model.text_heads", "Text tower heads."),
    k("model.projection_dim", "Joint embedding width."),
    k("model.vision", "`[model.vision]`: a pretrained image tower."),
    k("model.vision.weights", "A Hugging Face checkpoint folder (`config.json` + `model.safetensors`: CLIPModel, CLIPVisionModel or ViTModel) whose image tower replaces the preset's; its sizes rule."),
    k("model.text", "`[model.text]`: a pretrained text tower and its tokenizer."),
    k("model.text.weights", "A Hugging Face checkpoint folder (CLIPModel, CLIPTextModel, or BertModel such as all-MiniLM-L6-v2) whose text tower replaces the preset's; its sizes rule."),
    k("model.text.tokenizer", "A `tokenizer.json`; unset: the one in `weights`, else a byte-level BPE tokenizer trained on the training notes. The tokenizer used is saved in the run folder."),
    k("model.text.pretrained", "`false`: the checkpoint's architecture and tokenizer with random weights, the control that shows what pretraining brings. Default `true`."),
    k("optim", "Optimiser and schedule."),
    k("optim.optimizer", "Adam, AdamW or SGD."),
    k("optim.lr", "Learning rate."),
    k("optim.betas", "Adam's β₁, β₂."),
    k("optim.eps", "Adam's ε."),
    k("optim.weight_decay", "Weight decay."),
    k("optim.momentum", "SGD's momentum (0.9); the other optimisers ignore it."),
    k("optim.batch_size", "Samples per step."),
    k("optim.epochs", "Passes over the training split."),
    k("optim.warmup_steps", "Linear warm-up of the learning rate over this many steps (0: none, as the papers)."),
    k("optim.text_lr", "Learning rate of the text tower (CLIP methods), for a pretrained text encoder fine-tuned beside an image tower trained from scratch; unset: `lr`. Warm-up scales both."),
    k("optim.precision", "The float type of the towers' matrix products: `f32`, or mixed precision with f32 weights and optimiser state, `bf16` or `f16` (with dynamic loss scaling). For GPUs; the CPU backend computes half products through f32 and gains nothing."),
    k("fairclip", "FairCLIP's regulariser (method `fairclip`)."),
    k("fairclip.attribute", "The attribute whose groups are matched."),
    k("fairclip.lambda", "Weight λ of the regulariser (the paper's text says 1e-7)."),
    k("fairclip.blur", "Sinkhorn blur σ."),
    k("fairclip.scaling", "geomloss ε-scaling ratio."),
    k("fairclip.group_batch_size", "Samples per group batch."),
    k("fairclip.variant", "Official code or paper."),
    k("eval", "Evaluation and model selection."),
    k("eval.select_on", "Model selection split."),
    k("eval.prompts", "Zero-shot prompts of class 0 and class 1."),
    k("eval.bootstrap", "Bootstrap replicates for the intervals of the final report (0: none)."),
    k("eval.threshold", "Threshold of the hard predictions."),
    k("eval.batch_size", "Samples per inference batch."),
    k("moe", "FO-MoE layers (methods `fair-moe`, `fo-moe`)."),
    k("moe.experts", "Token-MoE experts."),
    k("moe.top_k", "Experts per token."),
    k("moe.capacity", "Capacity rule."),
    k("moe.capacity_rate", "Capacity rate C (rules `code` and `tokens`)."),
    k("moe.capacity_reference", "Token count of the code's rule."),
    k("moe.subtract_input", "The code's `out − x`."),
    k("moe.renormalize", "Renormalise kept routing weights per token."),
    k("moe.feature_top_k", "Feature-MoE top-k (the paper); unset: dense softmax (the code)."),
    k("moe.image_token", "Token MoE in the image tower."),
    k("moe.text_token", "Token MoE in the text tower."),
    k("moe.image_feature", "Feature MoE after the image projection."),
    k("moe.text_feature", "Feature MoE after the text projection."),
    k("fol", "The Fairness-Oriented Loss (method `fair-moe`)."),
    k("fol.form", "Formula."),
    k("fol.lambda_moe", "λ_moe of the code's form (1e-4)."),
    k("fol.image_token", "F_EI: the image token MoE's term."),
    k("fol.text_token", "F_ET: the text token MoE's term."),
    k("fol.image_feature", "F_FI: the image feature MoE's term."),
    k("fol.text_feature", "F_FT: the text feature MoE's term."),
    k("fol.distance", "The Sinkhorn distance term (FairCLIP's, weighted by `fairclip.lambda`)."),
    k("multimodal", "MultiFair's multimodal classifier (methods `late-fusion`, `ogm-ge`, `multifair`)."),
    k("multimodal.pairing", "The second modality."),
    k("multimodal.oct_slices", "B-scans per volume (10)."),
    k("multimodal.oct_size", "Side of a B-scan fed to the slice ViT (the code: 224)."),
    k("multimodal.oct_layers", "Layers of the slice aggregator (2)."),
    k("multimodal.oct_heads", "Its heads (4)."),
    k("multimodal.attribute", "The attribute of the group-level modulation (MultiFair: `gender`)."),
    k("multimodal.proj_dim", "Fusion width `P` (256)."),
    k("multimodal.fusion", "Fusion."),
    k("multimodal.fusion_layers", "Fusion transformer layers (3)."),
    k("multimodal.fusion_heads", "Fusion heads (8)."),
    k("multimodal.dropout", "Dropout (0.1)."),
    k("multimodal.head_lr", "Learning rate of the auxiliary heads' AdamW (1e-5)."),
    k("multimodal.head_weight_decay", "Their weight decay (3e-3)."),
    k("multimodal.grad_clip", "Global gradient-norm clip of the model, every method (0.8); 0 turns it off."),
    k("ogm", "OGM-GE's modulation (method `ogm-ge`)."),
    k("ogm.alpha", "α of `k = 1 − tanh(α·ρ)` (the code's default 0.1; 0.8 for CREMA-D)."),
    k("ogm.gaussian_enhancement", "Add the Gaussian enhancement noise (OGM-GE); `false` is plain OGM."),
    k("ogm.start_epoch", "First epoch (1-based, inclusive) with modulation."),
    k("ogm.end_epoch", "Last epoch (inclusive) with modulation."),
    k("ogm.conv_only", "Modulate only 4-D kernels, as the official code modulates only the ResNets' convolutions; here the patch embeddings (`OgmGe::encoder_set`). `false` modulates every parameter of the encoders."),
    k("multifair", "MultiFair's modulation (method `multifair`)."),
    k("multifair.mode", "Reading."),
    k("multifair.rho", "ρ, the scale of the modality factors (1.2)."),
    k("multifair.lambda_gm", "λ_gm, the direction term's weight (0.15; `faithful` only)."),
    k("multifair.fairness_coeff", "The fairness term's weight (0.5; `faithful` only)."),
    k("multifair.threshold", "τ, the trigger threshold on the batch's group AUC gap (0.07)."),
    k("multifair.strength", "fm, the strength of the group factors (0.5)."),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every dotted key of a TOML value (`[]` for an array of tables).
    fn keys_of(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let Some(t) = v.as_table() {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                match v {
                    toml::Value::Table(_) => keys_of(v, &key, out),
                    toml::Value::Array(a) if a.first().is_some_and(toml::Value::is_table) => {
                        for e in a {
                            keys_of(e, &format!("{key}[]"), out);
                        }
                    }
                    _ => out.push(key),
                }
            }
        }
    }

    #[test]
    fn every_key_of_every_default_has_a_meaning() {
        for m in Method::ALL {
            let mut found = Vec::new();
            keys_of(&toml::Value::try_from(defaults_for(m)).unwrap(), "", &mut found);
            let missing: Vec<&String> = found.iter().filter(|k| meaning(k).is_none()).collect();
            assert!(missing.is_empty(), "{}: keys without a meaning in KEYS: {missing:?}", m.name());
        }
        assert!(KEYS.iter().all(|k| !k.meaning.trim().is_empty()), "a key without a meaning");
        let mut seen = std::collections::HashSet::new();
        assert!(KEYS.iter().all(|k| seen.insert(k.key)), "a key listed twice");
    }

    #[test]
    fn every_listed_key_is_read_by_the_config() {
        // A key that `--set` refuses is a stale entry. Sections are checked through their keys.
        let exp = Experiment::default();
        for key in KEYS.iter().map(|k| k.key).filter(|k| !is_table(k) && !k.contains("[]") && !k.ends_with(".order")) {
            let value = lookup(&toml::Value::try_from(&exp).unwrap(), key).cloned();
            if let Some(v) = value {
                let text = crate::config::apply_overrides("", &[format!("{key}={v}")]).unwrap_or_else(|e| panic!("{key}: {e}"));
                Experiment::parse(&text, "test").unwrap_or_else(|e| panic!("{key} = {v}: {e}"));
            }
        }
    }

    #[test]
    fn the_printed_config_reads_back_as_the_defaults() {
        for m in Method::ALL {
            let text = config_toml(m);
            let back = Experiment::from_toml_str(&text, "printed").unwrap_or_else(|e| panic!("{}: {e}\n{text}", m.name()));
            assert_eq!(back, defaults_for(m), "{}", m.name());
            // Optional keys are there, commented out, with their meaning: every key is written.
            assert!(text.contains("# text_lr = ...") && text.contains("# [data.synthetic.shortcut]"), "{text}");
            let mut section = String::new();
            let mut written = std::collections::HashSet::new();
            for line in text.lines().map(|l| l.trim_start_matches("# ")) {
                if let Some(h) = line.strip_prefix("[[").and_then(|h| h.strip_suffix("]]")) {
                    section = format!("{h}[]");
                } else if let Some(h) = line.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
                    section = h.to_string();
                } else if let Some((name, _)) = line.split_once(" = ") {
                    written.insert(if section.is_empty() { name.to_string() } else { format!("{section}.{name}") });
                }
            }
            let missing: Vec<&str> = KEYS.iter().map(|k| k.key).filter(|k| !is_table(k) && !written.contains(*k)).collect();
            assert!(missing.is_empty(), "{}: keys the printed config leaves out: {missing:?}", m.name());
        }
    }

    #[test]
    fn docs_config_md_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/config.md");
        let doc = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(doc == config_markdown(), "docs/config.md is stale: regenerate it with `cargo run -p trainer -- config print --markdown > docs/config.md`");
    }
}
