//! The FairVLMed loader on files written by numpy (fixtures/make_fairvlmed.py), bad files, and
//! the synthetic benchmark written and read back.

use std::path::{Path, PathBuf};

use fair_data::{load_split, read_sample, write_fairvlmed, LoadOptions, OnError, Split, SynthConfig};
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fairvlmed")
}

fn temp(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fair-data-{tag}-{}", std::process::id()));
    std::fs::remove_dir_all(&d).ok();
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

#[test]
fn numpy_written_files_read_back_exactly() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fairvlmed_expected.json")).expect("expected")).expect("json");
    let opts = LoadOptions { filter_unknown: Some(false), ..LoadOptions::default() };
    let mut all = Vec::new();
    for split in [Split::Training, Split::Validation, Split::Test] {
        all.extend(load_split(&fixture(), split, &opts).expect("load").samples);
    }
    let subjects = expected["subjects"].as_array().expect("subjects");
    assert_eq!(all.len(), subjects.len());
    for (s, e) in all.iter().zip(subjects) {
        assert_eq!(s.file, e["file"].as_str().unwrap_or_default());
        assert_eq!(s.image.height as u64, e["height"].as_u64().unwrap_or(0));
        assert_eq!(s.image.width as u64, e["width"].as_u64().unwrap_or(0));
        let px: Vec<f32> = e["pixels"].as_array().expect("pixels").iter().map(|v| v.as_f64().unwrap_or(f64::NAN) as f32).collect();
        assert_eq!(s.image.pixels, px, "{}", s.file);
        assert_eq!(s.glaucoma as i64, e["glaucoma"].as_i64().unwrap_or(-9));
        for a in ["race", "gender", "ethnicity", "language", "maritalstatus"] {
            assert_eq!(s.attribute(a), e[a].as_i64(), "{} {a}", s.file);
        }
        assert_eq!(s.age, e["age"].as_f64().unwrap_or(f64::NAN));
        assert_eq!(s.note, e["note"].as_str().unwrap_or_default());
    }
}

#[test]
fn evaluation_splits_drop_unknown_attributes_and_test_may_be_testing() {
    let val = load_split(&fixture(), Split::Validation, &LoadOptions::default()).expect("load");
    assert_eq!((val.samples.len(), val.filtered_unknown), (1, 1));
    let train = load_split(&fixture(), Split::Training, &LoadOptions::default()).expect("load");
    assert_eq!(train.filtered_unknown, 0);
    assert_eq!(load_split(&fixture(), Split::Test, &LoadOptions::default()).expect("Testing folder").samples.len(), 1);
}

#[test]
fn summary_csv_replaces_the_notes() {
    let opts = LoadOptions { summary_csv: Some(fixture().join("gpt-4_summarized_notes.csv")), ..LoadOptions::default() };
    let train = load_split(&fixture(), Split::Training, &opts).expect("load");
    assert_eq!(train.samples[1].note, "summary of data_00002.npz, with a comma");
}

