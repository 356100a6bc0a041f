//! `cargo xtask bench metrics`: the fair-metrics CLI against the FairCLIP evaluation pipeline
//! in Python, CSV in to JSON out on the same file: wall time, peak memory and agreement.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::util::{cargo, measure, median, read_json, run, venv};

pub fn bench_metrics(root: &Path, rows: usize, runs: usize, peer_runs: usize) -> Result<()> {
    ensure!(runs > 0 && peer_runs > 0, "need at least one run of each side");
    let python = venv(root, ".venv", &["benches/peer/requirements.txt"])?;
    let dir = root.join(".bench");
    std::fs::create_dir_all(&dir)?;
    let csv = dir.join(format!("predictions_{rows}.csv"));
    if !csv.exists() {
        run(Command::new(&python).arg(root.join("benches/peer/make_predictions.py")).args(["--rows", &rows.to_string(), "--out"]).arg(&csv))?;
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
    let (o, p) = (read_json(&ours_json)?, read_json(&peer_json)?);
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
