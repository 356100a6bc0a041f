//! The end-of-run report: the selected model on the test split, as `report.json`,
//! `report.md`, a self-contained `report.html` with SVG plots, and `predictions.csv` (which the
//! `fair-metrics` CLI can audit again).

use fair_data::Prepared;
use fair_metrics::{Format, Report};
use indexmap::IndexMap;
use serde::Serialize;
use std::fmt::Write as _;

use crate::config::{Experiment, SelectOn};
use crate::data::ExperimentData;
use crate::error::Result;
use crate::evaluate::report;
use crate::log::EpochLog;

/// A ROC curve: false and true positive rates at every distinct threshold (at most a few
/// hundred points kept).
#[derive(Debug, Clone, Serialize)]
pub struct Roc {
    /// False positive rates, from 0 to 1.
    pub fpr: Vec<f64>,
    /// True positive rates.
    pub tpr: Vec<f64>,
}

impl Roc {
    /// The curve of scores against labels; `None` if a class is missing.
    ///
    /// ```
    /// let roc = trainer::Roc::of(&[0.9, 0.8, 0.3, 0.1], &[true, false, true, false]).unwrap();
    /// assert_eq!(roc.fpr, vec![0.0, 0.0, 0.5, 0.5, 1.0]);
    /// assert_eq!(roc.tpr, vec![0.0, 0.5, 0.5, 1.0, 1.0]);
    /// ```
    pub fn of(scores: &[f64], labels: &[bool]) -> Option<Self> {
        let pos = labels.iter().filter(|&&l| l).count() as f64;
        let neg = labels.len() as f64 - pos;
        if pos == 0.0 || neg == 0.0 {
            return None;
        }
        let mut order: Vec<usize> = (0..scores.len()).collect();
        order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
        let (mut fpr, mut tpr) = (vec![0.0], vec![0.0]);
        let (mut tp, mut fp) = (0.0, 0.0);
        for (k, &i) in order.iter().enumerate() {
            if labels[i] {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
            // One point per distinct threshold, as sklearn's roc_curve.
            if order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]) {
                fpr.push(fp / neg);
                tpr.push(tp / pos);
            }
        }
        let step = fpr.len().div_ceil(300).max(1);
        let keep = |v: Vec<f64>| -> Vec<f64> {
            let last = v.len() - 1;
            v.into_iter().enumerate().filter(|(i, _)| i % step == 0 || *i == last).map(|(_, x)| x).collect()
        };
        Some(Self { fpr: keep(fpr), tpr: keep(tpr) })
    }
}

/// Everything a finished run reports.
#[derive(Debug, Clone, Serialize)]
pub struct FinalReport {
    /// The method (its recipe's name).
    pub method: String,
    /// The experiment.
    pub config: Experiment,
    /// The epoch whose weights are reported.
    pub best_epoch: usize,
    /// Its selection split.
    pub selected_on: SelectOn,
    /// Samples per split (training, validation, test).
    pub samples: [usize; 3],
    /// Files left out as unreadable (`on_error = "skip"`): split, file, reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<[String; 3]>,
    /// The fair-metrics report of the selected model on the test split (with bootstrap
    /// intervals).
    pub test: Report,
    /// Per attribute and group, the test ROC curve (`overall` under the key `""`).
    pub roc: IndexMap<String, IndexMap<String, Roc>>,
    /// The synthetic benchmark's oracle on the test split (the best any image model can reach:
    /// [`fair_data::SynthConfig::generate_with_oracle`]): AUC overall (key `""`) and per
    /// attribute and group, next to the model's. `None` for real data.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oracle: Option<IndexMap<String, IndexMap<String, Option<f64>>>>,
    /// The training log.
    pub history: Vec<EpochLog>,
    /// `predictions.csv` of the test split.
    #[serde(skip)]
    pub predictions: String,
}

/// For everyone (attribute `""`, group `overall`) and for each attribute's groups, `f` of the
/// group's code (`None` for everyone), scores and labels; groups where `f` gives `None` are left
/// out.
fn by_group<T>(data: &Prepared, scores: &[f64], mut f: impl FnMut(Option<i64>, &[f64], &[bool]) -> Result<Option<T>>) -> Result<IndexMap<String, IndexMap<String, T>>> {
    let labels: Vec<bool> = data.labels.iter().map(|&l| l == 1).collect();
    let mut out = IndexMap::new();
    let mut all = IndexMap::new();
    if let Some(v) = f(None, scores, &labels)? {
        all.insert("overall".to_string(), v);
    }
    out.insert(String::new(), all);
    for column in data.attributes.columns() {
        let mut codes = column.codes.clone();
        codes.sort_unstable();
        codes.dedup();
        let mut per = IndexMap::new();
        for c in codes {
            let rows: Vec<usize> = (0..data.len()).filter(|&i| column.codes[i] == c).collect();
            let s: Vec<f64> = rows.iter().map(|&i| scores[i]).collect();
            let l: Vec<bool> = rows.iter().map(|&i| labels[i]).collect();
            if let Some(v) = f(Some(c), &s, &l)? {
                per.insert(column.label(c).to_string(), v);
            }
        }
        out.insert(column.name.clone(), per);
    }
    Ok(out)
}

