//! Late fusion, the plain multimodal baseline of MultiFair's tables (papers.md 4.2): the
//! fundus + note (or OCT) classifier trained with cross-entropy, no gradient modulation.

use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use gradmod::ParamSet;

use super::multimodal::{Before, Decision, Modulation};
use crate::config::Experiment;
use crate::error::Result;

/// No modulation.
pub struct LateFusion;

impl Modulation for LateFusion {
    const NAME: &'static str = "late-fusion";

    fn new(_exp: &Experiment, _data: &crate::data::ExperimentData) -> Result<Self> {
        Ok(LateFusion)
    }

    fn before<B: AutodiffBackend>(&mut self, _step: Before<'_, B>) -> Result<Decision<B>> {
        Ok(Decision { extra_terms: vec![], factors: [1.0; 2], triggered: false })
    }

    fn after<B: AutodiffBackend>(&mut self, _grads: &mut GradientsParams, _encoders: [&ParamSet; 2], _epoch: usize, _decision: &Decision<B>) -> Result<()> {
        Ok(())
    }
}
