//! `cargo xtask fuzz --seconds N`: coverage-guided fuzzing of every parser that reads a user's
//! files (the targets in `fuzz/src/bin/`), with AFL++ through cargo-afl on the stable
//! toolchain. Installs what is missing (Debian's `afl++`, `cargo-afl`), builds the targets
//! instrumented into `target/fuzz`, starts each from its committed corpus (`fuzz/corpus/<t>/`),
//! runs them two at a time for N seconds each (resuming earlier runs), appends each run's
//! executions to `target/fuzz/ledger.csv` and fails if any crash or hang was saved. With
//! `--keep`, the inputs that found new coverage join the committed corpus, which the test
//! suite replays (`fuzz/tests/replay.rs`).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::util::{cargo, run};

/// The targets, in `fuzz/src/bin/`.
pub const TARGETS: [&str; 8] = ["npy", "npz", "image", "metadata", "summary_csv", "metrics_csv", "experiment", "checkpoint"];

const CARGO_AFL: &str = "0.18.2";

fn has(cmd: &str, arg: &str) -> bool {
    Command::new(cmd).arg(arg).output().is_ok_and(|o| o.status.success() || !o.stdout.is_empty() || !o.stderr.is_empty())
}

/// AFL++ from Debian's packages and cargo-afl from crates.io, when missing.
fn ensure_tools() -> Result<()> {
    if !has("afl-fuzz", "-h") {
        run(Command::new("apt-get").args(["install", "-y", "-q", "afl++"])).context("installing Debian's afl++ (needs root and the package index)")?;
    }
    if !cargo().args(["afl", "--version"]).output().is_ok_and(|o| o.status.success()) {
        run(cargo().args(["install", "--locked", "cargo-afl", "--version", CARGO_AFL]))?;
    }
    Ok(())
}

/// Most inputs kept per target in `fuzz/corpus/`: CI replays all of them.
const CORPUS_CAP: usize = 200;
/// Largest input kept in `fuzz/corpus/`.
const CORPUS_MAX_BYTES: u64 = 4096;

/// FNV-1a of the bytes: a corpus file's name, so the same input is kept once.
fn content_name(bytes: &[u8]) -> String {
    format!("{:016x}", bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)))
}

/// Adds to `fuzz/corpus/<target>/` the queue entries of this run that found new coverage (and
/// the seeds), evenly spaced in discovery order, up to [`CORPUS_CAP`] files of at most
/// [`CORPUS_MAX_BYTES`]. Returns how many were added.
fn save_corpus(queue: &Path, corpus: &Path) -> Result<usize> {
    std::fs::create_dir_all(corpus)?;
    let have = std::fs::read_dir(corpus)?.count();
    let mut names: Vec<String> = std::fs::read_dir(queue)
        .with_context(|| format!("reading {}", queue.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("+cov") || n.contains("orig:"))
        .collect();
    names.sort();
    let mut fresh = Vec::new();
    for n in names {
        let path = queue.join(&n);
        if std::fs::metadata(&path)?.len() > CORPUS_MAX_BYTES {
            continue;
        }
        let bytes = std::fs::read(&path)?;
        let name = content_name(&bytes);
        if !corpus.join(&name).exists() && !fresh.iter().any(|(m, _): &(String, Vec<u8>)| *m == name) {
            fresh.push((name, bytes));
        }
    }
    let room = CORPUS_CAP.saturating_sub(have);
    let take = fresh.len().min(room);
    for k in 0..take {
        let (name, bytes) = &fresh[k * fresh.len() / take];
        std::fs::write(corpus.join(name), bytes)?;
    }
    Ok(take)
}

/// One line of `fuzzer_stats`.
fn stat(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key).and_then(|(_, v)| v.trim().parse::<f64>().ok())).map_or(0, |v| v as u64)
}

pub fn fuzz(root: &Path, seconds: u64, only: &[String], keep: bool) -> Result<()> {
    ensure_tools()?;
    let targets: Vec<&str> = TARGETS.iter().copied().filter(|t| only.is_empty() || only.iter().any(|o| o == t)).collect();
    let dir = root.join("target/fuzz");
    run(cargo().current_dir(root).args(["afl", "build", "--release", "--locked", "-p", "fairvlm-fuzz", "--features", "afl", "--target-dir"]).arg(&dir))?;
    let corpus = root.join("fuzz/corpus");
    std::fs::create_dir_all(dir.join("out"))?;
    let mut rows = Vec::new();
    for pair in targets.chunks(2) {
        let children: Vec<_> = pair
            .iter()
            .map(|t| {
                let out = dir.join("out").join(t);
                // A resumed run carries on the counters of the earlier ones: keep them to count
                // only this run's executions and findings.
                let before = std::fs::read_to_string(out.join("default/fuzzer_stats")).unwrap_or_default();
                let mut cmd = cargo();
                cmd.args(["afl", "fuzz", "-i"])
                    .arg(corpus.join(t))
                    .arg("-o")
                    .arg(&out)
                    .args(["-V", &seconds.to_string()])
                    .arg(dir.join("release").join(t))
                    .envs([("AFL_NO_UI", "1"), ("AFL_SKIP_CPUFREQ", "1"), ("AFL_AUTORESUME", "1"), ("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1"), ("AFL_NO_AFFINITY", "1")])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                eprintln!("+ {cmd:?}");
                cmd.spawn().with_context(|| format!("starting afl-fuzz on {t}")).map(|c| (t, out, before, c))
            })
            .collect::<Result<_>>()?;
        for (t, out, before, mut child) in children {
            child.wait()?;
            let stats = std::fs::read_to_string(out.join("default/fuzzer_stats")).with_context(|| format!("{t}: afl-fuzz wrote no fuzzer_stats (see {})", out.display()))?;
            let delta = |key| stat(&stats, key).saturating_sub(stat(&before, key));
            rows.push((t.to_string(), delta("execs_done"), stat(&stats, "execs_per_sec"), stat(&stats, "corpus_count"), delta("saved_crashes"), delta("saved_hangs")));
        }
    }
    let ledger = dir.join("ledger.csv");
    let mut text = std::fs::read_to_string(&ledger).unwrap_or_else(|_| "target,seconds,execs,crashes,hangs\n".into());
    println!("\n| target | executions | per second | corpus | crashes | hangs |\n|---|---|---|---|---|---|");
    for (t, execs, rate, corpus, crashes, hangs) in &rows {
        println!("| {t} | {execs} | {rate} | {corpus} | {crashes} | {hangs} |");
        text.push_str(&format!("{t},{seconds},{execs},{crashes},{hangs}\n"));
    }
    std::fs::write(&ledger, &text)?;
    let total: u64 = text.lines().skip(1).filter_map(|l| l.split(',').nth(2)?.parse::<u64>().ok()).sum();
    println!("\nthis run: {} executions; all runs in {}: {total}", rows.iter().map(|r| r.1).sum::<u64>(), ledger.display());
    if keep {
        for (t, ..) in &rows {
            let added = save_corpus(&dir.join("out").join(t).join("default/queue"), &corpus.join(t))?;
            println!("{t}: {added} inputs added to fuzz/corpus/{t}");
        }
    }
    let found: Vec<&String> = rows.iter().filter(|r| r.4 > 0 || r.5 > 0).map(|r| &r.0).collect();
    if !found.is_empty() {
        bail!("crashes or hangs in {found:?}: see {}/out/<target>/default/crashes and hangs", dir.display());
    }
    Ok(())
}
