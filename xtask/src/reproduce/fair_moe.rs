//! `cargo xtask reproduce fair-moe`: CLIP, FairCLIP, FO-MoE without FOL and Fair-MoE per
//! attribute, in the layout of the Fair-MoE paper's Table 1, and the FOL-term ablation.

use std::path::Path;

use anyhow::{ensure, Context, Result};

use super::foundation::Regime;
use super::paired::{claims_table, Claim, Metric, VerdictRow};
use super::{epochs_flag, list, publish, push_epochs, row, seed_list, study_run, Columns};
use crate::util::{build_fairvlm, test_metric};

/// The metric columns of both tables, in the paper's order.
const METRICS: [&str; 4] = ["es_auc", "auc", "dpd", "eod"];

#[allow(clippy::too_many_arguments)] // one per flag of the task
pub fn reproduce_fair_moe(
    root: &Path,
    seeds: u64,
    attributes: &str,
    epochs: Option<usize>,
    device: &str,
    grid: bool,
    ablation: Option<u64>,
    finetune: bool,
    v2: bool,
    sweep: bool,
) -> Result<Vec<VerdictRow>> {
    ensure!(seeds > 0, "at least one seed");
    ensure!(grid || ablation.is_some(), "--no-grid with --no-ablation leaves nothing to run");
    let fairvlm = build_fairvlm(root, device)?;
    let regime = if finetune { Regime::finetune(root, &fairvlm, device, v2)? } else { Regime { foundation: None, v2 } };
    let prefix = regime.prefix();
    let attrs = list(attributes);
    let dir = root.join("runs/reproduce-fair-moe");
    let mut verdicts = Vec::new();
    let base = |seed: u64, attr: &str| -> Vec<String> {
        let mut v = vec![format!("seed={seed}"), format!("fairclip.attribute=\"{attr}\""), "eval.bootstrap=0".to_string()];
        v.extend(regime.sets());
        push_epochs(&mut v, epochs);
        v
    };
    // The metrics of one run's report on `attr`, in the tables' column order.
    let metrics = |j: &serde_json::Value, attr: &str| METRICS.map(|key| test_metric(j, attr, key).as_f64());
    std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
    if grid {
        let mut md = String::from("# Reproduction: Fair-MoE on the synthetic benchmark\n\n");
        md.push_str(&format!(
            "Command: `cargo xtask reproduce fair-moe --seeds {seeds} --attributes {attributes}{}{} --no-ablation`. {}. Test split, epoch selected on validation AUC, values x100, mean ± std over seeds {}. Configs: `configs/benchmark-*.toml`; one attribute per run selects the group batches and the feature-MoE experts (CLIP does not depend on it and is trained once per seed; FO-MoE w/o FOL depends only on the number of groups, so its race runs serve language and its gender runs serve ethnicity).\n\n",
            epochs_flag(epochs),
            regime_flags(&regime),
            regime.describe(),
            seed_list(seeds)
        ));
        md.push_str("| attribute | model | ES-AUC | AUC | DPD | DEOdds |\n|---|---|---|---|---|---|\n");
        // Each (attribute, method)'s run folders, one per seed, for the paired differences.
        let mut folders: std::collections::HashMap<(String, String), Vec<std::path::PathBuf>> = Default::default();
        let mut threshold = 0.5;
        for attr in &attrs {
            let mut methods = vec![("clip", "CLIP"), ("fairclip", "FairCLIP"), ("fo-moe", "FO-MoE w/o FOL"), ("fair-moe", "Fair-MoE")];
            // From scratch, a change of the loss by about 1e-9 (λ_moe × 1.01) tells how far a
            // seed's result moves when nothing that matters changes: the yardstick for FOL's
            // own difference, which at the code's λ_moe is about 1e-7 of the loss.
            if !finetune {
                methods.push(("fair-moe-control", "Fair-MoE, λ_moe × 1.01 (control)"));
            }
            for (method, label) in methods {
                let mut cols = Columns::<4>::new();
                for seed in 0..seeds {
                    // CLIP ignores the attribute, and FO-MoE without FOL uses it only for the
                    // feature-MoE size (its groups: race and language 3, gender and ethnicity 2),
                    // so those runs are shared between attributes instead of repeated.
                    let (out, run_attr) = grid_run(&dir, prefix, method, attr, seed);
                    let mut sets = base(seed, run_attr);
                    let config = match method {
                        "fair-moe-control" => {
                            sets.push(CONTROL.into());
                            "configs/benchmark-fair-moe.toml".to_string()
                        }
                        m => format!("configs/benchmark-{m}.toml"),
                    };
                    let j = study_run(&fairvlm, root, &out, &config, device, &sets)?;
                    cols.push(metrics(&j, attr));
                    threshold = j["config"]["eval"]["threshold"].as_f64().unwrap_or(threshold);
                    folders.entry((attr.to_string(), method.to_string())).or_default().push(out);
                }
                md.push_str(&row([attr.to_string(), label.to_string()].into_iter().chain(cols.cells())));
            }
        }
        if seeds > 1 {
            for attr in &attrs {
                let a = attr.to_string();
                let claims = [
                    Claim { source: "FairCLIP paper", method: "fairclip", baseline: "clip", metric: Metric::EsAuc(a.clone()) },
                    Claim { source: "FairCLIP paper", method: "fairclip", baseline: "clip", metric: Metric::Dpd(a.clone()) },
                    Claim { source: "Fair-MoE paper, Table 1", method: "fair-moe", baseline: "clip", metric: Metric::EsAuc(a.clone()) },
                    Claim { source: "Fair-MoE paper, Table 1", method: "fair-moe", baseline: "clip", metric: Metric::Auc },
                    Claim { source: "Fair-MoE paper, Table 1", method: "fair-moe", baseline: "fairclip", metric: Metric::EsAuc(a.clone()) },
                    Claim { source: "Fair-MoE paper, Tables 2-3: FOL", method: "fair-moe", baseline: "fo-moe", metric: Metric::EsAuc(a.clone()) },
                ];
                let control = Claim { source: "control: λ_moe × 1.01", method: "fair-moe-control", baseline: "fair-moe", metric: Metric::EsAuc(a.clone()) };
                let claims: Vec<Claim> = claims.into_iter().chain((!finetune).then_some(control)).collect();
                let (table, rows) = claims_table(&format!(", {attr}"), &claims, &|m| folders.get(&(a.clone(), m.to_string())).cloned().unwrap_or_default(), threshold, 1000)?;
                md.push_str(&table);
                verdicts.extend(rows);
            }
        }
        publish(root, &dir.join(format!("{prefix}reproduction.md")), &format!("{prefix}fair-moe"), &md)?;
    }
    if let Some(ablation_seeds) = ablation {
        let attr = attrs.first().copied().unwrap_or("race");
        // Runs of one seed differ only in the switched-off term, so each row is a paired
        // comparison with the full model of the same seeds.
        let mut md = format!(
            "# FOL-term ablation ({attr})\n\nCommand: `cargo xtask reproduce fair-moe --seeds {seeds} --attributes {attr}{}{} --ablation-seeds {ablation_seeds} --no-grid`. {}. Fair-MoE with one FOL term switched off (`--set fol.<term>=false`); test split, epoch selected on validation AUC, values x100, mean ± std over seeds {}; the last column is the FOL value logged in epoch 1 (mean over seeds).\n\n| variant | ES-AUC | AUC | DPD | DEOdds | FOL, epoch 1 |\n|---|---|---|---|---|---|\n",
            epochs_flag(epochs),
            regime_flags(&regime),
            regime.describe(),
            seed_list(ablation_seeds)
        );
        // The control changes λ_moe by 1%, which moves the loss by about 1e-9: what the same
        // seed gives when nothing that matters changes (training from scratch is chaotic).
        for (name, off) in [
            ("full Fair-MoE", ""),
            ("w/o F_EI", "image_token"),
            ("w/o F_ET", "text_token"),
            ("w/o F_FI", "image_feature"),
            ("w/o F_FT", "text_feature"),
            ("w/o distance", "distance"),
            ("control: full, λ_moe × 1.01", "control"),
        ] {
            let mut cols = Columns::<4>::new();
            let mut fol = Vec::new();
            for seed in 0..ablation_seeds {
                let mut sets = base(seed, attr);
                match off {
                    "" => {}
                    "control" => sets.push(CONTROL.into()),
                    term => sets.push(format!("fol.{term}=false")),
                }
                let out = match off {
                    "" => dir.join(format!("{prefix}fair-moe-{attr}-s{seed}")),
                    "control" => grid_run(&dir, prefix, "fair-moe-control", attr, seed).0,
                    term => dir.join(format!("{prefix}fair-moe-{attr}-no-{term}-s{seed}")),
                };
                let j = study_run(&fairvlm, root, &out, "configs/benchmark-fair-moe.toml", device, &sets)?;
                cols.push(metrics(&j, attr));
                fol.extend(j["history"][0]["fol_loss"].as_f64());
            }
            let fol = if fol.is_empty() { "-".to_string() } else { format!("{:.2e}", fol.iter().sum::<f64>() / fol.len() as f64) };
            md.push_str(&row(std::iter::once(name.to_string()).chain(cols.cells()).chain([fol])));
        }
        publish(root, &dir.join(format!("{prefix}ablation.md")), &format!("{prefix}fair-moe-ablation"), &md)?;
    }
    if sweep {
        let attr = attrs.first().copied().unwrap_or("race");
        let head = format!(
            "# λ sweeps ({attr})\n\nCommand: `cargo xtask reproduce fair-moe --seeds {seeds} --attributes {attr}{}{} --sweep`. {}. Each value of FairCLIP's λ (the script's 1e-6 first, the paper's 1e-7, then up to where the regulariser outweighs InfoNCE; then the paper's form of the similarities, `fairclip.variant = \"aligned\"`, at three doses) and of FOL's λ_moe (the code's form; the code's 1e-4 first) and FOL's paper form trains on seeds {}; the value with the best mean validation ES-AUC ({attr}, at the epoch selected on validation AUC) is selected (marked ✓) and trained on every seed for the paired difference below. Test values x100, mean ± std over the selection seeds; the mechanism is the last epoch's per-group value, mean over those seeds: FairCLIP's Sinkhorn divergence of each group batch's similarities from the batch's (before λ), FOL's routing-variance gap `V_g − V` averaged over the MoEs (x1e3).\n\n",
            epochs_flag(epochs),
            regime_flags(&regime),
            regime.describe(),
            seed_list(SELECT_SEEDS.min(seeds))
        );
        let mut md = head;
        let mut claims_md = String::new();
        for sw in SWEEPS {
            let (table, rows) = run_sweep(&sw, &Study { fairvlm: &fairvlm, root, dir: &dir, prefix, device, seeds }, attr, &|seed| base(seed, attr))?;
            md.push_str(&table);
            claims_md.push_str(&rows.0);
            verdicts.extend(rows.1);
        }
        md.push_str(&claims_md);
        publish(root, &dir.join(format!("{prefix}sweep.md")), &format!("{prefix}fair-moe-sweep"), &md)?;
    }
    Ok(verdicts)
}

