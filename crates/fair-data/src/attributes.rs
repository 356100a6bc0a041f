//! The sensitive attributes of a set of samples, named by the data: any number of columns,
//! each with the labels of its values and one code per sample.

use crate::error::{Error, Result};

/// The label of an unknown value (a negative code, or one without a label).
pub const UNKNOWN: &str = "Unknown";

/// One sensitive attribute: its name, the label of each value (code `k` is `values[k]`) and
/// the code of every sample (negative: unknown).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// The attribute's name, as reports print it.
    pub name: String,
    /// The label of each known value, by code.
    pub values: Vec<String>,
    /// One code per sample.
    pub codes: Vec<i64>,
}

impl Column {
    /// The label of `code` ([`UNKNOWN`] for a negative code or one without a label).
    pub fn label(&self, code: i64) -> &str {
        usize::try_from(code).ok().and_then(|k| self.values.get(k)).map_or(UNKNOWN, String::as_str)
    }

    /// Every sample's label.
    pub fn labels(&self) -> Vec<&str> {
        self.codes.iter().map(|&c| self.label(c)).collect()
    }
}

/// The sensitive attributes of a set of samples, in a fixed order.
///
/// ```
/// use fair_data::{Attributes, Column};
/// let site = Column { name: "site".into(), values: vec!["A".into(), "B".into()], codes: vec![0, 1, -1] };
/// let attrs = Attributes::new(vec![site])?;
/// assert_eq!(attrs.names(), vec!["site"]);
/// assert_eq!(attrs.column("site")?.labels(), vec!["A", "B", "Unknown"]);
/// assert_eq!(attrs.select(&[1, 1]).column("site")?.codes, vec![1, 1]);
/// assert!(attrs.column("sex").is_err());
/// # Ok::<(), fair_data::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Attributes {
    columns: Vec<Column>,
}

impl Attributes {
    /// Attributes from columns of equal length with distinct names.
    pub fn new(columns: Vec<Column>) -> Result<Self> {
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].iter().any(|d| d.name == c.name) {
                return Err(Error::Invalid(format!("attribute '{}' appears twice", c.name)));
            }
            if c.codes.len() != columns[0].codes.len() {
                return Err(Error::Invalid(format!("attribute '{}' has {} values for {} samples", c.name, c.codes.len(), columns[0].codes.len())));
            }
        }
        Ok(Self { columns })
    }

    /// The columns, in order.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The attributes' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.columns.iter().map(|c| c.name.as_str()).collect()
    }

    /// The attribute `name`, or an error listing the attributes the data has.
    pub fn column(&self, name: &str) -> Result<&Column> {
        self.columns.iter().find(|c| c.name == name).ok_or_else(|| Error::Invalid(format!("attribute '{name}': the data has {}", self.names().join(", "))))
    }

    /// The samples `rows` (in that order, repeats allowed).
    pub fn select(&self, rows: &[usize]) -> Self {
        let columns = self.columns.iter().map(|c| Column { name: c.name.clone(), values: c.values.clone(), codes: rows.iter().map(|&r| c.codes[r]).collect() }).collect();
        Self { columns }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_must_agree() {
        let col = |name: &str, n: usize| Column { name: name.into(), values: vec!["x".into()], codes: vec![0; n] };
        assert!(Attributes::new(vec![col("a", 2), col("a", 2)]).is_err());
        assert!(Attributes::new(vec![col("a", 2), col("b", 3)]).is_err());
        assert_eq!(Attributes::new(vec![col("a", 2), col("b", 2)]).expect("valid").names(), vec!["a", "b"]);
    }

    #[test]
    fn codes_without_a_label_are_unknown() {
        let c = Column { name: "race".into(), values: vec!["Asian".into()], codes: vec![0, 3, -1] };
        assert_eq!(c.labels(), vec!["Asian", UNKNOWN, UNKNOWN]);
    }
}
