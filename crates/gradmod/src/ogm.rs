//! OGM-GE (Peng et al., CVPR 2022): on-the-fly gradient modulation with Gaussian enhancement,
//! as the official code (`GeWu-Lab/OGM-GE_CVPR2022`, `main.py`) computes it.

use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::activation::softmax;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::grads::{scalar, scale, scale_with_noise, ParamSet};

/// OGM-GE's settings; in TOML the `[ogm]` table with these keys, each optional (defaults:
/// the official code's α and Gaussian enhancement, every epoch up to 1000 modulated, every
/// parameter of the encoders).
///
/// ```
/// let ogm: gradmod::OgmGe = toml::from_str("alpha = 0.8\nend_epoch = 50\nconv_only = true")?;
/// assert_eq!((ogm.alpha, ogm.start_epoch, ogm.end_epoch), (0.8, 1, 50));
/// assert!(ogm.gaussian_enhancement && ogm.conv_only);
/// assert!(ogm.validate().is_ok());
/// # Ok::<(), toml::de::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OgmGe {
    /// α of `k = 1 − tanh(α·ρ)` (the code's default 0.1; 0.8 for CREMA-D).
    pub alpha: f64,
    /// Add the Gaussian enhancement noise (OGM-GE); `false` is plain OGM.
    pub gaussian_enhancement: bool,
    /// First epoch (1-based, inclusive) with modulation.
    pub start_epoch: usize,
    /// Last epoch (inclusive) with modulation.
    pub end_epoch: usize,
    /// Modulate only 4-D kernels, as the official code modulates only the ResNets'
    /// convolutions; here the patch embeddings ([`OgmGe::encoder_set`]). `false` modulates
    /// every parameter of the encoders.
    pub conv_only: bool,
}

impl Default for OgmGe {
    fn default() -> Self {
        OgmGe { alpha: 0.1, gaussian_enhancement: true, start_epoch: 1, end_epoch: 1000, conv_only: false }
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
    /// Checks the settings: `α ≥ 0` and `1 ≤ start_epoch ≤ end_epoch`. The message names the
    /// `[ogm]` table.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.alpha.is_finite() && self.alpha >= 0.0) || self.start_epoch == 0 || self.end_epoch < self.start_epoch {
            return Err(format!(
                "[ogm]: alpha = {}, start_epoch = {}, end_epoch = {}: expected alpha >= 0 and 1 <= start_epoch <= end_epoch",
                self.alpha, self.start_epoch, self.end_epoch
            ));
        }
        Ok(())
    }

    /// The part of an encoder's parameters that is modulated: its 4-D kernels with
    /// [`OgmGe::conv_only`], else all of `set`.
    ///
    /// ```
    /// use burn::backend::Flex;
    /// use burn::nn::conv::Conv2dConfig;
    /// use gradmod::{OgmGe, ParamSet};
    ///
    /// let conv = Conv2dConfig::new([3, 4], [2, 2]).init::<Flex>(&Default::default());
    /// let set = ParamSet::of(&conv); // kernel and bias
    /// assert_eq!(OgmGe::default().encoder_set(set.clone()).len(), 2);
    /// assert_eq!(OgmGe { conv_only: true, ..OgmGe::default() }.encoder_set(set).len(), 1);
    /// ```
    pub fn encoder_set(&self, set: ParamSet) -> ParamSet {
        if self.conv_only {
            set.with_rank(4)
        } else {
            set
        }
    }

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

#[cfg(test)]
mod tests {
    use super::OgmGe;

    #[test]
    fn the_toml_keys_and_defaults_are_the_trainers() {
        let ogm: OgmGe = toml::from_str("alpha = 0.5\ngaussian_enhancement = false\nstart_epoch = 2\nend_epoch = 7\nconv_only = true").unwrap();
        assert_eq!(ogm, OgmGe { alpha: 0.5, gaussian_enhancement: false, start_epoch: 2, end_epoch: 7, conv_only: true });
        let defaults: OgmGe = toml::from_str("").unwrap();
        assert_eq!(defaults, OgmGe { alpha: 0.1, gaussian_enhancement: true, start_epoch: 1, end_epoch: 1000, conv_only: false });
        assert_eq!(defaults, OgmGe::default());
        let err = toml::from_str::<OgmGe>("alpha = 0.5\nbeta = 1").unwrap_err();
        assert!(err.to_string().contains("beta"), "{err}");
        // The defaults are written back as TOML (usize::MAX would not be).
        assert_eq!(toml::from_str::<OgmGe>(&toml::to_string(&ogm).unwrap()).unwrap(), ogm);
        assert_eq!(toml::from_str::<OgmGe>(&toml::to_string(&defaults).unwrap()).unwrap(), defaults);
    }

    #[test]
    fn validation_names_the_table() {
        assert_eq!(OgmGe::default().validate(), Ok(()));
        for bad in [
            OgmGe { alpha: -0.1, ..OgmGe::default() },
            OgmGe { alpha: f64::NAN, ..OgmGe::default() },
            OgmGe { start_epoch: 0, ..OgmGe::default() },
            OgmGe { start_epoch: 3, end_epoch: 2, ..OgmGe::default() },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
        assert_eq!(
            OgmGe { start_epoch: 3, end_epoch: 2, ..OgmGe::default() }.validate().unwrap_err(),
            "[ogm]: alpha = 0.1, start_epoch = 3, end_epoch = 2: expected alpha >= 0 and 1 <= start_epoch <= end_epoch"
        );
    }
}
