//! AFL++ entry point of the `image` target (`fairvlm_fuzz::image`).
fn main() {
    afl::fuzz!(|data: &[u8]| fairvlm_fuzz::image(data));
}
