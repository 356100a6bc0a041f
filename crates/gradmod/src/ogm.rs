//! OGM-GE (Peng et al., CVPR 2022): on-the-fly gradient modulation with Gaussian enhancement,
//! as the official code (`GeWu-Lab/OGM-GE_CVPR2022`, `main.py`) computes it.

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::softmax;

use crate::error::{Error, Result};
use crate::grads::{scale, scale_with_noise, scalar, ParamSet};

/// OGM-GE's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OgmGe {
    /// α of `k = 1 − tanh(α·ρ)` (the code's default 0.1; 0.8 for CREMA-D).
    pub alpha: f64,
    /// Add the Gaussian enhancement noise (OGM-GE); `false` is plain OGM.
    pub gaussian_enhancement: bool,
    /// First epoch (1-based, inclusive) with modulation.
    pub start_epoch: usize,
    /// Last epoch (inclusive) with modulation.
    pub end_epoch: usize,
}

impl Default for OgmGe {
    fn default() -> Self {
        OgmGe { alpha: 0.1, gaussian_enhancement: true, start_epoch: 1, end_epoch: usize::MAX }
    }
}

/// One step's modulation: the modalities' confidence scores, the discrepancy ratio and the
/// coefficient of each modality.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OgmCoefficients {
    /// `s^u = Σ_i softmax(out_u_i)[y_i]` for the two modalities.
    pub scores: [f64; 2],
    /// `ρ^1 = s^1 / s^0` (the code's `ratio_v`, modality 1 over modality 0).
    pub ratio: f64,
    /// `k^u`: `1 − tanh(α·ρ^u)` for the dominant modality, 1 for the other.
    pub coefficients: [f64; 2],
}

impl OgmGe {
    /// The coefficients from the unimodal logits (`[batch, classes]`, read off the shared
    /// head as `out_u = h_u·W_uᵀ + b/2`) and the labels. As in the code, modality 1 is damped
    /// when `ρ^1 > 1`, otherwise modality 0 is (so a tie damps modality 0).
    ///
    /// ```
    /// use burn::backend::Flex;
    /// use burn::prelude::*;
    /// use gradmod::OgmGe;
    ///
    /// let d = Default::default();
    /// let confident = Tensor::<Flex, 2>::from_floats([[0.0, 4.0], [4.0, 0.0]], &d);
    /// let unsure = Tensor::<Flex, 2>::from_floats([[0.0, 0.5], [0.5, 0.0]], &d);
    /// let labels = Tensor::<Flex, 1, Int>::from_ints([1, 0], &d);
    /// let c = OgmGe::default().coefficients(unsure, confident, labels)?;
    /// assert!(c.ratio > 1.0 && c.coefficients[0] == 1.0 && c.coefficients[1] < 1.0);
    /// # Ok::<(), gradmod::Error>(())
    /// ```
    pub fn coefficients<B: Backend>(&self, logits_0: Tensor<B, 2>, logits_1: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Result<OgmCoefficients> {
        if logits_0.dims() != logits_1.dims() || logits_0.dims()[0] != labels.dims()[0] {
            return Err(Error::Shape(format!("unimodal logits {:?} and {:?} with {} labels", logits_0.dims(), logits_1.dims(), labels.dims()[0])));
        }
        let score = |logits: Tensor<B, 2>| -> f64 {
            let p = softmax(logits, 1);
            scalar(p.gather(1, labels.clone().unsqueeze_dim(1)).sum())
        };
        let scores = [score(logits_0), score(logits_1)];
        let ratio = scores[1] / scores[0];
        let k = |r: f64| 1.0 - (self.alpha * r.max(0.0)).tanh();
        let coefficients = if ratio > 1.0 { [1.0, k(ratio)] } else { [k(1.0 / ratio), 1.0] };
        Ok(OgmCoefficients { scores, ratio, coefficients })
    }

    /// Whether `epoch` (1-based) is inside the modulation window.
    pub fn active(&self, epoch: usize) -> bool {
        (self.start_epoch..=self.end_epoch).contains(&epoch)
    }

    /// Applies the coefficients to the encoders' gradients: `grad ← k^u·grad (+ ε)` on
    /// `encoders[u]`. Gaussian enhancement adds noise to both modalities, the undamped one too,
    /// as the code does. Does nothing outside the epoch window.
    pub fn apply<B: Backend>(&self, epoch: usize, grads: &mut GradientsParams, encoders: [&ParamSet; 2], c: &OgmCoefficients) -> Result<()> {
        if !self.active(epoch) {
            return Ok(());
        }
        for (set, k) in encoders.into_iter().zip(c.coefficients) {
            if self.gaussian_enhancement {
                scale_with_noise::<B>(grads, set, k)?;
            } else {
                scale::<B>(grads, set, k)?;
            }
        }
        Ok(())
    }
}
