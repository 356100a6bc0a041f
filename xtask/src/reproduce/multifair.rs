//! `cargo xtask reproduce multifair`: late fusion, OGM-GE and MultiFair (code and faithful
//! variants) on the synthetic multimodal benchmark, per pairing (fundus + note, fundus + OCT).

use std::path::Path;

use anyhow::{ensure, Context, Result};

use super::paired::{claims_table, Claim, Metric, VerdictRow};
use super::{epochs_flag, list, publish, push_epochs, row, seed_list, study_run, Columns};
use crate::util::{build_fairvlm, test_metric};

/// The study's rows: run-folder key, config (`configs/benchmark-<config>.toml`), label, and the
/// settings that make the variant. After the three methods, the controls that separate what
/// OGM-GE's configuration changes at once: its concatenation head (late fusion has the
/// transformer fusion), its modulation, its Gaussian noise, and its paper's optimiser.
const VARIANTS: &[(&str, &str, &str, &[&str])] = &[
    ("late-fusion", "late-fusion", "late fusion", &[]),
    ("ogm-ge", "ogm-ge", "OGM-GE", &[]),
    ("multifair", "multifair", "MultiFair (code)", &[]),
    ("multifair-faithful", "multifair", "MultiFair (faithful)", &["multifair.mode=\"faithful\""]),
    ("late-fusion-concat", "late-fusion", "control: late fusion, OGM-GE's concat head", &["multimodal.fusion=\"concat\""]),
    ("ogm-no-noise", "ogm-ge", "control: OGM-GE without its noise (OGM)", &["ogm.gaussian_enhancement=false"]),
    ("ogm-noise-only", "ogm-ge", "control: OGM-GE's noise alone (α = 0: no scaling)", &["ogm.alpha=0.0"]),
    (
        "ogm-sgd",
        "ogm-ge",
        "control: OGM-GE under its paper's SGD (lr 1e-3, momentum 0.9, weight decay 1e-4)",
        &["optim.optimizer=\"sgd\"", "optim.lr=1e-3", "optim.weight_decay=1e-4"],
    ),
];

