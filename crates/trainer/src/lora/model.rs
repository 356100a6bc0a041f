//! The frozen ViT and its adapters: batches, the stand-in pretraining, fresh adapters and
//! head, adapters as plain values (what travels), and the files of a base and a developer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::LinearConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fair_data::{LabelledImages, StreamShuffle};
use lora_fair::{AdapterConfig, LoraAdapter};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use vlm_backbone::VitClassifier;

use super::config::LoraExperiment;
use crate::checkpoint::{ckpt_err, io_err, load_safetensors, materialized, save_safetensors, seeded, take_values, DrawBackend};
use crate::epochs::{epochs, Epochs, Plan};
use crate::error::{Error, Result};
use crate::optim::Optim;

/// Normalised images `[n, 3, s, s]` of the rows `idx`.
pub fn image_batch<B: Backend>(set: &LabelledImages, idx: &[usize], device: &B::Device) -> Tensor<B, 4> {
    let (s, px) = (set.size, 3 * set.size * set.size);
    let mut x = Vec::with_capacity(idx.len() * px);
    for &i in idx {
        x.extend(set.images[i * px..(i + 1) * px].iter().map(|&v| (v as f32 / 255.0 - 0.5) / 0.5));
    }
    Tensor::from_data(TensorData::new(x, [idx.len(), 3, s, s]), device)
}

pub(crate) fn label_batch<B: Backend>(labels: &[i64], idx: &[usize], device: &B::Device) -> Tensor<B, 1, Int> {
    let v: Vec<i64> = idx.iter().map(|&i| labels[i]).collect();
    Tensor::from_ints(v.as_slice(), device)
}

/// Number of classes of a label column (max + 1), refusing negative labels.
pub fn classes_of(labels: &[i64], name: &str) -> Result<usize> {
    if let Some(bad) = labels.iter().position(|&l| l < 0) {
        return Err(Error::Invalid(format!("label '{name}' of row {bad} is {}: expected classes 0, 1, ...", labels[bad])));
    }
    Ok(labels.iter().copied().max().map_or(0, |m| m as usize + 1).max(2))
}

pub(crate) fn shuffled(n: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(rng);
    idx
}

/// Pretrains the whole classifier (the stand-in for ImageNet pretraining) on `set`'s `label`
/// and returns it; LoRA then adapts its tower.
pub fn pretrain<B: AutodiffBackend>(exp: &LoraExperiment, set: &LabelledImages, label: &str, epochs: usize, device: &B::Device) -> Result<VitClassifier<B>> {
    let labels = set.label(label)?;
    let classes = classes_of(labels, label)?;
    let model = seeded(
        device,
        exp.seed,
        |d| Ok(materialized(exp.classifier(set.size, classes).init::<B>(d))),
        |d| Ok(materialized(exp.classifier(set.size, classes).init::<DrawBackend>(d))),
    )?;
    let order = StreamShuffle::new(exp.seed);
    Ok(fit(model, set, labels, exp, epochs, |n, epoch| order.order(n, epoch), device)?.0)
}

/// Full training of a classifier on one label column, one step at a time: cross-entropy and
/// AdamW at `optim.lr` over every trainable weight. It is the step of the base's pretraining
/// and of the auditor's sensitive adapter (and the one `benches/step_vs_torch.rs` times).
///
/// ```
/// use burn::backend::{Autodiff, Flex};
/// use fair_data::LabelledImages;
/// use trainer::lora::{Fit, LoraExperiment};
///
/// let exp = LoraExperiment::from_toml_str_with("[model]\npatch_size = 8\nwidth = 16\nlayers = 1\nheads = 2", "example", &[])?;
/// let set = LabelledImages { size: 16, images: vec![0; 4 * 3 * 16 * 16], labels: [("y".into(), vec![0, 1, 0, 1])].into() };
/// let device = Default::default();
/// let model = exp.classifier(16, 2).init::<Autodiff<Flex>>(&device);
/// let mut fit = Fit::new(model, &set, set.label("y")?, &exp, &device);
/// let loss = fit.step(&[0, 1, 2, 3], 1)?;
/// assert!(loss.is_finite());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Fit<'a, B: AutodiffBackend> {
    model: VitClassifier<B>,
    optim: Optim<B, VitClassifier<B>>,
    set: &'a LabelledImages,
    labels: &'a [i64],
    lr: f64,
    last: f64,
    device: &'a B::Device,
}

