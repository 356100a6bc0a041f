//! Warnings about how a command line was written: old spellings of renamed flags (hidden
//! aliases, kept for one release) and flags that the command ignores in the combination given.

use std::ffi::OsString;

use clap::parser::ValueSource;
use clap::ArgMatches;

/// Renamed flags: the subcommand, the old spelling, the new one.
const RENAMED: &[(&[&str], &str, &str)] = &[
    (&["train"], "--out", "--run"),
    (&["gpu-check"], "--out", "--output"),
    (&["export"], "--out", "--output"),
    (&["synth"], "--out", "--output"),
    (&["lora", "prepare"], "--out", "--output"),
    (&["lora", "pretrain"], "--out", "--output"),
    (&["lora", "developer"], "--out", "--run"),
    (&["lora", "run"], "--out", "--run"),
    (&["lora", "audit"], "--model", "--run"),
];

/// `lora prepare`'s flags that only some sources read, with the sources that read them.
const PREPARE_SOURCES: &[(&str, &[&str])] = &[
    ("root", &["fashion-mnist", "utkface", "celeba"]),
    ("config", &["folder"]),
    ("task", &["utkface", "celeba"]),
    ("sensitive", &["fundus", "utkface", "celeba", "folder"]),
    ("correlation", &["fashion-mnist"]),
    ("audit_correlation", &["fashion-mnist"]),
    ("benchmark", &["fundus"]),
    ("max_pretrain", &["fashion-mnist"]),
];

/// The subcommand path of `matches` (`["lora", "run"]`) and the innermost matches.
fn leaf(matches: &ArgMatches) -> (Vec<String>, &ArgMatches) {
    let (mut path, mut m) = (Vec::new(), matches);
    while let Some((name, sub)) = m.subcommand() {
        path.push(name.to_string());
        m = sub;
    }
    (path, m)
}

/// Whether the flag `flag` of the subcommand that runs was written on the command line (not
/// taken from its default).
pub fn given(matches: &ArgMatches, flag: &str) -> bool {
    leaf(matches).1.value_source(flag) == Some(ValueSource::CommandLine)
}

/// The warnings for a parsed command line (`args`: the arguments after the program name).
pub fn warnings(matches: &ArgMatches, args: impl Iterator<Item = OsString>) -> Vec<String> {
    let (path, leaf_matches) = leaf(matches);
    let args: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
    let mut out = Vec::new();
    for (command, old, new) in RENAMED {
        if path.iter().map(String::as_str).eq(command.iter().copied()) && args.iter().any(|a| a == old || a.starts_with(&format!("{old}="))) {
            out.push(format!("fairvlm {}: {old} is now {new}; the old name works until the next release", command.join(" ")));
        }
    }
    let on_line = |flag: &str| given(matches, flag);
    if matches.get_flag("quiet") && matches.get_count("verbose") > 0 {
        out.push("--verbose is ignored with --quiet".into());
    }
    match path.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["train"] => {
            let nodes = leaf_matches.get_one::<u16>("nodes").copied().unwrap_or(1);
            if nodes == 1 && on_line("node_rank") {
                out.push("fairvlm train: --node-rank is ignored without --nodes > 1".into());
            }
        }
        ["lora", "prepare"] => {
            let source = leaf_matches.get_raw("source").and_then(|mut v| v.next()).map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            for (flag, sources) in PREPARE_SOURCES {
                if on_line(flag) && !sources.contains(&source.as_str()) {
                    out.push(format!("fairvlm lora prepare: --{} is ignored for --source {source} (read by {})", flag.replace('_', "-"), sources.join(", ")));
                }
            }
        }
        _ => {}
    }
    out
}
