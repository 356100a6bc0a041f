//! fair-metrics on one million FairVLMed-shaped predictions (4 attributes): the in-memory
//! report (already parsed), CSV parsing, and a report with 100 bootstrap replicates.
//!
//! `cargo bench -p fairvlm-benches --bench fair_metrics`; the end-to-end comparison with the
//! Python pipeline is `cargo xtask bench metrics` (see docs/benchmarks.md).

use criterion::{criterion_group, criterion_main, Criterion};
use fair_metrics::{parse_csv, Attribute, Bootstrap, CsvSpec, Predictions, Report, ReportOptions};
use std::hint::black_box;

const ROWS: usize = 1_000_000;

/// Deterministic data with FairVLMed's marginals (SplitMix64; no dependency on a RNG crate).
fn data() -> (Predictions, Vec<Attribute>, String) {
    let mut state = 0x5EED_u64;
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let pick = |u: f64, p: &[f64]| {
        let mut acc = 0.0;
        p.iter()
            .position(|&x| {
                acc += x;
                u < acc
            })
            .unwrap_or(p.len() - 1) as u32
    };
    let mut labels = Vec::with_capacity(ROWS);
    let mut scores = Vec::with_capacity(ROWS);
    let mut cols: [Vec<u32>; 4] = Default::default();
    let mut csv = String::from("glaucoma,prob,race,gender,ethnicity,language\n");
    for _ in 0..ROWS {
        let race = pick(next(), &[0.082, 0.149, 0.769]);
        let gender = pick(next(), &[0.563, 0.437]);
        let eth = pick(next(), &[0.958, 0.042]);
        let lang = pick(next(), &[0.974, 0.018, 0.008]);
        let y = next() < 0.5;
        let signal = if race == 1 { 0.5 } else { 1.0 };
        let z = (next() - 0.5) * 3.0 + signal * if y { 1.0 } else { -1.0 };
        let p = 1.0 / (1.0 + (-z).exp());
        labels.push(y);
        scores.push(p);
        for (c, v) in cols.iter_mut().zip([race, gender, eth, lang]) {
            c.push(v);
        }
        csv.push_str(&format!("{},{p},{race},{gender},{eth},{lang}\n", u8::from(y)));
    }
    let names = ["race", "gender", "ethnicity", "language"];
    let attrs = cols
        .into_iter()
        .zip(names)
        .map(|(codes, name)| {
            let k = codes.iter().max().map_or(1, |m| m + 1);
            Attribute::from_codes(name, codes, (0..k).map(|i| i.to_string()).collect()).expect("valid codes")
        })
        .collect();
    (Predictions::new(labels, scores).expect("finite"), attrs, csv)
}

fn bench(c: &mut Criterion) {
    let (p, attrs, csv) = data();
    let opts = ReportOptions::default();
    let mut g = c.benchmark_group("fair_metrics_1m_rows_4_attrs");
    g.sample_size(10);
    g.bench_function("report_in_memory", |b| b.iter(|| black_box(Report::compute(&p, &attrs, &opts).expect("report"))));
    let spec = CsvSpec { attrs: ["race", "gender", "ethnicity", "language"].map(String::from).to_vec(), ..CsvSpec::new("glaucoma", "prob") };
    g.bench_function("parse_csv", |b| b.iter(|| black_box(parse_csv("bench.csv", csv.as_bytes(), &spec).expect("parse"))));
    g.bench_function("report_json", |b| b.iter(|| black_box(Report::compute(&p, &attrs, &opts).expect("report").render(fair_metrics::Format::Json))));
    let boot = ReportOptions::default().with_bootstrap(Bootstrap::new(100, 0));
    g.bench_function("report_bootstrap_100", |b| b.iter(|| black_box(Report::compute(&p, &attrs, &boot).expect("report"))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
