//! A streaming accumulator that a training or evaluation loop pushes batches into.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::input::{Attribute, Predictions};
use crate::report::{Report, ReportOptions};

/// Collects labels, scores and attribute values batch by batch; `report` computes the full
/// report over everything pushed so far. AUC needs every score, so the rows are kept (about
/// 13 bytes per row plus 4 per attribute).
///
/// ```
/// use fair_metrics::{Accumulator, ReportOptions};
/// let mut acc = Accumulator::new(&["race", "sex"]);
/// acc.push(&[true, false], &[0.8, 0.3], &[&["Black", "White"], &["F", "M"]])?;
/// acc.push(&[true, false], &[0.4, 0.6], &[&["White", "Black"], &["M", "F"]])?;
/// let report = acc.report(&ReportOptions::default())?;
/// assert_eq!(report.n, 4);
/// assert_eq!(report.attributes["race"].groups.len(), 2);
/// # Ok::<(), fair_metrics::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    labels: Vec<bool>,
    scores: Vec<f64>,
    weights: Option<Vec<f64>>,
    attrs: Vec<Interned>,
}

#[derive(Debug, Clone, Default)]
struct Interned {
    name: String,
    index: HashMap<String, u32>,
    levels: Vec<String>,
    codes: Vec<u32>,
}

impl Accumulator {
    /// An empty accumulator for the named attributes.
    pub fn new<S: AsRef<str>>(attributes: &[S]) -> Self {
        let attrs = attributes.iter().map(|a| Interned { name: a.as_ref().to_owned(), ..Default::default() }).collect();
        Self { attrs, ..Default::default() }
    }

    /// Appends a batch: one label and score per row and, for each attribute (in the order
    /// given to [`Accumulator::new`]), one value per row.
    pub fn push<V: AsRef<str>>(&mut self, labels: &[bool], scores: &[f64], attrs: &[&[V]]) -> Result<()> {
        self.check(labels.len(), scores, attrs)?;
        if self.weights.is_some() {
            return Err(Error::Invalid("this accumulator holds weighted rows; use push_weighted".into()));
        }
        self.append(labels, scores, attrs);
        Ok(())
    }

    /// Appends a batch with sample weights. All batches must then be weighted.
    pub fn push_weighted<V: AsRef<str>>(&mut self, labels: &[bool], scores: &[f64], weights: &[f64], attrs: &[&[V]]) -> Result<()> {
        self.check(labels.len(), scores, attrs)?;
        if weights.len() != labels.len() {
            return Err(Error::Invalid(format!("{} weights for {} rows", weights.len(), labels.len())));
        }
        if self.weights.is_none() && !self.labels.is_empty() {
            return Err(Error::Invalid("earlier batches were unweighted; use push".into()));
        }
        if let Some(w) = weights.iter().find(|w| !(w.is_finite() && **w >= 0.0)) {
            return Err(Error::Invalid(format!("weight {w}: expected a finite number >= 0")));
        }
        self.weights.get_or_insert_with(Vec::new).extend_from_slice(weights);
        self.append(labels, scores, attrs);
        Ok(())
    }

    fn check<V: AsRef<str>>(&self, n: usize, scores: &[f64], attrs: &[&[V]]) -> Result<()> {
        if scores.len() != n {
            return Err(Error::Invalid(format!("{} scores for {n} labels", scores.len())));
        }
        if let Some(s) = scores.iter().find(|s| !s.is_finite()) {
            return Err(Error::Invalid(format!("score {s}: expected a finite number")));
        }
        if attrs.len() != self.attrs.len() {
            return Err(Error::Invalid(format!("{} attribute columns for {} attributes", attrs.len(), self.attrs.len())));
        }
        for (a, values) in self.attrs.iter().zip(attrs) {
            if values.len() != n {
                return Err(Error::Invalid(format!("attribute '{}': {} values for {n} rows", a.name, values.len())));
            }
            if values.iter().any(|v| v.as_ref().is_empty()) {
                return Err(Error::Invalid(format!("attribute '{}': empty value", a.name)));
            }
        }
        Ok(())
    }

    fn append<V: AsRef<str>>(&mut self, labels: &[bool], scores: &[f64], attrs: &[&[V]]) {
        self.labels.extend_from_slice(labels);
        self.scores.extend_from_slice(scores);
        for (a, values) in self.attrs.iter_mut().zip(attrs) {
            for v in values.iter() {
                let v = v.as_ref();
                let code = match a.index.get(v) {
                    Some(&c) => c,
                    None => {
                        let c = a.levels.len() as u32;
                        a.index.insert(v.to_owned(), c);
                        a.levels.push(v.to_owned());
                        c
                    }
                };
                a.codes.push(code);
            }
        }
    }

    /// Rows pushed so far.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether nothing was pushed.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Forgets every row (for example at the start of the next epoch).
    pub fn clear(&mut self) {
        let names: Vec<String> = self.attrs.iter().map(|a| a.name.clone()).collect();
        *self = Self::new(&names);
    }

    /// The report over everything pushed so far.
    pub fn report(&self, opts: &ReportOptions) -> Result<Report> {
        let mut p = Predictions::new(self.labels.clone(), self.scores.clone())?;
        if let Some(w) = &self.weights {
            p = p.with_weights(w.clone())?;
        }
        let attrs = self.attrs.iter().map(|a| Attribute::from_codes(a.name.clone(), a.codes.clone(), a.levels.clone())).collect::<Result<Vec<_>>>()?;
        Report::compute(&p, &attrs, opts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_equal_one_shot() {
        let labels = [true, false, true, false, true, false];
        let scores = [0.9, 0.2, 0.4, 0.6, 0.7, 0.1];
        let g = ["a", "b", "a", "b", "b", "a"];
        let mut acc = Accumulator::new(&["g"]);
        acc.push(&labels[..2], &scores[..2], &[&g[..2]]).unwrap();
        acc.push(&labels[2..], &scores[2..], &[&g[2..]]).unwrap();
        let streamed = acc.report(&ReportOptions::default()).unwrap();
        let p = Predictions::new(labels.to_vec(), scores.to_vec()).unwrap();
        let a = Attribute::from_values("g", &g).unwrap();
        let direct = Report::compute(&p, &[a], &ReportOptions::default()).unwrap();
        assert_eq!(streamed, direct);
    }

    #[test]
    fn mixing_weighted_and_unweighted_is_an_error() {
        let mut acc = Accumulator::new::<&str>(&[]);
        let none: [&[&str]; 0] = [];
        acc.push(&[true], &[0.5], &none).unwrap();
        assert!(acc.push_weighted(&[true], &[0.5], &[1.0], &none).is_err());
        assert!(acc.push(&[true], &[f64::NAN], &none).is_err());
        acc.clear();
        assert!(acc.is_empty());
    }
}
