//! `cargo xtask train` (README's first command: CLIP and FairCLIP on the built-in synthetic
//! benchmark, side by side) and `cargo xtask gpu-smoke` (a short GPU training, samples per second).

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};

use crate::util::{build_fairvlm, measure, read_json, run, test_metric, with_sets};

pub fn train(root: &Path, device: &str, set: &[String]) -> Result<()> {
    let fairvlm = build_fairvlm(root, device)?;
    eprintln!("benchmark: the built-in synthetic FairVLMed-like data (2,000 / 400 / 800 subjects, seed 0), generated in memory; `fairvlm synth -o DIR` writes it to disk");
    let mut reports = Vec::new();
    let mut total = 0.0;
    for method in ["clip", "fairclip"] {
        let out = root.join("runs").join(format!("benchmark-{method}"));
        // The task's own output: every invocation trains afresh.
        let _ = std::fs::remove_dir_all(&out);
        let mut cmd = Command::new(&fairvlm);
        cmd.current_dir(root).args(["train", "--config"]).arg(root.join(format!("configs/benchmark-{method}.toml"))).arg("--run").arg(&out).args(["--device", device]);
        let m = measure(with_sets(&mut cmd, set))?;
        let json = read_json(&out.join("report.json"))?;
        let train_seconds: f64 = json["history"].as_array().map_or(0.0, |h| h.iter().filter_map(|l| l["train_seconds"].as_f64()).sum());
        eprintln!("{method}: {:.0} s in all ({:.0} s of training steps), peak RSS {:.0} MiB, reports in {}", m.seconds, train_seconds, m.max_rss_mib, out.display());
        total += m.seconds;
        reports.push((method, json));
    }
    let f = |v: &serde_json::Value| v.as_f64().map_or("-".to_string(), |x| format!("{:.2}", 100.0 * x));
    println!("\nTest split, selected epoch, values x100 ({:.1} min for both runs)\n", total / 60.0);
    println!("| attribute | metric | clip | fairclip |\n|---|---|---|---|");
    for attr in ["race", "gender", "ethnicity", "language"] {
        for (key, label) in [("auc", "AUC"), ("es_auc", "ES-AUC"), ("dpd", "DPD"), ("eod", "DEOdds")] {
            let cell = |j: &serde_json::Value| f(test_metric(j, attr, key));
            println!("| {attr} | {label} | {} | {} |", cell(&reports[0].1), cell(&reports[1].1));
        }
        let groups = |j: &serde_json::Value| -> String {
            j["test"]["attributes"][attr]["groups"].as_object().map(|g| g.iter().map(|(k, v)| format!("{k} {}", f(&v["auc"]))).collect::<Vec<_>>().join(", ")).unwrap_or_default()
        };
        println!("| {attr} | group AUC | {} | {} |", groups(&reports[0].1), groups(&reports[1].1));
    }
    Ok(())
}

/// `fairvlm gpu-check` on `device`. CUDA: the release build, with an H200's peak rates for the
/// MFU. wgpu: the debug build (the software device, not the host code, sets the pace) with
/// `--quick` sizes, Mesa's lavapipe as the device (`cargo xtask test` installs it).
pub fn gpu_check(root: &Path, device: &str) -> Result<()> {
    let out = root.join(format!("target/gpu-check-{device}.json"));
    let cmd = match device {
        "cuda" => {
            let mut c = Command::new(build_fairvlm(root, device)?);
            c.args(["--peak-f32-tflops", "67", "--peak-bf16-tflops", "989"]);
            c
        }
        "wgpu" => {
            run(crate::util::cargo().current_dir(root).args(["build", "--locked", "-p", "trainer", "--bin", "fairvlm", "--features", "wgpu"]))?;
            let mut c = Command::new(root.join("target/debug/fairvlm"));
            c.arg("--quick");
            if std::env::var_os("XDG_RUNTIME_DIR").is_none() {
                let xdg = std::env::temp_dir().join("fairvlm-xdg");
                std::fs::create_dir_all(&xdg)?;
                c.env("XDG_RUNTIME_DIR", xdg);
            }
            c
        }
        other => anyhow::bail!("gpu-check runs on cuda or wgpu, not '{other}'"),
    };
    // The subcommand's own flags go after its name.
    let mut full = Command::new(cmd.get_program());
    full.current_dir(root).args(["gpu-check", "--device", device, "--output"]).arg(&out).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            full.env(k, v);
        }
    }
    run(&mut full)?;
    eprintln!("device check written to {}", out.display());
    Ok(())
}

pub fn gpu_smoke(root: &Path, device: &str, epochs: usize) -> Result<()> {
    ensure!(device == "cuda" || device == "wgpu", "gpu-smoke runs on cuda or wgpu");
    let fairvlm = build_fairvlm(root, device)?;
    let out = root.join("runs/gpu-smoke");
    let _ = std::fs::remove_dir_all(&out);
    run(Command::new(&fairvlm)
        .current_dir(root)
        .args(["train", "--quiet", "--device", device, "--config"])
        .arg(root.join("configs/benchmark-clip.toml"))
        .arg("--run")
        .arg(&out)
        .args(["--set", &format!("optim.epochs={epochs}"), "--set", "eval.bootstrap=0"]))?;
    let log = std::fs::read_to_string(out.join("log.jsonl")).context("runs/gpu-smoke/log.jsonl")?;
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        println!(
            "epoch {}: {:.1} samples/s ({:.2} s), validation AUC {}",
            v["epoch"],
            v["samples_per_second"].as_f64().unwrap_or(0.0),
            v["train_seconds"].as_f64().unwrap_or(0.0),
            v["validation"]["auc"]
        );
    }
    Ok(())
}
