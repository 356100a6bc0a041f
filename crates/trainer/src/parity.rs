//! The same computation on a device backend and on the CPU backend, compared: what proves a
//! GPU backend right. [`recipe_step`] runs one training step of a method from the same initial
//! weights (drawn on the CPU, see [`crate::init_clip`]) and the same batch on both, and compares
//! the initial weights, the forward outputs (the validation scores), the loss, every gradient
//! the optimiser receives and every weight after the update; [`kernels`] compares the Sinkhorn
//! divergence and the MoE routing (with ties) with their gradients.
//!
//! Differences are relative to the reference's size: `max |a - b| / max |b|` per tensor, the
//! largest over the tensors reported. Where a quantity has several tensors (all gradients, all
//! weights), let `typical` be the median of their largest values:
//! - a tensor whose values are all under `typical / 100` is measured against `typical / 100`;
//! - a tensor under `typical · 1e-5` on both backends counts as zero on both. An analytically
//!   zero gradient, such as that of attention's key bias (softmax ignores a shift of every
//!   key), is rounding noise there: about 2e-10 against a typical 5e-4 in the tiny CLIP, and
//!   the noise differs between backends by its own size.

use std::path::Path;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use rand::{Rng, SeedableRng};

use crate::config::Experiment;
use crate::data::ExperimentData;
use crate::error::{Error, Result};
use crate::optim::tap;
use crate::recipes::{dispatch, Recipe, StepStats, WithRecipe};
use crate::run::Trainer;

/// The CPU backend every device backend is compared with.
pub type Reference = Autodiff<Flex>;

/// One compared quantity: its largest relative difference and the tolerance it must meet.
#[derive(Debug, Clone, PartialEq)]
pub struct Difference {
    /// What was compared (with the worst tensor's name where there are several).
    pub what: String,
    /// `max |a - b| / max |b|`, the worst over the tensors compared.
    pub relative: f64,
    /// The largest allowed.
    pub tolerance: f64,
}

impl Difference {
    /// Whether it is within the tolerance (NaN is not).
    pub fn ok(&self) -> bool {
        self.relative <= self.tolerance
    }
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {:.2e} (tolerance {:.0e}){}", self.what, self.relative, self.tolerance, if self.ok() { "" } else { "  FAILED" })
    }
}

/// Tolerances of the comparisons, relative (see the module's doc).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Forward outputs, losses, gradients, weights after a step (1e-4 for f32: the backends
    /// sum in different orders and use different `exp`/`tanh`/`erf`).
    pub f32: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Self { f32: 1e-4 }
    }
}

/// The tiny experiment of `method` the comparisons run: the synthetic benchmark at 32 pixels,
/// the `tiny` preset, dropout and OGM-GE's Gaussian enhancement off (both draw from the
/// backend's own generator, which differs between backends), and Adam's ε at 1. Adam's first
/// update is `lr · g / (|g| + ε)`: with the usual ε = 1e-8 it divides the rounding noise of a
/// gradient near zero by ε, so a weight can move by a different fraction of `lr` on each
/// backend although both gradients agree to 1e-7 of the gradient's scale (measured: 6% of `lr`
/// for one Fair-MoE expert weight, whose gradients reach 1e3). With ε = 1 the update is as well
/// conditioned as the gradient, which is compared on its own; Adam's arithmetic (moments,
/// square root, bias correction, decay) runs all the same.
///
/// ```
/// let exp = trainer::parity::experiment("ogm-ge").unwrap();
/// assert!(!exp.ogm.gaussian_enhancement);
/// assert_eq!(exp.multimodal.dropout, 0.0);
/// ```
pub fn experiment(method: &str) -> Result<Experiment> {
    let multimodal = match method {
        "late-fusion" | "multifair" => "[multimodal]\nproj_dim = 16\nfusion_heads = 2\nfusion_layers = 1\ndropout = 0.0\n",
        // OGM-GE reads each modality's logits off a concatenation head.
        "ogm-ge" => "[multimodal]\nproj_dim = 16\nfusion = \"concat\"\ndropout = 0.0\n",
        _ => "",
    };
    let text = format!(
        r#"
seed = 5
method = "{method}"
[data]
vocab_size = 300
context_length = 16
[data.synthetic]
# The subjects of seed 0 (seed XOR 5), on which docs/gpu.md's figures were measured.
seed = 5
image_size = 32
sizes = [32, 16, 16]
text_signal = 1.0
[model]
preset = "tiny"
[optim]
optimizer = "adamw"
lr = 1e-3
eps = 1.0
weight_decay = 0.01
batch_size = 16
epochs = 1
[fairclip]
group_batch_size = 4
lambda = 1e-2
blur = 0.1
[ogm]
gaussian_enhancement = false
[multifair]
threshold = 0.0
{multimodal}"#
    );
    Experiment::from_toml_str(&text, &format!("parity experiment ({method})"))
}