#[test]
fn bad_files_name_the_file_or_are_skipped() {
    let dir = temp("bad");
    let train = dir.join("Training");
    std::fs::create_dir_all(&train).expect("dir");
    let good = fixture().join("Training/data_00001.npz");
    let bytes = std::fs::read(&good).expect("fixture");
    std::fs::write(train.join("data_00001.npz"), &bytes).expect("copy");
    std::fs::write(train.join("data_00002.npz"), &bytes[..bytes.len() / 2]).expect("truncated");
    std::fs::write(train.join("data_00003.npz"), b"not a zip at all").expect("garbage");
    // An archive without the label.
    let arrays = fair_data::read_npz(&good).expect("read");
    let without: Vec<(&str, fair_data::NpyArray)> = arrays.iter().filter(|(k, _)| *k != "glaucoma").map(|(k, v)| (k.as_str(), v.clone())).collect();
    fair_data::write_npz(&train.join("data_00004.npz"), &without).expect("write");

    let e = load_split(&dir, Split::Training, &LoadOptions::default()).expect_err("must fail").to_string();
    assert!(e.contains("data_00002.npz"), "{e}");
    let e = read_sample(&train.join("data_00004.npz")).expect_err("missing key").to_string();
    assert!(e.contains("data_00004.npz") && e.contains("missing key 'glaucoma'"), "{e}");
    let skip = load_split(&dir, Split::Training, &LoadOptions { on_error: OnError::Skip, ..LoadOptions::default() }).expect("skip");
    assert_eq!(skip.samples.len(), 1);
    assert_eq!(skip.skipped.len(), 3);
    assert!(load_split(&dir, Split::Validation, &LoadOptions::default()).is_err(), "no Validation folder");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn synthetic_benchmark_round_trips_and_is_deterministic() {
    let cfg = SynthConfig { sizes: [60, 20, 20], image_size: 32, seed: 3, ..SynthConfig::default() };
    let splits = cfg.generate().expect("generate");
    assert_eq!(splits, cfg.generate().expect("again"), "same seed, same data");
    assert_ne!(splits, SynthConfig { seed: 4, ..cfg.clone() }.generate().expect("other seed"));
    let dir = temp("synth");
    write_fairvlmed(&dir, &splits).expect("write");
    let opts = LoadOptions { filter_unknown: Some(false), ..LoadOptions::default() };
    for (split, written) in [Split::Training, Split::Validation, Split::Test].into_iter().zip(&splits) {
        let back = load_split(&dir, split, &opts).expect("load").samples;
        assert_eq!(&back, written);
    }
    let summaries = fair_data::read_summary_csv(&dir.join("gpt-4_summarized_notes.csv")).expect("csv");
    assert_eq!(summaries["data_00001.npz"], splits[0][0].note);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn synthetic_benchmark_has_the_configured_structure() {
    let cfg = SynthConfig { sizes: [3000, 0, 0], image_size: 32, ..SynthConfig::default() };
    let [train, _, _] = cfg.generate().expect("generate");
    let share = |f: &dyn Fn(&fair_data::Sample) -> bool| train.iter().filter(|s| f(s)).count() as f64 / train.len() as f64;
    assert!((share(&|s| s.race == 1) - 0.149).abs() < 0.03);
    assert!((share(&|s| s.gender == 0) - 0.563).abs() < 0.03);
    assert!((share(&|s| s.glaucoma == 1) - 0.5).abs() < 0.04);
    // Glaucoma enlarges the bright cup: count near-white pixels, by race. The default config
    // weakens the signal for Black subjects (0.45), so their gap must be clearly smaller.
    let cup = |g: u8, race: i64| {
        let v: Vec<f64> =
            train.iter().filter(|s| s.glaucoma == g && s.race == race && s.ethnicity != 1).map(|s| s.image.pixels.iter().filter(|&&p| p > 185.0).count() as f64).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    let (white_gap, black_gap) = (cup(1, 2) - cup(0, 2), cup(1, 1) - cup(0, 1));
    assert!(cup(1, 2) > 1.5 * cup(0, 2), "glaucoma signal missing: {} vs {}", cup(1, 2), cup(0, 2));
    assert!(black_gap < 0.6 * white_gap, "bias knob ineffective: gap {black_gap} (Black) vs {white_gap} (White)");
    assert!(SynthConfig { prevalence: 1.5, ..SynthConfig::default() }.generate().is_err());
    assert!(SynthConfig { image_size: 4, ..SynthConfig::default() }.generate().is_err());
}

#[test]
fn clip_preprocessing_matches_pillow() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess_expected.json");
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    for case in v["cases"].as_array().expect("cases") {
        let num = |k: &str| case[k].as_u64().unwrap_or(0) as usize;
        let floats = |k: &str| -> Vec<f32> { case[k].as_array().expect(k).iter().map(|x| x.as_f64().unwrap_or(f64::NAN) as f32).collect() };
        let img = fair_data::GrayImage { height: num("height"), width: num("width"), pixels: floats("pixels") };
        let ours = fair_data::clip_preprocess(&img, num("size"));
        let theirs = floats("expected");
        assert_eq!(ours.len(), theirs.len());
        // One grey level is 1/255/std = 0.015 after normalisation: a truncation that falls the
        // other way would show as a difference of that size.
        let worst = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{}: max difference {worst}", case["name"]);
    }
}

#[test]
fn tokenizer_trained_on_notes_frames_pads_and_round_trips() {
    let cfg = SynthConfig { sizes: [300, 0, 0], image_size: 16, ..SynthConfig::default() };
    let [train, _, _] = cfg.generate().expect("generate");
    let notes: Vec<&str> = train.iter().map(|s| s.note.as_str()).collect();
    let tok = fair_data::TextTokenizer::train(&notes, 400, 24).expect("train");
    assert!(tok.vocab_size() > 100 && tok.vocab_size() <= 402, "vocab {}", tok.vocab_size());
    assert_eq!(tok.end_id() as usize, tok.vocab_size() - 1, "end token must have the largest id");
    assert_eq!(tok.pad_id(), 0);
    let long = "glaucoma suspected ".repeat(30);
    let ids = tok.encode_batch(&["healthy optic nerve", long.as_str()]).expect("encode");
    assert_eq!(ids.len(), 48);
    let (a, b) = ids.split_at(24);
    assert_eq!(a[0] as u32, tok.start_id());
    let end_at = a.iter().position(|&i| i as u32 == tok.end_id()).expect("end token");
    assert!(end_at > 1 && a[end_at + 1..].iter().all(|&i| i == 0), "{a:?}");
    assert_eq!(b[23] as u32, tok.end_id(), "truncation keeps the end token");
    // The argmax of each row is the end token, which the text tower pools at.
    let argmax = |r: &[i64]| r.iter().enumerate().max_by_key(|(_, v)| **v).map(|(i, _)| i).unwrap_or(0);
    assert_eq!((argmax(a), argmax(b)), (end_at, 23));

    let dir = temp("tok");
    let path = dir.join("tokenizer.json");
    tok.save(&path).expect("save");
    let back = fair_data::TextTokenizer::from_file(&path, 24).expect("load");
    assert_eq!(back.encode_batch(&["healthy optic nerve"]).expect("encode"), a.to_vec());
    std::fs::write(dir.join("bad.json"), "{ not json").expect("write");
    let e = fair_data::TextTokenizer::from_file(&dir.join("bad.json"), 24).expect_err("bad file").to_string();
    assert!(e.contains("bad.json"), "{e}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn prepared_batches_equal_direct_preprocessing() {
    use burn::backend::Flex;
    let cfg = SynthConfig { sizes: [40, 0, 0], image_size: 40, ..SynthConfig::default() };
    let [train, _, _] = cfg.generate().expect("generate");
    let notes: Vec<&str> = train.iter().map(|s| s.note.as_str()).collect();
    let tok = fair_data::TextTokenizer::train(&notes, 300, 20).expect("tokenizer");
    let prep = fair_data::Prepared::new(&train, 24, &tok, 180).expect("prepare");
    let b = prep.batch::<Flex>(&[3, 7], &Default::default()).expect("batch");
    assert_eq!(b.images.dims(), [2, 3, 24, 24]);
    assert_eq!(b.tokens.dims(), [2, 20]);
    assert_eq!(b.labels, vec![train[3].glaucoma, train[7].glaucoma]);
    let got = b.images.into_data().to_vec::<f32>().expect("f32");
    let want = fair_data::clip_preprocess(&train[7].image, 24);
    let worst = got[3 * 576..].iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-5, "{worst}");
}

/// The streaming pipeline reads FairVLMed files on demand and gives exactly the batches of the
/// in-memory path, in the order asked, whatever the number of workers, cache or no cache.
#[test]
fn streamed_files_equal_in_memory_batches_for_any_worker_count() {
    use burn::backend::Flex;
    use fair_data::{load_split, write_fairvlmed, LoadOptions, Pipeline, Prepared, Split};
    let dir = std::env::temp_dir().join(format!("fair-data-stream-{}", std::process::id()));
    let cfg = SynthConfig { sizes: [30, 4, 4], image_size: 40, ..SynthConfig::default() };
    let splits = cfg.generate().expect("generate");
    write_fairvlmed(&dir, &splits).expect("write");
    let notes: Vec<&str> = splits[0].iter().map(|s| s.note.as_str()).collect();
    let tok = fair_data::TextTokenizer::train(&notes, 300, 20).expect("tokenizer");
    let opts = LoadOptions { index_only: true, filter_unknown: Some(false), ..LoadOptions::default() };
    let index = load_split(&dir, Split::Training, &opts).expect("index");
    assert!(index.samples.iter().all(|s| s.image.pixels.is_empty() && s.image.height == 40), "no pixels read while indexing");
    let memory = Prepared::new(&splits[0], 24, &tok, 180).expect("memory");
    let order: Vec<Vec<usize>> = vec![vec![5, 0, 29], vec![7, 7, 1], vec![12, 3, 4, 8], vec![2]];
    let device = Default::default();
    let want: Vec<Vec<f32>> = order.iter().map(|rows| memory.batch::<Flex>(rows, &device).expect("batch").images.into_data().to_vec::<f32>().expect("f32")).collect();
    for (workers, cache_mib) in [(1, 0), (3, 0), (2, 64)] {
        let files = Prepared::from_fairvlmed_files(&index, 24, &tok, 180).expect("files").with_pipeline(Pipeline { workers, prefetch: 1, cache_mib });
        for _epoch in 0..2 {
            let mut stream = files.stream(order.clone());
            for (k, rows) in order.iter().enumerate() {
                assert_eq!(stream.peek_rows(), Some(rows.as_slice()));
                let b = stream.next_batch::<Flex>(&device).expect("a batch").expect("read");
                assert_eq!(b.images.into_data().to_vec::<f32>().expect("f32"), want[k], "workers {workers}, batch {k}");
                assert_eq!(b.labels, rows.iter().map(|&r| splits[0][r].glaucoma).collect::<Vec<_>>());
            }
            assert!(stream.next_batch::<Flex>(&device).is_none());
        }
        // A stream dropped half-way stops its workers.
        let mut stream = files.stream(order.clone());
        assert!(stream.next_batch::<Flex>(&device).is_some());
        drop(stream);
    }
    // A file corrupted after indexing is an error naming it when its batch is read.
    let victim = index.dir.join(&index.samples[2].file);
    std::fs::write(&victim, b"truncated").expect("corrupt");
    let files = Prepared::from_fairvlmed_files(&index, 24, &tok, 180).expect("files").with_pipeline(Pipeline { workers: 2, prefetch: 2, cache_mib: 0 });
    let mut stream = files.stream(vec![vec![0, 1], vec![2, 3]]);
    assert!(stream.next_batch::<Flex>(&device).expect("first").is_ok());
    let e = stream.next_batch::<Flex>(&device).expect("second").expect_err("corrupt file").to_string();
    assert!(e.contains(&index.samples[2].file), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 16: a code outside an attribute's values (race = 7) is an error naming the file and
/// key, not a silent "Unknown" group; a NaN pixel is an error, not a silent 0.
#[test]
fn out_of_range_codes_and_nan_pixels_are_named_errors() {
    use fair_data::{read_npz_fundus, read_sample, write_npz, NpyArray};
    let dir = std::env::temp_dir().join(format!("fair-data-codes-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let subject = |race: i64, pixel: f64| {
        vec![
            ("slo_fundus", NpyArray { descr: "<f8".into(), shape: vec![2, 2], data: fair_data::NpyData::Float(vec![1.0, pixel, 3.0, 4.0]) }),
            ("glaucoma", NpyArray::from_i64(vec![], vec![1])),
            ("race", NpyArray::from_i64(vec![], vec![race])),
            ("gender", NpyArray::from_i64(vec![], vec![0])),
            ("ethnicity", NpyArray::from_i64(vec![], vec![-1])),
            ("language", NpyArray::from_i64(vec![], vec![2])),
            ("age", NpyArray::from_f64(vec![], vec![60.0])),
            ("note", NpyArray::unicode("a note")),
        ]
    };
    let path = dir.join("data_00001.npz");
    write_npz(&path, &subject(2, 2.0)).expect("write");
    assert_eq!(read_sample(&path).expect("valid").race, 2);
    write_npz(&path, &subject(7, 2.0)).expect("write");
    let e = read_sample(&path).expect_err("race 7").to_string();
    assert!(e.contains("data_00001.npz") && e.contains("key 'race'") && e.contains("got 7"), "{e}");
    write_npz(&path, &subject(1, f64::NAN)).expect("write");
    let e = read_sample(&path).expect_err("NaN").to_string();
    assert!(e.contains("key 'slo_fundus'") && e.contains("NaN"), "{e}");
    let e = read_npz_fundus(&path).expect_err("NaN").to_string();
    assert!(e.contains("pixel 1 is NaN"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
