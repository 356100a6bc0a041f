//! AFL++ entry point of the `experiment` target (`fairvlm_fuzz::experiment`).
fn main() {
    afl::fuzz!(|data: &[u8]| fairvlm_fuzz::experiment(data));
}
