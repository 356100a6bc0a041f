//! The fuzz targets: one function per parser of user files, fed arbitrary bytes. Each must
//! return (with an error or a value) without panicking, aborting or hanging, whatever the bytes.
//!
//! Two drivers run them:
//! - AFL++ (`--features afl`, the binaries in `src/bin/`), coverage-guided, through
//!   `cargo xtask fuzz --seconds N`;
//! - [`replay`], without instrumentation: the committed corpus (`fuzz/corpus/<target>/`, the
//!   inputs AFL++ found new coverage with) and a bounded number of random mutations of it. The
//!   test suite runs it for every target, so CI exercises every parser on thousands of hostile
//!   inputs without AFL++.
//!
//! ```
//! // Truncated npy header: an error, not a panic.
//! fairvlm_fuzz::npy(b"\x93NUMPY\x01\x00\x10\x00{'descr'");
//! ```

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

type B = burn::backend::Flex;

/// A target: the name of its AFL++ binary and corpus folder, and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: [Target; 8] = [
    ("npy", npy),
    ("npz", npz),
    ("image", image),
    ("metadata", metadata),
    ("summary_csv", summary_csv),
    ("metrics_csv", metrics_csv),
    ("experiment", experiment),
    ("checkpoint", checkpoint),
];

/// This process's scratch folder (on tmpfs where there is one), created once: the targets write
/// their input there as the file a parser reads.
pub fn scratch() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("fairvlm-fuzz-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
    .clone()
}

/// Writes `data` to `name` in the scratch folder and returns its path.
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    let _ = std::fs::write(&path, data);
    path
}

/// numpy's `.npy` parser, and the image reader's npy path through CLIP's preprocessing.
pub fn npy(data: &[u8]) {
    let path = file("x.npy", data);
    let _ = fair_data::parse_npy(data, &path, "x");
    let _ = fair_data::image_dimensions(&path);
    let _ = fair_data::read_image(&path).map(|img| fair_data::clip_planes(&img, 16, false));
}

/// npz archives, and the FairVLMed / FairVision subject readers (full and index-only) on them.
pub fn npz(data: &[u8]) {
    let path = file("data_00001.npz", data);
    let _ = fair_data::read_npz_from(std::io::Cursor::new(data), &path);
    let _ = fair_data::read_sample(&path).map(|s| fair_data::clip_grey(&s.image, 16));
    let _ = fair_data::read_sample_index(&path);
    let _ = fair_data::read_npz_fundus(&path);
    let _ = fair_data::read_fairvision_sample(&path).map(|s| fair_data::oct_slices(&s.oct, 2, 8));
}

/// PNG, JPEG (any format the decoder guesses) through the generic format's image reader and
/// CLIP's preprocessing.
pub fn image(data: &[u8]) {
    let path = file("x.img", data);
    let _ = fair_data::image_dimensions(&path);
    let _ = fair_data::read_image(&path).map(|img| fair_data::clip_planes(&img, 16, false));
}

/// The generic format's metadata through `load_folder` (CSV, or JSONL when the first byte is
/// odd), with one valid image beside it, under both `on_error` policies.
pub fn metadata(data: &[u8]) {
    static SETUP: OnceLock<(PathBuf, fair_data::FolderSpec)> = OnceLock::new();
    let (dir, spec) = SETUP.get_or_init(|| {
        let dir = scratch().join("folder");
        let _ = std::fs::create_dir_all(&dir);
        // A 2 x 2 grey image as a .npy.
        let npy = fair_data::write_npy(&fair_data::NpyArray::from_u8(vec![2, 2], &[0, 64, 128, 255]));
        let _ = std::fs::write(dir.join("a.npy"), npy);
        let spec = fair_data::FolderSpec {
            label: "y".into(),
            text: Some("t".into()),
            attributes: vec!["g".into(), "h".into()],
            order: [("h".to_string(), vec!["x".to_string(), "y".to_string()])].into(),
            ..Default::default()
        };
        (dir, spec)
    });
    let (csv, jsonl) = (dir.join("metadata.csv"), dir.join("metadata.jsonl"));
    let _ = std::fs::remove_file(&csv);
    let _ = std::fs::remove_file(&jsonl);
    let target = if data.first().is_some_and(|b| b % 2 == 1) { &jsonl } else { &csv };
    let _ = std::fs::write(target, data.get(1..).unwrap_or_default());
    for on_error in [fair_data::OnError::Fail, fair_data::OnError::Skip] {
        let _ = fair_data::load_folder(dir, spec, &fair_data::LoadOptions { on_error, ..Default::default() });
    }
}

/// FairCLIP's GPT-4 summary CSV.
pub fn summary_csv(data: &[u8]) {
    let path = file("summary.csv", data);
    let _ = fair_data::read_summary_csv(&path);
}

