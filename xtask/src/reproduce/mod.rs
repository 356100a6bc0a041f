//! `cargo xtask reproduce ...`: the reproduction studies on the synthetic benchmarks. Each
//! trains one run per method and seed (resumable: finished runs are kept), tabulates mean ± std
//! over seeds, writes the table next to the runs and splices it into docs/reproduction.md.
//!
//! This module holds what the studies share: the resumable run, the table cells and rows, and
//! the section writer.

mod fair_moe;
mod foundation;
mod lora;
mod multifair;
mod paired;

pub use fair_moe::reproduce_fair_moe;
pub use foundation::reproduce_foundation;
pub use lora::reproduce_lora;
pub use multifair::reproduce_multifair;

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

use crate::util::{read_json, run, with_sets};

/// The document the studies' tables are spliced into.
const DOCS: &str = "docs/reproduction.md";

/// `cargo xtask reproduce all`: every study in the CPU budget's order (docs/reproduction.md,
/// "Budget"), each on the attribute its benchmark biases: Fair-MoE and FairCLIP fine-tuned from
/// the foundation on benchmark v2 with the λ sweeps, the OGM-GE/MultiFair controls (fundus +
/// note), LoRA, then Fair-MoE and FairCLIP from scratch on the first benchmark. After each
/// study the verdict table (section `verdicts`) is rewritten with every claim measured so far.
pub fn reproduce_all(root: &Path, seeds: u64, device: &str) -> Result<()> {
    let mut rows: Vec<(&str, paired::VerdictRow)> = Vec::new();
    let mut stage = |regime: &'static str, found: Vec<paired::VerdictRow>| -> Result<()> {
        rows.extend(found.into_iter().map(|r| (regime, r)));
        publish_verdicts(root, seeds, &rows)
    };
    stage("fine-tuning, benchmark v2", reproduce_fair_moe(root, seeds, "race", None, device, true, None, true, true, true)?)?;
    stage("from scratch, multimodal benchmark", reproduce_multifair(root, seeds, "text", None, device)?)?;
    stage("LoRA on a pretrained ViT, tinted Fashion-MNIST", reproduce_lora(root, seeds, "fashion-mnist", None, device)?)?;
    stage("LoRA on a pretrained ViT, fundus (benchmark v2)", reproduce_lora(root, seeds, "fundus", None, device)?)?;
    stage("from scratch, benchmark v1", reproduce_fair_moe(root, seeds, "race", None, device, true, None, false, false, false)?)
}

/// Writes the verdict table: one row per claim and regime.
fn publish_verdicts(root: &Path, seeds: u64, rows: &[(&str, paired::VerdictRow)]) -> Result<()> {
    let mut md = format!(
        "# Verdicts\n\nCommand: `cargo xtask reproduce all --seeds {seeds}`. One row per claim and regime: the paired difference, method minus baseline on the same seeds (the same subjects), x100, with its 95 % hierarchical bootstrap interval; *reproduced* only where the interval excludes zero in the paper's direction. The studies' own sections below give the tables these rows come from.\n\n| claim (source) | regime | metric | difference [95 % interval] | seeds | verdict |\n|---|---|---|---|---|---|\n"
    );
    for (regime, r) in rows {
        md.push_str(&format!("| {} | {regime} | {} | {} | {} | {} |\n", r.claim, r.metric, r.cell, r.seeds, r.verdict.as_str()));
    }
    let path = root.join("runs/reproduce-verdicts.md");
    publish(root, &path, "verdicts", &md)
}

/// The items of a comma-separated option (`--attributes`, `--pairings`, `--datasets`).
fn list(items: &str) -> Vec<&str> {
    items.split(',').map(str::trim).filter(|a| !a.is_empty()).collect()
}

/// "0, 1, 2" for 3 seeds: the seeds a table averages over.
fn seed_list(seeds: u64) -> String {
    (0..seeds).map(|s| s.to_string()).collect::<Vec<_>>().join(", ")
}

/// The `--epochs` part of a table's command line (empty without the override).
fn epochs_flag(epochs: Option<usize>) -> String {
    epochs.map_or(String::new(), |e| format!(" --epochs {e}"))
}

/// Appends the `--epochs` override to a run's `--set` overrides.
fn push_epochs(sets: &mut Vec<String>, epochs: Option<usize>) {
    if let Some(e) = epochs {
        sets.push(format!("optim.epochs={e}"));
    }
}

