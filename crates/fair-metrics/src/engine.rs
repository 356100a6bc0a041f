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
    /// Bit 0: label, bit 1: hard prediction.
    flags: Vec<u8>,
    weights: Option<Vec<f64>>,
}

/// Group codes in sorted order, as narrow as the number of groups allows (a narrow source
/// array stays in cache while it is gathered).
pub(crate) enum Codes {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
}

/// One group for every row (the overall pass).
#[derive(Clone, Copy)]
struct Single;

impl Sorted {
    pub fn new(p: &Predictions, threshold: f64) -> Self {
        let (order, block_start) = argsort(&p.scores);
        let flags: Vec<u8> = match &p.preds {
            Some(hard) => p.labels.par_iter().zip(hard.par_iter()).map(|(&y, &h)| y as u8 | (h as u8) << 1).collect(),
            None => p.labels.par_iter().zip(p.scores.par_iter()).map(|(&y, &s)| y as u8 | ((s >= threshold) as u8) << 1).collect(),
        };
        let mut sorted = Self { order, block_start, flags: Vec::new(), weights: None };
        sorted.flags = sorted.gather(&flags);
        sorted.weights = p.weights.as_ref().map(|w| sorted.gather(w));
        sorted
    }

    /// Gathers a per-row array into sorted order.
    pub fn gather<T: Copy + Send + Sync>(&self, values: &[T]) -> Vec<T> {
        self.order.par_iter().map(|&i| values[i as usize]).collect()
    }

    /// Gathers group codes (each below `levels`) into sorted order.
    pub fn gather_codes(&self, codes: &[u32], levels: usize) -> Codes {
        if levels <= 1 << 8 {
            Codes::U8(self.gather(&codes.par_iter().map(|&c| c as u8).collect::<Vec<_>>()))
        } else if levels <= 1 << 16 {
            Codes::U16(self.gather(&codes.par_iter().map(|&c| c as u16).collect::<Vec<_>>()))
        } else {
            Codes::U32(self.gather(codes))
        }
    }

    /// Counts per group. `codes` and `mult` are in sorted order; `codes = None` means one group.
    pub fn count(&self, codes: Option<&Codes>, n_groups: usize, mult: Option<&[u32]>) -> Vec<GroupCounts> {
        match codes {
            None => self.count_with(|_| Single, 1, mult),
            Some(Codes::U8(c)) => self.count_with(|i| c[i], n_groups, mult),
            Some(Codes::U16(c)) => self.count_with(|i| c[i], n_groups, mult),
            Some(Codes::U32(c)) => self.count_with(|i| c[i], n_groups, mult),
        }
    }

    fn count_with<C: GroupOf>(&self, code: impl Fn(usize) -> C, n_groups: usize, mult: Option<&[u32]>) -> Vec<GroupCounts> {
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
                let g = code(i).group();
                let m = mult.map_or(1, |m| m[i]);
                if m > 0 {
                    let w = self.row_weight(i, m);
                    let (label, pred) = self.flags(i);
                    let c = &mut out[g];
                    add_confusion(c, label, pred, m, w);
                    if label {
                        c.auc2 += 2.0 * w * neg_below[g];
                        c.wp += w;
                    } else {
                        neg_below[g] += w;
                        c.wn += w;
                    }
                }
            } else {
                for r in i..j {
                    let g = code(r).group();
                    let m = mult.map_or(1, |m| m[r]);
                    if m == 0 {
                        continue;
                    }
                    let w = self.row_weight(r, m);
                    let (label, pred) = self.flags(r);
                    add_confusion(&mut out[g], label, pred, m, w);
                    if label {
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

    fn flags(&self, i: usize) -> (bool, bool) {
        let f = self.flags[i];
        (f & 1 == 1, f & 2 == 2)
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

/// The group of a row: a group code, or [`Single`] for the overall pass.
trait GroupOf: Copy {
    fn group(self) -> usize;
}
impl GroupOf for u8 {
    fn group(self) -> usize {
        self as usize
    }
}
impl GroupOf for u16 {
    fn group(self) -> usize {
        self as usize
    }
}
impl GroupOf for u32 {
    fn group(self) -> usize {
        self as usize
    }
}
impl GroupOf for Single {
    fn group(self) -> usize {
        0
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

/// Row indices in ascending score order (ties in any order), and where each run of equal
/// scores starts.
///
/// Sorting plain u64 is about twice as fast as sorting (key, index) pairs, so the index goes
/// into the low bits of the order-preserving key. That truncates the key; keys that then
/// collide (ties, or scores within a relative 2^-32 or so) form runs, which are re-sorted by the
/// full key, so the order is exact.
pub(crate) fn argsort(scores: &[f64]) -> (Vec<u32>, Vec<bool>) {
    let n = scores.len();
    let bits = usize::BITS - n.saturating_sub(1).leading_zeros();
    let mask = (1u64 << bits) - 1;
    let mut packed: Vec<u64> = scores.par_iter().enumerate().map(|(i, &s)| (order_key(s) & !mask) | i as u64).collect();
    packed.par_sort_unstable();
    let mut block_start = vec![false; n];
    let mut i = 0;
    while i < n {
        let head = packed[i] & !mask;
        let mut j = i + 1;
        while j < n && packed[j] & !mask == head {
            j += 1;
        }
        if j == i + 1 {
            block_start[i] = true;
        } else {
            let run = &mut packed[i..j];
            run.sort_unstable_by_key(|&p| order_key(scores[(p & mask) as usize]));
            for r in i..j {
                block_start[r] = r == i || order_key(scores[(packed[r] & mask) as usize]) != order_key(scores[(packed[r - 1] & mask) as usize]);
            }
        }
        i = j;
    }
    let order = packed.into_par_iter().map(|p| (p & mask) as u32).collect();
    (order, block_start)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argsort_orders_all_kinds_of_floats() {
        let mut s: Vec<f64> = (0..1000).map(|i| ((i * 7919) % 1000) as f64 / 7.0 - 60.0).collect();
        s.extend([0.0, -0.0, 1e-300, -1e-300, 1e300, -1e300, 0.5, 0.5]);
        let (idx, starts) = argsort(&s);
        for (k, w) in idx.windows(2).enumerate() {
            assert!(s[w[0] as usize] <= s[w[1] as usize]);
            assert_eq!(starts[k + 1], s[w[0] as usize] != s[w[1] as usize]);
        }
        let mut seen = idx.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..s.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn near_ties_are_ordered_exactly() {
        // Scores that differ only in their lowest bits collide once the row index is packed in.
        let base = 0.3f64;
        let s: Vec<f64> = (0..3000u64).map(|i| f64::from_bits(base.to_bits() + (i * 7919) % 64)).collect();
        let (idx, starts) = argsort(&s);
        for (k, w) in idx.windows(2).enumerate() {
            assert!(s[w[0] as usize] <= s[w[1] as usize]);
            assert_eq!(starts[k + 1], s[w[0] as usize] != s[w[1] as usize]);
        }
        assert_eq!(starts.iter().filter(|&&b| b).count(), 64);
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
        let c = s.count(Some(&s.gather_codes(&codes, 2)), 2, None);
        for (g, cg) in c.iter().enumerate() {
            let mut pairs2 = 0.0;
            for i in 0..8 {
                for j in 0..8 {
                    if codes[i] as usize == g && codes[j] as usize == g && labels[i] && !labels[j] {
                        pairs2 += if scores[i] > scores[j] {
                            2.0
                        } else if scores[i] == scores[j] {
                            1.0
                        } else {
                            0.0
                        };
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
