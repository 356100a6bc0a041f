//! Fairness-aware LoRA: the five methods on a tiny tinted image set, the two-process protocol
//! against the single-process driver, and the developer's process never opening the auditor's
//! files.

mod common;

use std::path::Path;
use std::time::Duration;

use burn::prelude::*;
use common::{scratch, B};
use fair_data::LabelledImages;
use rand::{Rng, SeedableRng};
use trainer::lora::{self, Auditor, FileLink, LocalAuditor, LoraExperiment, LoraMethod};

/// `n` images of 8 x 8: class 1 has a bright bar (the task), and a red background tint agrees
/// with the class 80% of the time (the sensitive attribute, an easy shortcut).
fn toy(n: usize, seed: u64) -> LabelledImages {
    toy_tinted(n, seed, 80.0)
}

/// [`toy`] with a tint of `tint` grey levels (80 is an easy shortcut; a faint one leaves a
/// probe something to lose).
fn toy_tinted(n: usize, seed: u64, tint: f32) -> LabelledImages {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut set = LabelledImages { size: 8, ..Default::default() };
    let (mut task, mut sens, mut class) = (vec![], vec![], vec![]);
    for _ in 0..n {
        let y = rng.random_range(0..2i64);
        let s = if rng.random_bool(0.8) { y } else { 1 - y };
        for c in 0..3 {
            for p in 0..64 {
                let bar = y == 1 && p % 8 == 3;
                let v = if bar { 200.0 } else { 30.0 } + if c == 0 && s == 1 { tint } else { 0.0 } + rng.random_range(0.0..40.0);
                set.images.push(v as u8);
            }
        }
        task.push(y);
        sens.push(s);
        class.push(y + 2 * s);
    }
    set.labels = [("task".to_string(), task), ("sensitive".to_string(), sens), ("class".to_string(), class)].into();
    set
}

fn experiment(method: &str, extra: &[&str]) -> LoraExperiment {
    let text = format!(
        "seed = 5\nmethod = \"{method}\"\n[model]\npatch_size = 4\nwidth = 16\nlayers = 2\nheads = 2\n[lora]\nr = 4\nalpha = 8.0\ndropout = 0.0\n[optim]\nlr = 5e-3\nbatch_size = 16\nepochs = 1\n[fair]\nsensitive_epochs = 1\nauditor_batch = 16\n"
    );
    let overrides: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    LoraExperiment::from_toml_str_with(&text, "test", &overrides).unwrap()
}

#[test]
fn config_errors_name_the_key() {
    let e = LoraExperiment::from_toml_str_with("[lora]\ntargets = [\"qkv_x\"]\n", "x.toml", &[]).unwrap_err().to_string();
    assert!(e.starts_with("x.toml: lora.targets[0] = 'qkv_x'"), "{e}");
    let exp = LoraExperiment::from_toml_str_with("[lora]\ntargets = [\"qkv\", \"out\"]\n", "x.toml", &[]).unwrap();
    assert_eq!(exp.lora.projections(), ["q_proj", "k_proj", "v_proj", "out_proj"]);
    let e = LoraExperiment::from_toml_str_with("[fair]\nlambda_orth = -1.0\n", "x.toml", &[]).unwrap_err().to_string();
    assert!(e.contains("fair.lambda_orth = -1"), "{e}");
    let e = LoraExperiment::from_toml_str_with("[optim]\nlearning_rate = 1.0\n", "x.toml", &[]).unwrap_err().to_string();
    assert!(e.contains("unknown field `learning_rate`"), "{e}");
    let e = LoraExperiment::from_toml_str_with("method = \"dro\"\n", "x.toml", &[]).unwrap_err().to_string();
    assert!(e.contains("unknown variant `dro`"), "{e}");
    let exp = LoraExperiment::from_toml_str_with("", "x.toml", &["method=orth".into(), "fair.lambda_orth=10".into()]).unwrap();
    assert_eq!((exp.method, exp.fair.lambda_orth), (LoraMethod::Orth, 10.0));
}

fn pretrained(exp: &LoraExperiment, data: &LabelledImages) -> vlm_backbone::VitClassifier<B> {
    lora::pretrain::<B>(exp, data, "class", 1, &Default::default()).unwrap()
}

