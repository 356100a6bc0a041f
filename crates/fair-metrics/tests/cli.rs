//! The `fair-metrics` command line: outputs, exit codes and messages on bad input.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fair-metrics"))
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/parity").join(name)
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("fair-metrics-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    d
}

fn run(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = bin().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn fair-metrics");
    if let Some(s) = stdin {
        child.stdin.take().expect("stdin").write_all(s.as_bytes()).expect("write stdin");
    } else {
        drop(child.stdin.take());
    }
    child.wait_with_output().expect("wait")
}

fn report_of(file: &Path, extra: &[&str]) -> serde_json::Value {
    let f = file.to_str().expect("utf-8 path");
    let mut args = vec!["report", f, "--label", "glaucoma", "--score", "prob", "--attr", "race", "--attr", "gender"];
    args.extend_from_slice(extra);
    let out = run(&args, None);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[test]
fn json_has_the_documented_keys() {
    let v = report_of(&fixture("fairvlmed_like.csv"), &["--intersect"]);
    for k in ["n", "threshold", "overall", "attributes"] {
        assert!(v.get(k).is_some(), "missing top-level key {k}");
    }
    for k in ["n", "auc", "accuracy", "selection_rate", "tpr", "fpr", "precision"] {
        assert!(v["overall"].get(k).is_some(), "missing overall.{k}");
    }
    let race = &v["attributes"]["race"];
    for k in ["groups", "es_auc", "es_accuracy", "dpd", "dpr", "eod", "eor", "eopd", "undefined"] {
        assert!(race.get(k).is_some(), "missing attributes.race.{k}");
    }
    for k in ["n", "auc", "accuracy", "selection_rate", "tpr", "fpr"] {
        assert!(race["groups"]["1"].get(k).is_some(), "missing group key {k}");
    }
    assert!(v["attributes"]["race & gender"]["groups"]["1 & 0"].is_object());
    assert_eq!(v["n"], 2000);
    assert_eq!(v["threshold"], 0.5);
}

#[test]
fn stdin_and_output_file() {
    let data = std::fs::read_to_string(fixture("two_groups_hard_preds.csv")).expect("fixture");
    let dir = temp_dir("out");
    let out_path = dir.join("report.md");
    std::fs::write(&out_path, "previous").expect("write");
    let out = run(&["report", "-", "--label", "y", "--score", "p", "--pred", "yhat", "--attr", "sex", "--format", "md", "-o", out_path.to_str().expect("path")], Some(&data));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let md = std::fs::read_to_string(&out_path).expect("report written");
    assert!(md.contains("## sex") && md.contains("| Female |"), "{md}");
    // A failing run leaves the earlier report untouched.
    let bad = run(&["report", "-", "--label", "nope", "--score", "p", "--attr", "sex", "-o", out_path.to_str().expect("path")], Some(&data));
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&out_path).expect("still there"), md);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn csv_format_and_bootstrap() {
    let f = fixture("ties_three_groups.csv");
    let out = run(&["report", f.to_str().expect("path"), "--label", "label", "--score", "score", "--attr", "race", "--bootstrap", "50", "--seed", "3", "--format", "csv"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    let auc_line = text.lines().find(|l| l.starts_with("overall,,,auc,")).expect("overall auc row");
    let cells: Vec<f64> = auc_line.split(',').skip(4).map(|c| c.parse().expect("number")).collect();
    assert!(cells[1] <= cells[0] && cells[0] <= cells[2], "{auc_line}");

    let json = |seed: &str| {
        let o = run(&["report", f.to_str().expect("path"), "--label", "label", "--score", "score", "--attr", "race", "--bootstrap", "30", "--seed", seed], None);
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(json("9"), json("9"), "same seed, same intervals");
    assert_ne!(json("9"), json("10"));
}

fn bad_input(csv: &str, extra: &[&str]) -> (Option<i32>, String) {
    let dir = temp_dir("bad");
    let path = dir.join("preds.csv");
    std::fs::write(&path, csv).expect("write");
    let mut args = vec!["report", path.to_str().expect("path"), "--label", "y", "--score", "s", "--attr", "g"];
    args.extend_from_slice(extra);
    let out = run(&args, None);
    std::fs::remove_dir_all(dir).ok();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!err.contains("panicked"), "{err}");
    (out.status.code(), err)
}

#[test]
fn bad_input_exits_2_with_file_line_and_column() {
    let cases: [(&str, &[&str], &str); 15] = [
        ("y,s,g\n1,0.5,a\n", &["--weight", "w"], "preds.csv:1: no column 'w'"),
        ("y,s,g\n1,0.5,a\n0,zero,b\n", &[], "preds.csv:3: column 's': 'zero' is not a number"),
        ("y,s,g\n1,nan,a\n", &[], "preds.csv:2: column 's': 'nan' is NaN"),
        ("y,s,g\n1,-inf,a\n", &[], "preds.csv:2: column 's': '-inf' is -inf"),
        ("y,s,g\n1,0.5,a\n3,0.5,a\n", &[], "preds.csv:3: column 'y': '3' is not 0 or 1"),
        ("", &[], "preds.csv:1: empty file"),
        ("y,s,g\n1,0.5,a\n1,0.5\n", &[], "preds.csv:3: row has 2 fields, the header has 3"),
        ("y,s,g\n1,0.5,a\n1,0.5,\n", &[], "preds.csv:3: column 'g': empty value"),
        ("y,s,g\nP,0.5,a\nN,0.5,a\nX,0.5,b\n", &["--pos-label", "P"], "preds.csv:4: column 'y': third distinct label value 'X'"),
        ("y,s,g\n1,0.5,a\n0,1e999,a\n", &[], "preds.csv:3: column 's': '1e999' is inf, expected a finite number"),
        // Issue 17: a --pos-label that never occurs, a requested column named twice, huge bootstraps.
        (
            "y,s,g\nyes,0.5,a\nno,0.5,b\n",
            &["--pos-label", "Yes"],
            "preds.csv:1: column 'y': positive label 'Yes' (--pos-label) occurs in no row; the column's values are 'yes', 'no'",
        ),
        ("y,s,g,g\n1,0.5,a,b\n", &[], "preds.csv:1: column 'g': the header names this column more than once (fields 3 and 4)"),
        ("y,s,g\n1,0.5,a\n", &["--bootstrap", "100000000000"], "bootstrap of 100000000000 replicates; at most 1000000 are supported"),
        ("y,s,g\n1,0.5,a\n", &["--bootstrap", "18446744073709551615"], "at most 1000000 are supported"),
        ("y,s,g\n1,0.5,a\n", &["--bootstrap", "10", "--quantiles", "0.9,0.1"], "quantiles [0.9, 0.1] must satisfy 0 < low < high < 1"),
    ];
    for (csv, extra, expect) in cases {
        let (code, err) = bad_input(csv, extra);
        assert_eq!(code, Some(2), "{csv:?}: {err}");
        assert!(err.contains(expect), "{csv:?}: expected '{expect}' in '{err}'");
        assert_eq!(err.trim().lines().count(), 1, "one message: {err}");
    }
}

#[test]
fn missing_file_and_usage_errors() {
    let out = run(&["report", "/no/such/file.csv", "--label", "y", "--score", "s", "--attr", "g"], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/no/such/file.csv"));
    let out = run(&["report", "x.csv", "--label", "y", "--score", "s"], None);
    assert_eq!(out.status.code(), Some(2), "--attr is required");
    let out = run(&["report", "x.csv", "--label", "y", "--score", "s", "--attr", "g", "--seed", "3"], None);
    assert_eq!(out.status.code(), Some(2), "--seed needs --bootstrap");
}

/// Issue 16, defect 4: `-o` never replaces the input, a symlink, a FIFO or a device node.
#[test]
fn output_refuses_the_input_and_special_files() {
    let dir = temp_dir("output-guard");
    let input = dir.join("preds.csv");
    std::fs::copy(fixture("everybody_selected.csv"), &input).expect("copy");
    let before = std::fs::read(&input).expect("read");
    let args = |out: &Path| -> Vec<String> {
        vec![
            "report".into(),
            input.display().to_string(),
            "--label".into(),
            "y".into(),
            "--score".into(),
            "p".into(),
            "--attr".into(),
            "g".into(),
            "-o".into(),
            out.display().to_string(),
        ]
    };
    let o = run(&args(&input).iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("is the input file"), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&input).expect("read"), before, "the data is untouched");
    let link = dir.join("link.json");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(dir.join("target.json"), &link).expect("symlink");
    let o = run(&args(&link).iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is a symbolic link"), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(std::fs::symlink_metadata(&link).expect("link").file_type().is_symlink());
    let o = run(&args(Path::new("/dev/null")).iter().map(String::as_str).collect::<Vec<_>>(), None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a regular file"), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 17, defect 2: values containing " & " merged distinct intersection groups.
#[test]
fn intersection_groups_with_the_separator_in_a_value_stay_apart() {
    let dir = temp_dir("intersect-sep");
    let path = dir.join("preds.csv");
    std::fs::write(&path, "y,s,race,sex\n1,0.9,A & B,F\n0,0.2,A,B & F\n1,0.4,A,B & F\n0,0.6,A,M\n").expect("write");
    let out = run(&["report", path.to_str().expect("path"), "--label", "y", "--score", "s", "--attr", "race", "--attr", "sex", "--intersect"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    let groups = v["attributes"]["race & sex"]["groups"].as_object().expect("groups");
    let names: Vec<&str> = groups.keys().map(String::as_str).collect();
    assert_eq!(names, ["A & \"B & F\"", "A & M", "\"A & B\" & F"]);
    assert_eq!(groups.values().map(|g| g["n"].as_u64().expect("n")).collect::<Vec<_>>(), [2, 1, 1]);
    std::fs::remove_dir_all(dir).ok();
}

/// Issue 17, defect 6: `--quantiles 0.1,0.9`, the documented form, was rejected.
#[test]
fn quantiles_comma_and_space_forms() {
    let f = fixture("ties_three_groups.csv");
    let f = f.to_str().expect("path");
    let quantiles = |args: &[&str]| {
        let o = run(args, None);
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON output");
        (v["bootstrap"]["quantiles"].clone(), v["overall"]["ci"]["auc"].clone())
    };
    let base = ["report", f, "--label", "label", "--score", "score", "--attr", "race", "--bootstrap", "20"];
    let comma = quantiles(&[&base[..], &["--quantiles", "0.1,0.9"]].concat());
    assert_eq!(comma.0, serde_json::json!([0.1, 0.9]));
    assert_eq!(quantiles(&[&base[..], &["--quantiles=0.1,0.9"]].concat()), comma);
    assert_eq!(quantiles(&[&base[..], &["--quantiles", "0.1", "0.9"]].concat()), comma);
    // The file after the comma form is the file, not a quantile.
    assert_eq!(quantiles(&["report", "--bootstrap", "20", "--quantiles", "0.1,0.9", f, "--label", "label", "--score", "score", "--attr", "race"]), comma);
    assert_eq!(quantiles(&base).0, serde_json::json!([0.025, 0.975]));
    for bad in [
        &["--quantiles", "0.9,0.1"][..],
        &["--quantiles", "0,0.5"],
        &["--quantiles", "0.5,1"],
        &["--quantiles", "-0.1,0.5"],
        &["--quantiles", "0.1,0.5,0.9"],
        &["--quantiles", "0.1,x"],
        &["--quantiles", "0.5,0.5"],
    ] {
        let o = run(&[&base[..], bad].concat(), None);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains("quantiles") && !err.contains("panicked"), "{bad:?}: {err}");
    }
}

/// Issue 17, defect 5: `--bootstrap 1e11` is a usage error, never an allocation abort.
#[test]
fn bootstrap_in_exponent_form_is_a_usage_error() {
    let f = fixture("ties_three_groups.csv");
    let o = run(&["report", f.to_str().expect("path"), "--label", "label", "--score", "score", "--attr", "race", "--bootstrap", "1e11"], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("--bootstrap") && !err.contains("memory allocation"), "{err}");
}

#[test]
fn completions_for_each_shell() {
    for (shell, needle) in [("bash", "_fair__metrics()"), ("zsh", "#compdef fair-metrics"), ("fish", "complete -c fair-metrics")] {
        let out = run(&["completions", shell], None);
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(needle) && script.contains("bootstrap"), "{shell}: {}", &script[..script.len().min(300)]);
    }
    assert_eq!(run(&["completions", "tcsh"], None).status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn small_and_single_class_groups_are_warned_of_unless_quiet() {
    let csv = "label,score,g\n1,0.9,a\n0,0.2,a\n0,0.1,a\n1,0.8,b\n1,0.3,b\n";
    let out = run(&["report", "-", "--label", "label", "--score", "score", "--attr", "g"], Some(csv));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("warning: g = a: 3 rows"), "{err}");
    assert!(err.contains("warning: g = b: one class only among its 2 rows, no AUC"), "{err}");
    let quiet = run(&["report", "-q", "-", "--label", "label", "--score", "score", "--attr", "g"], Some(csv));
    assert!(quiet.status.success() && quiet.stderr.is_empty(), "{}", String::from_utf8_lossy(&quiet.stderr));
    assert_eq!(quiet.stdout, out.stdout, "--quiet changes only the warnings");
}