impl<'a, B: AutodiffBackend> Fit<'a, B> {
    /// Trains `model` on `set` with the label column `labels` (one per row), as `exp` says.
    pub fn new(model: VitClassifier<B>, set: &'a LabelledImages, labels: &'a [i64], exp: &LoraExperiment, device: &'a B::Device) -> Self {
        let optim = Optim::<B, VitClassifier<B>>::adamw(None, exp.optim.weight_decay);
        Fit { model, optim, set, labels, lr: exp.optim.lr, last: 0.0, device }
    }

    /// One step on the rows `rows` of (1-based) `epoch`; returns the batch's loss.
    pub fn step(&mut self, rows: &[usize], epoch: usize) -> Result<f64> {
        let ce = CrossEntropyLossConfig::new().init(self.device);
        let loss = ce.forward(self.model.forward(image_batch(self.set, rows, self.device)), label_batch(self.labels, rows, self.device));
        let v = loss.clone().into_scalar().elem::<f64>();
        super::config::check_finite("the fit", v, epoch, &[("optim.lr", self.lr)])?;
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optim.step(self.lr, self.model.clone(), grads);
        Ok(v)
    }

    /// The model as trained so far.
    pub fn into_model(self) -> VitClassifier<B> {
        self.model
    }
}

impl<B: AutodiffBackend> Epochs for Fit<'_, B> {
    type Stats = f64;
    fn loss(stats: &f64) -> f64 {
        *stats
    }
    fn step(&mut self, rows: &[usize], epoch: usize) -> Result<f64> {
        Fit::step(self, rows, epoch)
    }
    fn end_epoch(&mut self, _epoch: usize, stats: Vec<f64>, _seconds: f64) -> Result<()> {
        self.last = stats.iter().sum::<f64>() / stats.len().max(1) as f64;
        Ok(())
    }
}

/// Trains every trainable weight of `model` on `set`'s `labels` ([`Fit`]) for `epoch_count`
/// epochs in the order `order` gives: the base's pretraining and the auditor's sensitive
/// adapter. Returns the model and the last epoch's mean loss.
pub(crate) fn fit<B: AutodiffBackend>(
    model: VitClassifier<B>,
    set: &LabelledImages,
    labels: &[i64],
    exp: &LoraExperiment,
    epoch_count: usize,
    order: impl FnMut(usize, usize) -> Vec<usize>,
    device: &B::Device,
) -> Result<(VitClassifier<B>, f64)> {
    let mut f = Fit::new(model, set, labels, exp, device);
    let plan = Plan { name: "fit", rows: set.len(), batch_size: exp.optim.batch_size, epochs: epoch_count, progress: false, min_batch: 1 };
    epochs(&mut f, &plan, 0, None, order)?;
    let last = f.last;
    Ok((f.into_model(), last))
}

/// The developer's or auditor's model: the frozen tower with fresh adapters and a new head,
/// drawn on the CPU whatever `B` is (the base, of images of side `image_size`, is copied there
/// first), so a seed gives the same adapters on every backend.
pub(crate) fn adapted<B: AutodiffBackend>(
    exp: &LoraExperiment,
    base: &VitClassifier<B>,
    image_size: usize,
    classes: usize,
    seed: u64,
    device: &B::Device,
) -> Result<VitClassifier<B>> {
    let base_classes = base.classifier.weight.dims()[1];
    seeded(
        device,
        seed,
        |d| with_adapters(exp, base.vit.clone(), classes, d),
        |d| {
            let on_cpu = take_values(exp.classifier(image_size, base_classes).init::<DrawBackend>(d), base)?;
            // Copying the base may draw its skeleton's parameters first: the adapters' draws
            // start from the seed, as on the CPU backend.
            DrawBackend::seed(d, seed);
            with_adapters(exp, on_cpu.vit, classes, d)
        },
    )
}