/// Every method trains the adapters and head only, leaves the frozen tower bit-identical
/// (Unl's negated base aside), and yields finite losses and an audit.
#[test]
fn the_five_methods_train_adapters_and_head_only() {
    let device = Default::default();
    let all = toy(192, 1);
    let base_model = pretrained(&experiment("erm", &[]), &all);
    let dev = all.subset(&(0..96).collect::<Vec<_>>()).with_labels(&[("task", "task")]).unwrap();
    let aud = all.subset(&(96..192).collect::<Vec<_>>()).with_labels(&[("sensitive", "sensitive")]).unwrap();
    let test = toy(64, 2);
    let k_before = base_model.vit.encoder.layers[1].self_attn.k_proj.weight.val();
    for (method, extra) in [
        ("erm", vec![]),
        ("unl", vec![]),
        ("unl", vec!["fair.unl_mode=\"ascent\""]),
        ("adv", vec![]),
        ("adv", vec!["fair.adv_mode=\"reversal\""]),
        ("orth", vec![]),
        ("ent", vec![]),
    ] {
        let exp = experiment(method, &extra);
        let mut auditor = Auditor::new(&exp, base_model.clone(), aud.clone(), "sensitive", &device).unwrap();
        let (model, log, negated) = lora::train_developer::<B>(&exp, &base_model, &dev, "task", &mut LocalAuditor(&mut auditor), &device).unwrap();
        assert!(log.task_loss.iter().all(|l| l.is_finite()), "{method}: {:?}", log.task_loss);
        // q and v adapted in both layers: 2 x 2 x (4 x 16 + 16 x 4), plus the head 16 x 2 + 2.
        assert_eq!(log.trainable_parameters, 2 * 2 * 128 + 34, "{method}");
        let adapters = model.vit.lora_adapters();
        assert_eq!(adapters.len(), 4);
        let b_norm: f32 = adapters.iter().map(|(_, a)| a.lora_b.val().abs().sum().into_scalar()).sum();
        assert!(b_norm > 0.0, "{method}: B stayed zero");
        let k_after = model.vit.encoder.layers[1].self_attn.k_proj.weight.val();
        if exp.method == LoraMethod::Unl && exp.fair.unl_mode == lora::UnlMode::Negate {
            // k is not a target: the negation only moved q and v.
            k_after.into_data().assert_eq(&k_before.clone().into_data(), true);
            assert!(negated.is_some());
        } else {
            k_after.into_data().assert_eq(&k_before.clone().into_data(), true);
            assert!(negated.is_none());
        }
        if method == "orth" {
            assert_eq!(log.orth_penalty.len(), 1);
            // The mechanism: a share of the sensitive subspace, in [0, 1].
            assert_eq!(log.subspace_overlap.len(), 1);
            assert!((0.0..=1.0).contains(&log.subspace_overlap[0]), "overlap {:?}", log.subspace_overlap);
        } else {
            assert!(log.subspace_overlap.is_empty());
        }
        let valid = burn::module::AutodiffModule::valid(&model);
        let a = lora::audit(&lora::scores(&valid, &test, &device), test.label("task").unwrap(), test.label("sensitive").unwrap()).unwrap();
        assert_eq!(a.n, 64);
        assert!(a.accuracy > 0.0 && a.dp_ratio.is_some(), "{method}: {a:?}");
    }
}

/// Unl negate: the merged base is exactly `W₀ − β·(α/r)·(B A)ᵀ` on the targeted projections.
#[test]
fn unl_negation_subtracts_the_scaled_sensitive_update() {
    let device = Default::default();
    let all = toy(96, 3);
    let exp = experiment("unl", &["fair.unl_beta=0.5"]);
    let base_model = pretrained(&exp, &all);
    let mut auditor = Auditor::new(&exp, base_model.clone(), all.with_labels(&[("sensitive", "sensitive")]).unwrap(), "sensitive", &device).unwrap();
    let s = auditor.sensitive_adapter().unwrap();
    let negated = lora::negated_base(&exp, &base_model, &s, &device).unwrap();
    let (a, ad, b, bd) = &s["encoder.layers.0.self_attn.v_proj"];
    let ta = Tensor::<B, 2>::from_data(TensorData::new(a.clone(), *ad), &device);
    let tb = Tensor::<B, 2>::from_data(TensorData::new(b.clone(), *bd), &device);
    let delta = tb.matmul(ta).transpose().mul_scalar(0.5 * 8.0 / 4.0);
    let expected = base_model.vit.encoder.layers[0].self_attn.v_proj.weight.val() - delta;
    let got = negated.vit.encoder.layers[0].self_attn.v_proj.weight.val();
    got.into_data().assert_approx_eq::<f32>(&expected.into_data(), burn::tensor::Tolerance::absolute(1e-6));
    assert!(negated.vit.lora_adapters().is_empty());
}

