//! Property tests: no input makes the reader or the metrics panic, and the reports keep their
//! invariants.

use fair_metrics::{parse_csv, Attribute, Bootstrap, CsvSpec, Predictions, Report, ReportOptions, GROUP_METRICS};
use proptest::prelude::*;

fn spec() -> CsvSpec {
    CsvSpec::new("y", "s").with_attr("g").with_attr("h")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// Arbitrary bytes after a valid header: an error or a table, never a panic.
    #[test]
    fn reader_never_panics_on_bytes(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut data = b"y,s,g,h\n".to_vec();
        data.extend_from_slice(&body);
        let _ = parse_csv("fuzz.csv", &data, &spec());
        let _ = parse_csv("fuzz.csv", &body, &spec());
    }

    /// CSV-looking text built from the characters that matter to the parser.
    #[test]
    fn reader_never_panics_on_csv_like_text(body in "[01a-c.,\"\r\n5e-]{0,300}") {
        let data = format!("y,s,g,h\n{body}");
        if let Ok(t) = parse_csv("fuzz.csv", data.as_bytes(), &spec()) {
            prop_assert!(!t.predictions.is_empty());
            prop_assert_eq!(t.attributes[0].len(), t.predictions.len());
            if let Ok(r) = Report::compute(&t.predictions, &t.attributes, &ReportOptions::default()) {
                prop_assert_eq!(r.n, t.predictions.len());
            }
        }
    }

    /// Invariants of every report.
    #[test]
    fn report_invariants(
        rows in proptest::collection::vec((any::<bool>(), 0u8..12, 0u32..4, 0u32..3, 0u8..4), 1..120),
        weighted in any::<bool>(),
        threshold in 0.0f64..1.0,
    ) {
        let labels: Vec<bool> = rows.iter().map(|r| r.0).collect();
        let scores: Vec<f64> = rows.iter().map(|r| r.1 as f64 / 11.0).collect();
        let g: Vec<String> = rows.iter().map(|r| r.2.to_string()).collect();
        let h: Vec<String> = rows.iter().map(|r| format!("h{}", r.3)).collect();
        let mut p = Predictions::new(labels.clone(), scores.clone()).unwrap();
        if weighted {
            p = p.with_weights(rows.iter().map(|r| r.4 as f64 * 0.5).collect()).unwrap();
        }
        let a = Attribute::from_values("g", &g).unwrap();
        let b = Attribute::from_values("h", &h).unwrap();
        let ab = Attribute::intersect(&[&a, &b]).unwrap();
        let r = Report::compute(&p, &[a, b, ab], &ReportOptions::default().with_threshold(threshold)).unwrap();
        prop_assert_eq!(r.n, rows.len());
        for (_, attr) in &r.attributes {
            let total: u64 = attr.groups.values().map(|m| m.n).sum();
            prop_assert_eq!(total, rows.len() as u64);
            for m in attr.groups.values() {
                for k in GROUP_METRICS {
                    if let Some(v) = m.get(k) {
                        prop_assert!((0.0..=1.0).contains(&v), "{} = {}", k, v);
                    }
                }
                prop_assert!((m.tpr + m.fnr - 1.0).abs() < 1e-12 || m.tpr + m.fnr == 0.0);
            }
            let sel: Vec<f64> = attr.groups.values().filter_map(|m| m.selection_rate).collect();
            if !sel.is_empty() {
                let max = sel.iter().copied().fold(f64::MIN, f64::max);
                let min = sel.iter().copied().fold(f64::MAX, f64::min);
                prop_assert_eq!(attr.dpd, Some(max - min));
            }
            for v in [attr.dpd, attr.eod, attr.eopd, attr.eod_mean].into_iter().flatten() {
                prop_assert!((0.0..=1.0).contains(&v));
            }
            for v in [attr.dpr, attr.eor, attr.eopr, attr.fpr_ratio].into_iter().flatten() {
                prop_assert!((0.0..=1.0).contains(&v));
            }
            if let (Some(es), Some(auc)) = (attr.es_auc, r.overall.auc) {
                prop_assert!(es <= auc + 1e-15);
            }
        }
    }

    /// AUC equals the pairwise definition (ties one half) on any small input.
    #[test]
    fn auc_is_the_pairwise_probability(rows in proptest::collection::vec((any::<bool>(), 0u8..6), 2..60)) {
        let labels: Vec<bool> = rows.iter().map(|r| r.0).collect();
        let scores: Vec<f64> = rows.iter().map(|r| r.1 as f64).collect();
        let p = Predictions::new(labels.clone(), scores.clone()).unwrap();
        let r = Report::compute(&p, &[], &ReportOptions::default()).unwrap();
        let (mut num, mut den) = (0.0, 0.0);
        for i in 0..rows.len() {
            for j in 0..rows.len() {
                if labels[i] && !labels[j] {
                    den += 1.0;
                    num += if scores[i] > scores[j] { 1.0 } else if scores[i] == scores[j] { 0.5 } else { 0.0 };
                }
            }
        }
        let expected = if den > 0.0 { Some(num / den) } else { None };
        match (r.overall.auc, expected) {
            (Some(a), Some(b)) => prop_assert!((a - b).abs() < 1e-12),
            (a, b) => prop_assert_eq!(a, b),
        }
    }
}

#[test]
fn bootstrap_interval_brackets_the_estimate_on_large_data() {
    let n = 5000;
    let labels: Vec<bool> = (0..n).map(|i| (i * 7919) % 3 == 0).collect();
    let scores: Vec<f64> = (0..n).map(|i| ((i * 104_729) % 1000) as f64 / 1000.0 * 0.6 + if (i * 7919) % 3 == 0 { 0.3 } else { 0.0 }).collect();
    let g: Vec<&str> = (0..n).map(|i| if i % 4 == 0 { "a" } else { "b" }).collect();
    let p = Predictions::new(labels, scores).unwrap();
    let a = Attribute::from_values("g", &g).unwrap();
    let r = Report::compute(&p, &[a], &ReportOptions::default().with_bootstrap(Bootstrap::new(200, 1))).unwrap();
    let auc = r.overall.auc.unwrap();
    let ci = r.overall.ci.as_ref().unwrap()["auc"];
    assert!(ci.low < auc && auc < ci.high, "{ci:?} vs {auc}");
    assert!(ci.std > 0.0 && ci.std < 0.05);
    assert_eq!(ci.replicates, 200);
    let es = r.attributes["g"].ci.as_ref().unwrap()["es_auc"];
    assert!(es.low <= es.high);
}