/// One run of a study, kept if `out` holds its `result` file and the stamp of the same
/// arguments (`head`, then the `--set` overrides), so a study can be resumed; anything else in
/// `out` is deleted and `cmd` (given the overrides) retrains it. Returns the result file's JSON.
fn resumable_run(out: &Path, result: &str, head: &str, sets: &[String], mut cmd: Command) -> Result<serde_json::Value> {
    let result = out.join(result);
    let stamp_path = out.join("study-args.txt");
    let stamp = format!("{head}\n{}\n", sets.join("\n"));
    let done = result.is_file() && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp);
    if !done {
        let _ = std::fs::remove_dir_all(out);
        run(with_sets(&mut cmd, sets))?;
        std::fs::write(&stamp_path, &stamp).with_context(|| stamp_path.display().to_string())?;
    }
    read_json(&result)
}

/// What a finished run's stamp must also match besides its arguments: bumped when the same
/// arguments come to mean another run (2: the synthetic benchmark follows the run's seed).
const STUDY_FORMAT: u32 = 2;

/// One `fairvlm train` run of a study (see [`resumable_run`]); returns its report.json. The
/// stamp holds the config file's text, so editing a config retrains its runs.
fn study_run(fairvlm: &Path, root: &Path, out: &Path, config: &str, device: &str, sets: &[String]) -> Result<serde_json::Value> {
    let mut cmd = Command::new(fairvlm);
    cmd.current_dir(root).args(["train", "--quiet", "--device", device, "--config"]).arg(root.join(config)).arg("--run").arg(out);
    let text = std::fs::read_to_string(root.join(config)).with_context(|| config.to_string())?;
    resumable_run(out, "report.json", &format!("{config}\nstudy format {STUDY_FORMAT}\n{text}"), sets, cmd)
}

/// The values of a table row's metric columns, collected over seeds.
struct Columns<const N: usize>([Vec<f64>; N]);

impl<const N: usize> Columns<N> {
    fn new() -> Self {
        Self(std::array::from_fn(|_| Vec::new()))
    }

    /// One seed's values, column by column; a missing value is left out of its column.
    fn push(&mut self, values: impl IntoIterator<Item = Option<f64>>) {
        for (c, v) in self.0.iter_mut().zip(values) {
            c.extend(v);
        }
    }

    /// Each column as "mean ± std" (see [`mean_std`]).
    fn cells(&self) -> impl Iterator<Item = String> + '_ {
        self.0.iter().map(|c| mean_std(c))
    }
}

/// Mean and sample standard deviation (n − 1), x100, as "m ± s".
fn mean_std(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    if v.len() == 1 {
        // One seed has no spread to show: "± 0.00" would claim one.
        return format!("{:.2} (1 seed)", 100.0 * m);
    }
    let s = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / (n - 1.0)).sqrt();
    format!("{:.2} ± {:.2}", 100.0 * m, 100.0 * s)
}

/// A markdown table row, "| a | b | c |\n".
fn row(cells: impl IntoIterator<Item = String>) -> String {
    format!("| {} |\n", cells.into_iter().collect::<Vec<_>>().join(" | "))
}

/// Writes a study's table to `path`, prints it and splices it into docs/reproduction.md as
/// section `name`.
fn publish(root: &Path, path: &Path, name: &str, md: &str) -> Result<()> {
    let docs = root.join(DOCS);
    std::fs::write(path, md).with_context(|| path.display().to_string())?;
    println!("{md}");
    splice_section(&docs, name, md)?;
    println!("written to {} and into {}", path.display(), docs.display());
    Ok(())
}

/// Replaces the text between `<!-- NAME:begin -->` and `<!-- NAME:end -->` in a document (the
/// generated tables), keeping the hand-written discussion around it; appends the section if the
/// markers are missing.
fn splice_section(doc: &Path, name: &str, body: &str) -> Result<()> {
    let (begin, end) = (format!("<!-- {name}:begin -->"), format!("<!-- {name}:end -->"));
    let old = std::fs::read_to_string(doc).unwrap_or_default();
    // The generated title sits under the method's own heading in the document.
    let body = body.strip_prefix("# ").map_or(body.to_string(), |b| format!("### {b}")).replace("\n## ", "\n#### ");
    let section = format!("{begin}\n{body}{end}");
    let new = match (old.find(&begin), old.find(&end)) {
        (Some(b), Some(e)) if b < e => format!("{}{section}{}", &old[..b], &old[e + end.len()..]),
        _ => format!("{old}{}{section}\n", if old.is_empty() { "" } else { "\n" }),
    };
    std::fs::write(doc, new).with_context(|| doc.display().to_string())
}
