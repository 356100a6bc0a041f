//! The fairness auditor: it holds the sensitive labels, trains the sensitive adapter and
//! head, and returns the gradients of its terms with respect to the developer's adapters.

use std::collections::BTreeMap;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use fair_data::LabelledImages;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlm_backbone::VitClassifier;

use super::config::{AdvMode, LoraExperiment, LoraMethod};
use super::model::{adapted, adapter_values, adapters_to_modules, classes_of, fit, image_batch, label_batch, shuffled, Adapters};
use crate::checkpoint::{materialized, seeded, DrawBackend};
use crate::error::{Error, Result};
use crate::optim::Optim;

/// Gradients with respect to the developer's adapters, by module path (`A`, `B`), as the
/// auditor returns them.
pub type AdapterGrads = BTreeMap<String, (Vec<f32>, Vec<f32>)>;

/// What the developer asks of the auditor.
pub trait AuditorLink {
    /// The auditor's sensitive adapter (Unl negate, Orth).
    fn sensitive_adapter(&mut self) -> Result<Adapters>;
    /// The gradient of the auditor's term with respect to the developer's adapters, at
    /// `adapters` (Adv, Ent, Unl ascent); `round` numbers the calls from 0.
    fn gradient(&mut self, round: usize, adapters: &Adapters) -> Result<AdapterGrads>;
    /// Tells the auditor that training is over.
    fn finish(&mut self) -> Result<()>;
}

/// The auditor: the sensitive labels, its sensitive adapter and head, the adversary.
pub struct Auditor<B: AutodiffBackend> {
    pub(crate) exp: LoraExperiment,
    base: VitClassifier<B>,
    data: LabelledImages,
    labels: Vec<i64>,
    classes: usize,
    sensitive: Option<VitClassifier<B>>,
    adversary: Linear<B>,
    adversary_optim: Optim<B, Linear<B>>,
    rng: ChaCha8Rng,
    device: B::Device,
}

impl<B: AutodiffBackend> Auditor<B> {
    /// An auditor over its pool (`label` is the sensitive attribute's column).
    pub fn new(exp: &LoraExperiment, base: VitClassifier<B>, data: LabelledImages, label: &str, device: &B::Device) -> Result<Self> {
        let labels = data.label(label)?.to_vec();
        let classes = classes_of(&labels, label)?;
        let head = LinearConfig::new(exp.model.width, classes);
        let adversary = seeded(device, exp.seed ^ 0xad5e, |d| Ok(materialized(head.init::<B>(d))), |d| Ok(materialized(head.init::<DrawBackend>(d))))?;
        Ok(Auditor {
            exp: exp.clone(),
            base,
            data,
            labels,
            classes,
            sensitive: None,
            adversary,
            adversary_optim: Optim::adamw(None, 1e-4),
            rng: ChaCha8Rng::seed_from_u64(exp.seed ^ 0xa0d1),
            device: device.clone(),
        })
    }

    /// Stage 1: trains the sensitive adapter and head on `(x′, s)`; returns the final mean
    /// cross-entropy of the last epoch.
    pub fn train_sensitive(&mut self) -> Result<f64> {
        let exp = &self.exp;
        let model = adapted(exp, &self.base, self.data.size, self.classes, exp.seed ^ 0x5e45, &self.device)?;
        // The auditor's one generator shuffles here and draws its gradient batches later.
        let rng = &mut self.rng;
        let (model, last) = fit(model, &self.data, &self.labels, exp, exp.fair.sensitive_epochs, |n, _| shuffled(n, rng), &self.device)?;
        self.sensitive = Some(model);
        Ok(last)
    }

    /// The sensitive adapter's values (trained on first use).
    pub fn sensitive_adapter(&mut self) -> Result<Adapters> {
        if self.sensitive.is_none() {
            self.train_sensitive()?;
        }
        Ok(self.sensitive.as_ref().map(adapter_values).unwrap_or_default())
    }

    /// The auditor's term's gradient with respect to `adapters` on one batch of its pool.
    pub fn gradient(&mut self, adapters: &Adapters) -> Result<AdapterGrads> {
        // The sensitive model first, so the batch draws below do not depend on whether it was
        // trained up front (two processes) or on first use (one process).
        if self.exp.needs_sensitive_model() && self.sensitive.is_none() {
            self.train_sensitive()?;
        }
        let n = self.data.len();
        let idx: Vec<usize> = (0..self.exp.fair.auditor_batch.min(n)).map(|_| rand::Rng::random_range(&mut self.rng, 0..n)).collect();
        self.gradient_at(adapters, &idx)
    }

