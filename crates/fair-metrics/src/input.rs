//! The inputs of a report: labels, scores, optional hard predictions and weights, and the
//! sensitive attributes that split the rows into groups.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Binary labels, scores and, optionally, hard predictions and sample weights, one per row.
///
/// ```
/// use fair_metrics::Predictions;
/// let p = Predictions::new(vec![false, true, true], vec![0.2, 0.7, 0.4])?
///     .with_weights(vec![1.0, 2.0, 1.0])?;
/// assert_eq!(p.len(), 3);
/// # Ok::<(), fair_metrics::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub(crate) labels: Vec<bool>,
    pub(crate) scores: Vec<f64>,
    pub(crate) preds: Option<Vec<bool>>,
    pub(crate) weights: Option<Vec<f64>>,
}

impl Predictions {
    /// Labels (`true` = positive class) and scores (higher = more positive). Scores must be
    /// finite and both vectors the same length.
    pub fn new(labels: Vec<bool>, scores: Vec<f64>) -> Result<Self> {
        if labels.len() != scores.len() {
            return Err(Error::Invalid(format!("{} labels but {} scores", labels.len(), scores.len())));
        }
        if let Some(i) = scores.iter().position(|s| !s.is_finite()) {
            return Err(Error::Invalid(format!("score of row {i} is {}, expected a finite number", scores[i])));
        }
        Ok(Self { labels, scores, preds: None, weights: None })
    }

    /// Hard predictions to use instead of `score >= threshold`.
    pub fn with_preds(mut self, preds: Vec<bool>) -> Result<Self> {
        if preds.len() != self.labels.len() {
            return Err(Error::Invalid(format!("{} predictions for {} rows", preds.len(), self.labels.len())));
        }
        self.preds = Some(preds);
        Ok(self)
    }

    /// Sample weights: finite and non-negative.
    pub fn with_weights(mut self, weights: Vec<f64>) -> Result<Self> {
        if weights.len() != self.labels.len() {
            return Err(Error::Invalid(format!("{} weights for {} rows", weights.len(), self.labels.len())));
        }
        if let Some(i) = weights.iter().position(|w| !(w.is_finite() && *w >= 0.0)) {
            return Err(Error::Invalid(format!("weight of row {i} is {}, expected a finite number >= 0", weights[i])));
        }
        self.weights = Some(weights);
        Ok(self)
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The labels.
    pub fn labels(&self) -> &[bool] {
        &self.labels
    }

    /// The scores.
    pub fn scores(&self) -> &[f64] {
        &self.scores
    }

    /// The hard predictions, if given.
    pub fn preds(&self) -> Option<&[bool]> {
        self.preds.as_deref()
    }

    /// The sample weights, if given.
    pub fn weights(&self) -> Option<&[f64]> {
        self.weights.as_deref()
    }
}

/// One sensitive attribute: a group code per row and the value (as written) of each code.
///
/// Codes index `levels`; levels are kept in the order pandas' `groupby` sorts them (numbers
/// numerically when every value is a number, text otherwise), so reports list groups in the
/// same order as fairlearn.
///
/// ```
/// use fair_metrics::Attribute;
/// let race = Attribute::from_values("race", &["White", "Black", "White", "Asian"])?;
/// assert_eq!(race.levels(), ["Asian", "Black", "White"]);
/// assert_eq!(race.codes(), [2, 1, 2, 0]);
/// # Ok::<(), fair_metrics::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    pub(crate) name: String,
    pub(crate) levels: Vec<String>,
    pub(crate) codes: Vec<u32>,
}

impl Attribute {
    /// Builds an attribute from one value per row. Empty values are an error.
    pub fn from_values<S: AsRef<str>>(name: impl Into<String>, values: &[S]) -> Result<Self> {
        let name = name.into();
        let mut index: HashMap<&str, u32> = HashMap::new();
        let mut levels: Vec<String> = Vec::new();
        let mut codes = Vec::with_capacity(values.len());
        for (row, v) in values.iter().enumerate() {
            let v = v.as_ref();
            if v.is_empty() {
                return Err(Error::Invalid(format!("attribute '{name}': row {row} has an empty value")));
            }
            let next = levels.len() as u32;
            let code = *index.entry(v).or_insert_with(|| {
                levels.push(v.to_owned());
                next
            });
            codes.push(code);
        }
        Self::from_codes(name, codes, levels)
    }

    /// Builds an attribute from codes and the value of each code; sorts the levels and
    /// renumbers the codes accordingly. Levels must be distinct and non-empty.
    pub fn from_codes(name: impl Into<String>, codes: Vec<u32>, levels: Vec<String>) -> Result<Self> {
        let name = name.into();
        if let Some(bad) = codes.iter().find(|&&c| c as usize >= levels.len()) {
            return Err(Error::Invalid(format!("attribute '{name}': code {bad} but only {} levels", levels.len())));
        }
        if levels.iter().any(String::is_empty) {
            return Err(Error::Invalid(format!("attribute '{name}': empty level")));
        }
        let order = sorted_level_order(&levels);
        let mut rank = vec![0u32; levels.len()];
        for (new, &old) in order.iter().enumerate() {
            rank[old] = new as u32;
        }
        for w in order.windows(2) {
            if levels[w[0]] == levels[w[1]] {
                return Err(Error::Invalid(format!("attribute '{name}': level '{}' given twice", levels[w[0]])));
            }
        }
        let sorted: Vec<String> = order.iter().map(|&i| levels[i].clone()).collect();
        let mut codes = codes;
        if rank.iter().enumerate().any(|(i, &r)| r as usize != i) {
            codes.par_iter_mut().for_each(|c| *c = rank[*c as usize]);
        }
        Ok(Self { name, levels: sorted, codes })
    }