/// fair-metrics' CSV reader, plain and with a positive label, weights and predictions.
pub fn metrics_csv(data: &[u8]) {
    let plain = fair_metrics::CsvSpec::new("y", "p").with_attr("g").with_attr("h");
    let rich = fair_metrics::CsvSpec::new("y", "p").with_attr("g").with_pos_label("yes").with_weight("w").with_pred("d");
    for spec in [&plain, &rich] {
        let _ = fair_metrics::parse_csv("f.csv", data, spec);
    }
}

/// The TOML experiment files, the trainer's and LoRA's.
pub fn experiment(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = trainer::Experiment::from_toml_str(text, "fuzz.toml");
        let _ = trainer::lora::LoraExperiment::from_toml_str_with(text, "fuzz.toml", &[]);
    }
}

// Valid files from the repository's fixtures (peft's own adapter, a tiny BERT checkpoint).
const ADAPTER_CONFIG: &[u8] = include_bytes!("../../crates/vlm-backbone/tests/fixtures/peft/ours/adapter_config.json");
const ADAPTER: &[u8] = include_bytes!("../../crates/vlm-backbone/tests/fixtures/peft/ours/adapter_model.safetensors");
const CONFIG: &[u8] = include_bytes!("../../crates/vlm-backbone/tests/fixtures/hf/bert/config.json");
const MODEL: &[u8] = include_bytes!("../../crates/vlm-backbone/tests/fixtures/hf/bert/model.safetensors");

/// The files that cross between processes or come with checkpoints: a peft adapter folder
/// (`adapter_config.json` + `adapter_model.safetensors`, what the LoRA exchange carries) and a
/// Hugging Face checkpoint's `config.json` + `model.safetensors`. The first byte chooses which
/// file gets the rest of the input; the other three are valid.
pub fn checkpoint(data: &[u8]) {
    let dir = scratch().join("ckpt");
    let _ = std::fs::create_dir_all(&dir);
    let (which, body) = data.split_first().map_or((0, &[][..]), |(w, b)| (*w, b));
    let (adapter_cfg, adapter_st, cfg, st): (&[u8], &[u8], &[u8], &[u8]) = match which % 4 {
        0 => (body, ADAPTER, CONFIG, MODEL),
        1 => (ADAPTER_CONFIG, body, CONFIG, MODEL),
        2 => (ADAPTER_CONFIG, ADAPTER, body, MODEL),
        _ => (ADAPTER_CONFIG, ADAPTER, CONFIG, body),
    };
    let _ = std::fs::write(dir.join("adapter_config.json"), adapter_cfg);
    let _ = std::fs::write(dir.join("adapter_model.safetensors"), adapter_st);
    let _ = std::fs::write(dir.join("config.json"), cfg);
    let _ = std::fs::write(dir.join("model.safetensors"), st);
    let _ = trainer::lora::load_adapter_values::<B>(&dir);
    let _ = lora_fair::load_adapters::<B>(&dir, &Default::default());
    if let Ok(ckpt) = vlm_backbone::Checkpoint::open(&dir) {
        let _ = ckpt.model_type();
        let _ = ckpt.text_model::<B>(&Default::default());
    }
}

/// An input that made a target panic or run past the time limit.
#[derive(Debug)]
pub struct Finding {
    /// The target's name.
    pub target: &'static str,
    /// What happened: the panic's message, or the time it took.
    pub what: String,
    /// The input, as given to the target.
    pub input: Vec<u8>,
}

/// What [`replay`] ran.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    /// Corpus inputs run as they are.
    pub corpus: usize,
    /// Mutated inputs run.
    pub mutations: usize,
}

