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

    /// `attrs` followed by their intersection ([`Attribute::intersect`]) when there are at
    /// least two; a single attribute is its own intersection, so it is returned alone.
    ///
    /// ```
    /// use fair_metrics::Attribute;
    /// let race = Attribute::from_values("race", &["A", "B"])?;
    /// let sex = Attribute::from_values("sex", &["F", "M"])?;
    /// let all = Attribute::with_intersection(vec![race, sex])?;
    /// assert_eq!(all.iter().map(Attribute::name).collect::<Vec<_>>(), ["race", "sex", "race & sex"]);
    /// # Ok::<(), fair_metrics::Error>(())
    /// ```
    pub fn with_intersection(mut attrs: Vec<Attribute>) -> Result<Vec<Attribute>> {
        if attrs.len() > 1 {
            let both = Self::intersect(&attrs.iter().collect::<Vec<_>>())?;
            attrs.push(both);
        }
        Ok(attrs)
    }

    /// The intersection of several attributes over the same rows: one group per combination
    /// of values that occurs. Its name joins the names with `" & "`, its values join the
    /// values the same way, and its groups are ordered like pandas' MultiIndex.
    ///
    /// Groups are the combinations of the attributes' codes, never of their joined text, so
    /// distinct combinations are distinct groups for any number of attributes and levels. A
    /// value that could make a joined name ambiguous (one that contains `" & "`, ends with
    /// `" &"` or starts with `"`) is written in double quotes, with `""` for a quote inside:
    /// race `A & B` and sex `F` make `"A & B" & F`, race `A` and sex `B & F` make `A & "B & F"`.
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
        // One attribute at a time: the groups so far, ordered like their tuples of (sorted)
        // level codes, times the next attribute's codes, renumbered over the pairs that occur.
        // A pair (group, code) of two u32 is one u64, so nothing can overflow however many
        // attributes and levels there are, and ordering the pairs orders the tuples
        // lexicographically, as a pandas MultiIndex does.
        let mut codes: Vec<u32> = vec![0; n];
        let mut tuples: Vec<Vec<u32>> = vec![Vec::new()];
        for a in attrs {
            let keys: Vec<u64> = codes.par_iter().zip(a.codes.par_iter()).map(|(&g, &c)| (u64::from(g) << 32) | u64::from(c)).collect();
            let mut present = keys.clone();
            present.par_sort_unstable();
            present.dedup();
            if present.len() > u32::MAX as usize {
                return Err(Error::Invalid(format!("intersection has {} groups; at most {} are supported", present.len(), u32::MAX)));
            }
            tuples = present
                .iter()
                .map(|&k| {
                    let mut t = Vec::with_capacity(attrs.len());
                    t.extend_from_slice(&tuples[(k >> 32) as usize]);
                    t.push(k as u32);
                    t
                })
                .collect();
            codes = keys.par_iter().map(|k| present.binary_search(k).unwrap_or_default() as u32).collect();
        }
        let levels = tuples.iter().map(|t| join_values(t.iter().zip(attrs).map(|(&c, a)| a.levels[c as usize].as_str()))).collect();
        let name = attrs.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(INTERSECTION_SEPARATOR);
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

/// What joins the values (and the names) of the attributes of an intersection.
const INTERSECTION_SEPARATOR: &str = " & ";

