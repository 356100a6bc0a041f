//! `cargo xtask fuzz --seconds N`: coverage-guided fuzzing of every parser that reads a user's
//! files (the targets in `fuzz/src/bin/`), with AFL++ through cargo-afl on the stable
//! toolchain. Installs what is missing (Debian's `afl++`, `cargo-afl`), builds the targets
//! instrumented into `target/fuzz`, seeds each from the repository's fixtures, runs them two
//! at a time for N seconds each (resuming earlier corpora), appends each run's executions to
//! `target/fuzz/ledger.csv` and fails if any crash or hang was saved.

use std::path::{Path, PathBuf};
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

/// Copies `from` (a file, or every file of a folder) into the seed folder `to`.
fn seed_from(to: &Path, from: &Path) -> Result<()> {
    let files: Vec<PathBuf> = if from.is_dir() { std::fs::read_dir(from)?.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect() } else { vec![from.to_owned()] };
    for f in files {
        let name = f.to_string_lossy().replace(['/', '\\'], "_");
        std::fs::copy(&f, to.join(name.trim_start_matches('_')))?;
    }
    Ok(())
}

/// Each target's seed corpus, from the fixtures (and a few hand-written inputs).
fn seeds(root: &Path, dir: &Path) -> Result<()> {
    let fx = root.join("crates/fair-data/tests/fixtures");
    let example = root.join("datasets/example");
    for t in TARGETS {
        let d = dir.join(t);
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d)?;
        match t {
            "npy" => {
                for f in ["images/0006.npy", "images/0007.npy"] {
                    seed_from(&d, &example.join(f))?;
                }
            }
            "npz" => {
                for f in ["fairvlmed/Training", "fairvlmed/Testing", "fairvision/train"] {
                    seed_from(&d, &fx.join(f))?;
                }
            }
            "image" => {
                for f in ["images/0001.png", "images/0002.png", "images/0003.png", "images/0004.jpg", "images/0005.jpg"] {
                    seed_from(&d, &example.join(f))?;
                }
            }
            "metadata" => {
                std::fs::write(d.join("csv"), b"\x00file_name,split,y,t,g,h\na.npy,train,1,\"a, note\",A,x\na.npy,validation,0,b,B,y\na.npy,test,1,c,,x\n")?;
                std::fs::write(d.join("jsonl"), b"\x01{\"file_name\": \"a.npy\", \"split\": \"train\", \"y\": 1, \"t\": \"n\", \"g\": \"A\", \"h\": \"x\"}\n{\"file_name\": \"a.npy\", \"split\": \"test\", \"y\": \"0\", \"t\": null, \"g\": \"B\", \"h\": \"y\"}\n")?;
            }
            "summary_csv" => seed_from(&d, &fx.join("fairvlmed/gpt-4_summarized_notes.csv"))?,
            "metrics_csv" => {
                std::fs::write(d.join("rich"), b"y,p,g,h,w,d\nyes,0.9,a,x,1.5,yes\nno,0.2,b,x,1,no\nyes,0.4,\"a, b\",y,2,no\n")?;
                seed_from(&d, &root.join("crates/fair-metrics/tests/fixtures/parity/everybody_selected.csv"))?;
            }
            "experiment" => {
                for f in ["benchmark-fairclip.toml", "benchmark-fair-moe.toml", "benchmark-multifair.toml", "example-clip.toml", "lora-fundus.toml"] {
                    seed_from(&d, &root.join("configs").join(f))?;
                }
            }
            "checkpoint" => {
                let v = root.join("crates/vlm-backbone/tests/fixtures");
                for (sel, f) in [(0u8, "peft/ours/adapter_config.json"), (2, "hf/bert/config.json")] {
                    let mut bytes = vec![sel];
                    bytes.extend(std::fs::read(v.join(f))?);
                    std::fs::write(d.join(format!("sel{sel}")), bytes)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// One line of `fuzzer_stats`.
fn stat(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == key).and_then(|(_, v)| v.trim().parse::<f64>().ok())).map_or(0, |v| v as u64)
}

pub fn fuzz(root: &Path, seconds: u64, only: &[String]) -> Result<()> {
    ensure_tools()?;
    let targets: Vec<&str> = TARGETS.iter().copied().filter(|t| only.is_empty() || only.iter().any(|o| o == t)).collect();
    let dir = root.join("target/fuzz");
    run(cargo().current_dir(root.join("fuzz")).args(["afl", "build", "--release", "--locked", "--target-dir"]).arg(&dir))?;
    let seed_dir = dir.join("seeds");
    seeds(root, &seed_dir)?;
    std::fs::create_dir_all(dir.join("out"))?;
    let mut rows = Vec::new();
    for pair in targets.chunks(2) {
        let children: Vec<_> = pair
            .iter()
            .map(|t| {
                let out = dir.join("out").join(t);
                let mut cmd = cargo();
                cmd.args(["afl", "fuzz", "-i"])
                    .arg(seed_dir.join(t))
                    .arg("-o")
                    .arg(&out)
                    .args(["-V", &seconds.to_string()])
                    .arg(dir.join("release").join(t))
                    .envs([("AFL_NO_UI", "1"), ("AFL_SKIP_CPUFREQ", "1"), ("AFL_AUTORESUME", "1"), ("AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES", "1"), ("AFL_NO_AFFINITY", "1")])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null());
                eprintln!("+ {cmd:?}");
                cmd.spawn().with_context(|| format!("starting afl-fuzz on {t}")).map(|c| (t, out, c))
            })
            .collect::<Result<_>>()?;
        for (t, out, mut child) in children {
            child.wait()?;
            let stats = std::fs::read_to_string(out.join("default/fuzzer_stats")).with_context(|| format!("{t}: afl-fuzz wrote no fuzzer_stats (see {})", out.display()))?;
            rows.push((
                t.to_string(),
                stat(&stats, "execs_done"),
                stat(&stats, "execs_per_sec"),
                stat(&stats, "corpus_count"),
                stat(&stats, "saved_crashes"),
                stat(&stats, "saved_hangs"),
            ));
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
    let found: Vec<&String> = rows.iter().filter(|r| r.4 > 0 || r.5 > 0).map(|r| &r.0).collect();
    if !found.is_empty() {
        bail!("crashes or hangs in {found:?}: see {}/out/<target>/default/crashes and hangs", dir.display());
    }
    Ok(())
}
