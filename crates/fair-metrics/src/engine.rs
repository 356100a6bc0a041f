//! The counting engine: one sort of the scores, then one pass per attribute that yields every
//! group's weighted confusion counts and its Mann-Whitney rank sum (ties counted one half).
//!
//! Group AUCs come from the global order: a tie block of the whole data restricted to a group
//! is exactly that group's tie block, so no per-group sort is needed.

use rayon::prelude::*;

use crate::input::Predictions;

/// Counts of one group. Weighted sums include the multiplicity of each row (bootstrap).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct GroupCounts {
    /// Rows (with multiplicity).
    pub n: u64,
    /// Rows with a positive label.
    pub n_pos: u64,
    /// Sum of weights.
    pub w: f64,
    pub tp: f64,
    pub fp: f64,
    pub tn: f64,
    pub fn_: f64,
    /// Weighted positives and negatives as accumulated in rank order (for the AUC).
    pub wp: f64,
    pub wn: f64,
    /// Twice the weighted number of (positive, negative) pairs ranked correctly, ties one half.
    pub auc2: f64,
}

/// Rows in ascending score order, with what every pass needs laid out contiguously.
pub(crate) struct Sorted {
    /// Original row index of each sorted position.
    pub order: Vec<u32>,
    /// `true` where a new tie block (a new distinct score) starts.
    pub block_start: Vec<bool>,
    pub labels: Vec<bool>,
    pub preds: Vec<bool>,
    pub weights: Option<Vec<f64>>,
}

impl Sorted {
    pub fn new(p: &Predictions, threshold: f64) -> Self {
        let order = argsort(&p.scores);
        let n = order.len();
        let mut block_start = vec![false; n];
        for i in 0..n {
            // -0.0 and 0.0 tie, as they do in numpy.
            block_start[i] = i == 0 || p.scores[order[i] as usize] != p.scores[order[i - 1] as usize];
        }
        let labels = order.iter().map(|&i| p.labels[i as usize]).collect();
        let preds = match &p.preds {
            Some(hard) => order.iter().map(|&i| hard[i as usize]).collect(),
            None => order.iter().map(|&i| p.scores[i as usize] >= threshold).collect(),
        };
        let weights = p.weights.as_ref().map(|w| order.iter().map(|&i| w[i as usize]).collect());
        Self { order, block_start, labels, preds, weights }
    }

    /// Gathers a per-row array into sorted order.
    pub fn gather<T: Copy + Send + Sync>(&self, values: &[T]) -> Vec<T> {
        self.order.par_iter().map(|&i| values[i as usize]).collect()
    }

    /// Counts per group. `codes` and `mult` are in sorted order; `codes = None` means one group.
    pub fn count(&self, codes: Option<&[u32]>, n_groups: usize, mult: Option<&[u32]>) -> Vec<GroupCounts> {
        let n = self.order.len();
        let mut out = vec![GroupCounts::default(); n_groups.max(1)];
        // Per-group state of the current tie block.
        let mut pos_b = vec![0.0f64; out.len()];
        let mut neg_b = vec![0.0f64; out.len()];
        let mut neg_below = vec![0.0f64; out.len()];
        let mut touched: Vec<usize> = Vec::new();
        let mut in_block = vec![false; out.len()];
        let mut i = 0;
        while i < n {
            let mut j = i + 1;
            while j < n && !self.block_start[j] {
                j += 1;
            }
            if j == i + 1 {
                // A score that occurs once: no tie to split.
                let g = codes.map_or(0, |c| c[i] as usize);
                let m = mult.map_or(1, |m| m[i]);
                if m > 0 {
                    let w = self.row_weight(i, m);
                    let c = &mut out[g];
                    add_confusion(c, self.labels[i], self.preds[i], m, w);
                    if self.labels[i] {
                        c.auc2 += 2.0 * w * neg_below[g];
                        c.wp += w;
                    } else {
                        neg_below[g] += w;
                        c.wn += w;
                    }
                }
            } else {
                for r in i..j {
                    let g = codes.map_or(0, |c| c[r] as usize);
                    let m = mult.map_or(1, |m| m[r]);
                    if m == 0 {
                        continue;
                    }
                    let w = self.row_weight(r, m);
                    add_confusion(&mut out[g], self.labels[r], self.preds[r], m, w);
                    if self.labels[r] {
                        pos_b[g] += w;
                    } else {
                        neg_b[g] += w;
                    }
                    if !in_block[g] {
                        in_block[g] = true;
                        touched.push(g);
                    }
                }
                for &g in &touched {
                    let c = &mut out[g];
                    c.auc2 += pos_b[g] * (2.0 * neg_below[g] + neg_b[g]);
                    c.wp += pos_b[g];
                    c.wn += neg_b[g];
                    neg_below[g] += neg_b[g];
                    pos_b[g] = 0.0;
                    neg_b[g] = 0.0;
                    in_block[g] = false;
                }
                touched.clear();
            }
            i = j;
        }
        out
    }

    fn row_weight(&self, i: usize, m: u32) -> f64 {
        let w = self.weights.as_ref().map_or(1.0, |w| w[i]);
        if m == 1 {
            w
        } else {
            w * m as f64
        }
    }
}