/// The name of an intersection group: the values joined with `" & "`, each as written unless
/// that could be read another way (see [`Attribute::intersect`]).
fn join_values<'a>(values: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::new();
    for (i, v) in values.enumerate() {
        if i > 0 {
            out.push_str(INTERSECTION_SEPARATOR);
        }
        // Unquoted values are read up to the first separator, so a value must not contain one,
        // nor end where a separator would start one earlier (values `x &` and `y` would join
        // as `x & & y`, the join of `x` and `& y`), nor start with the quote of a quoted value.
        if v.contains(INTERSECTION_SEPARATOR) || v.ends_with(" &") || v.starts_with('"') {
            out.push('"');
            out.push_str(&v.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(v);
        }
    }
    out
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

    /// Values containing the separator once merged distinct groups ("A & B" x "F" and
    /// "A" x "B & F" were both "A & B & F").
    #[test]
    fn intersection_names_stay_distinct_when_values_contain_the_separator() {
        let race = Attribute::from_values("race", &["A & B", "A", "A", "C"]).unwrap();
        let sex = Attribute::from_values("sex", &["F", "B & F", "B & F", "\"F"]).unwrap();
        let both = Attribute::intersect(&[&race, &sex]).unwrap();
        assert_eq!(both.levels(), ["A & \"B & F\"", "\"A & B\" & F", "C & \"\"\"F\""]);
        assert_eq!(both.codes(), [1, 0, 0, 2]);
    }

    /// Every tuple of short values over the characters that matter gets its own name.
    #[test]
    fn intersection_names_are_unambiguous() {
        let mut values = vec![String::new()];
        let mut frontier = vec![String::new()];
        for _ in 0..4 {
            frontier = frontier.iter().flat_map(|v| ["a", " ", "&", "\""].map(|c| format!("{v}{c}"))).collect();
            values.extend(frontier.iter().cloned());
        }
        values.remove(0); // values are never empty
        let mut names = std::collections::HashSet::new();
        for a in &values {
            for b in &values {
                assert!(names.insert(join_values([a.as_str(), b.as_str()].into_iter())), "{a:?} x {b:?}");
            }
        }
        let short: Vec<&String> = values.iter().filter(|v| v.len() <= 3).collect();
        let mut names = std::collections::HashSet::new();
        for a in &short {
            for b in &short {
                for c in &short {
                    assert!(names.insert(join_values([a.as_str(), b.as_str(), c.as_str()].into_iter())), "{a:?} x {b:?} x {c:?}");
                }
            }
        }
        // Ordinary values keep the plain " & " join.
        assert_eq!(join_values(["Black", "Female", "non-Hispanic"].into_iter()), "Black & Female & non-Hispanic");
    }

    /// Checks the intersection of `k` numeric attributes with `levels` values each against the
    /// tuples of values of each row.
    fn check_wide_intersection(k: usize, levels: u64) {
        let n = levels + 1000;
        let steps = [7u64, 11, 13, 17, 19, 23, 29, 31];
        let values: Vec<Vec<u64>> = (0..k).map(|j| (0..n).map(|i| (i * steps[j] + j as u64) % levels).collect()).collect();
        let attrs: Vec<Attribute> =
            values.iter().enumerate().map(|(j, v)| Attribute::from_values(format!("a{j}"), &v.iter().map(u64::to_string).collect::<Vec<_>>()).unwrap()).collect();
        assert!(attrs.iter().all(|a| a.levels().len() as u64 == levels));
        let refs: Vec<&Attribute> = attrs.iter().collect();
        let all = Attribute::intersect(&refs).unwrap();
        let tuple = |i: usize| values.iter().map(|v| v[i]).collect::<Vec<u64>>();
        let mut expected: Vec<Vec<u64>> = (0..n as usize).map(tuple).collect();
        expected.sort_unstable();
        expected.dedup();
        let name = |t: &[u64]| t.iter().map(u64::to_string).collect::<Vec<_>>().join(" & ");
        assert_eq!(all.levels(), expected.iter().map(|t| name(t)).collect::<Vec<_>>(), "{k} x {levels}: groups in MultiIndex order");
        for i in 0..n as usize {
            assert_eq!(all.levels()[all.codes()[i] as usize], name(&tuple(i)), "{k} x {levels}: row {i}");
        }
    }

    /// A mixed-radix code (product of the level counts) overflowed: 10,000^5 and 300^8 are
    /// past u64, so most rows got the wrong group (or the build panicked).
    #[test]
    fn intersection_of_many_attributes_with_many_levels() {
        check_wide_intersection(5, 300);
        check_wide_intersection(5, 10_000);
        check_wide_intersection(8, 300);
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