/// The run folder of `method` for `attr` and `seed` in the grid, and the attribute it runs
/// with. CLIP ignores the attribute, and FO-MoE without FOL uses it only for the feature-MoE
/// size (its groups: race and language 3, gender and ethnicity 2), so those runs are shared
/// between attributes instead of repeated.
fn grid_run<'a>(dir: &Path, prefix: &str, method: &str, attr: &'a str, seed: u64) -> (std::path::PathBuf, &'a str) {
    let run_attr = match method {
        "clip" => "race",
        "fo-moe" if matches!(attr, "gender" | "ethnicity") => "gender",
        "fo-moe" => "race",
        _ => attr,
    };
    (dir.join(format!("{prefix}{method}-{run_attr}-s{seed}")), run_attr)
}

/// The control run's override: λ_moe × 1.01, a change of the loss by about 1e-9 (the grid's
/// from-scratch control and the ablation's, one run).
const CONTROL: &str = "fol.lambda_moe=1.01e-4";

/// Seeds each swept value trains on before the selection.
const SELECT_SEEDS: u64 = 3;

/// One λ sweep: the method, the setting it varies and its values (the config's own first, whose
/// runs are the grid's), the baseline of its claim and the mechanism's log prefix.
struct Sweep {
    method: &'static str,
    label: &'static str,
    values: &'static [(&'static str, &'static [&'static str])],
    baseline: &'static str,
    mechanism: &'static str,
    /// Scale of the mechanism's values in the table.
    scale: f64,
}