/// What one backend computed.
struct Trace {
    initial: Vec<(String, Vec<f32>)>,
    scores: Vec<f64>,
    stats: StepStats,
    grads: Vec<Vec<f32>>,
    after: Vec<(String, Vec<f32>)>,
}

/// One step of `exp`'s method on `device` (backend `B`) and on the CPU reference, compared.
/// `scratch` holds the weights each side writes.
pub fn recipe_step<B: AutodiffBackend>(exp: &Experiment, device: &B::Device, scratch: &Path, tol: Tolerances) -> Result<Vec<Difference>> {
    let reference = trace::<Reference>(exp, &Default::default(), &scratch.join("cpu"))?;
    let other = trace::<B>(exp, device, &scratch.join("device"))?;
    let mut out = vec![
        worst("initial weights", &other.initial, &reference.initial, 0.0),
        compare("validation scores before the step", &f32s(&other.scores), &f32s(&reference.scores), tol.f32),
        scalar("loss", other.stats.loss, reference.stats.loss, tol.f32),
        scalar("task loss", other.stats.task_loss, reference.stats.task_loss, tol.f32),
    ];
    for (what, a, b) in [("FairCLIP regulariser", other.stats.fair_loss, reference.stats.fair_loss), ("FOL terms", other.stats.fol_loss, reference.stats.fol_loss)] {
        match (a, b) {
            (Some(a), Some(b)) => out.push(scalar(what, a, b, tol.f32)),
            (None, None) => {}
            _ => out.push(Difference { what: format!("{what}: present on one backend only"), relative: f64::INFINITY, tolerance: 0.0 }),
        }
    }
    if let (Some((fa, ta)), Some((fb, tb))) = (other.stats.modulation, reference.stats.modulation) {
        out.push(compare("modulation factors", &f32s(&fa), &f32s(&fb), tol.f32));
        out.push(Difference { what: "group trigger".into(), relative: if ta == tb { 0.0 } else { f64::INFINITY }, tolerance: 0.0 });
    }
    let named = |g: &[Vec<f32>]| g.iter().enumerate().map(|(i, v)| (format!("#{i}"), v.clone())).collect::<Vec<_>>();
    if other.grads.len() != reference.grads.len() {
        return Err(Error::Invalid(format!("the optimisers received {} gradients on the device and {} on the CPU", other.grads.len(), reference.grads.len())));
    }
    out.push(worst("gradient", &named(&other.grads), &named(&reference.grads), tol.f32));
    out.push(worst("weights after the step", &other.after, &reference.after, tol.f32));
    Ok(out)
}

fn trace<B: AutodiffBackend>(exp: &Experiment, device: &B::Device, dir: &Path) -> Result<Trace> {
    struct Job<'a, B: AutodiffBackend> {
        exp: &'a Experiment,
        device: &'a B::Device,
        dir: &'a Path,
    }
    impl<B: AutodiffBackend> WithRecipe<B> for Job<'_, B> {
        type Output = Result<Trace>;
        fn with<R: Recipe<B>>(self) -> Result<Trace> {
            let (exp, device, dir) = (self.exp, self.device, self.dir);
            std::fs::create_dir_all(dir).map_err(crate::checkpoint::io_err(dir))?;
            let data = ExperimentData::load(exp, None)?;
            let mut t = Trainer::<B, R>::new(exp, data, device)?;
            t.recipe.save_weights(dir, "initial")?;
            let scores = t.recipe.predict(&t.data().validation, device)?.positive;
            let rows: Vec<usize> = (0..exp.optim.batch_size.min(t.data().train.len())).collect();
            t.recipe.begin_epoch(1, device);
            tap::start();
            let stats = t.step(&rows, 1);
            let grads = tap::take();
            let stats = stats?;
            t.recipe.save_weights(dir, "after")?;
            Ok(Trace { initial: read_weights(dir, "initial")?, scores, stats, grads, after: read_weights(dir, "after")? })
        }
    }
    dispatch::<B, _>(exp.method, Job { exp, device, dir })
}

/// Every tensor of `<dir>/<name>*.safetensors`, by file and key, as f32.
fn read_weights(dir: &Path, name: &str) -> Result<Vec<(String, Vec<f32>)>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(crate::checkpoint::io_err(dir))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(name)) && p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let bytes = std::fs::read(&file).map_err(crate::checkpoint::io_err(&file))?;
        let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| crate::checkpoint::ckpt_err(&file, e))?;
        let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
        names.sort();
        for key in names {
            let view = st.tensor(&key).map_err(|e| crate::checkpoint::ckpt_err(&file, e))?;
            if view.dtype() != safetensors::Dtype::F32 {
                return Err(crate::checkpoint::ckpt_err(&file, format!("{key}: {:?}, expected F32", view.dtype())));
            }
            let values = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            out.push((format!("{}:{key}", file.file_name().unwrap_or_default().to_string_lossy()), values));
        }
    }
    Ok(out)
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// `max |a - b| / max |b|` (0 when both are all zeros; infinite when the lengths differ).
///
/// ```
/// assert!((trainer::parity::relative(&[1.0, 2.002], &[1.0, 2.0]) - 1e-3).abs() < 1e-6);
/// ```
pub fn relative(a: &[f32], b: &[f32]) -> f64 {
    relative_to(a, b, 0.0)
}

