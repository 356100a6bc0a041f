//! The UTKFace and CelebA loaders on tiny folders written by fixtures/make_faces.py.

use std::path::{Path, PathBuf};

use fair_data::{disjoint_pools, load_celeba, load_face_image, load_utkface, Split};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

#[test]
fn utkface_labels_come_from_the_file_names_and_malformed_names_are_skipped() {
    let idx = load_utkface(&fixtures().join("utkface")).expect("load");
    assert_eq!(idx.records.len(), 4);
    assert_eq!(idx.skipped.len(), 1);
    let (path, why) = &idx.skipped[0];
    assert!(path.ends_with("39_1_20170116174525125.jpg.chip.jpg") && why.contains("age_gender_race"), "{why}");
    let r = idx.records.iter().find(|r| r.path.ends_with("25_1_3_20170119171424.jpg.chip.jpg")).expect("record");
    assert_eq!((r.label("age").expect("age"), r.label("gender").expect("gender"), r.label("race").expect("race")), (25, 1, 3));
    assert!(r.split.is_none());
    let err = r.label("Smiling").expect_err("no such label").to_string();
    assert!(err.contains("Smiling") && err.contains("race"), "{err}");
    assert!(load_utkface(&fixtures().join("celeba")).is_err(), "a folder without UTKFace names");
}

#[test]
fn celeba_attributes_and_partitions_are_read() {
    let idx = load_celeba(&fixtures().join("celeba")).expect("load");
    assert_eq!(idx.records.len(), 4);
    let r = &idx.records[0];
    assert!(r.path.ends_with("img_align_celeba/000001.jpg"));
    assert_eq!(r.split, Some(Split::Test));
    assert_eq!((r.label("Male").expect("m"), r.label("Smiling").expect("s"), r.label("Bald").expect("b")), (0, 1, 0));
    assert_eq!(idx.records[2].labels.values().copied().collect::<Vec<_>>(), vec![1, 1, 1]);
    assert_eq!(idx.records.iter().filter(|r| r.split == Some(Split::Training)).count(), 2);
    let img = load_face_image(&r.path, 4).expect("image");
    assert_eq!(img.len(), 3 * 4 * 4);
    // The fixture's first image is one colour: (0, 100, 200), JPEG-rounded.
    assert!(img.chunks(3).all(|p| p[0] < 8 && (p[1] as i32 - 100).abs() < 8 && (p[2] as i32 - 200).abs() < 8), "{:?}", &img[..3]);
}

#[test]
fn malformed_celeba_lists_name_the_file_and_line() {
    let dir = std::env::temp_dir().join(format!("fair-data-celeba-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("list_attr_celeba.txt"), "2\nMale Smiling\n000001.jpg 1 -1\n000002.jpg 1\n").expect("write");
    std::fs::write(dir.join("list_eval_partition.txt"), "000001.jpg 0\n000002.jpg 0\n").expect("write");
    let err = load_celeba(&dir).expect_err("short row").to_string();
    assert!(err.contains("list_attr_celeba.txt:4") && err.contains("1 values for 2 attributes"), "{err}");
    std::fs::write(dir.join("list_attr_celeba.txt"), "1\nMale\n000001.jpg 2\n").expect("write");
    let err = load_celeba(&dir).expect_err("bad value").to_string();
    assert!(err.contains("list_attr_celeba.txt:3") && err.contains("Male = '2'"), "{err}");
    std::fs::write(dir.join("list_eval_partition.txt"), "000001.jpg 5\n").expect("write");
    assert!(load_celeba(&dir).expect_err("bad split").to_string().contains("list_eval_partition.txt:1"));
    std::fs::remove_dir_all(&dir).ok();
    assert!(load_face_image(&fixtures().join("celeba/list_attr_celeba.txt"), 4).is_err(), "not an image");
}

#[test]
fn developer_and_auditor_pools_are_disjoint_and_cover_everything() {
    let (dev, aud) = disjoint_pools(1000, 0.5, 3);
    assert_eq!(dev.len() + aud.len(), 1000);
    let mut all: Vec<usize> = dev.iter().chain(&aud).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 1000, "no index in both pools");
    assert_eq!(disjoint_pools(1000, 0.5, 3), (dev, aud), "the seed fixes the pools");
}
