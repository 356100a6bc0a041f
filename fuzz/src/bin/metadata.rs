//! The generic format's metadata (CSV, or JSONL when the first byte is odd) through
//! `load_folder`, with one valid image beside it.
use std::sync::Once;

fn main() {
    let dir = fairvlm_fuzz::scratch().join("folder");
    let _ = std::fs::create_dir_all(&dir);
    static IMAGE: Once = Once::new();
    IMAGE.call_once(|| {
        // A 2 x 2 grey image as a .npy.
        let npy = fair_data::write_npy(&fair_data::NpyArray::from_u8(vec![2, 2], &[0, 64, 128, 255]));
        let _ = std::fs::write(dir.join("a.npy"), npy);
    });
    let spec = fair_data::FolderSpec {
        label: "y".into(),
        text: Some("t".into()),
        attributes: vec!["g".into(), "h".into()],
        order: [("h".to_string(), vec!["x".to_string(), "y".to_string()])].into(),
        ..Default::default()
    };
    afl::fuzz!(|data: &[u8]| {
        let (csv, jsonl) = (dir.join("metadata.csv"), dir.join("metadata.jsonl"));
        let _ = std::fs::remove_file(&csv);
        let _ = std::fs::remove_file(&jsonl);
        let target = if data.first().is_some_and(|b| b % 2 == 1) { &jsonl } else { &csv };
        let _ = std::fs::write(target, data.get(1..).unwrap_or_default());
        for on_error in [fair_data::OnError::Fail, fair_data::OnError::Skip] {
            let _ = fair_data::load_folder(&dir, &spec, &fair_data::LoadOptions { on_error, ..Default::default() });
        }
    });
}
