//! The FairVision loader on files written by numpy (fixtures/make_fairvision.py), bad files,
//! and the synthetic FairVision benchmark written and read back.

use std::path::{Path, PathBuf};

use fair_data::{load_fairvision_split, read_fairvision_sample, write_fairvision, write_npz, GroupEffect, NpyArray, OctSynth, OnError, Split, SynthConfig};
use serde_json::Value;

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fair-data-vision-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn numpy_written_files_read_back_exactly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let expected: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(dir.join("fairvision_expected.json")).expect("expected")).expect("json");
    let mut all = Vec::new();
    for split in [Split::Training, Split::Validation, Split::Test] {
        all.extend(load_fairvision_split(&dir.join("fairvision"), split, OnError::Fail).expect("load").samples);
    }
    assert_eq!(all.len(), expected.len());
    for (s, e) in all.iter().zip(&expected) {
        let int = |k: &str| e[k].as_i64().expect(k);
        assert_eq!(s.file, e["file"].as_str().expect("file"));
        assert_eq!(
            [s.oct.depth, s.oct.height, s.oct.width].map(|v| v as i64).to_vec(),
            e["oct_shape"].as_array().expect("shape").iter().filter_map(Value::as_i64).collect::<Vec<_>>()
        );
        assert_eq!(s.oct.voxels[0] as i64, int("oct_first"));
        assert_eq!(*s.oct.voxels.last().expect("voxels") as i64, int("oct_last"));
        assert_eq!(s.oct.voxels.iter().map(|&v| v as i64).sum::<i64>(), int("oct_sum"));
        assert_eq!([s.fundus.height as i64, s.fundus.width as i64].to_vec(), e["fundus_shape"].as_array().expect("shape").iter().filter_map(Value::as_i64).collect::<Vec<_>>());
        assert_eq!(s.fundus.pixels.iter().map(|&v| v as i64).sum::<i64>(), int("fundus_sum"));
        assert_eq!(
            (s.glaucoma as i64, s.race, s.male, s.hispanic, s.language, s.maritalstatus),
            (int("glaucoma"), int("race"), int("male"), int("hispanic"), int("language"), int("maritalstatus"))
        );
        assert_eq!(s.attribute("gender"), Some(s.male));
        assert_eq!(s.attribute("ethnicity"), Some(s.hispanic));
    }
}

#[test]
fn bad_files_name_the_file_and_key() {
    let dir = temp("bad");
    let train = dir.join("train");
    std::fs::create_dir_all(&train).expect("dir");
    let int = |v: i64| NpyArray::from_i64(vec![], vec![v]);
    let fundus = NpyArray::from_u8(vec![4, 4], &[0; 16]);
    write_npz(&train.join("data_00001.npz"), &[("slo_fundus", fundus.clone()), ("glaucoma", int(1))]).expect("write");
    let err = read_fairvision_sample(&train.join("data_00001.npz")).expect_err("no oct").to_string();
    assert!(err.contains("data_00001.npz") && err.contains("oct_bscans"), "{err}");
    write_npz(&train.join("data_00002.npz"), &[("slo_fundus", fundus), ("oct_bscans", NpyArray::from_u8(vec![4, 4], &[0; 16])), ("glaucoma", int(1))]).expect("write");
    let err = read_fairvision_sample(&train.join("data_00002.npz")).expect_err("2-d oct").to_string();
    assert!(err.contains("oct_bscans") && err.contains("3-d"), "{err}");
    let loaded = load_fairvision_split(&dir, Split::Training, OnError::Skip).expect("skip");
    assert_eq!((loaded.samples.len(), loaded.skipped.len()), (0, 2));
    assert!(load_fairvision_split(&dir, Split::Training, OnError::Fail).is_err());
    let err = load_fairvision_split(&dir, Split::Test, OnError::Fail).expect_err("no test folder").to_string();
    assert!(err.contains("test"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn synthetic_fairvision_round_trips_and_keeps_the_fundus_benchmark() {
    let cfg = SynthConfig { sizes: [12, 3, 3], image_size: 32, ..SynthConfig::default() };
    let oct = OctSynth { depth: 4, size: 16, ..OctSynth::default() };
    let vision = cfg.generate_vision(&oct).expect("generate");
    let plain = cfg.generate().expect("generate");
    for (v, p) in vision.iter().flatten().zip(plain.iter().flatten()) {
        assert_eq!((&v.file, &v.fundus, v.glaucoma, v.race, v.male, v.hispanic, v.language), (&p.file, &p.image, p.glaucoma, p.race, p.gender, p.ethnicity, p.language));
    }
    let dir = temp("synth");
    write_fairvision(&dir, &vision).expect("write");
    for (k, split) in [Split::Training, Split::Validation, Split::Test].into_iter().enumerate() {
        assert_eq!(load_fairvision_split(&dir, split, OnError::Fail).expect("load").samples, vision[k]);
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(cfg.generate_vision(&OctSynth { size: 4, ..OctSynth::default() }).is_err());
}

#[test]
fn glaucoma_thins_the_nerve_fibre_layer() {
    // Without noise the bright band's voxels can be counted exactly.
    let cfg = SynthConfig { sizes: [60, 0, 0], image_size: 16, effects: vec![], ..SynthConfig::default() };
    let oct = OctSynth { depth: 4, size: 24, noise: 0.0, ..OctSynth::default() };
    let samples = &cfg.generate_vision(&oct).expect("generate")[0];
    let band = |g: u8| -> f64 {
        let v: Vec<f64> = samples.iter().filter(|s| s.glaucoma == g).map(|s| s.oct.voxels.iter().filter(|&&x| x == 200.0).count() as f64).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (healthy, sick) = (band(0), band(1));
    assert!(sick < 0.8 * healthy, "nerve-fibre voxels: healthy {healthy}, glaucoma {sick}");
}

#[test]
fn note_signal_silences_one_groups_findings() {
    let mut quiet = GroupEffect::none("race", 1);
    quiet.note_signal = 0.0;
    let cfg = SynthConfig { sizes: [300, 0, 0], image_size: 16, text_signal: 1.0, effects: vec![quiet], ..SynthConfig::default() };
    let samples = &cfg.generate().expect("generate")[0];
    let with_finding = |race: i64| samples.iter().filter(|s| s.race == race).filter(|s| s.note.contains("glaucoma")).count();
    assert_eq!(with_finding(1), 0, "Black patients' notes never state the finding");
    assert_eq!(with_finding(2), samples.iter().filter(|s| s.race == 2).count(), "with text_signal 1 every other note does");
}
