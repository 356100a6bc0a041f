//! FairCLIP's GPT-4 summary CSV.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let path = fairvlm_fuzz::file("summary.csv", data);
        let _ = fair_data::read_summary_csv(&path);
    });
}
