//! The training pipeline end to end on the CPU backend with a tiny model: losses go down,
//! resume equals an uninterrupted run, reports are written, bad input is refused.

use std::path::PathBuf;

use fair_data::GroupSampler;
use trainer::{train, Error, Experiment, Method};

mod common;
use common::{quiet, scratch, tiny, B};

#[test]
fn clip_training_lowers_the_loss_and_writes_reports() {
    let out = scratch("clip");
    let outcome = train::<B>(&tiny("clip", 4), &quiet(out.clone()), &Default::default()).expect("train");
    let h = &outcome.history;
    assert_eq!(h.len(), 4);
    assert!(h[3].loss < h[0].loss, "loss {} -> {}", h[0].loss, h[3].loss);
    let report = outcome.report.expect("final report");
    assert_eq!(report.test.attributes.len(), 4);
    for f in ["report.json", "report.md", "report.html", "predictions.csv", "log.jsonl", "best.safetensors", "last.safetensors", "config.toml", "tokenizer.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let html = std::fs::read_to_string(out.join("report.html")).expect("html");
    assert!(html.contains("<svg") && html.contains("ROC curves") && !html.contains("<script"));
    let log = std::fs::read_to_string(out.join("log.jsonl")).expect("log");
    assert_eq!(log.lines().count(), 4);
    let line: serde_json::Value = serde_json::from_str(log.lines().next().expect("line")).expect("json line");
    assert!(line["validation"]["attributes"]["race"]["es_auc"].is_number());
    // The report's AUC is the fair-metrics AUC of predictions.csv.
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("json")).expect("parse");
    assert_eq!(json["test"]["overall"]["auc"].as_f64(), report.test.overall.auc);
    // The synthetic benchmark's oracle, per group, beside the model's AUCs.
    let oracle = report.oracle.as_ref().expect("the synthetic benchmark reports its oracle");
    // (A group of the tiny test split with one class has no AUC.)
    assert!(oracle["race"]["White"].is_some_and(|a| a > 0.9) && oracle["race"].values().all(|a| a.is_none_or(|a| a > 0.5)), "{oracle:?}");
    assert!(json["oracle"]["race"]["White"].is_number());
    // `eval` of the best checkpoint reproduces the final report.
    let again = trainer::evaluate_run::<B>(&out, &out.join("best.safetensors"), "test", &Default::default()).expect("eval");
    assert_eq!(again.overall.auc, report.test.overall.auc);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn fairclip_training_runs_both_variants() {
    for variant in ["official", "aligned"] {
        let mut exp = tiny("fairclip", 3);
        exp.fairclip.variant = if variant == "official" { fair_losses::FairClipVariant::Official } else { fair_losses::FairClipVariant::Aligned };
        let out = scratch(&format!("fairclip-{variant}"));
        let outcome = train::<B>(&exp, &quiet(out.clone()), &Default::default()).expect("train");
        let h = &outcome.history;
        assert!(h.iter().all(|l| l.fair_loss.is_some_and(f64::is_finite)), "{variant}: regulariser missing");
        assert!(h[2].clip_loss < h[0].clip_loss, "{variant}: {} -> {}", h[0].clip_loss, h[2].clip_loss);
        std::fs::remove_dir_all(&out).ok();
    }
}

#[test]
fn resume_after_a_kill_reaches_the_same_metrics() {
    for method in ["clip", "fairclip", "fo-moe", "fair-moe"] {
        let exp = tiny(method, 3);
        let whole = scratch(&format!("whole-{method}"));
        let full = train::<B>(&exp, &quiet(whole.clone()), &Default::default()).expect("uninterrupted");

        let parts = scratch(&format!("parts-{method}"));
        let mut opts = quiet(parts.clone());
        opts.stop_after = Some(1); // "killed" after epoch 1
        let first = train::<B>(&exp, &opts, &Default::default()).expect("first part");
        assert_eq!(first.history.len(), 1);
        assert!(first.report.is_none());
        opts.stop_after = Some(1);
        opts.resume = true;
        train::<B>(&exp, &opts, &Default::default()).expect("second part");
        opts.stop_after = None;
        let resumed = train::<B>(&exp, &opts, &Default::default()).expect("resumed");

        assert_eq!(resumed.history.len(), 3);
        for (a, b) in full.history.iter().zip(&resumed.history) {
            assert_eq!(a.loss, b.loss, "{method} epoch {}", a.epoch);
            assert_eq!(a.validation, b.validation, "{method} epoch {}", a.epoch);
            assert_eq!(a.test, b.test, "{method} epoch {}", a.epoch);
        }
        let (r1, r2) = (full.report.expect("r1"), resumed.report.expect("r2"));
        assert_eq!(r1.best_epoch, r2.best_epoch);
        assert_eq!(r1.test.overall.auc, r2.test.overall.auc);
        assert_eq!(r1.test.attributes["race"].es_auc, r2.test.attributes["race"].es_auc);
        std::fs::remove_dir_all(&whole).ok();
        std::fs::remove_dir_all(&parts).ok();
    }
}

#[test]
fn a_run_folder_is_never_overwritten_nor_resumed_with_another_config() {
    let out = scratch("otherconfig");
    let mut opts = quiet(out.clone());
    opts.stop_after = Some(1);
    train::<B>(&tiny("clip", 2), &opts, &Default::default()).expect("first");
    let err = train::<B>(&tiny("clip", 2), &opts, &Default::default()).expect_err("a second run into the same folder");
    assert!(err.to_string().contains("--resume"), "{err}");
    opts.resume = true;
    let mut other = tiny("clip", 2);
    other.optim.lr = 1e-3;
    let err = train::<B>(&other, &opts, &Default::default()).expect_err("different config");
    assert!(err.to_string().contains("different config"), "{err}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        ("[optim]\nlr = -1.0\n", "optim.lr"),
        ("[optim]\nlearning_rate = 1e-3\n", "learning_rate"),
        ("method = \"moe\"\n", "method"),
        ("method = \"fairclip\"\n[fairclip]\nattribute = \"height\"\n", "fairclip.attribute"),
        ("method = \"fair-moe\"\n[moe]\ntop_k = 20\n", "moe.top_k"),
        ("method = \"ogm-ge\"\n[optim]\noptimizer = \"adamw\"\n[multimodal]\nfusion = \"transformer\"\n", "multimodal.fusion"),
        ("[model]\nimage_size = 60\npatch_size = 16\n", "model.patch_size"),
        ("[data]\nsource = \"fairvlmed\"\n", "data.root"),
        ("[optim]\nbetas = [0.9, 1.5]\n", "optim.betas[1]"),
        ("[data.synthetic]\ntext_signal = 2.0\n", "data.synthetic.text_signal"),
        ("[[data.synthetic.effects]]\nattribute = \"race\"\nvalue = 1\nsignall = 0.5\n", "signall"),
        ("[[data.synthetic.effects]]\nattribute = \"height\"\nvalue = 1\n", "data.synthetic.effects[0].attribute"),
        ("[data.synthetic]\nsizes = [10, 0, 5]\n", "data.synthetic.sizes[1]"),
        // Issue 16: these divided by zero, trained a constant model or aborted on allocation.
        ("[model]\nvision_heads = 0\n", "model.vision_heads = 0"),
        ("[model]\ntext_heads = 0\n", "model.text_heads = 0"),
        ("[model]\nvision_width = 0\n", "model.vision_width = 0"),
        ("[model]\nprojection_dim = 0\n", "model.projection_dim = 0"),
        ("[model]\nimage_size = 1000000\npatch_size = 1\n", "model.image_size = 1000000"),
        ("[data]\ncontext_length = 100000000\n", "data.context_length"),
        ("[data]\nvocab_size = 100000000000\n", "data.vocab_size"),
    ];
    for (text, key) in cases {
        let err = Experiment::from_toml_str(text, "exp.toml").expect_err(text);
        let msg = err.to_string();
        assert!(msg.starts_with("exp.toml") && msg.contains(key), "{text:?}: {msg}");
    }
    // A method's section is checked only when that method runs.
    assert!(Experiment::from_toml_str("method = \"clip\"\n[fairclip]\nattribute = \"height\"\n[moe]\ntop_k = 20\n", "exp.toml").is_ok());
    // A key that moved names its new place.
    let err = Experiment::from_toml_str("[data]\ntokenizer = \"t.json\"\n", "exp.toml").expect_err("moved key");
    assert!(err.to_string().contains("model.text.tokenizer"), "{err}");
}

#[test]
fn defaults_are_the_papers() {
    let exp = Experiment::default();
    assert_eq!(exp.method, Method::Clip);
    assert_eq!((exp.optim.lr, exp.optim.betas, exp.optim.eps, exp.optim.weight_decay), (1e-5, [0.1, 0.1], 1e-6, 6e-5));
    assert_eq!((exp.optim.batch_size, exp.optim.epochs), (32, 10));
    assert_eq!((exp.fairclip.lambda, exp.fairclip.blur, exp.fairclip.group_batch_size), (1e-6, 1e-6, 32));
    assert_eq!(exp.eval.prompts, ["A photo of non-glaucoma".to_string(), "A photo of glaucoma".to_string()]);
    // Round trip through the TOML saved in run folders.
    assert_eq!(Experiment::from_toml_str(&exp.to_toml(), "saved").expect("round trip"), exp);
}

#[test]
fn shipped_configs_parse() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut n = 0;
    for entry in std::fs::read_dir(&root).expect("configs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "toml") {
            // lora-*.toml are `fairvlm lora` experiments, the others `fairvlm train` ones.
            if path.file_name().is_some_and(|f| f.to_string_lossy().starts_with("lora-")) {
                trainer::lora::LoraExperiment::from_file_with(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
            } else {
                Experiment::from_file(&path).unwrap_or_else(|e| panic!("{e}"));
            }
            n += 1;
        }
    }
    assert!(n >= 2);
}

