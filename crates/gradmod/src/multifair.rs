//! MultiFair's group-level modulation (Zubair et al., arXiv 2510.07328), as its released code
//! computes it: an exponential moving average of each modality head's surrogate AUC per
//! demographic group, per-group factors that favour the groups below the mean, and a trigger
//! on the fused model's group AUC gap in the batch.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The two readings of MultiFair (see docs/methods.md). In TOML: `"code-exact"` or
/// `"faithful"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MultiFairMode {
    /// The released code, including what is inert in it: the direction term and the
    /// fairness gap are constants (no gradient), and groups are binary.
    #[default]
    CodeExact,
    /// The differentiable direction term (CGGM's form), a differentiable fairness term on the
    /// fused model, any number of groups; the magnitude modulation as coded.
    Faithful,
}

/// MultiFair's modulation settings (FairVLMed code settings); in TOML the `[multifair]` table
/// with these keys, each optional.
///
/// ```
/// use gradmod::{MultiFairMode, MultiFairSettings};
/// let mf: MultiFairSettings = toml::from_str("mode = \"faithful\"\nthreshold = 0.1")?;
/// assert_eq!((mf.mode, mf.threshold, mf.rho), (MultiFairMode::Faithful, 0.1, 1.2));
/// assert!(mf.validate().is_ok());
/// let groups = mf.group_modulation(2, 2)?;
/// assert_eq!(groups.ema().len(), 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiFairSettings {
    /// Reading.
    pub mode: MultiFairMode,
    /// ρ, the scale of the modality factors (1.2).
    pub rho: f64,
    /// λ_gm, the direction term's weight (0.15; `faithful` only).
    pub lambda_gm: f64,
    /// The fairness term's weight (0.5; `faithful` only).
    pub fairness_coeff: f64,
    /// τ, the trigger threshold on the batch's group AUC gap (0.07).
    pub threshold: f64,
    /// fm, the strength of the group factors (0.5).
    pub strength: f64,
}

impl Default for MultiFairSettings {
    fn default() -> Self {
        MultiFairSettings { mode: MultiFairMode::CodeExact, rho: 1.2, lambda_gm: 0.15, fairness_coeff: 0.5, threshold: 0.07, strength: 0.5 }
    }
}

impl MultiFairSettings {
    /// Checks that the five weights are finite and `≥ 0`; the message names the key
    /// (`multifair.rho`, ...).
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [("rho", self.rho), ("lambda_gm", self.lambda_gm), ("fairness_coeff", self.fairness_coeff), ("threshold", self.threshold), ("strength", self.strength)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("multifair.{key} = {v}: expected a number >= 0"));
            }
        }
        Ok(())
    }

    /// The group-level modulation of `modalities` heads over `groups` groups, with these
    /// settings' strength and threshold.
    pub fn group_modulation(&self, modalities: usize, groups: usize) -> Result<GroupModulation> {
        GroupModulation::new(modalities, groups, self.strength, self.threshold)
    }
}

/// The running state of the group-level modulation: `E_{i,g}` for every modality i and group g.
///
/// ```
/// use gradmod::GroupModulation;
/// let mut m = GroupModulation::new(2, 2, 0.5, 0.07)?;
/// m.update(&[vec![0.6, 0.2], vec![0.4, 0.4]])?;          // surrogate AUC per head and group
/// let f = m.factors(&[0.5, 0.5])?;                        // half the batch in each group
/// assert!((f[0] - 1.0).abs() < 1e-12);                    // balanced batch: factors average out
/// assert!(m.gap() > 0.0);
/// # Ok::<(), gradmod::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GroupModulation {
    ema: Vec<Vec<f64>>,
    decay: f64,
    strength: f64,
    threshold: f64,
}

impl GroupModulation {
    /// `modalities` heads, `groups` groups, modulation strength `fm` (the code's
    /// `fairness_modulation`) and threshold `τ` (`fairness_threshold`); EMA decay 0.9, every
    /// average starting at 0.5, as in the code.
    pub fn new(modalities: usize, groups: usize, strength: f64, threshold: f64) -> Result<Self> {
        if modalities == 0 || groups < 2 {
            return Err(Error::Setting(format!("{modalities} modalities and {groups} groups: expected at least 1 and 2")));
        }
        if !(strength.is_finite() && threshold.is_finite() && threshold >= 0.0) {
            return Err(Error::Setting(format!("strength {strength}, threshold {threshold}: expected finite, threshold ≥ 0")));
        }
        Ok(GroupModulation { ema: vec![vec![0.5; groups]; modalities], decay: 0.9, strength, threshold })
    }

