//! OGM-GE (Peng et al., CVPR 2022; papers.md 4.1), MultiFair's ancestor: on-the-fly gradient
//! modulation. Each step compares the modalities' unimodal scores
//! `s^u = Σ_i softmax(out_u_i)[y_i]`, read off the halves of the concat fusion head, and
//! scales the dominant encoder's gradients by `k = 1 − tanh(α · ρ)`; Gaussian enhancement
//! adds noise of the gradient's own spread (`[ogm]`). Needs `multimodal.fusion = "concat"`.

use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use gradmod::{OgmCoefficients, ParamSet};

use super::multimodal::{Before, Decision, Modulation};
use crate::config::Experiment;
use crate::error::{Error, Result};

/// OGM-GE's modulation; the coefficients of the current step wait for the backward pass.
pub struct OgmGe {
    ogm: gradmod::OgmGe,
    pending: Option<OgmCoefficients>,
}

impl Modulation for OgmGe {
    const NAME: &'static str = "ogm-ge";

    fn validate(exp: &Experiment) -> std::result::Result<(), String> {
        if exp.multimodal.fusion != vlm_backbone::Fusion::Concat {
            return Err("multimodal.fusion: method ogm-ge reads unimodal logits off a concat head; set multimodal.fusion = \"concat\"".into());
        }
        exp.ogm.validate()
    }

    fn new(exp: &Experiment, _data: &crate::data::ExperimentData) -> Result<Self> {
        Ok(Self { ogm: exp.ogm, pending: None })
    }

    /// With `conv_only`, the code's 4-D kernels only (there the ResNets' convolutions, here
    /// the patch embeddings).
    fn encoder_set(&self, set: ParamSet) -> ParamSet {
        self.ogm.encoder_set(set)
    }

    fn before<B: AutodiffBackend>(&mut self, step: Before<'_, B>) -> Result<Decision<B>> {
        let [f0, f1] = step.features;
        let [u0, u1] = step.model.unimodal_logits([f0.detach(), f1.detach()]).ok_or_else(|| Error::Invalid("ogm-ge needs multimodal.fusion = \"concat\"".into()))?;
        let c = self.ogm.coefficients(u0.inner(), u1.inner(), step.labels.inner())?;
        let factors = if self.ogm.active(step.epoch) { c.coefficients } else { [1.0; 2] };
        self.pending = Some(c);
        Ok(Decision { extra_terms: vec![], factors, triggered: false })
    }

    fn after<B: AutodiffBackend>(&mut self, grads: &mut GradientsParams, encoders: [&ParamSet; 2], epoch: usize, _decision: &Decision<B>) -> Result<()> {
        match self.pending.take() {
            Some(c) => Ok(self.ogm.apply::<B::InnerBackend>(epoch, grads, encoders, &c)?),
            None => Ok(()),
        }
    }
}
