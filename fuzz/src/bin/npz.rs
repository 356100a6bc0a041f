//! AFL++ entry point of the `npz` target (`fairvlm_fuzz::npz`).
fn main() {
    afl::fuzz!(|data: &[u8]| fairvlm_fuzz::npz(data));
}
