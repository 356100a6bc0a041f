//! Renderings of a [`Report`]: JSON (for programs), Markdown (for people), long CSV (for
//! spreadsheets and data frames).

use std::fmt::Write;

use crate::bootstrap::Ci;
use crate::report::{Report, ATTRIBUTE_METRICS, GROUP_METRICS};

/// Output formats of the command line tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Pretty-printed JSON with the keys documented in docs/metrics.md.
    Json,
    /// Markdown tables.
    Markdown,
    /// One value per line: `scope,attribute,group,metric,value,ci_low,ci_high`.
    Csv,
}

impl Report {
    /// Renders the report.
    ///
    /// ```
    /// use fair_metrics::{Attribute, Format, Predictions, Report, ReportOptions};
    /// let p = Predictions::new(vec![true, false], vec![0.8, 0.3])?;
    /// let g = Attribute::from_values("g", &["a", "b"])?;
    /// let r = Report::compute(&p, &[g], &ReportOptions::default())?;
    /// let json: serde_json::Value = serde_json::from_str(&r.render(Format::Json))?;
    /// assert_eq!(json["overall"]["auc"], 1.0);
    /// assert!(r.render(Format::Markdown).contains("| ES-AUC |"));
    /// assert!(r.render(Format::Csv).starts_with("scope,attribute,group,metric,value"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn render(&self, format: Format) -> String {
        match format {
            // Serialising plain structs with string keys cannot fail.
            Format::Json => serde_json::to_string_pretty(self).unwrap_or_default() + "\n",
            Format::Markdown => markdown(self),
            Format::Csv => csv(self),
        }
    }
}

const LABELS: [(&str, &str); 13] = [
    ("es_auc", "ES-AUC"),
    ("es_accuracy", "ES-Accuracy"),
    ("dpd", "DPD"),
    ("dpr", "DPR"),
    ("eod", "DEOdds (worst case)"),
    ("eod_mean", "DEOdds (mean)"),
    ("eor", "EOR (worst case)"),
    ("eor_mean", "EOR (mean)"),
    ("eopd", "Equal opportunity difference"),
    ("eopr", "Equal opportunity ratio"),
    ("fpr_ratio", "FPR parity ratio"),
    ("auc_std", "Group AUC std / AUC"),
    ("auc_range", "Group AUC range / AUC"),
];

fn num(x: Option<f64>) -> String {
    x.map_or_else(|| "-".to_owned(), |v| format!("{v:.4}"))
}

fn with_ci(x: Option<f64>, ci: Option<&Ci>) -> String {
    match ci {
        Some(c) => format!("{} [{:.4}, {:.4}]", num(x), c.low, c.high),
        None => num(x),
    }
}

fn markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Fairness report\n");
    let threshold = r.threshold.map_or("given predictions".to_owned(), |t| format!("score >= {t}"));
    let _ = writeln!(s, "{} rows; hard prediction: {threshold}; ES alpha = {}.", r.n, r.alpha);
    if let Some(b) = &r.bootstrap {
        let _ = writeln!(s, "Intervals: bootstrap percentile [{}, {}] over {} replicates (seed {}).", b.quantiles[0], b.quantiles[1], b.replicates, b.seed);
    }
    let _ = writeln!(s, "\n## Overall\n\n| metric | value |\n|---|---|");
    for m in GROUP_METRICS {
        let ci = r.overall.ci.as_ref().and_then(|c| c.get(m));
        let _ = writeln!(s, "| {m} | {} |", with_ci(r.overall.get(m), ci));
    }
    for (name, a) in &r.attributes {
        let _ = writeln!(s, "\n## {name}\n");
        let _ = writeln!(s, "| group | n | positives | {} |", GROUP_METRICS.join(" | "));
        let _ = writeln!(s, "|---|---|---|{}", "---|".repeat(GROUP_METRICS.len()));
        for (g, m) in &a.groups {
            let cells: Vec<String> = GROUP_METRICS.iter().map(|k| with_ci(m.get(k), m.ci.as_ref().and_then(|c| c.get(k)))).collect();
            let _ = writeln!(s, "| {g} | {} | {} | {} |", m.n, m.positives, cells.join(" | "));
        }
        let _ = writeln!(s, "\n| fairness | value |\n|---|---|");
        for (k, label) in LABELS {
            let ci = a.ci.as_ref().and_then(|c| c.get(k));
            let _ = writeln!(s, "| {label} | {} |", with_ci(a.get(k), ci));
        }
        if !a.worst.is_empty() {
            let worst: Vec<String> = a.worst.iter().map(|(m, g)| format!("{m}: {g}")).collect();
            let _ = writeln!(s, "\nWorst group: {}.", worst.join(", "));
        }
        if !a.undefined.is_empty() {
            let _ = writeln!(s, "\nUndefined:");
            for u in &a.undefined {
                let shown = u.reported_as.map_or("null".to_owned(), |v| v.to_string());
                let _ = writeln!(s, "- {} {}: {} (reported as {shown})", u.group, u.metric, u.reason);
            }
        }
    }
    s
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn csv(r: &Report) -> String {
    let mut s = String::from("scope,attribute,group,metric,value,ci_low,ci_high\n");
    let mut row = |scope: &str, attr: &str, group: &str, metric: &str, v: Option<f64>, ci: Option<&Ci>| {
        let f = |x: Option<f64>| x.map_or(String::new(), |x| x.to_string());
        let _ = writeln!(s, "{scope},{},{},{metric},{},{},{}", csv_field(attr), csv_field(group), f(v), f(ci.map(|c| c.low)), f(ci.map(|c| c.high)));
    };
    for m in GROUP_METRICS {
        row("overall", "", "", m, r.overall.get(m), r.overall.ci.as_ref().and_then(|c| c.get(m)));
    }
    for (name, a) in &r.attributes {
        for (g, gm) in &a.groups {
            row("group", name, g, "n", Some(gm.n as f64), None);
            for m in GROUP_METRICS {
                row("group", name, g, m, gm.get(m), gm.ci.as_ref().and_then(|c| c.get(m)));
            }
        }
        for m in ATTRIBUTE_METRICS {
            row("attribute", name, "", m, a.get(m), a.ci.as_ref().and_then(|c| c.get(m)));
        }
        for (m, agg) in &a.metric_frame {
            for (k, v) in [
                ("min", agg.min),
                ("max", agg.max),
                ("difference", agg.difference),
                ("difference_to_overall", agg.difference_to_overall),
                ("ratio", agg.ratio),
                ("ratio_to_overall", agg.ratio_to_overall),
            ] {
                row("metric_frame", name, "", &format!("{m}.{k}"), v, None);
            }
        }
    }
    s
}
