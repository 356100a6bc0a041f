//! MultiFair's differentiable surrogate of the AUC and the group gap built on it.

use burn::prelude::*;
use burn::tensor::activation::softplus;

use crate::error::{Error, Result};

/// The pairwise-logistic surrogate AUC of MultiFair's code:
/// `1 − mean_{p∈pos, n∈neg} log(1 + exp(−(q_p − q_n)))` for the scores `q` (the code feeds
/// `softmax(logits)[:, 1]`). `None` when there are fewer than two samples or a single class
/// (the code then uses 0.5). With `q ∈ [0, 1]` the value lies in about `[−0.313, 0.687]`: it
/// ranks like the AUC but is not calibrated to `[0, 1]`.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// use fair_losses::surrogate_auc;
///
/// let q = Tensor::<Flex, 1>::from_floats([0.9, 0.1], &Default::default());
/// let s = surrogate_auc(q, &[true, false])?.unwrap().into_scalar();
/// assert!((s - (1.0 - (1.0f32 + (-0.8f32).exp()).ln())).abs() < 1e-6);
/// # Ok::<(), fair_losses::Error>(())
/// ```
pub fn surrogate_auc<B: Backend>(scores: Tensor<B, 1>, labels: &[bool]) -> Result<Option<Tensor<B, 1>>> {
    let n = scores.dims()[0];
    if labels.len() != n {
        return Err(Error::Shape(format!("{n} scores but {} labels", labels.len())));
    }
    let pos: Vec<i64> = (0..n).filter(|&i| labels[i]).map(|i| i as i64).collect();
    let neg: Vec<i64> = (0..n).filter(|&i| !labels[i]).map(|i| i as i64).collect();
    if n < 2 || pos.is_empty() || neg.is_empty() {
        return Ok(None);
    }
    let device = scores.device();
    let (np, nn) = (pos.len(), neg.len());
    let qp = scores.clone().select(0, Tensor::<B, 1, Int>::from_ints(pos.as_slice(), &device)).reshape([np, 1]);
    let qn = scores.select(0, Tensor::<B, 1, Int>::from_ints(neg.as_slice(), &device)).reshape([1, nn]);
    let loss = softplus(-(qp - qn), 1.0).mean();
    Ok(Some(loss.neg() + 1.0))
}

/// MultiFair's fairness term in its differentiable (`faithful`) reading:
/// `mean_g |AUC~_g − mean_h AUC~_h|` over the groups (codes `0..groups`) whose surrogate AUC
/// is defined in the batch. `None` when fewer than two groups have one.
pub fn surrogate_auc_gap<B: Backend>(scores: Tensor<B, 1>, labels: &[bool], groups: &[i64], n_groups: usize) -> Result<Option<Tensor<B, 1>>> {
    let n = scores.dims()[0];
    if labels.len() != n || groups.len() != n {
        return Err(Error::Shape(format!("{n} scores, {} labels, {} groups", labels.len(), groups.len())));
    }
    let device = scores.device();
    let mut per_group = Vec::new();
    for g in 0..n_groups as i64 {
        let idx: Vec<i64> = (0..n).filter(|&i| groups[i] == g).map(|i| i as i64).collect();
        if idx.is_empty() {
            continue;
        }
        let l: Vec<bool> = idx.iter().map(|&i| labels[i as usize]).collect();
        let s = scores.clone().select(0, Tensor::<B, 1, Int>::from_ints(idx.as_slice(), &device));
        per_group.extend(surrogate_auc(s, &l)?);
    }
    if per_group.len() < 2 {
        return Ok(None);
    }
    let all = Tensor::cat(per_group, 0);
    // mean(), not sum() / k: burn 0.21's div_scalar backward rounds 1/k to f32, which
    // shows in f64 gradient checks.
    let mean = all.clone().mean();
    Ok(Some((all - mean).abs().mean()))
}
