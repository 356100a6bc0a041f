//! The multimodal methods (late-fusion, OGM-GE, MultiFair) end to end on the CPU backend with a
//! tiny model. In a test binary of their own: their dropout and noise draw from burn's global
//! generator while they train, which would perturb the seeded initialisation of runs that
//! other tests start in parallel.

use trainer::{train, Experiment};

mod common;
use common::{quiet, rng_lock, scratch, tiny, B};

#[test]
fn multimodal_methods_train_modulate_and_reload() {
    let _rng = rng_lock();
    for (method, extra) in [
        ("late-fusion", ""),
        ("ogm-ge", "[multimodal]\nfusion = \"concat\"\nproj_dim = 16\nfusion_heads = 2\nfusion_layers = 1\n"),
        // OGM-GE's own optimiser, a control of the reproduction study.
        ("ogm-ge", "[multimodal]\nfusion = \"concat\"\n[optim]\noptimizer = \"sgd\"\nlr = 1e-2\nweight_decay = 1e-4\n"),
        ("multifair", "[multifair]\nmode = \"code-exact\"\nthreshold = 0.0\n"),
        ("multifair", "[multifair]\nmode = \"faithful\"\nthreshold = 0.0\n"),
        (
            "multifair",
            "[multifair]\nthreshold = 0.0\n[multimodal]\npairing = \"oct\"\noct_slices = 3\noct_size = 16\noct_heads = 2\noct_layers = 1\n[data.oct]\ndepth = 5\nsize = 16\n",
        ),
    ] {
        let mut doc: toml::Table = toml::from_str(&tiny("late-fusion", 3).to_toml()).expect("toml");
        doc.insert("method".into(), toml::Value::String(method.into()));
        let small: toml::Table = toml::from_str("proj_dim = 16\nfusion_heads = 2\nfusion_layers = 1\nhead_lr = 1e-3").expect("mm");
        doc.insert("multimodal".into(), toml::Value::Table(small));
        let extra: toml::Table = toml::from_str(extra).expect("extra");
        for (k, v) in extra {
            match (doc.get_mut(&k), v) {
                (Some(toml::Value::Table(t)), toml::Value::Table(e)) => {
                    for (k2, v2) in e {
                        match (t.get_mut(&k2), v2) {
                            (Some(toml::Value::Table(t2)), toml::Value::Table(e2)) => t2.extend(e2),
                            (_, v2) => {
                                t.insert(k2, v2);
                            }
                        }
                    }
                }
                (_, v) => {
                    doc.insert(k, v);
                }
            }
        }
        let exp = Experiment::from_toml_str(&toml::to_string(&doc).expect("toml"), method).unwrap_or_else(|e| panic!("{method}: {e}"));
        let out = scratch(&format!("mm-{method}-{:?}-{:?}", exp.multifair.mode, exp.multimodal.pairing));
        let outcome = train::<B>(&exp, &quiet(out.clone()), &Default::default()).unwrap_or_else(|e| panic!("{method}: {e}"));
        let h = &outcome.history;
        assert_eq!(h.len(), 3);
        assert!(h[2].clip_loss < h[0].clip_loss, "{method}: cross-entropy {} -> {}", h[0].clip_loss, h[2].clip_loss);
        let mm = h.iter().map(|l| l.multimodal.clone().expect("multimodal log")).collect::<Vec<_>>();
        assert!(mm.iter().all(|m| m.validation_unimodal_auc.iter().all(Option::is_some)), "{method}: unimodal AUCs");
        // The mechanism: how far each encoder moved in each epoch, relative to its start.
        let second = if exp.multimodal.pairing == trainer::PairingConfig::Oct { "oct" } else { "text" };
        for l in h {
            for key in ["encoder_step.fundus".to_string(), format!("encoder_step.{second}")] {
                let step = l.mechanism.get(&key).copied().unwrap_or(f64::NAN);
                assert!(step > 0.0 && step < 1.0, "{method}, epoch {}: {key} = {step} ({:?})", l.epoch, l.mechanism);
            }
        }
        match method {
            "late-fusion" => assert!(mm.iter().all(|m| m.encoder_factors == [1.0, 1.0] && m.triggered == 0.0)),
            "ogm-ge" => assert!(mm.iter().all(|m| m.encoder_factors.iter().filter(|&&f| f < 1.0).count() >= 1), "{method}: a modality damped"),
            // Threshold 0: the trigger fires whenever the groups' batch AUCs differ.
            _ => assert!(mm.iter().all(|m| m.triggered > 0.5 && m.encoder_factors.iter().all(|f| f.is_finite() && *f != 1.0)), "{method}: {mm:?}"),
        }
        let report = outcome.report.expect("report");
        assert!(out.join("report.html").is_file() && out.join("best-heads.safetensors").is_file());
        let again = trainer::evaluate_run::<B>(&out, &out.join("best.safetensors"), "test", &Default::default()).expect("eval");
        assert_eq!(again.overall.auc, report.test.overall.auc, "{method}: the checkpoint reproduces the report");
        assert!(train::<B>(&exp, &quiet(out.clone()), &Default::default()).is_err(), "an existing run is refused without --resume");
        std::fs::remove_dir_all(&out).ok();
    }
}