const SWEEPS: [Sweep; 2] = [
    Sweep {
        method: "fairclip",
        label: "FairCLIP λ",
        values: &[
            ("1e-6", &[]),
            ("1e-7", &["fairclip.lambda=1e-7"]),
            ("1e-5", &["fairclip.lambda=1e-5"]),
            ("1e-4", &["fairclip.lambda=1e-4"]),
            ("1e-3", &["fairclip.lambda=1e-3"]),
            // The paper's form (docs/methods.md: cosine similarities of matched pairs, no
            // normalisation on either side): its terms are on another scale, so its own doses.
            ("paper form, 1e-6", &["fairclip.variant=\"aligned\""]),
            ("paper form, 1e-3", &["fairclip.variant=\"aligned\"", "fairclip.lambda=1e-3"]),
            ("paper form, 1", &["fairclip.variant=\"aligned\"", "fairclip.lambda=1.0"]),
        ],
        baseline: "clip",
        mechanism: "sinkhorn.",
        scale: 1.0,
    },
    Sweep {
        method: "fair-moe",
        label: "FOL λ_moe",
        values: &[("1e-4", &[]), ("1e-2", &["fol.lambda_moe=1e-2"]), ("1", &["fol.lambda_moe=1.0"]), ("100", &["fol.lambda_moe=100.0"]), ("paper form", &["fol.form=\"paper\""])],
        baseline: "fo-moe",
        mechanism: "routing_gap.",
        scale: 1e3,
    },
];

