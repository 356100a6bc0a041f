//! The order in which a training run visits its samples: a reshuffle per epoch, and FairCLIP's
//! group-balanced batches. Both are pure functions of a seed and a position, so a resumed run
//! draws exactly what the uninterrupted one would have drawn.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};

/// A fresh shuffle of `0..n` for every epoch, seeded by the run's seed and the epoch.
///
/// ```
/// use fair_data::EpochShuffle;
/// let s = EpochShuffle::new(7);
/// let (a, b) = (s.order(10, 1), s.order(10, 2));
/// assert_ne!(a, b);
/// assert_eq!(a, EpochShuffle::new(7).order(10, 1)); // a resume draws the same order
/// let mut sorted = a.clone();
/// sorted.sort();
/// assert_eq!(sorted, (0..10).collect::<Vec<_>>());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochShuffle {
    seed: u64,
}

impl EpochShuffle {
    /// The shuffles of a run with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The visiting order of `n` samples in (1-based) `epoch`.
    pub fn order(&self, n: usize, epoch: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch as u64));
        order
    }
}

/// One generator that keeps shuffling `0..n`, epoch after epoch (the LoRA parties' order):
/// epoch `e`'s order is the `e`-th shuffle of a generator seeded once.
///
/// ```
/// use fair_data::StreamShuffle;
/// let s = StreamShuffle::new(3);
/// assert_ne!(s.order(8, 1), s.order(8, 2));
/// assert_eq!(s.order(8, 2), StreamShuffle::new(3).order(8, 2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamShuffle {
    seed: u64,
}

impl StreamShuffle {
    /// The stream of a generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// The visiting order of `n` samples in (1-based) `epoch`: the earlier epochs' shuffles are
    /// replayed (cheap next to an epoch of training), so a resume needs no saved generator.
    pub fn order(&self, n: usize, epoch: usize) -> Vec<usize> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut order: Vec<usize> = (0..n).collect();
        for _ in 0..epoch.max(1) {
            order = (0..n).collect();
            order.shuffle(&mut rng);
        }
        order
    }
}

/// FairCLIP's endless, shuffled, per-group loaders: each group (a known code of one
/// sensitive attribute) yields batches of `batch` of its own rows, reshuffled at every pass
/// over the group (a group smaller than a batch yields all its rows every time); rows with an
/// unknown code (negative) belong to no group. How many batches each group has given is the
/// sampler's whole state ([`GroupSampler::cursors`]).
///
/// ```
/// use fair_data::GroupSampler;
/// let codes = [0, 1, 0, 1, 0, -1, 1, 0];
/// let mut s = GroupSampler::new(&codes, 2, 9)?;
/// assert_eq!(s.codes(), vec![0, 1]);
/// let rows = s.next(1);
/// assert_eq!(rows.len(), 2);
/// assert!(rows.iter().all(|&r| codes[r] == 1));
/// assert_eq!(s.cursors(), vec![0, 1]);
/// # Ok::<(), fair_data::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSampler {
    seed: u64,
    batch: usize,
    groups: Vec<(i64, Vec<usize>)>,
    cursors: Vec<usize>,
}

impl GroupSampler {
    /// Groups of `codes` (one code per row), sorted by code; at least two are needed.
    pub fn new(codes: &[i64], batch: usize, seed: u64) -> Result<Self> {
        if batch == 0 {
            return Err(Error::Invalid("group batches need at least 1 sample".into()));
        }
        let mut groups: Vec<(i64, Vec<usize>)> = Vec::new();
        for (row, &code) in codes.iter().enumerate() {
            if code < 0 {
                continue; // FairCLIP's loaders use the known groups only
            }
            match groups.iter_mut().find(|(c, _)| *c == code) {
                Some((_, members)) => members.push(row),
                None => groups.push((code, vec![row])),
            }
        }
        groups.sort_by_key(|(c, _)| *c);
        if groups.len() < 2 {
            return Err(Error::Invalid(format!("group batches need at least 2 groups with a known value; found {}", groups.len())));
        }
        let cursors = vec![0; groups.len()];
        Ok(Self { seed, batch, groups, cursors })
    }

