//! AFL++ entry point of the `metrics_csv` target (`fairvlm_fuzz::metrics_csv`).
fn main() {
    afl::fuzz!(|data: &[u8]| fairvlm_fuzz::metrics_csv(data));
}
