//! PNG, JPEG (any format the decoder guesses) through the generic format's image reader and
//! CLIP's preprocessing.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let path = fairvlm_fuzz::file("x.img", data);
        let _ = fair_data::image_dimensions(&path);
        let _ = fair_data::read_image(&path).map(|img| fair_data::clip_planes(&img, 16, false));
    });
}