/// What every run of a study shares.
struct Study<'a> {
    fairvlm: &'a Path,
    root: &'a Path,
    dir: &'a Path,
    prefix: &'a str,
    device: &'a str,
    seeds: u64,
}

/// Trains one sweep, selects its value on validation, completes the selected value's seeds and
/// returns its table and its claims (markdown, rows).
fn run_sweep(sw: &Sweep, st: &Study<'_>, attr: &str, base: &dyn Fn(u64) -> Vec<String>) -> Result<(String, (String, Vec<VerdictRow>))> {
    let select = SELECT_SEEDS.min(st.seeds);
    let folder = |value: usize, seed: u64| -> std::path::PathBuf {
        if value == 0 {
            grid_run(st.dir, st.prefix, sw.method, attr, seed).0
        } else {
            let slug: String = sw.values[value].0.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '-' }).collect();
            st.dir.join(format!("{}{}-{attr}-sweep-{slug}-s{seed}", st.prefix, sw.method))
        }
    };
    let train = |value: usize, seed: u64| -> Result<serde_json::Value> {
        let mut sets = base(seed);
        sets.extend(sw.values[value].1.iter().map(|s| s.to_string()));
        study_run(st.fairvlm, st.root, &folder(value, seed), &format!("configs/benchmark-{}.toml", sw.method), st.device, &sets)
    };
    let mut md = format!("| {} | validation ES-AUC | test ES-AUC | test AUC | mechanism, last epoch | |\n|---|---|---|---|---|---|\n", sw.label);
    let mut lines = Vec::new();
    let mut best = (0, f64::NEG_INFINITY);
    let mut threshold = 0.5;
    for value in 0..sw.values.len() {
        let mut cols = Columns::<3>::new();
        let mut val = Vec::new();
        let mut mech: std::collections::BTreeMap<String, (f64, usize)> = Default::default();
        for seed in 0..select {
            let j = train(value, seed)?;
            threshold = j["config"]["eval"]["threshold"].as_f64().unwrap_or(threshold);
            let chosen = j["best_epoch"].as_u64().unwrap_or(1).max(1) as usize;
            let v = j["history"][chosen - 1]["validation"]["attributes"][attr]["es_auc"].as_f64();
            val.extend(v);
            cols.push([v, test_metric(&j, attr, "es_auc").as_f64(), test_metric(&j, attr, "auc").as_f64()]);
            if let Some(last) = j["history"].as_array().and_then(|h| h.last()).and_then(|l| l["mechanism"].as_object()) {
                // Per group, averaged over the MoEs (or the one Sinkhorn term) and seeds.
                for (k, v) in last.iter().filter(|(k, _)| k.starts_with(sw.mechanism)) {
                    let group = k.rsplit('.').next().unwrap_or(k).to_string();
                    let e = mech.entry(group).or_default();
                    e.0 += v.as_f64().unwrap_or(f64::NAN);
                    e.1 += 1;
                }
            }
        }
        let mean = val.iter().sum::<f64>() / val.len().max(1) as f64;
        if !val.is_empty() && mean > best.1 {
            best = (value, mean);
        }
        let mech = mech.iter().map(|(g, (sum, n))| format!("{g} {:.3}", sw.scale * sum / *n as f64)).collect::<Vec<_>>().join(", ");
        lines.push(std::iter::once(sw.values[value].0.to_string()).chain(cols.cells()).chain([if mech.is_empty() { "-".into() } else { mech }]).collect::<Vec<_>>());
    }
    for (value, cells) in lines.into_iter().enumerate() {
        md.push_str(&row(cells.into_iter().chain([if value == best.0 { "✓".to_string() } else { String::new() }])));
    }
    // The selected value on every seed, against the baseline's grid runs.
    let mut picked = Vec::new();
    let mut baseline = Vec::new();
    for seed in 0..st.seeds {
        train(best.0, seed)?;
        picked.push(folder(best.0, seed));
        baseline.push(grid_run(st.dir, st.prefix, sw.baseline, attr, seed).0);
    }
    let method = format!("{} ({} = {})", sw.method, sw.label, sw.values[best.0].0);
    let claims = [
        Claim { source: "selected on validation", method: &method, baseline: sw.baseline, metric: Metric::EsAuc(attr.to_string()) },
        Claim { source: "selected on validation", method: &method, baseline: sw.baseline, metric: Metric::Auc },
    ];
    let claims = claims_table(&format!(", {} selected on validation", sw.label), &claims, &|m| if m == sw.baseline { baseline.clone() } else { picked.clone() }, threshold, 1000)?;
    Ok((md + "\n", claims))
}

/// The regime's flags in a table's command line.
fn regime_flags(regime: &Regime) -> String {
    format!("{}{}", if regime.foundation.is_some() { " --finetune" } else { "" }, if regime.v2 { " --benchmark v2" } else { "" })
}