/// [`relative`] with `floor` as the smallest denominator.
fn relative_to(a: &[f32], b: &[f32], floor: f64) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    let (mut diff, mut size) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let d = (*x as f64 - *y as f64).abs();
        // NaN anywhere is a failure, not a skipped element.
        diff = if d.is_nan() || diff.is_nan() { f64::NAN } else { diff.max(d) };
        size = size.max((*y as f64).abs());
    }
    if diff == 0.0 {
        0.0
    } else {
        diff / size.max(floor).max(f64::MIN_POSITIVE)
    }
}

fn compare(what: &str, a: &[f32], b: &[f32], tolerance: f64) -> Difference {
    Difference { what: what.into(), relative: relative(a, b), tolerance }
}

fn scalar(what: &str, a: f64, b: f64, tolerance: f64) -> Difference {
    let relative = if a == b { 0.0 } else { (a - b).abs() / b.abs().max(f64::MIN_POSITIVE) };
    Difference { what: what.into(), relative, tolerance }
}

/// The worst tensor of two lists of the same names (see the module's doc for the floor).
fn worst(what: &str, a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)], tolerance: f64) -> Difference {
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.0 != y.0) {
        return Difference { what: format!("{what}: the two backends' tensors differ in number or names"), relative: f64::INFINITY, tolerance };
    }
    let maxima: Vec<f64> = b.iter().map(|(_, v)| max_abs(v)).collect();
    let mut sorted = maxima.clone();
    sorted.sort_by(f64::total_cmp);
    let typical = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    let mut out: Option<Difference> = None;
    for (((name, x), (_, y)), &max_y) in a.iter().zip(b).zip(&maxima) {
        // Zero on both backends, within rounding: see the module's doc.
        let r = if max_abs(x) < typical * 1e-5 && max_y < typical * 1e-5 { 0.0 } else { relative_to(x, y, typical / 100.0) };
        if out.as_ref().is_none_or(|o| r.is_nan() || r > o.relative) {
            out = Some(Difference { what: format!("{what} (worst: {name}, {} values)", x.len()), relative: r, tolerance });
            if r.is_nan() {
                break;
            }
        }
    }
    out.unwrap_or(Difference { what: format!("{what} (none)"), relative: 0.0, tolerance })
}

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0f64, |m, v| m.max((*v as f64).abs()))
}

/// The Sinkhorn divergence (FairCLIP's distance) and the MoE routing (top-k and expert
/// capacity, on gates with ties) on `device` against the CPU, values and gradients.
pub fn kernels<B: AutodiffBackend>(device: &B::Device, tol: Tolerances) -> Result<Vec<Difference>> {
    let cpu = Default::default();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let mut out = Vec::new();

    // Sinkhorn between two point clouds of 12 and 9 points in 4 dimensions.
    let x: Vec<f32> = (0..48).map(|_| rng.random_range(-1.0..1.0)).collect();
    let y: Vec<f32> = (0..36).map(|_| rng.random_range(-0.5..1.5)).collect();
    let (sa, ga) = sinkhorn::<B>(&x, &y, device)?;
    let (sb, gb) = sinkhorn::<Reference>(&x, &y, &cpu)?;
    out.push(compare("Sinkhorn divergence", &[sa], &[sb], tol.f32));
    out.push(compare("Sinkhorn divergence's gradient", &ga, &gb, tol.f32));

    // Gates [2 sequences, 6 tokens, 4 experts] with exact ties in both the top-k and the
    // capacity choice: a backend that breaks ties another way routes other tokens.
    let mut gates: Vec<f32> = (0..48).map(|_| rng.random_range(0.0..1.0)).collect();
    for t in 0..12 {
        gates[t * 4 + 1] = gates[t * 4]; // experts 0 and 1 tie for every token
    }
    gates[4] = gates[0]; // tokens 0 and 1 of sequence 0 tie for expert 0
    gates[5] = gates[1];
    let (ra, rga) = routing::<B>(&gates, device);
    let (rb, rgb) = routing::<Reference>(&gates, &cpu);
    out.push(compare("MoE routing (top-2 of 4, capacity 3, with ties)", &ra, &rb, 0.0));
    out.push(compare("MoE routing's gradient", &rga, &rgb, tol.f32));

    // The activations of the towers and the fusion, with their gradients.
    let xs: Vec<f32> = (0..256).map(|i| -6.0 + 12.0 * i as f32 / 255.0).collect();
    for (name, f) in ACTIVATIONS {
        let (va, ga) = activation::<B>(&xs, f, device);
        let (vb, gb) = activation::<Reference>(&xs, f, &cpu);
        out.push(compare(name, &va, &vb, tol.f32));
        out.push(compare(&format!("{name}'s gradient"), &ga, &gb, tol.f32));
    }
    Ok(out)
}

