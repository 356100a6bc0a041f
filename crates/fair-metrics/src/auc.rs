//! Binary ROC AUC of one small set of predictions, without building a report.

use crate::error::{Error, Result};

/// Binary ROC AUC, as `sklearn.metrics.roc_auc_score(labels, scores)`: the probability that a
/// positive scores above a negative, ties counted one half (the Mann–Whitney statistic, equal
/// to the area under the trapezoidal ROC curve). `None` when one class is absent, where
/// scikit-learn raises. For training-time statistics on a batch (gradient modulation,
/// triggers); reports use [`crate::Report`].
///
/// ```
/// use fair_metrics::roc_auc;
/// assert_eq!(roc_auc(&[true, false, true, false], &[0.9, 0.2, 0.4, 0.4])?, Some(0.875));
/// assert_eq!(roc_auc(&[true, true], &[0.9, 0.2])?, None);
/// # Ok::<(), fair_metrics::Error>(())
/// ```
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Result<Option<f64>> {
    if labels.len() != scores.len() {
        return Err(Error::Invalid(format!("{} labels but {} scores", labels.len(), scores.len())));
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(Error::Invalid(format!("score {i} is NaN")));
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Ok(None);
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Sum of the positives' ranks, ties sharing their average rank.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let average_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += average_rank * order[i..=j].iter().filter(|&&k| labels[k]).count() as f64;
        i = j + 1;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Ok(Some((rank_sum - p * (p + 1.0) / 2.0) / (p * n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every positive–negative pair, ties one half: the definition.
    fn pairs(labels: &[bool], scores: &[f64]) -> f64 {
        let (mut s, mut c) = (0.0, 0.0);
        for (i, &li) in labels.iter().enumerate() {
            for (j, &lj) in labels.iter().enumerate() {
                if li && !lj {
                    c += 1.0;
                    s += if scores[i] > scores[j] {
                        1.0
                    } else if scores[i] == scores[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        s / c
    }

    #[test]
    fn equals_the_pairwise_definition_with_ties() {
        let mut state = 7u64;
        for n in [2usize, 5, 17, 64] {
            let mut labels = Vec::new();
            let mut scores = Vec::new();
            for k in 0..n {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                labels.push(k % 3 == 0 || (state >> 40) % 2 == 0);
                scores.push(((state >> 33) % 7) as f64 / 7.0); // few values: many ties
            }
            labels[0] = true;
            labels[1] = false;
            let got = roc_auc(&labels, &scores).expect("valid").expect("both classes");
            assert!((got - pairs(&labels, &scores)).abs() < 1e-12, "n = {n}");
        }
    }

    #[test]
    fn rejects_mismatched_lengths_and_nan() {
        assert!(roc_auc(&[true], &[0.1, 0.2]).is_err());
        assert!(roc_auc(&[true, false], &[f64::NAN, 0.2]).is_err());
    }
}
