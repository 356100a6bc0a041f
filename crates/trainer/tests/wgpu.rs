//! The wgpu backend against the CPU backend, on whatever Vulkan device there is: Mesa's
//! software device (lavapipe) in CI, which `cargo xtask test` installs. Every recipe's step from
//! the same weights and batch, the Sinkhorn divergence and the MoE routing, and a short
//! training, within the tolerances of `trainer::parity`.
//!
//! Without a Vulkan device the tests say so and pass, unless `FAIRVLM_REQUIRE_WGPU` is set (as
//! `cargo xtask test` sets it): then they fail.

use burn::backend::{Autodiff, Flex};
use burn_wgpu::{Wgpu, WgpuDevice};
use trainer::parity::{self, Tolerances};

type W = Autodiff<Wgpu>;

mod common;
use common::{quiet, scratch, tiny};

/// The device, or `None` (with the reason printed) where this machine has no Vulkan driver.
fn device() -> Option<WgpuDevice> {
    let icds = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
    let has_icd = icds.iter().any(|d| std::fs::read_dir(d).is_ok_and(|mut e| e.next().is_some()));
    if !has_icd {
        assert!(std::env::var_os("FAIRVLM_REQUIRE_WGPU").is_none(), "FAIRVLM_REQUIRE_WGPU is set but no Vulkan driver is installed (apt-get install mesa-vulkan-drivers)");
        println!("skipped: no Vulkan driver (install mesa-vulkan-drivers for the software device)");
        return None;
    }
    if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
        // The Vulkan loader wants one; any writable folder will do.
        let dir = std::env::temp_dir().join("fairvlm-xdg");
        let _ = std::fs::create_dir_all(&dir);
        // SAFETY: set before any thread of this test touches the environment's Vulkan setup.
        unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
    }
    Some(WgpuDevice::DefaultDevice)
}

fn report(what: &str, diffs: &[parity::Difference]) {
    println!("{what}:");
    for d in diffs {
        println!("  {d}");
    }
    let failed: Vec<String> = diffs.iter().filter(|d| !d.ok()).map(|d| d.to_string()).collect();
    assert!(failed.is_empty(), "{what}: {failed:#?}");
}