/// Each activation the models use (burn's own `gelu` is not among them: its gradient on the
/// GPU backends is that of the tanh approximation, see [`vlm_backbone::gelu`]).
const ACTIVATIONS: [(&str, u8); 5] = [("GELU (vlm_backbone::gelu)", 0), ("quick GELU", 1), ("tanh", 2), ("sigmoid", 3), ("exp", 4)];

fn activation<B: AutodiffBackend>(xs: &[f32], which: u8, device: &B::Device) -> (Vec<f32>, Vec<f32>) {
    use burn::tensor::activation as act;
    let x = Tensor::<B, 1>::from_data(TensorData::new(xs.to_vec(), [xs.len()]), device).require_grad();
    let y = match which {
        0 => vlm_backbone::gelu(x.clone()),
        1 => x.clone() * act::sigmoid(x.clone() * 1.702),
        2 => x.clone().tanh(),
        3 => act::sigmoid(x.clone()),
        _ => (x.clone() * 0.5).exp(),
    };
    let grads = y.clone().sum().backward();
    let g = x.grad(&grads).map(|g| g.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()).unwrap_or_default();
    (y.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default(), g)
}

fn sinkhorn<B: AutodiffBackend>(x: &[f32], y: &[f32], device: &B::Device) -> Result<(f32, Vec<f32>)> {
    let xt = Tensor::<B, 2>::from_data(TensorData::new(x.to_vec(), [x.len() / 4, 4]), device).require_grad();
    let yt = Tensor::<B, 2>::from_data(TensorData::new(y.to_vec(), [y.len() / 4, 4]), device);
    let s = fair_losses::sinkhorn_divergence(xt.clone(), yt, &fair_losses::SinkhornConfig::new(0.05))?;
    let grads = s.backward();
    let g = xt.grad(&grads).map(|g| g.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()).unwrap_or_default();
    Ok((s.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default().first().copied().unwrap_or(f32::NAN), g))
}

fn routing<B: AutodiffBackend>(gates: &[f32], device: &B::Device) -> (Vec<f32>, Vec<f32>) {
    let g = Tensor::<B, 3>::from_data(TensorData::new(gates.to_vec(), [2, 6, 4]), device).require_grad();
    let routed = moe_layers::route_with_capacity(g.clone(), 2, 3);
    // A weighted sum, so every kept weight gets its own gradient.
    let w = Tensor::<B, 3>::from_data(TensorData::new((0..48).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(), [2, 6, 4]), device);
    let grads = (routed.clone() * w).sum().backward();
    let grad = g.grad(&grads).map(|g| g.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()).unwrap_or_default();
    (routed.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default(), grad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_difference_is_scaled_by_the_reference() {
        assert_eq!(relative(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        assert!((relative(&[1.0, 2.001], &[1.0, 2.0]) - 0.0005).abs() < 1e-6);
        assert_eq!(relative(&[0.0], &[0.0]), 0.0);
        assert!(relative(&[f32::NAN], &[1.0]).is_nan());
        assert_eq!(relative(&[1.0], &[1.0, 2.0]), f64::INFINITY);
        let d = Difference { what: "x".into(), relative: f64::NAN, tolerance: 1.0 };
        assert!(!d.ok());
    }

    #[test]
    fn the_cpu_against_itself_is_exact() {
        let dir = std::env::temp_dir().join(format!("fairvlm-parity-self-{}", std::process::id()));
        for method in ["clip", "fairclip", "fo-moe", "fair-moe", "late-fusion", "ogm-ge", "multifair"] {
            let exp = experiment(method).unwrap();
            let diffs = recipe_step::<Reference>(&exp, &Default::default(), &dir.join(method), Tolerances::default()).unwrap();
            for d in &diffs {
                assert_eq!(d.relative, 0.0, "{method}: {d}");
            }
            assert!(diffs.iter().any(|d| d.what.starts_with("gradient (worst")), "{method}: no gradients compared: {diffs:?}");
        }
        for d in kernels::<Reference>(&Default::default(), Tolerances::default()).unwrap() {
            assert_eq!(d.relative, 0.0, "{d}");
        }
        std::fs::remove_dir_all(&dir).ok();
    }
}
