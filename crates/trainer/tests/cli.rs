//! The `fairvlm` binary: synth -> train on the written files -> eval, and its errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fairvlm(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fairvlm")).args(args).current_dir(dir).output().expect("run fairvlm")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fairvlm-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

const TINY: &str = r#"
method = "fairclip"
[data]
source = "fairvlmed"
root = "bench"
vocab_size = 300
context_length = 32
[data.synthetic]
image_size = 32
sizes = [64, 24, 24]
[model]
preset = "tiny"
[optim]
optimizer = "adamw"
lr = 1e-3
batch_size = 16
epochs = 2
[fairclip]
group_batch_size = 8
[eval]
bootstrap = 10
"#;

#[test]
fn synth_then_train_on_the_files_then_eval() {
    let dir = scratch("e2e");
    std::fs::write(dir.join("tiny.toml"), TINY).expect("config");
    let out = fairvlm(&["synth", "--out", "bench", "--config", "tiny.toml"], &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("bench/Training/data_00001.npz").is_file());
    assert!(dir.join("bench/Test/data_00112.npz").is_file());

    let out = fairvlm(&["train", "--config", "tiny.toml", "--out", "run", "--quiet", "--set", "optim.epochs=1"], &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("| race |") && stdout.contains("ES-AUC"), "{stdout}");
    let saved = std::fs::read_to_string(dir.join("run/config.toml")).expect("saved config");
    assert!(saved.contains("epochs = 1"), "the override is what ran: {saved}");

    let out = fairvlm(&["eval", "--run", "run", "--format", "json"], &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("run/report.json")).expect("report")).expect("parse");
    assert_eq!(json["overall"]["auc"], report["test"]["overall"]["auc"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_exits_2_naming_the_problem() {
    let dir = scratch("bad");
    std::fs::write(dir.join("typo.toml"), "[optim]\nlearnig_rate = 0.1\n").expect("config");
    std::fs::write(dir.join("nodata.toml"), "[data]\nsource = \"fairvlmed\"\nroot = \"missing\"\n").expect("config");
    let cases: [(&[&str], &str); 4] = [
        (&["train", "--config", "typo.toml", "--quiet"], "learnig_rate"),
        (&["train", "--config", "absent.toml"], "absent.toml"),
        (&["train", "--config", "nodata.toml", "--quiet", "--out", "r"], "missing"),
        (&["eval", "--run", "nowhere"], "nowhere"),
    ];
    for (args, needle) in cases {
        let out = fairvlm(args, &dir);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    #[cfg(not(feature = "cuda"))]
    {
        std::fs::write(dir.join("ok.toml"), "").expect("config");
        let out = fairvlm(&["train", "--config", "ok.toml", "--device", "cuda"], &dir);
        assert_eq!(out.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&out.stderr).contains("without CUDA"));
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn throughput_times_a_checkpoints_image_tower() {
    let dir = scratch("throughput");
    let vit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vlm-backbone/tests/fixtures/hf/vit");
    let out = fairvlm(&["throughput", "--weights", vit.to_str().expect("utf-8"), "--batch", "4", "--iters", "2", "--device", "cpu"], &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("batch 4:") && stdout.contains("images/s"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    let out = fairvlm(&["throughput", "--weights", "/nonexistent/ckpt", "--device", "cpu"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("/nonexistent/ckpt/config.json"), "{stderr}");
    std::fs::remove_dir_all(&dir).ok();
}
