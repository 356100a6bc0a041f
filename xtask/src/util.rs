//! Helpers shared by the tasks: the workspace root, running (and measuring) child processes,
//! Python virtual environments, file digests, JSON reports and the release `fairvlm` build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};

pub fn workspace_root() -> Result<PathBuf> {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).context("xtask has no parent directory")
}

/// The cargo that runs xtask (`$CARGO`), else the one on the PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Echoes the command to stderr, runs it and fails unless it succeeds.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("+ {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed with {status}");
    Ok(())
}

/// Appends `--set KEY=VALUE` for each override.
pub fn with_sets<'a>(cmd: &'a mut Command, sets: &[String]) -> &'a mut Command {
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd
}

/// Wall time and peak resident memory of one child process.
pub struct Measured {
    pub seconds: f64,
    pub max_rss_mib: f64,
}

pub fn measure(cmd: &mut Command) -> Result<Measured> {
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

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub fn sha256(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output().context("running sha256sum")?;
    ensure!(out.status.success(), "sha256sum {} failed", path.display());
    Ok(String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_owned())
}

/// A virtual environment in `root/name` with the given requirement files installed.
pub fn venv(root: &Path, name: &str, requirements: &[&str]) -> Result<PathBuf> {
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

/// The first file in `dir` whose name starts with `prefix` and has extension `ext` (what
/// `pip download` or `apt-get download` left there).
pub fn find_download(dir: &Path, prefix: &str, ext: &str) -> Result<Option<PathBuf>> {
    Ok(std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(prefix)) && p.extension().is_some_and(|x| x == ext)))
}

pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    Ok(serde_json::from_str(&text)?)
}

/// A test-split metric of a training report: `auc` is the overall one, anything else
/// (`es_auc`, `dpd`, `eod`, ...) is the attribute's.
pub fn test_metric<'a>(report: &'a serde_json::Value, attr: &str, key: &str) -> &'a serde_json::Value {
    if key == "auc" {
        &report["test"]["overall"]["auc"]
    } else {
        &report["test"]["attributes"][attr][key]
    }
}

/// Builds the release `fairvlm` with the feature of `device` and returns its path.
pub fn build_fairvlm(root: &Path, device: &str) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.current_dir(root).args(["build", "--release", "--locked", "-p", "trainer", "--bin", "fairvlm"]);
    match device {
        "cpu" => {}
        "cuda" | "wgpu" => {
            cmd.args(["--features", device]);
        }
        other => bail!("device '{other}': expected cpu, cuda or wgpu"),
    }
    run(&mut cmd)?;
    Ok(root.join("target/release/fairvlm"))
}
