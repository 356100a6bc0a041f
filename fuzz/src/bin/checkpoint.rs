//! AFL++ entry point of the `checkpoint` target (`fairvlm_fuzz::checkpoint`).
fn main() {
    afl::fuzz!(|data: &[u8]| fairvlm_fuzz::checkpoint(data));
}
