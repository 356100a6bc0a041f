//! Every fuzz target on its committed corpus (`fuzz/corpus/<target>/`) and then on random
//! mutations of it for a bounded time: the part of fuzzing CI can afford without AFL++.
//! `FAIRVLM_FUZZ_SECONDS` sets the mutation time per target (default 4). A finding is saved
//! under `target/fuzz/replay/` and the test fails naming the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn run(name: &str) {
    let (target, f) = fairvlm_fuzz::TARGETS.into_iter().find(|(t, _)| *t == name).unwrap();
    let seconds: u64 = std::env::var("FAIRVLM_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(4);
    let corpus = root().join("corpus").join(target);
    assert!(corpus.is_dir(), "no corpus for {target} at {}", corpus.display());
    // Unoptimised code is slow; a hang here is an input 100 times slower than the corpus' worst.
    let hang = Duration::from_secs(20);
    match fairvlm_fuzz::replay(target, f, &corpus, usize::MAX, Duration::from_secs(seconds), hang) {
        Ok(done) => {
            assert!(done.corpus > 0, "{target}: empty corpus");
            println!("{target}: {} corpus inputs, {} mutations in {seconds} s", done.corpus, done.mutations);
        }
        Err(found) => {
            let dir = root().join("../target/fuzz/replay");
            let _ = std::fs::create_dir_all(&dir);
            let hash = found.input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
            let path = dir.join(format!("{target}-{hash:016x}"));
            let _ = std::fs::write(&path, &found.input);
            panic!("{target}: an input {}; saved as {} (replay it with the AFL++ binary or fairvlm_fuzz::{target})", found.what, path.display());
        }
    }
}

#[test]
fn npy() {
    run("npy");
}

#[test]
fn npz() {
    run("npz");
}

#[test]
fn image() {
    run("image");
}

#[test]
fn metadata() {
    run("metadata");
}

#[test]
fn summary_csv() {
    run("summary_csv");
}

#[test]
fn metrics_csv() {
    run("metrics_csv");
}

#[test]
fn experiment() {
    run("experiment");
}

#[test]
fn checkpoint() {
    run("checkpoint");
}
