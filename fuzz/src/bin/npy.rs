//! numpy's `.npy` parser (and the image reader's npy path).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let path = fairvlm_fuzz::file("x.npy", data);
        let _ = fair_data::parse_npy(data, &path, "x");
        let _ = fair_data::image_dimensions(&path);
        let _ = fair_data::read_image(&path).map(|img| fair_data::clip_planes(&img, 16, false));
    });
}