    /// The intersection of several attributes over the same rows: one group per combination
    /// of values that occurs. Its name joins the names with `" & "`, its values join the
    /// values the same way, and its groups are ordered like pandas' MultiIndex.
    ///
    /// ```
    /// use fair_metrics::Attribute;
    /// let race = Attribute::from_values("race", &["A", "B", "A"])?;
    /// let sex = Attribute::from_values("sex", &["F", "F", "M"])?;
    /// let both = Attribute::intersect(&[&race, &sex])?;
    /// assert_eq!(both.name(), "race & sex");
    /// assert_eq!(both.levels(), ["A & F", "A & M", "B & F"]);
    /// # Ok::<(), fair_metrics::Error>(())
    /// ```
    pub fn intersect(attrs: &[&Attribute]) -> Result<Self> {
        let Some(first) = attrs.first() else {
            return Err(Error::Invalid("intersection of no attributes".into()));
        };
        let n = first.codes.len();
        if let Some(a) = attrs.iter().find(|a| a.codes.len() != n) {
            return Err(Error::Invalid(format!("attribute '{}' has {} rows, '{}' has {n}", a.name, a.codes.len(), first.name)));
        }
        // Mixed-radix code over the sorted levels: ordering the codes orders the tuples
        // lexicographically, as a pandas MultiIndex does.
        let mut combined = vec![0u64; n];
        let mut radix: u64 = 1;
        for a in attrs.iter().rev() {
            for (c, &code) in combined.iter_mut().zip(&a.codes) {
                *c += code as u64 * radix;
            }
            radix = radix.saturating_mul(a.levels.len().max(1) as u64);
        }
        let mut present: Vec<u64> = combined.clone();
        present.sort_unstable();
        present.dedup();
        let mut levels = Vec::with_capacity(present.len());
        for &key in &present {
            let mut parts = Vec::with_capacity(attrs.len());
            let mut rest = key;
            for a in attrs.iter().rev() {
                let k = a.levels.len().max(1) as u64;
                parts.push(a.levels[(rest % k) as usize].as_str());
                rest /= k;
            }
            parts.reverse();
            levels.push(parts.join(" & "));
        }
        let codes = combined.iter().map(|c| present.binary_search(c).unwrap_or_default() as u32).collect();
        let name = attrs.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(" & ");
        Ok(Self { name, levels, codes })
    }

    /// The attribute's name (the CSV column).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of each group code, in report order.
    pub fn levels(&self) -> &[String] {
        &self.levels
    }

    /// The group code of each row.
    pub fn codes(&self) -> &[u32] {
        &self.codes
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.codes.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

/// The order pandas sorts group keys in: numerically when every value parses as a number
/// (a CSV column of integers becomes an integer column), as text otherwise.
fn sorted_level_order(levels: &[String]) -> Vec<usize> {
    let numeric: Option<Vec<f64>> = levels.iter().map(|l| l.trim().parse::<f64>().ok().filter(|x| !x.is_nan())).collect();
    let mut order: Vec<usize> = (0..levels.len()).collect();
    match numeric {
        Some(x) => order.sort_by(|&a, &b| x[a].total_cmp(&x[b]).then_with(|| levels[a].cmp(&levels[b]))),
        None => order.sort_by(|&a, &b| levels[a].cmp(&levels[b])),
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_levels_sort_numerically() {
        let a = Attribute::from_values("age", &["10", "9", "-1", "10"]).unwrap();
        assert_eq!(a.levels(), ["-1", "9", "10"]);
        assert_eq!(a.codes(), [2, 1, 0, 2]);
    }

    #[test]
    fn text_levels_sort_lexicographically() {
        let a = Attribute::from_values("g", &["b", "B", "a"]).unwrap();
        assert_eq!(a.levels(), ["B", "a", "b"]);
    }

    #[test]
    fn empty_value_is_an_error() {
        assert!(Attribute::from_values("g", &["a", ""]).is_err());
    }

    #[test]
    fn duplicate_levels_rejected() {
        assert!(Attribute::from_codes("g", vec![0, 1], vec!["x".into(), "x".into()]).is_err());
        assert!(Attribute::from_codes("g", vec![2], vec!["x".into()]).is_err());
    }

    #[test]
    fn intersection_keeps_only_present_combinations() {
        let a = Attribute::from_values("a", &["1", "2", "1", "2"]).unwrap();
        let b = Attribute::from_values("b", &["x", "x", "y", "x"]).unwrap();
        let ab = Attribute::intersect(&[&a, &b]).unwrap();
        assert_eq!(ab.levels(), ["1 & x", "1 & y", "2 & x"]);
        assert_eq!(ab.codes(), [0, 2, 1, 2]);
    }

    #[test]
    fn predictions_validate() {
        assert!(Predictions::new(vec![true], vec![f64::NAN]).is_err());
        assert!(Predictions::new(vec![true], vec![0.1, 0.2]).is_err());
        let p = Predictions::new(vec![true], vec![0.1]).unwrap();
        assert!(p.clone().with_weights(vec![-1.0]).is_err());
        assert!(p.clone().with_preds(vec![]).is_err());
    }
}
