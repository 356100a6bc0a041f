//! Group-wise classification metrics and fairness gaps with the exact semantics of
//! scikit-learn and fairlearn, fast enough for millions of predictions.
//!
//! A [`Report`] holds, overall and for every group of every sensitive attribute, the AUC
//! (scikit-learn's `roc_auc_score`, ties counted one half), accuracy, balanced accuracy,
//! selection rate, TPR, FPR, TNR, FNR and precision; and per attribute the fairness metrics
//! of the medical-fairness literature: ES-AUC and ES-Accuracy (FairCLIP), demographic parity
//! difference and ratio, equalized odds (DEOdds) difference and ratio, equal opportunity,
//! FPR parity, between-group AUC disparity, the worst group, and MetricFrame-style
//! aggregates. Undefined values are explicit (`None` / `null`) and listed.
//!
//! ```
//! use fair_metrics::{Attribute, Predictions, Report, ReportOptions};
//!
//! let labels = vec![true, false, true, false, true, false, true, false];
//! let scores = vec![0.9, 0.6, 0.7, 0.2, 0.4, 0.5, 0.8, 0.1];
//! let race = Attribute::from_values("race", &["Black", "Black", "Black", "Black", "White", "White", "White", "White"])?;
//!
//! let report = Report::compute(&Predictions::new(labels, scores)?, &[race], &ReportOptions::default())?;
//! let race = &report.attributes["race"];
//! assert_eq!(race.groups["Black"].auc, Some(1.0));
//! assert_eq!(race.groups["White"].auc, Some(0.75));
//! println!("ES-AUC {:?}  DPD {:?}  DEOdds {:?}", race.es_auc, race.dpd, race.eod);
//! # Ok::<(), fair_metrics::Error>(())
//! ```
//!
//! The formulas, references and edge cases are in `docs/metrics.md` of the repository.

#![warn(missing_docs)]

mod auc;
mod bootstrap;
mod csv;
mod engine;
mod error;
mod format;
mod input;
mod multiclass;
mod report;
mod rng;
mod stream;

pub use auc::roc_auc;
pub use bootstrap::{Bootstrap, Ci};
pub use csv::{parse_csv, read_csv, CsvSpec, Table};
pub use error::{Error, Result};
pub use format::Format;
pub use input::{Attribute, Predictions};
pub use multiclass::{multiclass_auc_ovr, OvrAverage};
pub use report::{equity_scaled, Aggregates, AttributeReport, BootstrapInfo, GroupMetrics, Report, ReportOptions, Undefined, UndefinedAuc, ATTRIBUTE_METRICS, GROUP_METRICS};
pub use stream::Accumulator;
