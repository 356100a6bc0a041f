//! AFL++ entry point of the `summary_csv` target (`fairvlm_fuzz::summary_csv`).
fn main() {
    afl::fuzz!(|data: &[u8]| fairvlm_fuzz::summary_csv(data));
}
