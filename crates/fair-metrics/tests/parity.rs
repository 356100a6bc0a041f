//! Parity with scikit-learn and fairlearn: every value in fixtures/parity/expected.json (made
//! by fixtures/make_parity.py) must match to 1e-12 relative, and be null exactly where the
//! reference is undefined.

use std::path::PathBuf;

use fair_metrics::{multiclass_auc_ovr, parse_csv, Attribute, AttributeReport, CsvSpec, GroupMetrics, OvrAverage, Report, ReportOptions, UndefinedAuc, GROUP_METRICS};
use serde_json::Value;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity")
}

/// Relative tolerance 1e-12; values within 1e-15 of each other also match, so that a
/// reference 0 and a computed 1e-17 (different summation order) agree.
fn close(a: f64, b: f64) -> bool {
    let d = (a - b).abs();
    d <= 1e-12 * a.abs().max(b.abs()) || d <= 1e-15
}

struct Checker {
    checked: usize,
    failures: Vec<String>,
}

impl Checker {
    fn value(&mut self, path: &str, ours: Option<f64>, reference: &Value) {
        self.checked += 1;
        match (ours, reference.as_f64()) {
            (None, None) if reference.is_null() => {}
            (Some(a), Some(b)) if close(a, b) => {}
            _ => self.failures.push(format!("{path}: ours {ours:?}, reference {reference}")),
        }
    }

    fn group(&mut self, path: &str, g: &GroupMetrics, r: &Value) {
        self.value(&format!("{path}.n"), Some(g.n as f64), &r["n"]);
        self.value(&format!("{path}.positives"), Some(g.positives as f64), &r["positives"]);
        for m in GROUP_METRICS {
            self.value(&format!("{path}.{m}"), g.get(m), &r[m]);
        }
    }

    fn attribute(&mut self, path: &str, a: &AttributeReport, strict: &AttributeReport, r: &Value) {
        let theirs: Vec<&String> = r["groups"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
        let ours: Vec<&String> = a.groups.keys().collect();
        let (mut t, mut o) = (theirs.clone(), ours.clone());
        t.sort();
        o.sort();
        if t != o {
            self.failures.push(format!("{path}: groups {ours:?}, reference {theirs:?}"));
            return;
        }
        for (k, g) in &a.groups {
            self.group(&format!("{path}.groups.{k}"), g, &r["groups"][k]);
        }
        for (m, agg) in &a.metric_frame {
            let rm = &r["metric_frame"][m];
            let p = format!("{path}.metric_frame.{m}");
            self.value(&format!("{p}.min"), agg.min, &rm["min"]);
            self.value(&format!("{p}.max"), agg.max, &rm["max"]);
            self.value(&format!("{p}.difference"), agg.difference, &rm["difference"]);
            self.value(&format!("{p}.difference_to_overall"), agg.difference_to_overall, &rm["difference_to_overall"]);
            self.value(&format!("{p}.ratio"), agg.ratio, &rm["ratio"]);
            self.value(&format!("{p}.ratio_to_overall"), agg.ratio_to_overall, &rm["ratio_to_overall"]);
        }
        for m in ["dpd", "dpr", "eod", "eod_mean", "eor", "eor_mean", "eopd", "eopr", "fpr_ratio", "es_auc", "es_accuracy", "auc_std", "auc_range"] {
            self.value(&format!("{path}.{m}"), a.get(m), &r[m]);
        }
        self.value(&format!("{path}.es_auc (null policy)"), strict.es_auc, &r["es_auc_null"]);
    }
}

#[test]
fn matches_sklearn_and_fairlearn() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("fixture manifest");
    let manifest: Value = serde_json::from_str(&text).expect("valid JSON");
    let cases = manifest["cases"].as_array().expect("cases");
    assert!(cases.len() >= 10, "fixture has {} cases", cases.len());
    let mut c = Checker { checked: 0, failures: Vec::new() };
    for case in cases {
        let name = case["name"].as_str().unwrap_or("?");
        let spec_v = &case["spec"];
        let s = |k: &str| spec_v[k].as_str().map(str::to_owned);
        let spec = CsvSpec {
            label: s("label").unwrap_or_default(),
            score: s("score").unwrap_or_default(),
            pred: s("pred"),
            weight: s("weight"),
            pos_label: s("pos_label"),
            attrs: spec_v["attrs"].as_array().into_iter().flatten().filter_map(|a| a.as_str().map(str::to_owned)).collect(),
        };
        let csv = case["csv"].as_str().unwrap_or_default();
        let bytes = std::fs::read(fixtures().join(csv)).expect("fixture CSV");
        let table = parse_csv(csv, &bytes, &spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut attrs = table.attributes;
        if spec_v["intersect"].as_bool() == Some(true) {
            let refs: Vec<&Attribute> = attrs.iter().collect();
            let both = Attribute::intersect(&refs).expect("intersection");
            attrs.push(both);
        }
        let opts = ReportOptions::default().with_threshold(case["threshold"].as_f64().unwrap_or(0.5));
        let report = Report::compute(&table.predictions, &attrs, &opts).expect("report");
        let strict = Report::compute(&table.predictions, &attrs, &opts.clone().with_undefined_auc(UndefinedAuc::Null)).expect("report");
        let e = &case["expected"];
        assert_eq!(report.n as u64, e["n"].as_u64().unwrap_or(0), "{name}: rows");
        c.group(&format!("{name}.overall"), &report.overall, &e["overall"]);
        for (attr, a) in &report.attributes {
            c.attribute(&format!("{name}.{attr}"), a, &strict.attributes[attr], &e["attributes"][attr]);
        }
        assert_eq!(report.attributes.len(), e["attributes"].as_object().map_or(0, |o| o.len()), "{name}");
    }
    assert!(c.failures.is_empty(), "{} of {} values differ:\n{}", c.failures.len(), c.checked, c.failures.join("\n"));
    assert!(c.checked > 1800, "only {} values checked", c.checked);
}

#[test]
fn multiclass_matches_sklearn() {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).expect("fixture manifest");
    let manifest: Value = serde_json::from_str(&text).expect("valid JSON");
    for case in manifest["multiclass"].as_array().expect("multiclass cases") {
        let k = case["k"].as_u64().unwrap_or(0) as usize;
        let labels: Vec<usize> = case["labels"].as_array().into_iter().flatten().filter_map(|v| v.as_u64()).map(|v| v as usize).collect();
        let scores: Vec<f64> = case["scores"].as_array().into_iter().flatten().filter_map(Value::as_f64).collect();
        let weights: Option<Vec<f64>> = case["weights"].as_array().map(|a| a.iter().filter_map(Value::as_f64).collect());
        for (avg, key) in [(OvrAverage::Macro, "macro"), (OvrAverage::Weighted, "weighted")] {
            let ours = multiclass_auc_ovr(&labels, &scores, k, weights.as_deref(), avg).expect("auc");
            let theirs = case[key].as_f64().unwrap_or(f64::NAN);
            assert!(close(ours, theirs), "{} {key}: ours {ours}, sklearn {theirs}", case["name"]);
        }
    }
}