fn add_confusion(c: &mut GroupCounts, label: bool, pred: bool, m: u32, w: f64) {
    c.n += m as u64;
    c.w += w;
    match (label, pred) {
        (true, true) => c.tp += w,
        (true, false) => c.fn_ += w,
        (false, true) => c.fp += w,
        (false, false) => c.tn += w,
    }
    if label {
        c.n_pos += m as u64;
    }
}

/// Row indices in ascending score order (LSD radix sort on the order-preserving bit pattern;
/// ties in any order).
pub(crate) fn argsort(scores: &[f64]) -> Vec<u32> {
    let keys: Vec<u64> = scores.par_iter().map(|&s| order_key(s)).collect();
    let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
    if scores.len() < 256 {
        idx.sort_unstable_by_key(|&i| keys[i as usize]);
        return idx;
    }
    radix_sort(keys, idx)
}

/// Maps an f64 to a u64 whose unsigned order is the float order (-0.0 mapped to 0.0).
fn order_key(x: f64) -> u64 {
    let bits = (x + 0.0).to_bits();
    if bits >> 63 == 1 {
        !bits
    } else {
        bits | (1 << 63)
    }
}

const RADIX_BITS: u32 = 11;
const PASSES: u32 = 64u32.div_ceil(RADIX_BITS);
const BUCKETS: usize = 1 << RADIX_BITS;

fn radix_sort(mut keys: Vec<u64>, mut idx: Vec<u32>) -> Vec<u32> {
    let n = keys.len();
    // All histograms in one read of the keys.
    let mut hist = vec![[0usize; BUCKETS]; PASSES as usize];
    for &k in &keys {
        for (p, h) in hist.iter_mut().enumerate() {
            h[((k >> (p as u32 * RADIX_BITS)) as usize) & (BUCKETS - 1)] += 1;
        }
    }
    let mut keys_tmp = vec![0u64; n];
    let mut idx_tmp = vec![0u32; n];
    for (p, h) in hist.iter().enumerate() {
        // A digit shared by every key does not reorder anything.
        if h.iter().any(|&c| c == n) {
            continue;
        }
        let shift = p as u32 * RADIX_BITS;
        let mut offsets = [0usize; BUCKETS];
        let mut acc = 0;
        for (o, &c) in offsets.iter_mut().zip(h.iter()) {
            *o = acc;
            acc += c;
        }
        for i in 0..n {
            let k = keys[i];
            let b = ((k >> shift) as usize) & (BUCKETS - 1);
            let dst = offsets[b];
            offsets[b] += 1;
            keys_tmp[dst] = k;
            idx_tmp[dst] = idx[i];
        }
        std::mem::swap(&mut keys, &mut keys_tmp);
        std::mem::swap(&mut idx, &mut idx_tmp);
    }
    idx
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argsort_orders_all_kinds_of_floats() {
        let mut s: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1000) as f64 / 7.0 - 60.0).collect();
        s.extend([0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 0.5, 0.5]);
        let idx = argsort(&s);
        for w in idx.windows(2) {
            assert!(s[w[0] as usize] <= s[w[1] as usize]);
        }
        let mut seen = idx.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..s.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn zero_signs_tie() {
        let p = Predictions::new(vec![true, false], vec![0.0, -0.0]).unwrap();
        let s = Sorted::new(&p, 0.5);
        let c = s.count(None, 1, None);
        assert_eq!(c[0].auc2, 1.0); // one pair, tied: one half, doubled
    }

    #[test]
    fn counts_match_brute_force() {
        let labels = vec![true, false, true, false, true, false, false, true];
        let scores = vec![0.9, 0.1, 0.5, 0.5, 0.2, 0.8, 0.5, 0.5];
        let codes = vec![0u32, 0, 1, 1, 0, 1, 1, 0];
        let p = Predictions::new(labels.clone(), scores.clone()).unwrap();
        let s = Sorted::new(&p, 0.5);
        let c = s.count(Some(&s.gather(&codes)), 2, None);
        for (g, cg) in c.iter().enumerate() {
            let mut pairs2 = 0.0;
            for i in 0..8 {
                for j in 0..8 {
                    if codes[i] as usize == g && codes[j] as usize == g && labels[i] && !labels[j] {
                        pairs2 += if scores[i] > scores[j] { 2.0 } else if scores[i] == scores[j] { 1.0 } else { 0.0 };
                    }
                }
            }
            assert_eq!(cg.auc2, pairs2, "group {g}");
            assert_eq!(cg.n, codes.iter().filter(|&&x| x as usize == g).count() as u64);
        }
    }

    #[test]
    fn multiplicity_equals_duplicated_rows() {
        let labels = vec![true, false, true, false, false];
        let scores = vec![0.3, 0.3, 0.7, 0.1, 0.9];
        let mult = vec![2u32, 0, 3, 1, 2];
        let p = Predictions::new(labels.clone(), scores.clone()).unwrap();
        let s = Sorted::new(&p, 0.5);
        let a = s.count(None, 1, Some(&s.gather(&mult)));
        let mut dl = Vec::new();
        let mut ds = Vec::new();
        for i in 0..5 {
            for _ in 0..mult[i] {
                dl.push(labels[i]);
                ds.push(scores[i]);
            }
        }
        let dup = Predictions::new(dl, ds).unwrap();
        let b = Sorted::new(&dup, 0.5).count(None, 1, None);
        assert_eq!(a, b);
    }
}
