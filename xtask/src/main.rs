//! Project tasks, run as `cargo xtask <task>`.
//!
//! - `test`: the whole test suite (README's test command; `.ci/run` calls it).
//! - `fixtures`: regenerate the reference fixtures with the real Python peers.
//! - `bench metrics`: fair-metrics against the FairCLIP evaluation pipeline in Python.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Run every test of the workspace (unit, integration, parity, property and doc tests).
    Test,
    /// Regenerate reference fixtures with the real peers: scikit-learn and fairlearn in .venv,
    /// PyTorch and geomloss in .venv-torch (needs PyPI the first time).
    Fixtures,
    /// Benchmarks against the Python peers.
    Bench {
        #[command(subcommand)]
        which: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// fair-metrics CLI vs the FairCLIP evaluation pipeline (pandas + scikit-learn + fairlearn),
    /// CSV in to JSON out, on the same file.
    Metrics {
        /// Rows of the generated prediction file.
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        /// Timed runs of the Rust CLI (the median is reported).
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Timed runs of the Python pipeline.
        #[arg(long, default_value_t = 3)]
        peer_runs: usize,
    },
}

fn main() -> Result<()> {
    let root = workspace_root()?;
    match Cli::parse().task {
        Task::Test => test(&root),
        Task::Fixtures => fixtures(&root),
        Task::Bench { which: Bench::Metrics { rows, runs, peer_runs } } => bench_metrics(&root, rows, runs, peer_runs),
    }
}

fn workspace_root() -> Result<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).context("xtask has no parent directory")
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed with {status}");
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    run(cargo().current_dir(root).args(["test", "--workspace", "--locked"]))
}

/// A virtual environment in `root/name` with the given requirement files installed.
fn venv(root: &Path, name: &str, requirements: &[&str]) -> Result<PathBuf> {
    let dir = root.join(name);
    let python = dir.join("bin/python");
    if !python.exists() {
        run(Command::new("python3").args(["-m", "venv"]).arg(&dir))?;
    }
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "install", "--quiet"]);
    for r in requirements {
        pip.arg("-r").arg(root.join(r));
    }
    run(&mut pip)?;
    Ok(python)
}

fn fixtures(root: &Path) -> Result<()> {
    let python = venv(root, ".venv", &["crates/fair-metrics/tests/fixtures/requirements.txt"])?;
    run(Command::new(python).arg(root.join("crates/fair-metrics/tests/fixtures/make_parity.py")))?;
    // PyTorch from PyPI is the CUDA build (about 3 GB, runs on the CPU): kept in its own
    // environment so the light one stays light.
    let torch = venv(root, ".venv-torch", &["crates/fair-losses/tests/fixtures/requirements.txt"])?;
    run(Command::new(torch).arg(root.join("crates/fair-losses/tests/fixtures/make_reference.py")))
}

/// Wall time and peak resident memory of one child process.
struct Measured {
    seconds: f64,
    max_rss_mib: f64,
}