fn step(method: &str) {
    let Some(device) = device() else { return };
    let dir = scratch(&format!("wgpu-{method}"));
    let diffs = parity::recipe_step::<W>(&parity::experiment(method).unwrap(), &device, &dir, Tolerances::default()).unwrap();
    report(method, &diffs);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn clip_step_matches_the_cpu() {
    step("clip");
}

#[test]
fn fairclip_step_matches_the_cpu() {
    step("fairclip");
}

#[test]
fn fo_moe_step_matches_the_cpu() {
    step("fo-moe");
}

#[test]
fn fair_moe_step_matches_the_cpu() {
    step("fair-moe");
}

#[test]
fn late_fusion_step_matches_the_cpu() {
    step("late-fusion");
}

#[test]
fn ogm_ge_step_matches_the_cpu() {
    step("ogm-ge");
}

#[test]
fn multifair_step_matches_the_cpu() {
    step("multifair");
}

#[test]
fn sinkhorn_and_routing_match_the_cpu() {
    let Some(device) = device() else { return };
    report("kernels", &parity::kernels::<W>(&device, Tolerances::default()).unwrap());
}

/// The same seed gives the same initial parameters on both backends: they are drawn on the
/// CPU and copied (the backends' own generators differ).
#[test]
fn same_seed_same_initial_weights() {
    let Some(device) = device() else { return };
    let exp = parity::experiment("fo-moe").unwrap();
    let data = trainer::ExperimentData::load(&exp, None).unwrap();
    let dir = scratch("wgpu-init");
    std::fs::create_dir_all(&dir).unwrap();
    let on_wgpu = trainer::init_clip::<Wgpu>(&exp, &data, true, &device).unwrap();
    trainer::save_safetensors(&on_wgpu, &dir.join("wgpu.safetensors")).unwrap();
    let on_cpu = trainer::init_clip::<Flex>(&exp, &data, true, &Default::default()).unwrap();
    trainer::save_safetensors(&on_cpu, &dir.join("cpu.safetensors")).unwrap();
    // Tensor by tensor: the files' metadata maps are written in no fixed order.
    let tensors = |name: &str| -> Vec<(String, Vec<u8>)> {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut out: Vec<(String, Vec<u8>)> = st.tensors().into_iter().map(|(k, v)| (k, v.data().to_vec())).collect();
        out.sort();
        out
    };
    let (a, b) = (tensors("wgpu.safetensors"), tensors("cpu.safetensors"));
    assert!(a.len() > 100, "{} tensors", a.len());
    for ((ka, va), (kb, vb)) in a.iter().zip(&b) {
        assert_eq!(ka, kb);
        assert!(va == vb, "{ka} differs");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Two epochs of CLIP from the same seed: the same losses and metrics as the CPU within
/// 1e-3 relative (a step's 1e-5 differences compound over the 12 steps, and an AUC changes
/// only where two scores swap order).
#[test]
fn two_epochs_on_wgpu_match_the_cpu() {
    let Some(device) = device() else { return };
    let exp = tiny("clip", 2);
    let (dw, dc) = (scratch("wgpu-2ep"), scratch("cpu-2ep"));
    let w = trainer::train::<W>(&exp, &quiet(dw.clone()), &device).unwrap();
    let c = trainer::train::<Autodiff<Flex>>(&exp, &quiet(dc.clone()), &Default::default()).unwrap();
    for (a, b) in w.history.iter().zip(&c.history) {
        let (va, vb) = (a.validation.auc.unwrap_or(f64::NAN), b.validation.auc.unwrap_or(f64::NAN));
        println!("epoch {}: loss {} vs {}, validation AUC {va} vs {vb}", a.epoch, a.loss, b.loss);
        assert!((a.loss - b.loss).abs() <= 1e-3 * b.loss.abs(), "loss {} vs {}", a.loss, b.loss);
        assert!((va - vb).abs() <= 1e-3, "validation AUC {va} vs {vb}");
    }
    let (rw, rc) = (w.report.unwrap(), c.report.unwrap());
    let (ta, tb) = (rw.test.overall.auc.unwrap_or(f64::NAN), rc.test.overall.auc.unwrap_or(f64::NAN));
    assert!((ta - tb).abs() <= 1e-3, "test AUC {ta} vs {tb}");
    for d in [&dw, &dc] {
        std::fs::remove_dir_all(d).ok();
    }
}

/// LoRA too: the base, and the adapters and head the auditor adds to it, are drawn on the CPU,
/// so after one epoch of the auditor's training on each backend its sensitive adapter is the
/// CPU's within 1e-3 (from draws of the device's own generator they would differ entirely).
#[test]
fn lora_adapters_start_the_same_on_both_backends() {
    use trainer::lora::{self, Auditor, LoraExperiment};
    let Some(device) = device() else { return };
    let mut set = fair_data::LabelledImages { size: 8, ..Default::default() };
    let n = 32;
    set.images = (0..n * 3 * 64).map(|i| ((i * 37 + (i / 64) * 11) % 256) as u8).collect();
    let class: Vec<i64> = (0..n as i64).map(|i| i % 4).collect();
    set.labels = [("class".to_string(), class.clone()), ("sensitive".to_string(), class.iter().map(|c| c / 2).collect())].into();
    let text = "seed = 5\nmethod = \"adv\"\n[model]\npatch_size = 4\nwidth = 16\nlayers = 2\nheads = 2\n[lora]\nr = 4\nalpha = 8.0\ndropout = 0.0\n[optim]\nlr = 5e-3\nbatch_size = 16\nepochs = 1\n[fair]\nsensitive_epochs = 1\nauditor_batch = 16\n";
    let exp = LoraExperiment::from_toml_str_with(text, "test", &[]).unwrap();
    let sensitive = set.with_labels(&[("sensitive", "sensitive")]).unwrap();
    let on_wgpu = {
        let base = lora::pretrain::<W>(&exp, &set, "class", 1, &device).unwrap();
        Auditor::new(&exp, base, sensitive.clone(), "sensitive", &device).unwrap().sensitive_adapter().unwrap()
    };
    let on_cpu = {
        let cpu = Default::default();
        let base = lora::pretrain::<Autodiff<Flex>>(&exp, &set, "class", 1, &cpu).unwrap();
        Auditor::new(&exp, base, sensitive, "sensitive", &cpu).unwrap().sensitive_adapter().unwrap()
    };
    assert_eq!(on_wgpu.len(), on_cpu.len());
    assert!(!on_cpu.is_empty());
    for ((path, (a, _, b, _)), (_, (ca, _, cb, _))) in on_wgpu.iter().zip(&on_cpu) {
        let (ra, rb) = (parity::relative(a, ca), parity::relative(b, cb));
        println!("{path}: A {ra:.1e}, B {rb:.1e}");
        assert!(ra < 1e-3 && rb < 1e-3, "{path}: A {ra}, B {rb}");
    }
}

/// Mixed precision on the device: two epochs of CLIP with the towers' products in f16 (and
/// in bf16 where the device has it) start from the CPU's weights and end within 1e-3 of the
/// CPU's f32 losses. A device without 16-bit floats in its shaders is reported, not failed.
#[test]
fn half_precision_on_wgpu_trains_like_the_cpu() {
    let Some(device) = device() else { return };
    let base = tiny("clip", 2);
    let dc = scratch("cpu-f32");
    let c = trainer::train::<Autodiff<Flex>>(&base, &quiet(dc.clone()), &Default::default()).unwrap();
    for precision in [vlm_backbone::Precision::F16, vlm_backbone::Precision::Bf16] {
        let mut exp = base.clone();
        exp.optim.precision = precision;
        let dw = scratch(&format!("wgpu-{precision:?}"));
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| trainer::train::<W>(&exp, &quiet(dw.clone()), &device)));
        let w = match run {
            Ok(r) => r.unwrap(),
            Err(p) => {
                let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                println!("{precision:?} not run on this device: {msg}");
                assert_ne!(precision, vlm_backbone::Precision::F16, "lavapipe has shaderFloat16: f16 must run");
                continue;
            }
        };
        for (a, b) in w.history.iter().zip(&c.history) {
            println!("{precision:?} epoch {}: loss {} (wgpu) vs {} (CPU f32)", a.epoch, a.loss, b.loss);
            assert!((a.loss - b.loss).abs() <= 1e-3 * b.loss.abs(), "{precision:?}: loss {} vs {}", a.loss, b.loss);
        }
        std::fs::remove_dir_all(&dw).ok();
    }
    std::fs::remove_dir_all(&dc).ok();
}
