//! The model developer: fine-tunes the adapters and head on the task labels with the
//! method's term, asking the auditor through an [`AuditorLink`](super::AuditorLink).

use std::collections::BTreeMap;
use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fair_data::{LabelledImages, StreamShuffle};
use serde::{Deserialize, Serialize};
use vlm_backbone::VitClassifier;

use super::auditor::{AdapterGrads, AuditorLink};
use super::config::{LoraExperiment, LoraMethod};
use super::model::{adapted, adapter_values, classes_of, image_batch, label_batch, negated_base, Adapters};
use crate::epochs::{epochs, Epochs, Plan};
use crate::error::{Error, Result};
use crate::optim::Optim;

/// What a developer's run produced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeveloperLog {
    /// The method.
    pub method: LoraMethod,
    /// Mean task cross-entropy per epoch.
    pub task_loss: Vec<f64>,
    /// Mean orthogonality penalty per epoch (Orth).
    pub orth_penalty: Vec<f64>,
    /// Orth's mechanism at the end of each epoch: how much the developer's adapters share the
    /// auditor's sensitive subspace, `‖X_T X_Sᵀ‖²_F / (‖X_T‖²_F ‖X_S‖²_F)` for `X` = A (rows
    /// span the input subspace) and `Xᵀ` = B, averaged over the adapted layers (0: orthogonal,
    /// 1: the same rank-1 direction).
    #[serde(default)]
    pub subspace_overlap: Vec<f64>,
    /// Trainable scalars (adapters and head).
    pub trainable_parameters: usize,
    /// Scalars of the whole model.
    pub total_parameters: usize,
    /// Seconds of training.
    pub seconds: f64,
}

fn add_grads<B: AutodiffBackend>(grads: &mut GradientsParams, model: &VitClassifier<B>, extra: &AdapterGrads) -> Result<()> {
    for (p, a) in model.vit.lora_adapters() {
        // Every adapted projection needs its gradient: a partial or empty answer would
        // silently train without the auditor's term.
        let (ga, gb) = extra.get(&p).ok_or_else(|| Error::Invalid(format!("the auditor's gradient has no entry for {p}")))?;
        for (param, g) in [(&a.lora_a, ga), (&a.lora_b, gb)] {
            let dims = param.lazy_shape().dims::<2>();
            if g.len() != dims[0] * dims[1] {
                return Err(Error::Invalid(format!("auditor gradient for {p}: {} values for a {dims:?} tensor", g.len())));
            }
            if let Some(v) = g.iter().find(|v| !v.is_finite()) {
                return Err(Error::Invalid(format!("auditor gradient for {p}: a value is {v}; the auditor's training diverged")));
            }
            let device = param.val().device();
            let add = Tensor::<B::InnerBackend, 2>::from_data(TensorData::new(g.clone(), dims), &device);
            let sum = match grads.remove::<B::InnerBackend, 2>(param.id) {
                Some(own) => own + add,
                None => add,
            };
            grads.register(param.id, sum);
        }
    }
    Ok(())
}

/// Orth's targets: the auditor's sensitive adapter (A, B) per module path.
type OrthTargets<B> = BTreeMap<String, (Tensor<B, 2>, Tensor<B, 2>)>;

/// The developer's side of a run on the loop: one step is the task loss (and Orth's penalty)
/// plus, for the methods that need it, the auditor's gradient for this round.
struct DeveloperRun<'a, B: AutodiffBackend> {
    exp: &'a LoraExperiment,
    data: &'a LabelledImages,
    labels: &'a [i64],
    link: &'a mut dyn AuditorLink,
    model: VitClassifier<B>,
    optim: Optim<B, VitClassifier<B>>,
    orth_targets: Option<OrthTargets<B>>,
    round: usize,
    log: DeveloperLog,
    device: &'a B::Device,
}