fn measure(cmd: &mut Command) -> Result<Measured> {
    let start = Instant::now();
    let child = cmd.spawn().with_context(|| format!("starting {cmd:?}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value, and wait4 writes a complete one for our own child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, not yet waited for; the pointers are valid for the call.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = start.elapsed().as_secs_f64();
    ensure!(r == pid, "wait4 on {cmd:?} failed: {}", std::io::Error::last_os_error());
    ensure!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{cmd:?} failed (status {status})");
    Ok(Measured { seconds, max_rss_mib: usage.ru_maxrss as f64 / 1024.0 })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench_metrics(root: &Path, rows: usize, runs: usize, peer_runs: usize) -> Result<()> {
    ensure!(runs > 0 && peer_runs > 0, "need at least one run of each side");
    let python = venv(root, ".venv", &["benches/peer/requirements.txt"])?;
    let dir = root.join(".bench");
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join(format!("predictions_{rows}.csv"));
    if !csv.exists() {
        run(Command::new(&python)
            .arg(root.join("benches/peer/make_predictions.py"))
            .args(["--rows", &rows.to_string(), "--out"])
            .arg(&csv))?;
    }
    let csv_mib = std::fs::metadata(&csv)?.len() as f64 / (1024.0 * 1024.0);
    run(cargo().current_dir(root).args(["build", "--release", "--locked", "-p", "fair-metrics"]))?;
    let exe = root.join("target/release/fair-metrics");
    let ours_json = dir.join("ours.json");
    let peer_json = dir.join("peer.json");

    let attrs = ["race", "gender", "ethnicity", "language"];
    let mut ours = Vec::new();
    for _ in 0..runs {
        let mut cmd = Command::new(&exe);
        cmd.arg("report").arg(&csv).args(["--label", "glaucoma", "--score", "prob"]);
        for a in attrs {
            cmd.args(["--attr", a]);
        }
        cmd.arg("-o").arg(&ours_json);
        ours.push(measure(&mut cmd)?);
    }
    let mut peer = Vec::new();
    for _ in 0..peer_runs {
        let mut cmd = Command::new(&python);
        cmd.arg(root.join("benches/peer/fairclip_eval.py")).arg(&csv).arg("-o").arg(&peer_json);
        peer.push(measure(&mut cmd)?);
    }

    // Both sides must have computed the same numbers.
    let read = |p: &Path| -> Result<serde_json::Value> {
        Ok(serde_json::from_str(&std::fs::read_to_string(p).with_context(|| p.display().to_string())?)?)
    };
    let (o, p) = (read(&ours_json)?, read(&peer_json)?);
    let mut max_diff: f64 = 0.0;
    let mut compared = 0;
    for a in attrs {
        for (k_ours, k_peer) in [("es_auc", "es_auc"), ("es_accuracy", "es_acc"), ("dpd", "dpd"), ("eod", "deodds")] {
            let (x, y) = (o["attributes"][a][k_ours].as_f64(), p[a][k_peer].as_f64());
            match (x, y) {
                (Some(x), Some(y)) => {
                    max_diff = max_diff.max((x - y).abs());
                    compared += 1;
                }
                _ => bail!("{a}.{k_ours}: ours {x:?}, peer {y:?}"),
            }
        }
        let groups = o["attributes"][a]["groups"].as_object().context("groups")?;
        for (g, m) in groups {
            let (x, y) = (m["auc"].as_f64(), p[a]["group_auc"][g].as_f64());
            if let (Some(x), Some(y)) = (x, y) {
                max_diff = max_diff.max((x - y).abs());
                compared += 1;
            }
        }
    }
    let (x, y) = (o["overall"]["auc"].as_f64(), p["overall"]["auc"].as_f64());
    if let (Some(x), Some(y)) = (x, y) {
        max_diff = max_diff.max((x - y).abs());
        compared += 1;
    }

    let ours_s = median(ours.iter().map(|m| m.seconds).collect());
    let ours_rss = ours.iter().map(|m| m.max_rss_mib).fold(0.0, f64::max);
    let peer_s = median(peer.iter().map(|m| m.seconds).collect());
    let peer_rss = peer.iter().map(|m| m.max_rss_mib).fold(0.0, f64::max);
    println!("\n{rows} rows, 4 attributes, CSV {csv_mib:.1} MiB ({})", csv.display());
    println!("| side | wall (median) | peak RSS | RSS / CSV size |");
    println!("|---|---|---|---|");
    println!("| fair-metrics CLI ({runs} runs) | {:.3} s | {ours_rss:.1} MiB | {:.2}x |", ours_s, ours_rss / csv_mib);
    println!("| Python FairCLIP pipeline ({peer_runs} runs) | {:.3} s | {peer_rss:.1} MiB | {:.2}x |", peer_s, peer_rss / csv_mib);
    println!("speed-up: {:.0}x; {compared} shared values agree to {max_diff:.2e}", peer_s / ours_s);
    Ok(())
}