/// `vit` with fresh LoRA adapters and a new head of `classes`, materialised.
fn with_adapters<B: Backend>(exp: &LoraExperiment, vit: vlm_backbone::VisionTransformer<B>, classes: usize, device: &B::Device) -> Result<VitClassifier<B>> {
    let head = LinearConfig::new(exp.model.width, classes).init::<B>(device);
    let m = VitClassifier { vit, classifier: head }.with_lora(&exp.lora.config(), &exp.lora.projections(), device).map_err(|e| Error::Invalid(format!("[lora]: {e}")))?;
    Ok(materialized(m))
}

/// Adapter weights by module path: what travels between the parties.
pub type Adapters = BTreeMap<String, (Vec<f32>, [usize; 2], Vec<f32>, [usize; 2])>;

/// The adapters of a model as plain values (A, its shape, B, its shape).
pub fn adapter_values<B: Backend>(model: &VitClassifier<B>) -> Adapters {
    model.vit.lora_adapters().into_iter().map(|(p, a)| (p, values_of(a))).collect()
}

/// One adapter's A and B as plain values with their shapes.
pub(crate) fn values_of<B: Backend>(a: &LoraAdapter<B>) -> (Vec<f32>, [usize; 2], Vec<f32>, [usize; 2]) {
    let v = |t: Tensor<B, 2>| -> (Vec<f32>, [usize; 2]) {
        let d = t.dims();
        (t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default(), d)
    };
    let ((av, ad), (bv, bd)) = (v(a.lora_a.val()), v(a.lora_b.val()));
    (av, ad, bv, bd)
}

pub(crate) fn adapters_to_modules<B: Backend>(values: &Adapters, scaling: f64, device: &B::Device) -> Result<BTreeMap<String, LoraAdapter<B>>> {
    values
        .iter()
        .map(|(p, (a, ad, b, bd))| {
            let ta = Tensor::from_data(TensorData::new(a.clone(), *ad), device);
            let tb = Tensor::from_data(TensorData::new(b.clone(), *bd), device);
            LoraAdapter::from_weights(ta, tb, scaling).map(|m| (p.clone(), m)).map_err(|e| Error::Invalid(format!("adapter {p}: {e}")))
        })
        .collect()
}

/// Writes adapter values as a peft folder (through backend `B`'s default device).
pub fn save_adapter_values<B: Backend>(dir: &Path, values: &Adapters, exp: &LoraExperiment) -> Result<()> {
    let device = Default::default();
    let modules = adapters_to_modules::<B>(values, exp.lora.config().scaling(), &device)?;
    let list: Vec<(String, &LoraAdapter<B>)> = modules.iter().map(|(p, a)| (p.clone(), a)).collect();
    let projections = exp.lora.projections();
    let targets: Vec<&str> = projections.iter().map(String::as_str).collect();
    lora_fair::save_adapters(dir, &list, &AdapterConfig::new(&exp.lora.config(), &targets, Some("fairvlm lora base"))).map_err(|e| ckpt_err(dir, e))
}

/// Reads a peft adapter folder as values (through backend `B`'s default device).
pub fn load_adapter_values<B: Backend>(dir: &Path) -> Result<Adapters> {
    let device = Default::default();
    let (_, modules) = lora_fair::load_adapters::<B>(dir, &device).map_err(|e| ckpt_err(dir, e))?;
    Ok(modules.iter().map(|(p, a)| (p.clone(), values_of(a))).collect())
}