impl<B: AutodiffBackend> Epochs for DeveloperRun<'_, B> {
    /// The task loss and Orth's penalty.
    type Stats = (f64, f64);

    fn loss(stats: &(f64, f64)) -> f64 {
        stats.0
    }

    fn step(&mut self, rows: &[usize], epoch: usize) -> Result<(f64, f64)> {
        let (exp, device) = (self.exp, self.device);
        let ce = CrossEntropyLossConfig::new().init(device);
        let task = ce.forward(self.model.forward(image_batch(self.data, rows, device)), label_batch(self.labels, rows, device));
        let task_value = task.clone().into_scalar().elem::<f64>();
        let mut loss = task;
        let mut orth = 0.0;
        if let Some(targets) = &self.orth_targets {
            let pairs: Vec<fair_losses::AdapterPair<B>> = self
                .model
                .vit
                .lora_adapters()
                .into_iter()
                .filter_map(|(p, a)| {
                    targets.get(&p).map(|(sa, sb)| fair_losses::AdapterPair { task_a: a.lora_a.val(), task_b: a.lora_b.val(), sensitive_a: sa.clone(), sensitive_b: sb.clone() })
                })
                .collect();
            let penalty = fair_losses::lora_orthogonality(&pairs)?;
            orth = penalty.clone().into_scalar().elem::<f64>();
            loss = loss + penalty.mul_scalar(exp.fair.lambda_orth);
        }
        let f = &exp.fair;
        super::config::check_finite(
            "the developer",
            task_value + exp.fair.lambda_orth * orth,
            epoch,
            &[("optim.lr", exp.optim.lr), ("optim.weight_decay", exp.optim.weight_decay), ("fair.lambda_orth", f.lambda_orth)],
        )?;
        let mut grads = GradientsParams::from_grads(loss.backward(), &self.model);
        if exp.needs_gradients() {
            let g = self.link.gradient(self.round, &adapter_values(&self.model))?;
            add_grads(&mut grads, &self.model, &g)?;
            self.round += 1;
        }
        self.model = self.optim.step(exp.optim.lr, self.model.clone(), grads);
        Ok((task_value, orth))
    }

    fn end_epoch(&mut self, _epoch: usize, stats: Vec<(f64, f64)>, _seconds: f64) -> Result<()> {
        let steps = stats.len().max(1) as f64;
        self.log.task_loss.push(stats.iter().map(|s| s.0).sum::<f64>() / steps);
        if let Some(targets) = &self.orth_targets {
            self.log.orth_penalty.push(stats.iter().map(|s| s.1).sum::<f64>() / steps);
            self.log.subspace_overlap.push(subspace_overlap(&self.model, targets));
        }
        Ok(())
    }
}

/// See [`DeveloperLog::subspace_overlap`]; a layer whose task adapter is still zero (B starts
/// at zero) contributes nothing.
fn subspace_overlap<B: AutodiffBackend>(model: &VitClassifier<B>, targets: &OrthTargets<B>) -> f64 {
    let norm2 = |t: Tensor<B, 2>| t.powi_scalar(2).sum().into_scalar().elem::<f64>();
    let overlap = |x: Tensor<B, 2>, y: Tensor<B, 2>| -> Option<f64> {
        let (nx, ny) = (norm2(x.clone()), norm2(y.clone()));
        (nx > 0.0 && ny > 0.0).then(|| norm2(x.matmul(y.transpose())) / (nx * ny))
    };
    let mut values = Vec::new();
    for (path, a) in model.vit.lora_adapters() {
        if let Some((sa, sb)) = targets.get(&path) {
            values.extend(overlap(a.lora_a.val().detach(), sa.clone()));
            values.extend(overlap(a.lora_b.val().detach().transpose(), sb.clone().transpose()));
        }
    }
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The developer's fine-tuning with the configured method; `base` is the pretrained
/// classifier (its tower is frozen and adapted), `label` the task column of `data`.
pub fn train_developer<B: AutodiffBackend>(
    exp: &LoraExperiment,
    base: &VitClassifier<B>,
    data: &LabelledImages,
    label: &str,
    link: &mut dyn AuditorLink,
    device: &B::Device,
) -> Result<(VitClassifier<B>, DeveloperLog, Option<Adapters>)> {
    let start = Instant::now();
    let labels = data.label(label)?;
    let classes = classes_of(labels, label)?;
    let sensitive = if exp.needs_sensitive_adapter() { Some(link.sensitive_adapter()?) } else { None };
    let base = match (exp.method, &sensitive) {
        (LoraMethod::Unl, Some(s)) => negated_base(exp, base, s, device)?,
        _ => base.clone(),
    };
    let orth_targets: Option<OrthTargets<B>> = match (exp.method, &sensitive) {
        (LoraMethod::Orth, Some(s)) => Some(
            s.iter()
                .map(|(p, (a, ad, b, bd))| (p.clone(), (Tensor::from_data(TensorData::new(a.clone(), *ad), device), Tensor::from_data(TensorData::new(b.clone(), *bd), device))))
                .collect(),
        ),
        _ => None,
    };
    let model = adapted(exp, &base, data.size, classes, exp.seed, device)?;
    let total_parameters = model.num_params();
    let trainable_parameters =
        model.vit.lora_adapters().iter().map(|(_, a)| a.lora_a.lazy_shape().num_elements() + a.lora_b.lazy_shape().num_elements()).sum::<usize>() + model.classifier.num_params();
    let log = DeveloperLog { method: exp.method, task_loss: vec![], orth_penalty: vec![], subspace_overlap: vec![], trainable_parameters, total_parameters, seconds: 0.0 };
    let optim = Optim::<B, VitClassifier<B>>::adamw(None, exp.optim.weight_decay);
    let mut run = DeveloperRun { exp, data, labels, link, model, optim, orth_targets, round: 0, log, device };
    let plan = Plan { name: exp.method.name(), rows: data.len(), batch_size: exp.optim.batch_size, epochs: exp.optim.epochs, progress: false, min_batch: 1 };
    let order = StreamShuffle::new(exp.seed ^ 0xde7e);
    epochs(&mut run, &plan, 0, None, |n, epoch| order.order(n, epoch))?;
    let DeveloperRun { model, mut log, link, .. } = run;
    link.finish()?;
    log.seconds = start.elapsed().as_secs_f64();
    let negated = if exp.method == LoraMethod::Unl { sensitive } else { None };
    Ok((model, log, negated))
}