    /// The averages `E_{i,g}` (restorable with [`GroupModulation::set_ema`]).
    pub fn ema(&self) -> &[Vec<f64>] {
        &self.ema
    }

    /// Restores the averages (from a checkpoint).
    pub fn set_ema(&mut self, ema: Vec<Vec<f64>>) -> Result<()> {
        if ema.len() != self.ema.len() || ema.iter().zip(&self.ema).any(|(a, b)| a.len() != b.len()) {
            return Err(Error::Shape("EMA table of another size".into()));
        }
        self.ema = ema;
        Ok(())
    }

    /// `E_{i,g} ← 0.9·E_{i,g} + 0.1·AUC~_{i,g}` from this batch's surrogate AUCs (the caller
    /// uses 0.5 where a group has at most one sample or one class, as the code does).
    pub fn update(&mut self, surrogate: &[Vec<f64>]) -> Result<()> {
        if surrogate.len() != self.ema.len() || surrogate.iter().zip(&self.ema).any(|(a, b)| a.len() != b.len()) {
            return Err(Error::Shape(format!("surrogate AUCs for {} heads; expected {} heads of {} groups", surrogate.len(), self.ema.len(), self.ema[0].len())));
        }
        for (row, new) in self.ema.iter_mut().zip(surrogate) {
            for (e, a) in row.iter_mut().zip(new) {
                *e = self.decay * *e + (1.0 - self.decay) * a;
            }
        }
        Ok(())
    }

    /// `mean_{i,g} |E_{i,g} − Ē_i|`, the code's `fairness_gap`.
    pub fn gap(&self) -> f64 {
        let mut sum = 0.0;
        let mut n = 0;
        for row in &self.ema {
            let mean = row.iter().sum::<f64>() / row.len() as f64;
            sum += row.iter().map(|e| (e - mean).abs()).sum::<f64>();
            n += row.len();
        }
        sum / n as f64
    }

    /// `F_i = Σ_g π_g·(1 + fm·(Ē_i − E_{i,g}) / max(1e-4, τ))`, with `π_g` the fraction of the
    /// batch in group g (samples of unknown group count in the batch, not in any π_g, as in
    /// the code).
    pub fn factors(&self, fractions: &[f64]) -> Result<Vec<f64>> {
        if fractions.len() != self.ema[0].len() {
            return Err(Error::Shape(format!("{} group fractions for {} groups", fractions.len(), self.ema[0].len())));
        }
        let denom = self.threshold.max(1e-4);
        Ok(self
            .ema
            .iter()
            .map(|row| {
                let mean = row.iter().sum::<f64>() / row.len() as f64;
                row.iter().zip(fractions).map(|(e, p)| p * (1.0 + self.strength * (mean - e) / denom)).sum()
            })
            .collect())
    }

    /// The trigger: the fused model's AUC per group on this batch (0.5 for a group with a
    /// single class, groups with at most one sample skipped), and whether
    /// `max_g AUC_g − min_g AUC_g > τ`. Returns the gap and the decision.
    pub fn trigger(&self, labels: &[bool], scores: &[f64], groups: &[i64]) -> Result<(f64, bool)> {
        if labels.len() != scores.len() || labels.len() != groups.len() {
            return Err(Error::Shape(format!("{} labels, {} scores, {} groups", labels.len(), scores.len(), groups.len())));
        }
        let mut aucs = Vec::new();
        for g in 0..self.ema[0].len() as i64 {
            let idx: Vec<usize> = (0..groups.len()).filter(|&i| groups[i] == g).collect();
            if idx.len() <= 1 {
                continue;
            }
            let l: Vec<bool> = idx.iter().map(|&i| labels[i]).collect();
            let s: Vec<f64> = idx.iter().map(|&i| scores[i]).collect();
            aucs.push(fair_metrics::roc_auc(&l, &s)?.unwrap_or(0.5));
        }
        let gap = match (aucs.iter().copied().reduce(f64::max), aucs.iter().copied().reduce(f64::min)) {
            (Some(hi), Some(lo)) => hi - lo,
            _ => 0.0,
        };
        Ok((gap, gap > self.threshold))
    }
}