pub fn reproduce_multifair(root: &Path, seeds: u64, pairings: &str, epochs: Option<usize>, device: &str) -> Result<Vec<VerdictRow>> {
    ensure!(seeds > 0, "at least one seed");
    let mut verdicts = Vec::new();
    let fairvlm = build_fairvlm(root, device)?;
    let pairs = list(pairings);
    ensure!(pairs.iter().all(|p| matches!(*p, "text" | "oct")), "--pairings: text and/or oct");
    let dir = root.join("runs/reproduce-multifair");
    let attr = "gender";
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    // One section per pairing, so that the pairings can be run (and re-run) separately.
    for pairing in &pairs {
        let mut md = format!("# Reproduction: MultiFair and OGM-GE, fundus + {}\n\n", if *pairing == "text" { "note" } else { "OCT" });
        md.push_str(&format!(
            "Command: `cargo xtask reproduce multifair --seeds {seeds} --pairings {pairing}{}`. Test split, epoch selected on validation AUC, values x100, mean ± std over seeds {}. Configs: `configs/benchmark-{{late-fusion,ogm-ge,multifair}}.toml`; fairness on {attr}; unimodal AUC is each modality's auxiliary head (trained on detached features in every method, so it measures what the encoder learned); encoder factors are the modulation's mean gradient factors up to the selected epoch; encoder steps are each encoder's relative parameter change per epoch (`‖θ_end − θ_start‖ / ‖θ_start‖`, x100), mean over the same epochs: what the optimiser did with the factors.\n\n",
            epochs_flag(epochs),
            seed_list(seeds)
        ));
        md.push_str("| method | AUC | ES-AUC | DPD | DEOdds | fundus AUC | second AUC | encoder factors (fundus, second) | encoder steps (fundus, second) |\n|---|---|---|---|---|---|---|---|---|\n");
        let mut folders: std::collections::HashMap<&str, Vec<std::path::PathBuf>> = Default::default();
        let mut threshold = 0.5;
        for &(key, config, label, extra) in VARIANTS {
            let mut cols = Columns::<6>::new();
            let mut factors: Vec<[f64; 2]> = Vec::new();
            let mut steps: Vec<[f64; 2]> = Vec::new();
            for seed in 0..seeds {
                let mut sets = vec![format!("seed={seed}"), format!("multimodal.pairing=\"{pairing}\""), "eval.bootstrap=0".to_string()];
                sets.extend(extra.iter().map(|s| s.to_string()));
                push_epochs(&mut sets, epochs);
                let out = dir.join(format!("{key}-{pairing}-s{seed}"));
                let j = study_run(&fairvlm, root, &out, &format!("configs/benchmark-{config}.toml"), device, &sets)?;
                threshold = j["config"]["eval"]["threshold"].as_f64().unwrap_or(threshold);
                folders.entry(key).or_default().push(out.clone());
                let best = j["best_epoch"].as_u64().unwrap_or(1).max(1) as usize;
                let log = &j["history"][best - 1]["multimodal"];
                let fairness = ["auc", "es_auc", "dpd", "eod"].map(|key| test_metric(&j, attr, key).as_f64());
                cols.push(fairness.into_iter().chain([log["test_unimodal_auc"][0].as_f64(), log["test_unimodal_auc"][1].as_f64()]));
                // Means over the epochs up to the selected one: what the modulation did, and
                // what the optimiser made of it.
                let hist = j["history"].as_array().cloned().unwrap_or_default();
                let mean =
                    |get: &dyn Fn(&serde_json::Value, usize) -> f64| -> [f64; 2] { std::array::from_fn(|k| hist.iter().take(best).map(|h| get(h, k)).sum::<f64>() / best as f64) };
                let second = if *pairing == "text" { "text" } else { "oct" };
                factors.push(mean(&|h, k| h["multimodal"]["encoder_factors"][k].as_f64().unwrap_or(1.0)));
                steps.push(mean(&|h, k| h["mechanism"][format!("encoder_step.{}", ["fundus", second][k])].as_f64().unwrap_or(f64::NAN)));
            }
            // Mean over seeds, as "fundus, second" (`scale` x).
            let pair = |v: &[[f64; 2]], scale: f64| {
                let m = |k: usize| scale * v.iter().map(|f| f[k]).sum::<f64>() / v.len() as f64;
                format!("{:.2}, {:.2}", m(0), m(1))
            };
            md.push_str(&row(std::iter::once(label.to_string()).chain(cols.cells()).chain([pair(&factors, 1.0), pair(&steps, 100.0)])));
        }
        if seeds > 1 {
            let g = attr.to_string();
            let claims = [
                Claim { source: "OGM-GE paper", method: "ogm-ge", baseline: "late-fusion", metric: Metric::Auc },
                Claim { source: "MultiFair paper", method: "multifair", baseline: "ogm-ge", metric: Metric::EsAuc(g.clone()) },
                Claim { source: "MultiFair paper", method: "multifair", baseline: "ogm-ge", metric: Metric::DeOdds(g.clone()) },
                Claim { source: "MultiFair paper", method: "multifair", baseline: "late-fusion", metric: Metric::EsAuc(g.clone()) },
                Claim { source: "control: the concat head", method: "late-fusion-concat", baseline: "late-fusion", metric: Metric::Auc },
                Claim { source: "control: modulation and noise, same head", method: "ogm-ge", baseline: "late-fusion-concat", metric: Metric::Auc },
                Claim { source: "control: modulation alone", method: "ogm-no-noise", baseline: "late-fusion-concat", metric: Metric::Auc },
                Claim { source: "control: noise alone", method: "ogm-noise-only", baseline: "late-fusion-concat", metric: Metric::Auc },
                Claim { source: "control: OGM-GE's optimiser", method: "ogm-sgd", baseline: "ogm-ge", metric: Metric::Auc },
            ];
            let (table, rows) = claims_table(&format!(", fundus + {pairing}"), &claims, &|m| folders.get(m).cloned().unwrap_or_default(), threshold, 1000)?;
            md.push_str(&table);
            verdicts.extend(rows);
        }
        publish(root, &dir.join(format!("reproduction-{pairing}.md")), &format!("multifair-{pairing}"), &md)?;
    }
    Ok(verdicts)
}