    /// [`Auditor::gradient`] on the auditor's rows `idx`.
    pub fn gradient_at(&mut self, adapters: &Adapters, idx: &[usize]) -> Result<AdapterGrads> {
        let exp = self.exp.clone();
        let device = self.device.clone();
        let vit = self.developer_tower(adapters)?;
        let x = image_batch::<B>(&self.data, idx, &device);
        let s = label_batch::<B>(&self.labels, idx, &device);
        let ce = CrossEntropyLossConfig::new().init(&device);
        let features = vit.forward(x);
        let loss = match (exp.method, exp.fair.adv_mode) {
            (LoraMethod::Adv, AdvMode::Alternate) => {
                for _ in 0..exp.fair.adv_steps {
                    let l = ce.forward(self.adversary.forward(features.clone().detach()), s.clone());
                    let g = GradientsParams::from_grads(l.backward(), &self.adversary);
                    self.adversary = self.adversary_optim.step(exp.fair.adv_lr, self.adversary.clone(), g);
                }
                ce.forward(self.adversary.forward(features), s).mul_scalar(-exp.fair.lambda_adv)
            }
            (LoraMethod::Adv, AdvMode::Reversal) => {
                // One backward trains the adversary (minimising) and gives the encoder −λ
                // times its gradient.
                let l = ce.forward(self.adversary.forward(fair_losses::gradient_reversal(features, exp.fair.lambda_adv)), s);
                let mut grads = l.backward();
                let g = GradientsParams::from_module::<B, Linear<B>>(&mut grads, &self.adversary);
                self.adversary = self.adversary_optim.step(exp.fair.adv_lr, self.adversary.clone(), g);
                return collect_adapter_grads(&vit, &mut grads);
            }
            _ => self.fixed_head_loss(features, s)?,
        };
        let mut grads = loss.backward();
        collect_adapter_grads(&vit, &mut grads)
    }

    /// The value of the fixed-head term (Ent, Unl ascent) at `adapters` on the rows `idx`:
    /// what [`Auditor::gradient_at`] differentiates.
    pub fn term_at(&mut self, adapters: &Adapters, idx: &[usize]) -> Result<f64> {
        let vit = self.developer_tower(adapters)?;
        let features = vit.forward(image_batch::<B>(&self.data, idx, &self.device));
        let s = label_batch::<B>(&self.labels, idx, &self.device);
        Ok(self.fixed_head_loss(features, s)?.into_scalar().elem::<f64>())
    }

    fn developer_tower(&self, adapters: &Adapters) -> Result<vlm_backbone::VisionTransformer<B>> {
        let modules = adapters_to_modules::<B>(adapters, self.exp.lora.config().scaling(), &self.device)?;
        self.base.vit.clone().no_grad().with_lora_adapters(modules).map_err(|e| Error::Invalid(format!("developer adapter: {e}")))
    }

    fn fixed_head_loss(&mut self, features: Tensor<B, 2>, s: Tensor<B, 1, Int>) -> Result<Tensor<B, 1>> {
        let exp = self.exp.clone();
        let head = self.sensitive_head()?;
        match exp.method {
            LoraMethod::Ent => Ok(fair_losses::mean_entropy(head.forward(features)).mul_scalar(-exp.fair.lambda_ent)),
            LoraMethod::Unl => Ok(CrossEntropyLossConfig::new().init(&self.device).forward(head.forward(features), s).mul_scalar(-exp.fair.lambda_unl)),
            m => Err(Error::Invalid(format!("method {}: the auditor returns no gradient", m.name()))),
        }
    }

    fn sensitive_head(&mut self) -> Result<Linear<B>> {
        if self.sensitive.is_none() {
            self.train_sensitive()?;
        }
        // Fixed: a copy without gradient, so only the developer's adapters receive one.
        self.sensitive.as_ref().map(|m| m.classifier.clone().no_grad()).ok_or_else(|| Error::Invalid("the auditor has no sensitive head".into()))
    }

    /// Adv's adversary, as it stands, on the developer's features at `adapters`: the share of
    /// the auditor's pool whose sensitive attribute it predicts. This is what the developer's
    /// adversarial term works against; the auditor can report it without any label leaving.
    pub fn adversary_accuracy(&self, adapters: &Adapters) -> Result<f64> {
        let vit = self.developer_tower(adapters)?;
        let rows: Vec<usize> = (0..self.data.len()).collect();
        let mut right = 0;
        for chunk in rows.chunks(256) {
            let logits = self.adversary.forward(vit.forward(image_batch::<B>(&self.data, chunk, &self.device))).detach();
            let predicted = logits.argmax(1).into_data().convert::<i64>().to_vec::<i64>().map_err(|e| Error::Invalid(format!("adversary predictions: {e:?}")))?;
            right += predicted.iter().zip(chunk).filter(|(p, &i)| **p == self.labels[i]).count();
        }
        Ok(right as f64 / rows.len().max(1) as f64)
    }

    /// The classes of the sensitive attribute.
    pub fn classes(&self) -> usize {
        self.classes
    }
}

fn collect_adapter_grads<B: AutodiffBackend>(vit: &vlm_backbone::VisionTransformer<B>, grads: &mut B::Gradients) -> Result<AdapterGrads> {
    let mut out = AdapterGrads::new();
    for (p, a) in vit.lora_adapters() {
        let get = |t: Tensor<B, 2>| -> Vec<f32> {
            t.grad(grads).map(|g| g.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()).unwrap_or_else(|| vec![0.0; t.dims()[0] * t.dims()[1]])
        };
        out.insert(p, (get(a.lora_a.val()), get(a.lora_b.val())));
    }
    Ok(out)
}

/// The auditor in the developer's process (the single-process driver).
pub struct LocalAuditor<'a, B: AutodiffBackend>(pub &'a mut Auditor<B>);

impl<B: AutodiffBackend> AuditorLink for LocalAuditor<'_, B> {
    fn sensitive_adapter(&mut self) -> Result<Adapters> {
        self.0.sensitive_adapter()
    }
    fn gradient(&mut self, _round: usize, adapters: &Adapters) -> Result<AdapterGrads> {
        self.0.gradient(adapters)
    }
    fn finish(&mut self) -> Result<()> {
        Ok(())
    }
}
