//! `fair-metrics`: fairness report of a CSV file of predictions.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use fair_metrics::{read_csv, Attribute, Bootstrap, CsvSpec, Format, Report, ReportOptions, UndefinedAuc};

#[derive(Parser)]
#[command(name = "fair-metrics", version, about = "Fairness metrics of classifier predictions, with fairlearn/scikit-learn semantics")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Only errors: no warnings about small or single-class groups.
    #[arg(long, short, global = true)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Report metrics overall and per group of each sensitive attribute.
    Report(Box<ReportArgs>),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[derive(clap::Args)]
struct ReportArgs {
    /// CSV file with a header line, or `-` for standard input.
    file: PathBuf,
    /// Label column (0/1, or see --pos-label).
    #[arg(long)]
    label: String,
    /// Score column (probability or any score; higher = more positive).
    #[arg(long)]
    score: String,
    /// Hard-prediction column; default: score >= threshold.
    #[arg(long)]
    pred: Option<String>,
    /// Decision threshold on the score.
    #[arg(long, default_value_t = 0.5, conflicts_with = "pred")]
    threshold: f64,
    /// Sensitive attribute column (repeat for several).
    #[arg(long = "attr", required = true)]
    attrs: Vec<String>,
    /// Also report the intersection of all the attributes as one more attribute.
    #[arg(long, requires = "attrs")]
    intersect: bool,
    /// Sample-weight column.
    #[arg(long)]
    weight: Option<String>,
    /// Label value of the positive class (labels then take at most two values).
    #[arg(long)]
    pos_label: Option<String>,
    /// Bootstrap replicates for confidence intervals (at most 1,000,000).
    #[arg(long)]
    bootstrap: Option<usize>,
    /// Seed of the bootstrap.
    #[arg(long, default_value_t = 0, requires = "bootstrap")]
    seed: u64,
    /// Quantiles of the bootstrap interval, as LOW,HIGH (or LOW HIGH), 0 < LOW < HIGH < 1.
    #[arg(long, num_args = 2, value_names = ["LOW", "HIGH"], allow_negative_numbers = true, default_values_t = [0.025, 0.975], requires = "bootstrap")]
    quantiles: Vec<f64>,
    /// Alpha of ES-AUC and ES-Accuracy.
    #[arg(long, default_value_t = 1.0)]
    alpha: f64,
    /// Single-class groups in ES-AUC: skip them, or make ES-AUC null (FairCLIP's NaN).
    #[arg(long, value_enum, default_value_t = UndefinedArg::Skip)]
    undefined_auc: UndefinedArg,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FormatArg::Json)]
    format: FormatArg,
    /// Output file (written atomically); default: standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    Json,
    Md,
    Csv,
}

#[derive(Clone, Copy, ValueEnum)]
enum UndefinedArg {
    Skip,
    Null,
}