#[cfg(test)]
mod tests {
    use super::{MultiFairMode, MultiFairSettings};

    #[test]
    fn the_toml_keys_and_defaults_are_the_trainers() {
        let text = "mode = \"faithful\"\nrho = 1.0\nlambda_gm = 0.2\nfairness_coeff = 0.3\nthreshold = 0.1\nstrength = 0.4";
        let mf: MultiFairSettings = toml::from_str(text).unwrap();
        assert_eq!(mf, MultiFairSettings { mode: MultiFairMode::Faithful, rho: 1.0, lambda_gm: 0.2, fairness_coeff: 0.3, threshold: 0.1, strength: 0.4 });
        let defaults: MultiFairSettings = toml::from_str("").unwrap();
        assert_eq!(defaults, MultiFairSettings { mode: MultiFairMode::CodeExact, rho: 1.2, lambda_gm: 0.15, fairness_coeff: 0.5, threshold: 0.07, strength: 0.5 });
        assert_eq!(defaults, MultiFairSettings::default());
        assert_eq!(toml::from_str::<MultiFairSettings>("mode = \"code-exact\"").unwrap().mode, MultiFairMode::CodeExact);
        for bad in ["mode = \"CodeExact\"", "mode = \"code_exact\"", "rho = 1.0\ntau = 0.1"] {
            assert!(toml::from_str::<MultiFairSettings>(bad).is_err(), "{bad}");
        }
        assert_eq!(toml::from_str::<MultiFairSettings>(&toml::to_string(&mf).unwrap()).unwrap(), mf);
    }

    #[test]
    fn the_group_level_up_weights_the_worse_groups_batches() {
        // Head 0 ranks group 1 worse (its average AUC 0.55 against 0.75): a batch of group 1
        // scales head 0's gradient up, a batch of group 0 down; head 1 is fair and untouched.
        let mut m = MultiFairSettings::default().group_modulation(2, 2).unwrap();
        m.set_ema(vec![vec![0.75, 0.55], vec![0.7, 0.7]]).unwrap();
        let worse = m.factors(&[0.0, 1.0]).unwrap();
        let better = m.factors(&[1.0, 0.0]).unwrap();
        // 1 ± fm · 0.1 / τ = 1 ± 0.5 · 0.1 / 0.07.
        assert!((worse[0] - (1.0 + 0.5 * 0.1 / 0.07)).abs() < 1e-12 && (better[0] - (1.0 - 0.5 * 0.1 / 0.07)).abs() < 1e-12, "{worse:?} {better:?}");
        assert_eq!((worse[1], better[1]), (1.0, 1.0));
    }

    #[test]
    fn validation_names_the_key() {
        assert_eq!(MultiFairSettings::default().validate(), Ok(()));
        let d = MultiFairSettings::default();
        assert_eq!(MultiFairSettings { rho: -1.0, ..d }.validate().unwrap_err(), "multifair.rho = -1: expected a number >= 0");
        assert_eq!(MultiFairSettings { lambda_gm: f64::NAN, ..d }.validate().unwrap_err(), "multifair.lambda_gm = NaN: expected a number >= 0");
        assert_eq!(MultiFairSettings { fairness_coeff: -0.5, ..d }.validate().unwrap_err(), "multifair.fairness_coeff = -0.5: expected a number >= 0");
        assert_eq!(MultiFairSettings { threshold: f64::INFINITY, ..d }.validate().unwrap_err(), "multifair.threshold = inf: expected a number >= 0");
        assert_eq!(MultiFairSettings { strength: -2.0, ..d }.validate().unwrap_err(), "multifair.strength = -2: expected a number >= 0");
        assert!(d.group_modulation(2, 2).is_ok());
        assert!(d.group_modulation(2, 1).is_err());
    }
}