/// Saves the developer's result: the adapters as a peft folder (`adapter/`), the head
/// (`head.safetensors`), the config (`lora.toml`) and, for Unl negate, the sensitive adapter
/// that was subtracted from the base (`negated/`), so the model can be rebuilt from the base.
pub fn save_developer<B: Backend>(dir: &Path, exp: &LoraExperiment, model: &VitClassifier<B>, negated: Option<&Adapters>) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    save_adapter_values::<B>(&dir.join("adapter"), &adapter_values(model), exp)?;
    if let Some(n) = negated {
        save_adapter_values::<B>(&dir.join("negated"), n, exp)?;
    }
    let cfg = dir.join("lora.toml");
    std::fs::write(&cfg, toml::to_string_pretty(exp).unwrap_or_default()).map_err(io_err(&cfg))?;
    save_safetensors(&model.classifier, &dir.join("head.safetensors"))
}

/// Rebuilds a developer's model from the base and the folder [`save_developer`] wrote (the
/// head's classes are read from its file).
pub fn load_developer<B: Backend>(dir: &Path, exp: &LoraExperiment, base: &VitClassifier<B>, device: &B::Device) -> Result<VitClassifier<B>> {
    let base = if dir.join("negated").is_dir() { negated_base(exp, base, &load_adapter_values::<B>(&dir.join("negated"))?, device)? } else { base.clone() };
    let (_, modules) = lora_fair::load_adapters::<B>(&dir.join("adapter"), device).map_err(|e| ckpt_err(dir, e))?;
    let vit = base.vit.no_grad().with_lora_adapters(modules).map_err(|e| ckpt_err(dir, e))?;
    let head_path = dir.join("head.safetensors");
    let head = load_safetensors(LinearConfig::new(exp.model.width, head_classes(&head_path)?).init::<B>(device), &head_path)?;
    Ok(VitClassifier { vit, classifier: head })
}

/// The classes of a developer's head (`head.safetensors`: `bias` has one entry per class).
fn head_classes(path: &Path) -> Result<usize> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ckpt_err(path, e))?;
    let bias = st.tensor("bias").map_err(|e| ckpt_err(path, format!("bias: {e}")))?;
    match bias.shape() {
        [classes] if *classes >= 2 => Ok(*classes),
        other => Err(ckpt_err(path, format!("bias has shape {other:?}: expected [classes], classes >= 2"))),
    }
}

/// What a base checkpoint needs to be rebuilt: written beside it as `<base>.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseInfo {
    /// Image side.
    pub image_size: usize,
    /// Classes of the pretraining head.
    pub classes: usize,
}

fn sidecar(path: &Path) -> PathBuf {
    path.with_extension("json")
}

/// Saves a pretrained base classifier and its sizes.
pub fn save_base<B: Backend>(path: &Path, model: &VitClassifier<B>, info: BaseInfo) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    save_safetensors(model, path)?;
    let side = sidecar(path);
    std::fs::write(&side, serde_json::to_string_pretty(&info).unwrap_or_default()).map_err(io_err(&side))
}

/// Loads a base saved by [`save_base`]; the model sizes come from `exp`, the image size and
/// head from the sidecar.
pub fn load_base<B: Backend>(exp: &LoraExperiment, path: &Path, device: &B::Device) -> Result<(VitClassifier<B>, BaseInfo)> {
    let side = sidecar(path);
    let text = std::fs::read_to_string(&side).map_err(io_err(&side))?;
    let info: BaseInfo = serde_json::from_str(&text).map_err(|e| ckpt_err(&side, e))?;
    let model = exp.classifier(info.image_size, info.classes).init::<B>(device);
    Ok((load_safetensors(model, path)?, info))
}

/// Unl's base, `W₀′ = W₀ − β·ΔW_S`: the sensitive adapter attached with scaling `−β·α/r` and
/// merged into the frozen weights.
pub fn negated_base<B: Backend>(exp: &LoraExperiment, base: &VitClassifier<B>, sensitive: &Adapters, device: &B::Device) -> Result<VitClassifier<B>> {
    let modules = adapters_to_modules::<B>(sensitive, -exp.fair.unl_beta * exp.lora.config().scaling(), device)?;
    let vit = base.vit.clone().with_lora_adapters(modules).map_err(|e| Error::Invalid(format!("sensitive adapter: {e}")))?;
    Ok(VitClassifier { vit: vit.merge_and_unload(), classifier: base.classifier.clone() })
}
