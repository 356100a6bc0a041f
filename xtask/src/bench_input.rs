//! `cargo xtask bench input`: the streaming input pipeline against a Python peer that does
//! what FairCLIP's dataset class does (numpy load, PIL bicubic resize, centre crop,
//! normalisation) with 2 worker processes, on a 2,000-subject Harvard-FairVLMed-format folder
//! (664 x 512 uint8 fundus images) at 224 px; and the peak RSS of one training epoch with the
//! cache off on that folder and on a 200-subject one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::util::{cargo, measure, median, read_json, run, venv};

/// The experiment of the benchmark: FairVLMed files at 224 px, a tiny model (the input is
/// what is measured), no cache, two decoding threads.
fn config(root: &Path, data: &Path) -> String {
    format!(
        "seed = 0\nmethod = \"clip\"\n[data]\nsource = \"fairvlmed\"\nroot = \"{}\"\nvocab_size = 1000\ncontext_length = 77\n[data.pipeline]\nworkers = 2\nprefetch = 2\ncache_mib = 0\n[model]\npreset = \"tiny\"\nimage_size = 224\npatch_size = 32\n[optim]\noptimizer = \"adamw\"\nlr = 5e-4\nbatch_size = 32\nepochs = 1\n[eval]\nbootstrap = 0\nbatch_size = 32\n",
        root.join(data).display()
    )
}

pub fn bench_input(root: &Path, subjects: usize, runs: usize) -> Result<()> {
    ensure!(runs > 0, "need at least one run");
    let python = venv(root, ".venv", &["crates/fair-data/tests/fixtures/requirements.txt"])?;
    let dir = root.join(".bench");
    std::fs::create_dir_all(&dir)?;
    let small = subjects / 10;
    let folder = |n: usize| dir.join(format!("fairvlmed-{n}"));
    for n in [subjects, small] {
        if !folder(n).join("Test").is_dir() {
            run(Command::new(&python).arg(root.join("benches/peer/make_fairvlmed_large.py")).args(["--subjects", &n.to_string(), "--out"]).arg(folder(n)))?;
        }
    }
    run(cargo().current_dir(root).args(["build", "--release", "--locked", "-p", "trainer", "--bin", "fairvlm"]))?;
    let exe = root.join("target/release/fairvlm");
    let configs: Vec<PathBuf> = [subjects, small]
        .iter()
        .map(|&n| {
            let path = dir.join(format!("input-{n}.toml"));
            std::fs::write(&path, config(root, &folder(n)))?;
            Ok(path)
        })
        .collect::<Result<_>>()?;

    // Throughput: one pass over the training split, ours and the peer's, interleaved.
    let (mut ours, mut peer) = (Vec::new(), Vec::new());
    let (mut ours_mean, mut peer_mean) = (f64::NAN, f64::NAN);
    let peer_json = dir.join("peer-input.json");
    for _ in 0..runs {
        let out = Command::new(&exe).args(["data", "throughput", "--config"]).arg(&configs[0]).output().context("running fairvlm data throughput")?;
        ensure!(out.status.success(), "fairvlm data throughput failed: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        ours.push(v["images_per_second"].as_f64().context("images_per_second")?);
        ours_mean = v["mean_pixel"].as_f64().unwrap_or(f64::NAN);
        run(Command::new(&python)
            .arg(root.join("benches/peer/fairclip_input.py"))
            .arg(folder(subjects))
            .args(["--workers", "2", "--batch", "32", "--size", "224", "-o"])
            .arg(&peer_json))?;
        let p = read_json(&peer_json)?;
        peer.push(p["images_per_second"].as_f64().context("peer images_per_second")?);
        peer_mean = p["checksum_mean_pixel"].as_f64().unwrap_or(f64::NAN);
    }

    // Memory: one training epoch (cache off) on each folder.
    let mut rss = Vec::new();
    for (n, cfg) in [subjects, small].iter().zip(&configs) {
        let out = dir.join(format!("run-input-{n}"));
        let _ = std::fs::remove_dir_all(&out);
        let m = measure(Command::new(&exe).args(["train", "-q", "--config"]).arg(cfg).arg("--run").arg(&out))?;
        rss.push((*n, m.max_rss_mib, m.seconds));
    }

    let (o, p) = (median(ours.clone()), median(peer.clone()));
    println!("\nInput pipeline, {subjects}-subject FairVLMed-format folder, training split, 224 px, 2 workers, batch 32 ({runs} interleaved runs, medians)");
    println!("| side | images/s (runs) | median | mean normalised pixel |\n|---|---|---|---|");
    println!("| fairvlm (2 decoding threads) | {ours:.0?} | {o:.0} | {ours_mean:.9} |");
    println!("| Python peer (2 worker processes) | {peer:.0?} | {p:.0} | {peer_mean:.9} |");
    println!("\nratio fairvlm / peer: {:.2}x", o / p);
    println!("\nPeak RSS of one training epoch (cache off, tiny model at 224 px):\n| subjects | peak RSS (MiB) | wall (s) |\n|---|---|---|");
    for (n, r, s) in &rss {
        println!("| {n} | {r:.0} | {s:.1} |");
    }
    println!("\nratio {} / {} subjects: {:.2}", rss[0].0, rss[1].0, rss[0].1 / rss[1].1);
    Ok(())
}
