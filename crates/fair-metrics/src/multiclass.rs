//! Multiclass one-vs-rest ROC AUC, as `sklearn.metrics.roc_auc_score(y, P, multi_class="ovr")`.

use crate::engine::Sorted;
use crate::error::{Error, Result};
use crate::input::Predictions;

/// Averaging of the per-class AUCs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OvrAverage {
    /// Unweighted mean over classes (`average="macro"`). The default.
    #[default]
    Macro,
    /// Mean weighted by each class's (weighted) prevalence (`average="weighted"`).
    Weighted,
}

/// One-vs-rest AUC of a score matrix.
///
/// `labels[i]` is the class of row i in `0..k`; `scores` is row-major `n x k` with rows that
/// sum to one (scikit-learn rejects anything else); every class must occur. Each class's
/// binary AUC (class vs rest) is computed with ties counted one half, then averaged.
///
/// ```
/// use fair_metrics::{multiclass_auc_ovr, OvrAverage};
/// let labels = [0, 1, 2, 2];
/// let scores = [0.8, 0.1, 0.1,  0.2, 0.6, 0.2,  0.1, 0.2, 0.7,  0.3, 0.3, 0.4];
/// let auc = multiclass_auc_ovr(&labels, &scores, 3, None, OvrAverage::Macro)?;
/// assert_eq!(auc, 1.0);
/// # Ok::<(), fair_metrics::Error>(())
/// ```
pub fn multiclass_auc_ovr(labels: &[usize], scores: &[f64], k: usize, weights: Option<&[f64]>, average: OvrAverage) -> Result<f64> {
    let n = labels.len();
    if k < 2 {
        return Err(Error::Invalid(format!("{k} classes; one-vs-rest AUC needs at least 2")));
    }
    if scores.len() != n * k {
        return Err(Error::Invalid(format!("{} scores for {n} rows x {k} classes", scores.len())));
    }
    if let Some(w) = weights {
        if w.len() != n {
            return Err(Error::Invalid(format!("{} weights for {n} rows", w.len())));
        }
    }
    if let Some(i) = labels.iter().position(|&y| y >= k) {
        return Err(Error::Invalid(format!("label {} of row {i} is not in 0..{k}", labels[i])));
    }
    let mut present = vec![false; k];
    labels.iter().for_each(|&y| present[y] = true);
    if let Some(c) = present.iter().position(|&p| !p) {
        return Err(Error::Invalid(format!("class {c} never occurs in the labels; the number of classes must equal the number of score columns")));
    }
    for (i, row) in scores.chunks(k).enumerate() {
        let s: f64 = row.iter().sum();
        // numpy.allclose(1, s): |s - 1| <= 1e-8 + 1e-5 * |s|
        let close = (s - 1.0).abs() <= 1e-8 + 1e-5 * s.abs(); // false for NaN too
        if !close {
            return Err(Error::Invalid(format!("scores of row {i} sum to {s}; one-vs-rest AUC needs probabilities summing to 1")));
        }
    }
    let mut sum = 0.0;
    let mut total_weight = 0.0;
    for c in 0..k {
        let y: Vec<bool> = labels.iter().map(|&l| l == c).collect();
        let s: Vec<f64> = scores.iter().skip(c).step_by(k).copied().collect();
        let mut p = Predictions::new(y, s)?;
        if let Some(w) = weights {
            p = p.with_weights(w.to_vec())?;
        }
        let counts = Sorted::new(&p, 0.5).count(None, 1, None)[0];
        if counts.wp <= 0.0 || counts.wn <= 0.0 {
            return Err(Error::Invalid(format!("class {c}: AUC undefined (zero weight on one side)")));
        }
        let auc = counts.auc2 / (2.0 * counts.wp * counts.wn);
        let class_weight = match average {
            OvrAverage::Macro => 1.0,
            OvrAverage::Weighted => counts.wp,
        };
        sum += class_weight * auc;
        total_weight += class_weight;
    }
    Ok(sum / total_weight)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_shapes() {
        assert!(multiclass_auc_ovr(&[0, 1], &[0.5, 0.5], 2, None, OvrAverage::Macro).is_err());
        assert!(multiclass_auc_ovr(&[0, 0], &[0.5, 0.5, 0.5, 0.5], 2, None, OvrAverage::Macro).is_err());
        assert!(multiclass_auc_ovr(&[0, 1], &[0.9, 0.5, 0.5, 0.5], 2, None, OvrAverage::Macro).is_err());
        assert!(multiclass_auc_ovr(&[0, 3], &[0.5, 0.5, 0.5, 0.5], 2, None, OvrAverage::Macro).is_err());
    }

    #[test]
    fn two_classes_equal_binary_auc() {
        let labels = [0, 1, 1, 0, 1];
        let p1 = [0.2, 0.7, 0.4, 0.4, 0.9];
        let scores: Vec<f64> = p1.iter().flat_map(|&p| [1.0 - p, p]).collect();
        let auc = multiclass_auc_ovr(&labels, &scores, 2, None, OvrAverage::Macro).unwrap();
        // positives 0.7, 0.4, 0.9 vs negatives 0.2, 0.4: 5 wins + 1 tie of 6 pairs
        assert!((auc - 5.5 / 6.0).abs() < 1e-15);
    }
}
