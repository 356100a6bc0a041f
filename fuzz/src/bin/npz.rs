//! npz archives and the FairVLMed / FairVision subject readers on them.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        let path = fairvlm_fuzz::file("data_00001.npz", data);
        let _ = fair_data::read_npz_from(std::io::Cursor::new(data), &path);
        let _ = fair_data::read_sample(&path).map(|s| fair_data::clip_grey(&s.image, 16));
        let _ = fair_data::read_sample_index(&path);
        let _ = fair_data::read_npz_fundus(&path);
        let _ = fair_data::read_fairvision_sample(&path).map(|s| fair_data::oct_slices(&s.oct, 2, 8));
    });
}
