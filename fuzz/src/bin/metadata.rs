//! AFL++ entry point of the `metadata` target (`fairvlm_fuzz::metadata`).
fn main() {
    afl::fuzz!(|data: &[u8]| fairvlm_fuzz::metadata(data));
}
