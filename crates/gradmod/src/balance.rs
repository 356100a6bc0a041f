//! Modality balancing in the way of CGGM (Guo et al., NeurIPS 2024) as MultiFair's code uses
//! it: auxiliary heads on detached unimodal features measure how fast each modality is
//! improving, and the faster one is slowed.

use burn::prelude::*;

use crate::error::{Error, Result};

/// The balancing factors `B_i` from the change of each auxiliary head's batch AUC.
///
/// With `d_i = AUC_i(t) − AUC_i(t−1)` (the previous value is the previous *batch's*; 0.5
/// before the first) and `S = Σ_j |d_j| + 1e-8`, `B_i = (S − |d_i|) / S`: for two modalities
/// `B_0 = |d_1| / S`, so the modality that improved more gets the smaller factor. A batch with
/// a single class has no AUC; the head's previous value is kept (`d_i = 0`).
///
/// ```
/// use gradmod::ModalityBalance;
/// let mut balance = ModalityBalance::new(2);
/// let b = balance.update(&[Some(0.8), Some(0.6)])?; // fundus +0.3, text +0.1
/// assert!((b[0] - 0.25).abs() < 1e-6 && (b[1] - 0.75).abs() < 1e-6);
/// # Ok::<(), gradmod::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ModalityBalance {
    previous: Vec<f64>,
}

impl ModalityBalance {
    /// Balancing of `modalities` heads, each starting from AUC 0.5.
    pub fn new(modalities: usize) -> Self {
        ModalityBalance { previous: vec![0.5; modalities] }
    }

    /// The heads' AUCs after the last update.
    pub fn previous(&self) -> &[f64] {
        &self.previous
    }

    /// Restores the heads' AUCs (from a checkpoint).
    pub fn set_previous(&mut self, aucs: &[f64]) -> Result<()> {
        if aucs.len() != self.previous.len() {
            return Err(Error::Shape(format!("{} AUCs for {} modalities", aucs.len(), self.previous.len())));
        }
        self.previous = aucs.to_vec();
        Ok(())
    }

    /// Takes this batch's AUC of every head (`None`: single-class batch) and returns `B_i`.
    pub fn update(&mut self, aucs: &[Option<f64>]) -> Result<Vec<f64>> {
        if aucs.len() != self.previous.len() {
            return Err(Error::Shape(format!("{} AUCs for {} modalities", aucs.len(), self.previous.len())));
        }
        let now: Vec<f64> = aucs.iter().zip(&self.previous).map(|(a, p)| a.unwrap_or(*p)).collect();
        let d: Vec<f64> = now.iter().zip(&self.previous).map(|(a, p)| (a - p).abs()).collect();
        let s: f64 = d.iter().sum::<f64>() + 1e-8;
        self.previous = now;
        Ok(d.iter().map(|di| (s - di) / s).collect())
    }
}

/// CGGM's direction term `L_gm = (1/M)[Σ_i |B_i| − Σ_i B_i·cos(W_F, W_i)]`, with `W_F` the
/// fusion classifier's last weight (trainable) and `W_i` each auxiliary head's last weight
/// (detached here): minimising it turns the fused classifier towards the heads, weighted by
/// their balance. This is the differentiable form of CGGM's code and of MultiFair's
/// `faithful` mode; MultiFair's released code computes it from detached gradients, so there
/// it is a constant.
pub fn direction_loss<B: Backend>(balance: &[f64], fusion_weight: Tensor<B, 2>, head_weights: &[Tensor<B, 2>]) -> Result<Tensor<B, 1>> {
    if balance.len() != head_weights.len() || balance.is_empty() {
        return Err(Error::Shape(format!("{} balance factors for {} heads", balance.len(), head_weights.len())));
    }
    let n = fusion_weight.shape().num_elements();
    let f = fusion_weight.reshape([n]);
    let f_norm = f.clone().powi_scalar(2).sum().sqrt();
    // Built from a tensor of the model's, so it takes the model's float type.
    let mut total = f_norm.clone().detach().zeros_like() + balance.iter().map(|b| b.abs()).sum::<f64>();
    for (b, w) in balance.iter().zip(head_weights) {
        if w.shape().num_elements() != n {
            return Err(Error::Shape(format!("fusion weight of {n} values, head weight {:?}", w.dims())));
        }
        let w = w.clone().detach().reshape([n]);
        let w_norm = w.clone().powi_scalar(2).sum().sqrt();
        // PyTorch's cosine_similarity clamps each norm at 1e-8.
        let cos = (f.clone() * w).sum() / (f_norm.clone().clamp_min(1e-8) * w_norm.clamp_min(1e-8));
        total = total - cos * *b;
    }
    // A product, not a division: burn 0.21 rounds the divisor of div_scalar to f32 in backward.
    Ok(total * (1.0 / balance.len() as f64))
}