#[test]
fn missing_dataset_folder_is_an_error_naming_it() {
    let mut exp = tiny("clip", 1);
    exp.data.source = trainer::DataSource::Fairvlmed;
    exp.data.root = Some(PathBuf::from("/nonexistent/fairvlmed"));
    let out = scratch("missing");
    let err = train::<B>(&exp, &quiet(out.clone()), &Default::default()).expect_err("no data");
    assert!(matches!(err, Error::Data(_)) && err.to_string().contains("/nonexistent/fairvlmed"), "{err}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn group_batches_draw_only_their_group_and_cover_it() {
    let exp = tiny("fairclip", 1);
    let data = trainer::ExperimentData::load(&exp, None).expect("data");
    let race = data.train.attributes.column("race").expect("race").codes.clone();
    let mut sampler = GroupSampler::new(&race, exp.fairclip.group_batch_size, exp.seed).expect("sampler");
    let codes = sampler.codes();
    assert_eq!(codes, vec![0, 1, 2]);
    for (g, code) in codes.iter().enumerate() {
        let members: Vec<usize> = (0..data.train.len()).filter(|&i| race[i] == *code).collect();
        let size = exp.fairclip.group_batch_size.min(members.len());
        let per_pass = members.len() / size;
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..per_pass {
            let b = sampler.next(g);
            assert_eq!(b.len(), size);
            assert!(b.iter().all(|i| members.contains(i)));
            seen.extend(b);
        }
        assert_eq!(seen.len(), per_pass * size, "no repeats within a pass");
    }
    // Positions restore exactly.
    let saved = sampler.cursors();
    let next = sampler.next(1);
    let mut again = GroupSampler::new(&race, exp.fairclip.group_batch_size, exp.seed).expect("sampler");
    again.set_cursors(&saved).expect("cursors");
    assert_eq!(again.next(1), next);
}

#[test]
fn fair_moe_and_fo_moe_train_with_their_losses_in_every_form() {
    for (method, form, capacity) in [("fair-moe", "code", "code"), ("fair-moe", "paper", "tokens"), ("fo-moe", "code", "none")] {
        let mut doc: toml::Table = toml::from_str(&tiny(method, 3).to_toml()).expect("toml");
        let extra: toml::Table = toml::from_str(&format!("experts = 4\ntop_k = 2\ncapacity = \"{capacity}\"")).expect("moe");
        doc.insert("moe".into(), toml::Value::Table(extra));
        let extra: toml::Table = toml::from_str(&format!("form = \"{form}\"\nlambda_moe = 0.1")).expect("fol");
        doc.insert("fol".into(), toml::Value::Table(extra));
        let mut exp = Experiment::from_toml_str(&toml::to_string(&doc).expect("toml"), "moe").unwrap_or_else(|e| panic!("{e}"));
        exp.fairclip.lambda = 1e-6; // the scripts' weight: the distance term must not swamp a tiny model
        let out = scratch(&format!("{method}-{form}"));
        let outcome = train::<B>(&exp, &quiet(out.clone()), &Default::default()).expect("train");
        let h = &outcome.history;
        assert!(h[2].clip_loss < h[0].clip_loss, "{method} {form}: {} -> {}", h[0].clip_loss, h[2].clip_loss);
        if method == "fair-moe" {
            assert!(h.iter().all(|l| l.fol_loss.is_some_and(f64::is_finite) && l.fair_loss.is_some()), "{form}: FOL and distance logged");
        } else {
            assert!(h.iter().all(|l| l.fol_loss.is_none() && l.fair_loss.is_none()));
        }
        // The checkpoint holds the experts and reloads into an FO-MoE model.
        let again = trainer::evaluate_run::<B>(&out, &out.join("best.safetensors"), "test", &Default::default()).expect("eval");
        assert_eq!(again.overall.auc, outcome.report.expect("report").test.overall.auc);
        std::fs::remove_dir_all(&out).ok();
    }
}

/// Issue 16: a diverging run stops naming the settings of its own config that can cause it
/// (not always "lower optim.lr").
#[test]
fn a_non_finite_loss_names_the_likely_causes_of_this_config() {
    let mut exp = common::tiny("fairclip", 2);
    exp.optim.lr = 1e30;
    exp.optim.warmup_steps = 0;
    let out = common::scratch("nan-causes");
    let e = trainer::train::<common::B>(&exp, &trainer::RunOptions { progress: false, ..trainer::RunOptions::new(&out) }, &Default::default()).map(|_| ()).unwrap_err().to_string();
    for needle in ["the loss is", "optim.lr = 1000000000000000000000000000000", "optim.warmup_steps = 0", "fairclip.lambda = 0.001"] {
        assert!(e.contains(needle), "no '{needle}' in: {e}");
    }
    assert!(!e.contains("fol.lambda_moe") && !e.contains("multimodal"), "{e}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn every_seed_draws_its_own_subjects_and_every_method_the_same() {
    let load = |method: &str, seed: u64| {
        let mut exp = tiny(method, 1);
        exp.seed = seed;
        let data = trainer::ExperimentData::load(&exp, None).expect("data");
        (data.train.labels.clone(), data.test.labels.clone(), data.train.attributes.column("race").expect("race").codes.clone())
    };
    let (a, b) = (load("clip", 1), load("clip", 2));
    assert_ne!(a, b, "seeds 1 and 2 drew the same subjects");
    assert_eq!(load("fairclip", 1), a, "another method with the same seed sees the same subjects");
    // `data.synthetic.seed` picks another draw: run seed 1 with 3 draws seed 2's subjects.
    let mut shifted = tiny("clip", 1);
    shifted.seed = 1;
    shifted.data.synthetic.seed = 3;
    let data = trainer::ExperimentData::load(&shifted, None).expect("data");
    assert_eq!(data.train.labels, b.0);
}

#[test]
fn benchmark_v2_as_docs_datasets_writes_it() {
    // The TOML of docs/datasets.md, "Benchmark v2", is `SynthConfig::benchmark_v2()`.
    let docs = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/datasets.md")).expect("docs/datasets.md");
    let section = &docs[docs.find("### Benchmark v2").expect("section")..];
    let toml = section.split("```toml\n").nth(1).and_then(|t| t.split("```").next()).expect("a toml block");
    let exp = Experiment::from_toml_str(toml, "docs/datasets.md").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exp.data.synthetic, fair_data::SynthConfig::benchmark_v2());
    // And as `--set` overrides (what `cargo xtask reproduce` passes for benchmark v2).
    let sets = [
        r#"data.synthetic.effects=[{ attribute = "race", value = 0, sign = "pallor" }]"#,
        r#"data.synthetic.shortcut={ attribute = "race", value = 1, agreement = 0.85, modality = "image" }"#,
        r#"data.synthetic.test_oversample={ attribute = "race", min_per_group = 1000 }"#,
    ]
    .map(String::from);
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/benchmark-clip.toml");
    let exp = Experiment::from_file_with(&config, &sets).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(exp.data.synthetic, fair_data::SynthConfig::benchmark_v2());
}

/// The last epoch's log of a run of `exp` (in a scratch folder `name`, removed after).
fn last_epoch(exp: &Experiment, name: &str) -> trainer::EpochLog {
    let out = scratch(name);
    let outcome = train::<B>(exp, &quiet(out.clone()), &Default::default()).expect("train");
    std::fs::remove_dir_all(&out).ok();
    outcome.history.last().cloned().expect("epochs")
}

#[test]
fn fairclip_with_a_weight_lowers_the_distance_it_penalises() {
    // Wiring, not the paper's claim: on the same seed (same subjects, same start), training
    // with the regulariser weighted leaves the groups' similarity distributions closer to the
    // batch's (the logged Sinkhorn total, before λ) than training without it, and the log's
    // mechanism holds the total's per-group terms.
    let log = |lambda: f64| {
        let mut exp = tiny("fairclip", 4);
        exp.fairclip.lambda = lambda;
        last_epoch(&exp, &format!("fairclip-lambda-{lambda}"))
    };
    let (without, with) = (log(0.0), log(1.0));
    for l in [&without, &with] {
        let groups: Vec<(&String, &f64)> = l.mechanism.iter().filter(|(k, _)| k.starts_with("sinkhorn.")).collect();
        assert_eq!(groups.len(), 3, "one Sinkhorn term per race group: {:?}", l.mechanism);
        let total: f64 = groups.iter().map(|(_, v)| **v).sum();
        let logged = l.fair_loss.expect("the distance is logged at every λ");
        assert!((total - logged).abs() <= 1e-6 * logged.abs().max(1.0), "per-group terms sum to {total}, the total is {logged}");
    }
    let (without, with) = (without.fair_loss.unwrap_or(f64::NAN), with.fair_loss.unwrap_or(f64::NAN));
    println!("Sinkhorn total, last epoch: λ = 0 {without:.4e}, λ = 1 {with:.4e}");
    assert!(with < 0.8 * without, "Sinkhorn total with λ = 1: {with:.4e}, with λ = 0: {without:.4e}");
}

#[test]
fn fol_with_a_weight_moves_the_routing_statistics_it_penalises() {
    // Wiring: the code's FOL, `λ·(−V + Σ_g (V_g − V)²)` over the MoEs' routing variances, logged
    // with its weight; divided by λ it is the statistic FOL lowers. Same seed, same subjects:
    // with λ_moe = 1 the statistic ends lower than with λ_moe = 1e-9 (no pressure).
    let log = |lambda: f64| {
        let mut exp = tiny("fair-moe", 4);
        exp.fol.lambda_moe = lambda;
        last_epoch(&exp, &format!("fol-lambda-{lambda}"))
    };
    let (without, with) = (log(1e-9), log(1.0));
    // The mechanism: each MoE's per-group routing-variance gap, one per race group.
    let gaps = with.mechanism.keys().filter(|k| k.starts_with("routing_gap.")).count();
    assert!(gaps >= 3 && gaps % 3 == 0, "routing gaps per MoE and race group: {:?}", with.mechanism);
    let statistic = |l: &trainer::EpochLog, lambda: f64| l.fol_loss.expect("FOL is logged") / lambda;
    let (without, with) = (statistic(&without, 1e-9), statistic(&with, 1.0));
    println!("FOL statistic (−V + Σ_g (V_g − V)²), last epoch: λ_moe = 1e-9 {without:.4e}, λ_moe = 1 {with:.4e}");
    assert!(with < without, "λ_moe = 1: {with:.4e}, λ_moe = 1e-9: {without:.4e}");
}

#[test]
fn export_writes_a_clip_folder_with_a_model_card() {
    let exp = tiny("fairclip", 2);
    let out = scratch("export-run");
    train::<B>(&exp, &quiet(out.clone()), &Default::default()).expect("train");
    for which in ["best", "last"] {
        let folder = scratch(&format!("export-{which}"));
        trainer::export_clip_run(&out, &out.join(format!("{which}.safetensors")), &folder, trainer::Tower::Both).expect("export");
        for file in ["config.json", "model.safetensors", "tokenizer.json", "README.md"] {
            assert!(folder.join(file).is_file(), "{which}: {file}");
        }
        let card = std::fs::read_to_string(folder.join("README.md")).expect("card");
        // The card states the method, the data, the test metrics per group and the limits.
        for needle in ["library_name: transformers", "`fairclip`", "synthetic", "| race | Asian |", "ES-AUC", "## Intended use", "## Limits of the fairness evaluation"] {
            assert!(card.contains(needle), "{which}: the card lacks {needle:?}:\n{card}");
        }
        std::fs::remove_dir_all(&folder).ok();
    }
    // A checkpoint that is not there is an error naming it.
    let err = trainer::export_clip_run(&out, &out.join("nope.safetensors"), &scratch("export-missing"), trainer::Tower::Both).expect_err("a missing checkpoint");
    assert!(err.to_string().contains("nope.safetensors"), "{err}");
    std::fs::remove_dir_all(&out).ok();
}