#[test]
fn multimodal_config_errors_name_the_key() {
    let bad = |text: &str| Experiment::from_toml_str(text, "bad").expect_err(text).to_string();
    assert!(bad("method = \"multifair\"\n").contains("optim.optimizer"));
    assert!(bad("method = \"ogm-ge\"\n[optim]\noptimizer = \"adamw\"\n").contains("multimodal.fusion"));
    assert!(bad("method = \"multifair\"\n[optim]\noptimizer = \"adamw\"\n[multimodal]\nattribute = \"height\"\n").contains("multimodal.attribute"));
    let adamw = "[optim]\noptimizer = \"adamw\"\n";
    assert!(bad(&format!("method = \"late-fusion\"\n{adamw}[multimodal]\nproj_dim = 30\nfusion_heads = 8\n")).contains("multimodal.fusion_heads"));
    assert!(bad(&format!("method = \"multifair\"\n{adamw}[multifair]\nrho = -1.0\n")).contains("multifair.rho"));
    assert!(bad(&format!("method = \"ogm-ge\"\n{adamw}[multimodal]\nfusion = \"concat\"\n[ogm]\nstart_epoch = 0\n")).contains("[ogm]"));
    // The sections of the multimodal methods are checked only when one of them runs.
    assert!(Experiment::from_toml_str("[multimodal]\nproj_dim = 30\nfusion_heads = 8\n[multifair]\nrho = -1.0\n[ogm]\nstart_epoch = 0\n", "clip").is_ok());
    assert!(bad("method = \"clip\"\n[data]\nsource = \"fairvision\"\nroot = \"x\"\n").contains("fairvision"));
    assert!(bad("method = \"late-fusion\"\n[multimodal]\npairing = \"oct\"\noct_size = 30\n").contains("multimodal.oct_size"));
}

#[test]
fn a_resumed_multimodal_run_repeats_the_uninterrupted_one() {
    let _rng = rng_lock();
    // Dropout (all methods) and GE noise (OGM-GE) draw random numbers: each epoch's draws are
    // seeded by (seed, epoch), so the resumed run must match bit for bit.
    for (method, extra) in [("late-fusion", ""), ("multifair", ""), ("ogm-ge", "fusion = \"concat\"\n")] {
        let mut doc: toml::Table = toml::from_str(&tiny("late-fusion", 3).to_toml()).expect("toml");
        doc.insert("method".into(), toml::Value::String(method.into()));
        let mm: toml::Table = toml::from_str(&format!("{extra}proj_dim = 16\nfusion_heads = 2\nfusion_layers = 1\nhead_lr = 1e-3")).expect("mm");
        doc.insert("multimodal".into(), toml::Value::Table(mm));
        let exp = Experiment::from_toml_str(&toml::to_string(&doc).expect("toml"), method).unwrap_or_else(|e| panic!("{method}: {e}"));
        let whole = scratch(&format!("mm-whole-{method}"));
        let full = train::<B>(&exp, &quiet(whole.clone()), &Default::default()).expect("uninterrupted");
        let parts = scratch(&format!("mm-parts-{method}"));
        let mut opts = quiet(parts.clone());
        opts.stop_after = Some(1);
        assert!(train::<B>(&exp, &opts, &Default::default()).expect("first part").report.is_none());
        // A run folder written before the one loop: its step count inside `modulation`, no group
        // positions. It resumes all the same.
        let path = parts.join("state.json");
        let mut state: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("state")).expect("json");
        let st = state.as_object_mut().expect("object");
        let mut modulation = st.remove("recipe").filter(|v| v.is_object()).unwrap_or_else(|| serde_json::json!({"balance": [0.5, 0.5], "group_ema": [[0.5, 0.5], [0.5, 0.5]]}));
        modulation["steps"] = st.remove("steps").expect("steps");
        st.remove("group_cursors");
        st.insert("modulation".into(), modulation);
        std::fs::write(&path, serde_json::to_string_pretty(&state).expect("json")).expect("write");
        opts.resume = true;
        opts.stop_after = None;
        let resumed = train::<B>(&exp, &opts, &Default::default()).expect("resumed");
        assert_eq!(resumed.history.len(), 3);
        for (a, b) in full.history.iter().zip(&resumed.history) {
            assert_eq!(a.loss, b.loss, "{method} epoch {}", a.epoch);
            assert_eq!(a.validation, b.validation, "{method} epoch {}", a.epoch);
            assert_eq!(a.multimodal.as_ref().map(|m| m.encoder_factors), b.multimodal.as_ref().map(|m| m.encoder_factors));
        }
        assert_eq!(full.report.expect("r1").test.overall.auc, resumed.report.expect("r2").test.overall.auc);
        let mut other = exp.clone();
        other.multimodal.head_lr = 2e-3;
        assert!(train::<B>(&other, &opts, &Default::default()).is_err(), "resuming with another config is refused");
        std::fs::remove_dir_all(&whole).ok();
        std::fs::remove_dir_all(&parts).ok();
    }
}
