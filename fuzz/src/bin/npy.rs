//! AFL++ entry point of the `npy` target (`fairvlm_fuzz::npy`).
fn main() {
    afl::fuzz!(|data: &[u8]| fairvlm_fuzz::npy(data));
}