fn main() -> ExitCode {
    let args = match split_quantiles(std::env::args_os()) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("fair-metrics: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Completions { shell } => {
            // Into a buffer first: clap_complete panics when its writer fails (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut <Cli as clap::CommandFactory>::command(), "fair-metrics", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                    eprintln!("fair-metrics: {e}");
                    ExitCode::from(1)
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Command::Report(args) => {
            // A bad -o, and every error of the library, is about the input: status 2.
            let text = match output_problem(&args) {
                Some(problem) => Err(problem),
                None => report(&args, cli.quiet).map_err(|e| e.to_string()),
            };
            match text {
                Ok(text) => match write_output(args.output.as_deref(), &text) {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("fair-metrics: {e:#}");
                        ExitCode::from(1)
                    }
                },
                Err(e) => {
                    eprintln!("fair-metrics: {e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Rewrites `--quantiles LOW,HIGH` and `--quantiles=LOW,HIGH` as `--quantiles LOW HIGH`, the
/// two arguments clap reads: both forms then work, and an argument after them (the file) is
/// never taken for a quantile, as it would be if clap accepted one or two arguments.
fn split_quantiles(args: impl IntoIterator<Item = OsString>) -> Result<Vec<OsString>, String> {
    let mut args = args.into_iter();
    let mut out = Vec::new();
    while let Some(a) = args.next() {
        if a == "--" {
            out.push(a);
            out.extend(args);
            break;
        }
        let value = if a == "--quantiles" {
            out.push(a);
            match args.next() {
                Some(v) => v,
                None => break,
            }
        } else if let Some(v) = a.to_str().and_then(|s| s.strip_prefix("--quantiles=")) {
            out.push("--quantiles".into());
            v.into()
        } else {
            out.push(a);
            continue;
        };
        match value.to_str() {
            Some(s) if s.contains(',') => match s.split(',').collect::<Vec<_>>()[..] {
                [lo, hi] => out.extend([lo.into(), hi.into()]),
                _ => return Err(format!("--quantiles {s}: expected two values, LOW,HIGH (such as 0.025,0.975)")),
            },
            _ => out.push(value),
        }
    }
    Ok(out)
}

fn report(a: &ReportArgs, quiet: bool) -> Result<String, fair_metrics::Error> {
    let mut spec = CsvSpec::new(&a.label, &a.score);
    spec.pred = a.pred.clone();
    spec.weight = a.weight.clone();
    spec.pos_label = a.pos_label.clone();
    spec.attrs = a.attrs.clone();
    let table = read_csv(&a.file, &spec)?;
    let attrs = if a.intersect { Attribute::with_intersection(table.attributes)? } else { table.attributes };
    let mut opts = ReportOptions::default().with_threshold(a.threshold).with_alpha(a.alpha).with_undefined_auc(match a.undefined_auc {
        UndefinedArg::Skip => UndefinedAuc::Skip,
        UndefinedArg::Null => UndefinedAuc::Null,
    });
    if let Some(n) = a.bootstrap {
        let [lo, hi] = [a.quantiles[0], a.quantiles[1]];
        opts = opts.with_bootstrap(Bootstrap::new(n, a.seed).with_quantiles(lo, hi));
    }
    let report = Report::compute(&table.predictions, &attrs, &opts)?;
    if !quiet {
        for warning in group_warnings(&report) {
            eprintln!("fair-metrics: warning: {warning}");
        }
    }
    Ok(report.render(match a.format {
        FormatArg::Json => Format::Json,
        FormatArg::Md => Format::Markdown,
        FormatArg::Csv => Format::Csv,
    }))
}

/// Groups whose numbers need care: no AUC (one class only), or fewer than
/// [`SMALL_GROUP`] rows (group AUCs then move by several points from sampling alone).
fn group_warnings(report: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for (attr, m) in &report.attributes {
        for (group, g) in &m.groups {
            let n = g.n;
            if !g.auc.is_some_and(f64::is_finite) {
                out.push(format!("{attr} = {group}: one class only among its {n} rows, no AUC (left out of ES-AUC, or null with --undefined-auc null)"));
            } else if n < SMALL_GROUP {
                out.push(format!("{attr} = {group}: {n} rows; its AUC and rates have wide sampling error (--bootstrap gives intervals)"));
            }
        }
    }
    out
}

/// Below this many rows a group's AUC is flagged as unstable.
const SMALL_GROUP: u64 = 30;

/// Why `-o` cannot be written, if it cannot: it is the input file (the report would replace the
/// data), or something other than a regular file (a symlink, FIFO or device node that the
/// rename would replace with a file).
fn output_problem(a: &ReportArgs) -> Option<String> {
    let out = a.output.as_deref()?;
    let meta = std::fs::symlink_metadata(out).ok()?;
    let o = out.display();
    if meta.file_type().is_symlink() {
        return Some(format!("-o {o}: is a symbolic link; write the report to a regular file's path"));
    }
    if !meta.is_file() {
        return Some(format!("-o {o}: is not a regular file (a directory, FIFO or device); write the report to a regular file's path"));
    }
    let same = match (std::fs::canonicalize(out), std::fs::canonicalize(&a.file)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    };
    same.then(|| format!("-o {o}: is the input file; the report would replace the data"))
}

/// Writes to a temporary file beside the target and renames it, so an existing report is
/// never left half-written.
fn write_output(path: Option<&Path>, text: &str) -> anyhow::Result<()> {
    let Some(path) = path else {
        let mut out = std::io::stdout().lock();
        return out.write_all(text.as_bytes()).and_then(|()| out.flush()).context("writing to standard output");
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_flag_and_subcommand_has_help() {
        use clap::CommandFactory;
        fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
            for arg in cmd.get_arguments().filter(|a| !matches!(a.get_id().as_str(), "help" | "version")) {
                if arg.get_help().is_none() {
                    out.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    out.push(format!("{path} {}", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), out);
            }
        }
        let mut missing = Vec::new();
        walk(&super::Cli::command(), "fair-metrics", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
        super::Cli::command().debug_assert();
    }

    use super::*;

    fn split(args: &[&str]) -> Result<Vec<String>, String> {
        split_quantiles(args.iter().map(OsString::from)).map(|v| v.into_iter().map(|a| a.into_string().unwrap_or_default()).collect())
    }

    #[test]
    fn quantiles_comma_form_becomes_two_arguments() {
        assert_eq!(split(&["fm", "--quantiles", "0.1,0.9", "f.csv"]), Ok(vec!["fm".into(), "--quantiles".into(), "0.1".into(), "0.9".into(), "f.csv".into()]));
        assert_eq!(split(&["fm", "--quantiles=0.1,0.9"]), Ok(vec!["fm".into(), "--quantiles".into(), "0.1".into(), "0.9".into()]));
        assert_eq!(split(&["fm", "--quantiles", "0.1", "0.9"]), Ok(vec!["fm".into(), "--quantiles".into(), "0.1".into(), "0.9".into()]));
        assert_eq!(split(&["fm", "--", "--quantiles", "a,b"]), Ok(vec!["fm".into(), "--".into(), "--quantiles".into(), "a,b".into()]));
        assert_eq!(split(&["fm", "x,y.csv", "--quantiles"]), Ok(vec!["fm".into(), "x,y.csv".into(), "--quantiles".into()]));
        assert!(split(&["fm", "--quantiles", "0.1,0.5,0.9"]).is_err_and(|e| e.contains("expected two values")));
    }
}