/// Runs `run` on every file of `corpus` (a folder; missing means empty), then on up to
/// `mutations` random mutations of them (a fixed seed: the same inputs every time) for at most
/// `budget` of wall time. Stops at the first input that panics or takes longer than
/// `hang`. With an empty corpus, mutations start from the empty input.
///
/// ```
/// let dir = std::env::temp_dir().join("fairvlm-fuzz-doc");
/// std::fs::create_dir_all(&dir).unwrap();
/// std::fs::write(dir.join("seed"), b"y,p,g,h\n1,0.5,a,b\n").unwrap();
/// let budget = std::time::Duration::from_secs(10);
/// let done = fairvlm_fuzz::replay("metrics_csv", fairvlm_fuzz::metrics_csv, &dir, 100, budget, budget).unwrap();
/// assert_eq!(done.corpus, 1);
/// assert_eq!(done.mutations, 100);
/// ```
pub fn replay(target: &'static str, run: fn(&[u8]), corpus: &Path, mutations: usize, budget: Duration, hang: Duration) -> Result<Replayed, Box<Finding>> {
    let mut inputs: Vec<Vec<u8>> = match std::fs::read_dir(corpus) {
        Ok(entries) => {
            let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect();
            paths.sort();
            paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
        }
        Err(_) => Vec::new(),
    };
    let mut done = Replayed::default();
    let check = |input: &[u8]| -> Result<(), Box<Finding>> {
        let start = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| run(input)));
        let took = start.elapsed();
        match outcome {
            Err(panic) => {
                let what = panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "a panic".into());
                Err(Box::new(Finding { target, what: format!("panicked: {what}"), input: input.to_vec() }))
            }
            Ok(()) if took > hang => Err(Box::new(Finding { target, what: format!("took {took:?} (limit {hang:?})"), input: input.to_vec() })),
            Ok(()) => Ok(()),
        }
    };
    for input in &inputs {
        check(input)?;
        done.corpus += 1;
    }
    if inputs.is_empty() {
        inputs.push(Vec::new());
    }
    let start = Instant::now();
    let mut rng = Rng(0x5eed_f00d_cafe_d00d);
    while done.mutations < mutations && start.elapsed() < budget {
        let input = mutate(&inputs, &mut rng);
        check(&input)?;
        done.mutations += 1;
    }
    Ok(done)
}

/// splitmix64: enough randomness for mutations, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Values at the edges of integer types and sizes: what breaks size arithmetic.
const INTERESTING: [u64; 12] = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x7fff_ffff_ffff_ffff, u64::MAX];

/// AFL's havoc stage in miniature: 1 to 8 stacked edits of a corpus input (bit flips, random or
/// interesting bytes and words, deleted, duplicated or inserted blocks, a splice with another).
fn mutate(corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let mut data = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            2 if len > 0 => {
                let width = [1, 2, 4, 8][rng.below(4)].min(len);
                let at = rng.below(len - width + 1);
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let bytes = if rng.below(2) == 0 { value.to_le_bytes() } else { value.to_be_bytes() };
                data[at..at + width].copy_from_slice(&bytes[..width]);
            }
            3 if len > 1 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                data.drain(at..at + n);
            }
            4 if len > 0 => {
                let at = rng.below(len);
                let n = 1 + rng.below((len - at).min(64));
                let block = data[at..at + n].to_vec();
                let to = rng.below(len + 1);
                data.splice(to..to, block);
            }
            5 => {
                let to = rng.below(len + 1);
                let block: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                data.splice(to..to, block);
            }
            6 if len > 0 => {
                // Arithmetic on a byte, as AFL does on lengths and counts.
                let i = rng.below(len);
                data[i] = data[i].wrapping_add(rng.below(70) as u8).wrapping_sub(35);
            }
            7 => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let cut = rng.below(len + 1);
                    let from = rng.below(other.len());
                    data.truncate(cut);
                    data.extend_from_slice(&other[from..]);
                }
            }
            _ => {}
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_are_deterministic_and_vary() {
        let corpus = vec![b"y,p,g\n1,0.5,a\n".to_vec(), b"{\"a\": 1}".to_vec()];
        let (mut a, mut b) = (Rng(7), Rng(7));
        let xs: Vec<Vec<u8>> = (0..200).map(|_| mutate(&corpus, &mut a)).collect();
        let ys: Vec<Vec<u8>> = (0..200).map(|_| mutate(&corpus, &mut b)).collect();
        assert_eq!(xs, ys);
        let distinct: std::collections::HashSet<&Vec<u8>> = xs.iter().collect();
        assert!(distinct.len() > 150, "only {} distinct mutations of 200", distinct.len());
        assert!(xs.iter().any(|x| !corpus.contains(x)));
    }

    #[test]
    fn a_panicking_target_is_a_finding_with_its_input() {
        fn fragile(data: &[u8]) {
            assert!(!data.contains(&b'!'), "a bang");
        }
        let dir = scratch().join("fragile");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ok"), b"fine").unwrap();
        let hang = Duration::from_secs(60);
        let found = replay("fragile", fragile, &dir, 100_000, hang, hang).unwrap_err();
        assert_eq!(found.target, "fragile");
        assert!(found.what.contains("a bang"), "{}", found.what);
        assert!(found.input.contains(&b'!'));
    }

    #[test]
    fn a_slow_input_is_a_finding() {
        fn slow(data: &[u8]) {
            if data.len() > 6 {
                std::thread::sleep(Duration::from_millis(30));
            }
        }
        let dir = scratch().join("slow");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("short"), b"abc").unwrap();
        let found = replay("slow", slow, &dir, 10_000, Duration::from_secs(60), Duration::from_millis(20)).unwrap_err();
        assert!(found.what.starts_with("took"), "{}", found.what);
        assert!(found.input.len() > 6);
    }
}
