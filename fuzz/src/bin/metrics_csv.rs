//! fair-metrics' CSV reader, with and without a positive label, weights and predictions.
fn main() {
    let plain = fair_metrics::CsvSpec::new("y", "p").with_attr("g").with_attr("h");
    let rich = fair_metrics::CsvSpec::new("y", "p").with_attr("g").with_pos_label("yes").with_weight("w").with_pred("d");
    afl::fuzz!(|data: &[u8]| {
        for spec in [&plain, &rich] {
            let _ = fair_metrics::parse_csv("f.csv", data, spec);
        }
    });
}