/// The AUC of `scores` overall (attribute `""`, group `overall`) and in each known group.
fn group_aucs(data: &Prepared, scores: &[f64]) -> Result<IndexMap<String, IndexMap<String, Option<f64>>>> {
    by_group(data, scores, |code, s, l| if code.is_some_and(|c| c < 0) { Ok(None) } else { Ok(Some(fair_metrics::roc_auc(l, s)?)) })
}

/// Per attribute, per group (and `""` for everyone), the ROC curve.
fn roc_curves(data: &Prepared, scores: &[f64]) -> Result<IndexMap<String, IndexMap<String, Roc>>> {
    by_group(data, scores, |_, s, l| Ok(Roc::of(s, l)))
}

impl FinalReport {
    /// Assembles the report from the selected model's test scores.
    pub fn from_scores(exp: &Experiment, method: &str, data: &ExperimentData, scores: Vec<f64>, history: &[EpochLog], best_epoch: usize) -> Result<Self> {
        let test = report(exp, &data.test, scores.clone(), exp.eval.bootstrap(exp.seed))?;
        Ok(Self {
            method: method.into(),
            config: exp.clone(),
            best_epoch,
            selected_on: exp.eval.select_on,
            samples: [data.train.len(), data.validation.len(), data.test.len()],
            skipped: data.skipped.clone(),
            test,
            roc: roc_curves(&data.test, &scores)?,
            oracle: data.oracle.as_ref().map(|o| group_aucs(&data.test, o)).transpose()?,
            history: history.to_vec(),
            predictions: predictions_csv(&data.test, &scores),
        })
    }

    /// The Markdown report: the headline table of the FairCLIP papers (per attribute DPD,
    /// DEOdds, AUC, ES-AUC and group AUCs), then fair-metrics' full tables.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}", 100.0 * v));
        let _ = writeln!(s, "# {} on the test split\n", self.method);
        let _ = writeln!(
            s,
            "Epoch {} of {} selected on {} AUC. Samples: {} training, {} validation, {} test. Values x100.\n",
            self.best_epoch,
            self.config.optim.epochs,
            match self.selected_on {
                SelectOn::Validation => "validation",
                SelectOn::Test => "test",
            },
            self.samples[0],
            self.samples[1],
            self.samples[2]
        );
        let collapsed: Vec<String> = self.history.iter().filter(|l| l.collapsed).map(|l| l.epoch.to_string()).collect();
        if !collapsed.is_empty() {
            let _ = writeln!(
                s,
                "**Warning: the model collapsed to a constant score in epoch(s) {}** (validation AUC 0.5 by ties); see the log for the settings that can cause it.\n",
                collapsed.join(", ")
            );
        }
        if !self.skipped.is_empty() {
            let _ = writeln!(s, "**{} unreadable file(s) were skipped** (`on_error = \"skip\"`; listed in skipped.csv).\n", self.skipped.len());
        }
        let _ = writeln!(s, "| attribute | DPD | DEOdds | AUC | ES-AUC | group AUCs |");
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for (name, a) in &self.test.attributes {
            let groups: Vec<String> = a.groups.iter().map(|(g, m)| format!("{g} {}", f(m.auc))).collect();
            let _ = writeln!(s, "| {name} | {} | {} | {} | {} | {} |", f(a.dpd), f(a.eod), f(self.test.overall.auc), f(a.es_auc), groups.join(", "));
        }
        if let Some(oracle) = &self.oracle {
            let overall = oracle.get("").and_then(|o| o.get("overall").copied().flatten());
            let _ = writeln!(s, "\nThe benchmark's oracle (the best AUC any image model can reach, from the latent sign): overall {}", f(overall));
            for (name, groups) in oracle.iter().filter(|(n, _)| !n.is_empty()) {
                let g: Vec<String> = groups.iter().map(|(g, v)| format!("{g} {}", f(*v))).collect();
                let _ = writeln!(s, "- {name}: {}", g.join(", "));
            }
        }
        let _ = writeln!(s, "\n## Training\n\n| epoch | loss | val AUC | test AUC | s |\n|---|---|---|---|---|");
        for l in &self.history {
            let _ = writeln!(s, "| {} | {:.4} | {} | {} | {:.1} |", l.epoch, l.loss, f(l.validation.auc), f(l.test.auc), l.train_seconds);
        }
        let _ = writeln!(s, "\n## All metrics (fair-metrics)\n");
        s.push_str(&self.test.render(Format::Markdown));
        s
    }
}

fn predictions_csv(data: &Prepared, scores: &[f64]) -> String {
    let columns = data.attributes.columns();
    let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
    let mut s = format!("{},prob,{}\n", data.label_name, names.join(","));
    for (i, p) in scores.iter().enumerate() {
        let groups: Vec<&str> = columns.iter().map(|c| c.label(c.codes[i])).collect();
        let _ = writeln!(s, "{},{p},{}", data.labels[i], groups.join(","));
    }
    s
}