/// Two processes' worth of exchange (an auditor thread serving a folder) give the same
/// adapters as the in-process driver.
#[test]
fn file_exchange_matches_the_single_process_driver() {
    let device = burn_flex::FlexDevice;
    let all = toy(128, 4);
    for method in ["ent", "orth"] {
        let exp = experiment(method, &[]);
        let base_model = pretrained(&exp, &all);
        let dev = all.subset(&(0..64).collect::<Vec<_>>()).with_labels(&[("task", "task")]).unwrap();
        let aud = all.subset(&(64..128).collect::<Vec<_>>()).with_labels(&[("sensitive", "sensitive")]).unwrap();
        let mut local = Auditor::new(&exp, base_model.clone(), aud.clone(), "sensitive", &device).unwrap();
        let (m1, _, _) = lora::train_developer::<B>(&exp, &base_model, &dev, "task", &mut LocalAuditor(&mut local), &device).unwrap();

        let dir = scratch(&format!("lora-exchange-{method}"));
        let (b2, aud2, exp2, dir2) = (base_model.clone(), aud.clone(), exp.clone(), dir.clone());
        let server = std::thread::spawn(move || {
            let mut auditor = Auditor::new(&exp2, b2, aud2, "sensitive", &Default::default()).unwrap();
            lora::serve_files::<B>(&mut auditor, &dir2, Duration::from_secs(60)).unwrap()
        });
        let mut link = FileLink::<B>::new(&dir, &exp, Duration::from_secs(60));
        let (m2, _, _) = lora::train_developer::<B>(&exp, &base_model, &dev, "task", &mut link, &device).unwrap();
        let rounds = server.join().unwrap();
        assert_eq!(rounds, if method == "ent" { 4 } else { 0 });
        let (v1, v2) = (lora::adapter_values(&m1), lora::adapter_values(&m2));
        for (p, (a1, _, b1, _)) in &v1 {
            let (a2, _, b2, _) = &v2[p];
            for (x, y) in a1.iter().chain(b1).zip(a2.iter().chain(b2)) {
                assert!((x - y).abs() <= 1e-6 * (1.0 + x.abs()), "{method} {p}: {x} vs {y}");
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// inotify on a folder: the open events of the files in it since the watch began.
struct Watch {
    fd: i32,
}

impl Watch {
    fn new(dir: &Path) -> Watch {
        let c = std::ffi::CString::new(dir.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: plain syscalls on a descriptor this struct owns.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK);
            assert!(fd >= 0);
            assert!(libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS) >= 0);
            Watch { fd }
        }
    }

    fn events(&self) -> usize {
        let mut buf = [0u8; 4096];
        let mut count = 0;
        loop {
            // SAFETY: reading into a buffer of the given length.
            let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return count;
            }
            let mut off = 0;
            while off < n as usize {
                let len = u32::from_ne_bytes([buf[off + 12], buf[off + 13], buf[off + 14], buf[off + 15]]) as usize;
                count += 1;
                off += 16 + len;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SAFETY: closing the descriptor opened in `new`.
        unsafe { libc::close(self.fd) };
    }
}

/// The protocol as two `fairvlm` processes: the developer's process is given only its own
/// file and the exchange folder, and nothing in the auditor's folder is opened or read while
/// it runs; the exchange holds adapters and gradients, never labels.
#[test]
fn developer_process_never_opens_the_sensitive_labels() {
    let exe = env!("CARGO_BIN_EXE_fairvlm");
    let root = scratch("lora-privacy");
    let (auditor_dir, developer_dir, exchange) = (root.join("auditor"), root.join("developer"), root.join("exchange"));
    for d in [&auditor_dir, &developer_dir] {
        std::fs::create_dir_all(d).unwrap();
    }
    let all = toy(128, 6);
    let exp = experiment("ent", &[]);
    let base_model = pretrained(&exp, &all);
    let base_path = developer_dir.join("base.safetensors");
    lora::save_base(&base_path, &base_model, lora::BaseInfo { image_size: 8, classes: 4 }).unwrap();
    std::fs::copy(&base_path, auditor_dir.join("base.safetensors")).unwrap();
    std::fs::copy(base_path.with_extension("json"), auditor_dir.join("base.json")).unwrap();
    all.subset(&(0..64).collect::<Vec<_>>()).with_labels(&[("task", "task")]).unwrap().write(&developer_dir.join("developer.npz")).unwrap();
    all.subset(&(64..128).collect::<Vec<_>>()).with_labels(&[("sensitive", "sensitive")]).unwrap().write(&auditor_dir.join("auditor.npz")).unwrap();
    let config = root.join("lora.toml");
    std::fs::write(&config, toml::to_string(&exp).unwrap()).unwrap();
    std::fs::copy(&config, auditor_dir.join("lora.toml")).unwrap();
    std::fs::copy(&config, developer_dir.join("lora.toml")).unwrap();

    let watch = Watch::new(&auditor_dir);
    let auditor = std::process::Command::new(exe)
        .args(["lora", "auditor", "--config"])
        .arg(auditor_dir.join("lora.toml"))
        .arg("--base")
        .arg(auditor_dir.join("base.safetensors"))
        .arg("--data")
        .arg(auditor_dir.join("auditor.npz"))
        .arg("--exchange")
        .arg(&exchange)
        .args(["--timeout", "120"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The auditor has read its files and trained its sensitive head once it says so.
    let ready = exchange.join("auditor-ready");
    let start = std::time::Instant::now();
    while !ready.exists() {
        assert!(start.elapsed() < Duration::from_secs(120), "the auditor never became ready");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(watch.events() > 0, "the watch saw the auditor read its own files");
    let developer = std::process::Command::new(exe)
        .args(["lora", "developer", "--config"])
        .arg(developer_dir.join("lora.toml"))
        .arg("--base")
        .arg(&base_path)
        .arg("--data")
        .arg(developer_dir.join("developer.npz"))
        .arg("--exchange")
        .arg(&exchange)
        .arg("--run")
        .arg(developer_dir.join("result"))
        .args(["--timeout", "120"])
        .output()
        .unwrap();
    assert!(developer.status.success(), "{}", String::from_utf8_lossy(&developer.stderr));
    let auditor = auditor.wait_with_output().unwrap();
    assert!(auditor.status.success(), "{}", String::from_utf8_lossy(&auditor.stderr));
    assert!(String::from_utf8_lossy(&auditor.stdout).contains("4 gradient rounds"), "{}", String::from_utf8_lossy(&auditor.stdout));
    assert_eq!(watch.events(), 0, "a file in the auditor's folder was opened while the developer ran");
    // What crossed: adapter files and markers only.
    let mut crossed = vec![];
    for e in walk(&exchange) {
        crossed.push(e.strip_prefix(&exchange).unwrap().to_string_lossy().into_owned());
    }
    crossed.sort();
    assert_eq!(crossed, ["auditor-ready", "auditor.alive", "developer.alive", "done", "session"], "{crossed:?}");
    let developer_file = LabelledImages::read(&developer_dir.join("developer.npz")).unwrap();
    assert_eq!(developer_file.labels.keys().collect::<Vec<_>>(), ["task"]);
    assert!(developer_dir.join("result/adapter/adapter_model.safetensors").is_file());
    std::fs::remove_dir_all(&root).ok();
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The gradient the auditor returns for Ent and Unl ascent is the derivative of its term:
/// central differences on entries of the developer's A and B.
#[test]
fn auditor_gradient_matches_finite_differences() {
    let device = burn_flex::FlexDevice;
    let all = toy(64, 8);
    for (method, extra) in [("ent", vec![]), ("unl", vec!["fair.unl_mode=\"ascent\""])] {
        let exp = experiment(method, &extra);
        let base_model = pretrained(&exp, &all);
        let mut auditor = Auditor::new(&exp, base_model.clone(), all.with_labels(&[("sensitive", "sensitive")]).unwrap(), "sensitive", &device).unwrap();
        // Developer adapters with B away from zero, so both A and B have gradients.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut adapters = lora::adapter_values(&base_model.clone().with_lora(&lora_fair::LoraConfig::new().with_r(4).with_alpha(8.0), &["q_proj", "v_proj"], &device).unwrap());
        for (_, (a, _, b, _)) in adapters.iter_mut() {
            for v in a.iter_mut().chain(b.iter_mut()) {
                *v = rng.random_range(-0.3..0.3);
            }
        }
        let idx: Vec<usize> = (0..32).collect();
        auditor.train_sensitive().unwrap();
        let grads = auditor.gradient_at(&adapters, &idx).unwrap();
        let path = "encoder.layers.1.self_attn.v_proj".to_string();
        let h = 1e-2f32;
        for (which, k) in [(0, 3), (0, 17), (1, 5), (1, 40)] {
            let at = |delta: f32, auditor: &mut Auditor<B>| {
                let mut moved = adapters.clone();
                let e = moved.get_mut(&path).unwrap();
                if which == 0 {
                    e.0[k] += delta
                } else {
                    e.2[k] += delta
                }
                auditor.term_at(&moved, &idx).unwrap()
            };
            let numeric = (at(h, &mut auditor) - at(-h, &mut auditor)) / (2.0 * h as f64);
            let analytic = if which == 0 { grads[&path].0[k] } else { grads[&path].1[k] } as f64;
            assert!((numeric - analytic).abs() <= 1e-5 + 2e-2 * analytic.abs(), "{method} {} [{k}]: numeric {numeric}, analytic {analytic}", if which == 0 { "A" } else { "B" });
        }
        assert!(grads.values().any(|(a, b)| a.iter().chain(b).any(|v| v.abs() > 1e-6)), "{method}: zero gradient");
    }
}

/// UTKFace (the fair-data fixture) as parties: each file holds only its party's label, images
/// are channel-major, and the pools are disjoint.
#[test]
fn utkface_parties_hold_only_their_own_labels() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fair-data/tests/fixtures/utkface");
    let index = fair_data::load_utkface(&dir).unwrap();
    assert_eq!((index.records.len(), index.skipped.len()), (4, 1));
    let out = scratch("lora-utkface");
    let sizes = fair_data::prepare_faces(&index, &out, "gender", "race", 4, 0.25, 0.5, 0).unwrap();
    assert_eq!((sizes.developer + sizes.auditor, sizes.audit), (3, 1));
    let keys = |f: &str| LabelledImages::read(&out.join(f)).unwrap().labels.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys("developer.npz"), ["task"]);
    assert_eq!(keys("auditor.npz"), ["sensitive"]);
    assert_eq!(keys("audit.npz"), ["sensitive", "task"]);
    // The audit image is the last by name, 8_1_1_...: colour (90, 60, 40), gender 1, race 1.
    let audit = LabelledImages::read(&out.join("audit.npz")).unwrap();
    assert_eq!((audit.label("task").unwrap(), audit.label("sensitive").unwrap()), (&[1][..], &[1][..]));
    for (c, want) in [90i32, 60, 40].into_iter().enumerate() {
        assert!(audit.images[c * 16..(c + 1) * 16].iter().all(|&v| (v as i32 - want).abs() <= 4), "channel {c}: {:?}", &audit.images[c * 16..(c + 1) * 16]);
    }
    std::fs::remove_dir_all(&out).ok();
}

/// What the developer ships (adapter, head and, for Unl, the subtracted sensitive adapter)
/// rebuilds its model exactly on the auditor's side.
#[test]
fn a_saved_developer_model_reloads_with_the_same_scores() {
    let device = burn_flex::FlexDevice;
    let all = toy(96, 10);
    for method in ["erm", "unl"] {
        let exp = experiment(method, &[]);
        let base_model = pretrained(&exp, &all);
        let mut auditor = Auditor::new(&exp, base_model.clone(), all.with_labels(&[("sensitive", "sensitive")]).unwrap(), "sensitive", &device).unwrap();
        let dev = all.with_labels(&[("task", "task")]).unwrap();
        let (model, _, negated) = lora::train_developer::<B>(&exp, &base_model, &dev, "task", &mut LocalAuditor(&mut auditor), &device).unwrap();
        assert_eq!(negated.is_some(), method == "unl");
        let dir = scratch(&format!("lora-reload-{method}"));
        lora::save_developer(&dir, &exp, &model, negated.as_ref()).unwrap();
        let inner = burn::module::AutodiffModule::valid(&base_model);
        let reloaded = lora::load_developer::<burn_flex::Flex>(&dir, &exp, &inner, &device).unwrap();
        let (a, b) = (lora::scores(&burn::module::AutodiffModule::valid(&model), &all, &device), lora::scores(&reloaded, &all, &device));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-6, "{method}: {x} vs {y}");
        }
        exported_logits_match(&dir, &exp, &inner, &reloaded, &all, method);
        std::fs::remove_dir_all(&dir).ok();
    }
}

/// `fairvlm export` of a developer's run: merged into a `CLIPVisionModel`, and as a base with a
/// peft adapter (for Unl, the negated base), each read back the way transformers and peft read
/// it, with the head of `classifier.safetensors`, gives the developer's logits.
fn exported_logits_match(
    run: &Path,
    exp: &LoraExperiment,
    base: &vlm_backbone::VitClassifier<burn_flex::Flex>,
    model: &vlm_backbone::VitClassifier<burn_flex::Flex>,
    set: &LabelledImages,
    method: &str,
) {
    type F = burn_flex::Flex;
    let device = burn_flex::FlexDevice;
    let base_path = run.join("base.safetensors");
    lora::save_base(&base_path, base, lora::BaseInfo { image_size: set.size, classes: 4 }).unwrap();
    let idx: Vec<usize> = (0..set.len()).collect();
    let images = lora::image_batch::<F>(set, &idx, &device);
    let ours = model.forward(images.clone());
    for form in [trainer::LoraForm::Merged, trainer::LoraForm::Adapter] {
        let out = run.join(format!("export-{form:?}"));
        trainer::export_lora_run(run, &base_path, &out, form).unwrap();
        let card = std::fs::read_to_string(out.join("README.md")).unwrap();
        assert!(card.contains(&format!("fairness-aware LoRA ({method})")), "{card}");
        let vit = match form {
            trainer::LoraForm::Merged => vlm_backbone::Checkpoint::open(&out).unwrap().vision_model::<F>(&device).unwrap().0,
            trainer::LoraForm::Adapter => {
                let (tower, _) = vlm_backbone::Checkpoint::open(&out.join("base")).unwrap().vision_model::<F>(&device).unwrap();
                let (config, adapters) = lora_fair::load_adapters::<F>(&out.join("adapter"), &device).unwrap();
                assert_eq!(config.target_modules, exp.lora.projections());
                tower.with_lora_adapters(adapters).unwrap()
            }
        };
        let bytes = std::fs::read(out.join("classifier.safetensors")).unwrap();
        let head = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let read = |key: &str| -> (Vec<f32>, Vec<usize>) {
            let v = head.tensor(key).unwrap();
            (v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(), v.shape().to_vec())
        };
        let ((w, w_shape), (b, _)) = (read("classifier.weight"), read("classifier.bias"));
        let weight = Tensor::<F, 2>::from_data(burn::tensor::TensorData::new(w, [w_shape[0], w_shape[1]]), &device);
        let bias = Tensor::<F, 1>::from_data(burn::tensor::TensorData::new(b, [w_shape[0]]), &device);
        let theirs = vit.forward(images.clone()).matmul(weight.transpose()) + bias.unsqueeze_dim(0);
        theirs.into_data().assert_approx_eq::<f32>(&ours.clone().into_data(), burn::tensor::Tolerance::absolute(1e-5));
    }
    // A LoRA run's export needs the base it was trained from: without --base it is a usage
    // error that names the flag.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fairvlm")).args(["-q", "export", "--run"]).arg(run).arg("-o").arg(run.join("no-base")).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--base"), "{}", String::from_utf8_lossy(&out.stderr));
    // The auditor's audit of the same run, as CSV (one value per line): its overall accuracy is
    // the one the library computes.
    let audit_set = run.join("audit.npz");
    set.write(&audit_set).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fairvlm"))
        .args(["-q", "lora", "audit", "--format", "csv", "--base"])
        .arg(&base_path)
        .arg("--run")
        .arg(run)
        .arg("--data")
        .arg(&audit_set)
        .output()
        .unwrap();
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let expected = lora::audit(&lora::scores(model, set, &device), set.label("task").unwrap(), set.label("sensitive").unwrap()).unwrap();
    assert!(csv.starts_with("model,scope,group,metric,value\n"), "{csv}");
    assert!(csv.contains(&format!("{method},overall,,accuracy,{}\n", expected.accuracy)), "{csv}");
    assert!(csv.lines().any(|l| l.starts_with(&format!("{method},sensitive,1,selection_rate,"))), "{csv}");
}

/// Issue 16: the exchange fails closed. With two real processes, killing either party makes
/// the other exit with an error naming it within 10 seconds (not after its 600 s timeout); a
/// stale `done` of an earlier session does not end a new one.
#[test]
fn killing_either_party_stops_the_other_within_seconds() {
    let exe = env!("CARGO_BIN_EXE_fairvlm");
    for victim in ["auditor", "developer"] {
        let root = scratch(&format!("lora-kill-{victim}"));
        std::fs::create_dir_all(&root).unwrap();
        let exchange = root.join("exchange");
        std::fs::create_dir_all(&exchange).unwrap();
        // An earlier session's leftovers: a `done` and a round.
        std::fs::write(exchange.join("done"), b"1-old").unwrap();
        std::fs::create_dir_all(exchange.join("rounds/1-old/000000")).unwrap();
        let all = toy(128, 9);
        // Many epochs: the two would exchange gradients for minutes.
        let exp = experiment("ent", &["optim.epochs=400", "optim.batch_size=8"]);
        let base_model = pretrained(&exp, &all);
        let base = root.join("base.safetensors");
        lora::save_base(&base, &base_model, lora::BaseInfo { image_size: 8, classes: 4 }).unwrap();
        all.subset(&(0..64).collect::<Vec<_>>()).with_labels(&[("task", "task")]).unwrap().write(&root.join("developer.npz")).unwrap();
        all.subset(&(64..128).collect::<Vec<_>>()).with_labels(&[("sensitive", "sensitive")]).unwrap().write(&root.join("auditor.npz")).unwrap();
        std::fs::write(root.join("lora.toml"), toml::to_string(&exp).unwrap()).unwrap();
        let spawn = |role: &str, data: &str, extra: &[&str]| {
            std::process::Command::new(exe)
                .args(["lora", role, "--config"])
                .arg(root.join("lora.toml"))
                .arg("--base")
                .arg(&base)
                .arg("--data")
                .arg(root.join(data))
                .arg("--exchange")
                .arg(&exchange)
                .args(extra)
                .args(["--timeout", "600"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let out = root.join("result").display().to_string();
        let mut auditor = spawn("auditor", "auditor.npz", &[]);
        let mut developer = spawn("developer", "developer.npz", &["--run", &out]);
        // Wait until gradient rounds are flowing in this session.
        let start = std::time::Instant::now();
        let rounds = |s: &str| exchange.join("rounds").join(s);
        loop {
            let session = std::fs::read_to_string(exchange.join("session")).unwrap_or_default();
            if !session.is_empty() && rounds(&session).is_dir() && exchange.join("developer.alive").exists() {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(120), "no rounds started");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
        let (killed, survivor) = if victim == "auditor" { (&mut auditor, developer) } else { (&mut developer, auditor) };
        killed.kill().unwrap();
        killed.wait().unwrap();
        let t = std::time::Instant::now();
        let output = survivor.wait_with_output().unwrap();
        let waited = t.elapsed();
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{victim} killed: the other exited 0: {err}");
        assert!(waited < Duration::from_secs(10), "{victim} killed: the other took {waited:?}");
        assert!(err.contains(&format!("the {victim} (pid")) && (err.contains("no longer running") || err.contains("no heartbeat")), "{err}");
        std::fs::remove_dir_all(&root).ok();
    }
}

/// Issue 16: LoRA training stops on a non-finite loss, naming the settings that can cause it,
/// instead of finishing with NaN weights.
#[test]
fn a_diverging_developer_stops_with_the_likely_causes() {
    let device = Default::default();
    let all = toy(64, 3);
    let base_model = pretrained(&experiment("erm", &[]), &all);
    let dev = all.with_labels(&[("task", "task")]).unwrap();
    let aud = all.with_labels(&[("sensitive", "sensitive")]).unwrap();
    let exp = experiment("erm", &["optim.lr=1e30", "optim.epochs=3"]);
    let mut auditor = Auditor::new(&exp, base_model.clone(), aud, "sensitive", &device).unwrap();
    let e = lora::train_developer::<B>(&exp, &base_model, &dev, "task", &mut LocalAuditor(&mut auditor), &device).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("the developer, epoch") && e.contains("the loss is") && e.contains("optim.lr = 1000000000000000000000000000000"), "{e}");
}

/// Issue 16: a valid but empty (or partial) gradient answer is an error, not a round trained
/// without the auditor's term (which desynchronised the two sides).
#[test]
fn an_empty_gradient_answer_is_refused() {
    struct Empty;
    impl lora::AuditorLink for Empty {
        fn sensitive_adapter(&mut self) -> trainer::Result<lora::Adapters> {
            Ok(Default::default())
        }
        fn gradient(&mut self, _round: usize, _adapters: &lora::Adapters) -> trainer::Result<lora::AdapterGrads> {
            Ok(Default::default())
        }
        fn finish(&mut self) -> trainer::Result<()> {
            Ok(())
        }
    }
    let all = toy(32, 5);
    let exp = experiment("ent", &[]);
    let base_model = pretrained(&exp, &all);
    let dev = all.with_labels(&[("task", "task")]).unwrap();
    let e = lora::train_developer::<B>(&exp, &base_model, &dev, "task", &mut Empty, &Default::default()).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("the auditor's gradient has no entry for"), "{e}");
}

/// Accuracy of a least-squares linear probe that predicts `s` (0/1) from `features`, fitted
/// on the rows `fit` and scored on the others: how much of the attribute the features carry.
fn probe_accuracy(features: &[Vec<f64>], s: &[i64], fit: usize) -> f64 {
    let d = features[0].len() + 1;
    let row = |f: &Vec<f64>| -> Vec<f64> { f.iter().copied().chain([1.0]).collect() };
    // Normal equations with a small ridge, solved by Gaussian elimination.
    let mut a = vec![vec![0.0; d + 1]; d];
    for (f, &y) in features[..fit].iter().zip(&s[..fit]) {
        let x = row(f);
        for i in 0..d {
            for j in 0..d {
                a[i][j] += x[i] * x[j];
            }
            a[i][d] += x[i] * y as f64;
        }
    }
    for (i, r) in a.iter_mut().enumerate() {
        r[i] += 1e-3;
    }
    for c in 0..d {
        let p = (c..d).max_by(|&x, &y| a[x][c].abs().total_cmp(&a[y][c].abs())).unwrap();
        a.swap(c, p);
        for r in 0..d {
            if r != c {
                let k = a[r][c] / a[c][c];
                let pivot = a[c].clone();
                for (v, p) in a[r].iter_mut().zip(&pivot) {
                    *v -= k * p;
                }
            }
        }
    }
    let w: Vec<f64> = (0..d).map(|i| a[i][d] / a[i][i]).collect();
    let held = &features[fit..];
    let right = held.iter().zip(&s[fit..]).filter(|(f, &y)| (row(f).iter().zip(&w).map(|(x, w)| x * w).sum::<f64>() >= 0.5) == (y == 1)).count();
    right as f64 / held.len() as f64
}

/// Adv's wiring: against Erm on the same base, data and seed, the developer's features carry
/// less of the sensitive attribute, as the auditor measures it with a fresh probe on its own
/// labels.
const TINT: f32 = 8.0;

/// Adv's wiring: the developer's adversarial term fools the adversary the auditor trains. With
/// `lambda_adv = 1` the auditor's adversary, trained the same way on the same batches, predicts
/// the sensitive attribute from the developer's features less well than with `lambda_adv = 0`
/// (the same run without the term). A fresh least-squares probe, the strongest linear reader,
/// is printed beside it: maximising one adversary's cross-entropy need not remove what another
/// reads (docs/methods.md, "What Adv removes").
#[test]
fn adv_lowers_the_auditors_sensitive_accuracy_on_the_developers_features() {
    let device = Default::default();
    let probe_set = toy_tinted(400, 99, TINT);
    let (mut adversary, mut probe) = (Vec::new(), Vec::new());
    for seed in [21u64, 22, 23] {
        let all = toy_tinted(384, seed, TINT);
        let base_model = pretrained(&experiment("erm", &[]), &all);
        let dev = all.subset(&(0..192).collect::<Vec<_>>()).with_labels(&[("task", "task")]).unwrap();
        let aud = all.subset(&(192..384).collect::<Vec<_>>()).with_labels(&[("sensitive", "sensitive")]).unwrap();
        for lambda in ["0.0", "1.0"] {
            let exp = experiment("adv", &["optim.epochs=4", &format!("fair.lambda_adv={lambda}")]);
            let mut auditor = Auditor::new(&exp, base_model.clone(), aud.clone(), "sensitive", &device).unwrap();
            let (model, _, _) = lora::train_developer::<B>(&exp, &base_model, &dev, "task", &mut LocalAuditor(&mut auditor), &device).unwrap();
            adversary.push(auditor.adversary_accuracy(&lora::adapter_values(&model)).unwrap());
            let valid = burn::module::AutodiffModule::valid(&model);
            let idx: Vec<usize> = (0..probe_set.len()).collect();
            let features = valid.vit.forward(lora::image_batch::<burn_flex::Flex>(&probe_set, &idx, &device));
            let [n, width] = features.dims();
            let values = features.into_data().to_vec::<f32>().unwrap();
            let rows: Vec<Vec<f64>> = (0..n).map(|i| values[i * width..(i + 1) * width].iter().map(|v| *v as f64).collect()).collect();
            probe.push(probe_accuracy(&rows, probe_set.label("sensitive").unwrap(), 200));
        }
    }
    let mean = |v: &[f64], k: usize| v.iter().skip(k).step_by(2).sum::<f64>() / 3.0;
    println!(
        "auditor's adversary accuracy, lambda_adv 0 -> 1: {:?} (mean {:.3} -> {:.3}); fresh probe: {:?} (mean {:.3} -> {:.3})",
        adversary,
        mean(&adversary, 0),
        mean(&adversary, 1),
        probe,
        mean(&probe, 0),
        mean(&probe, 1)
    );
    for pair in adversary.chunks(2) {
        assert!(pair[1] < pair[0], "the adversary was not fooled: {adversary:?}");
    }
}