    /// The group codes, in the order of [`GroupSampler::next`]'s index.
    pub fn codes(&self) -> Vec<i64> {
        self.groups.iter().map(|(c, _)| *c).collect()
    }

    /// Number of groups.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// Whether there is no group (never true for a constructed sampler).
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// Batches drawn so far, per group.
    pub fn cursors(&self) -> Vec<usize> {
        self.cursors.clone()
    }

    /// Restores positions saved by [`GroupSampler::cursors`]; a list of another length is
    /// refused.
    pub fn set_cursors(&mut self, cursors: &[usize]) -> Result<()> {
        if cursors.len() != self.cursors.len() {
            return Err(Error::Invalid(format!("{} group positions saved for {} groups", cursors.len(), self.cursors.len())));
        }
        self.cursors.copy_from_slice(cursors);
        Ok(())
    }

    /// The next batch of group `g` (row indices).
    ///
    /// # Panics
    /// If `g` is not below [`GroupSampler::len`].
    pub fn next(&mut self, g: usize) -> Vec<usize> {
        let (code, members) = &self.groups[g];
        let size = self.batch.min(members.len());
        let per_pass = members.len() / size; // drop_last within a pass
        let k = self.cursors[g];
        self.cursors[g] += 1;
        let (pass, j) = (k / per_pass, k % per_pass);
        let mut order = members.clone();
        let seed = self.seed ^ (*code as u64).wrapping_mul(0xA24B_AED4_963E_E407) ^ (pass as u64).wrapping_mul(0x9FB2_1C65_1E98_DF25);
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        order[j * size..(j + 1) * size].to_vec()
    }

    /// The next batch of every group, in code order.
    pub fn next_all(&mut self) -> Vec<Vec<usize>> {
        (0..self.groups.len()).map(|g| self.next(g)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_batches_stay_in_their_group_and_cover_it_each_pass() {
        let codes: Vec<i64> = (0..50).map(|i| if i % 7 == 0 { -1 } else { i % 3 }).collect();
        let mut s = GroupSampler::new(&codes, 4, 1).expect("sampler");
        for g in 0..3 {
            let members = codes.iter().filter(|&&c| c == g as i64).count();
            let mut seen = Vec::new();
            for _ in 0..members / 4 {
                let rows = s.next(g);
                assert!(rows.iter().all(|&r| codes[r] == g as i64));
                seen.extend(rows);
            }
            seen.sort();
            seen.dedup();
            assert_eq!(seen.len(), (members / 4) * 4, "a pass repeats no row");
        }
    }

    #[test]
    fn restored_cursors_continue_the_same_draws() {
        let codes: Vec<i64> = (0..30).map(|i| i % 2).collect();
        let mut a = GroupSampler::new(&codes, 4, 5).expect("sampler");
        for _ in 0..5 {
            a.next_all();
        }
        let mut b = GroupSampler::new(&codes, 4, 5).expect("sampler");
        b.set_cursors(&a.cursors()).expect("cursors");
        assert_eq!(a.next_all(), b.next_all());
        assert!(b.set_cursors(&[1]).is_err());
    }

    #[test]
    fn one_group_or_an_empty_batch_is_refused() {
        assert!(GroupSampler::new(&[0, 0, -1], 2, 0).is_err());
        assert!(GroupSampler::new(&[0, 1], 0, 0).is_err());
    }

    #[test]
    fn the_stream_shuffle_replays_earlier_epochs() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let mut expected = Vec::new();
        for _ in 0..3 {
            let mut o: Vec<usize> = (0..9).collect();
            o.shuffle(&mut rng);
            expected.push(o);
        }
        let s = StreamShuffle::new(11);
        for (e, o) in expected.iter().enumerate() {
            assert_eq!(&s.order(9, e + 1), o);
        }
    }
}
