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
    let out = fairvlm(&["synth", "--output", "bench", "--config", "tiny.toml"], &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("bench/Training/data_00001.npz").is_file());
    assert!(dir.join("bench/Test/data_00112.npz").is_file());

    let out = fairvlm(&["train", "--config", "tiny.toml", "--run", "run", "--quiet", "--set", "optim.epochs=1"], &dir);
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
    // The report's other forms, to a file, and the checked choices.
    let out = fairvlm(&["eval", "--run", "run", "--checkpoint", "last", "--split", "validation", "--format", "csv", "-o", "val.csv"], &dir);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read_to_string(dir.join("val.csv")).expect("csv").starts_with("scope,attribute,group,metric,value"));
    let out = fairvlm(&["eval", "--run", "run", "--split", "train"], &dir);
    assert_eq!(out.status.code(), Some(2), "an unknown split is a usage error");
    assert!(String::from_utf8_lossy(&out.stderr).contains("validation"), "the choices are listed");

    // Export: `--checkpoint best|last` or a file; the folder carries a model card.
    for (which, weights) in [("last", "last.safetensors"), ("run/best.safetensors", "best.safetensors")] {
        let out = fairvlm(&["export", "--run", "run", "--checkpoint", which, "--output", "hf"], &dir);
        assert!(out.status.success(), "{which}: {}", String::from_utf8_lossy(&out.stderr));
        let card = std::fs::read_to_string(dir.join("hf/README.md")).expect("model card");
        assert!(card.contains(&format!("(weights: `{weights}`)")), "{which}: {card}");
    }
    // One tower: CLIPVisionModel without the tokenizer, CLIPTextModel with it.
    for (tower, class, tokenizer) in [("vision", "CLIPVisionModel", false), ("text", "CLIPTextModel", true)] {
        let folder = format!("hf-{tower}");
        let out = fairvlm(&["export", "--run", "run", "--tower", tower, "-o", &folder], &dir);
        assert!(out.status.success(), "{tower}: {}", String::from_utf8_lossy(&out.stderr));
        let config = std::fs::read_to_string(dir.join(&folder).join("config.json")).expect("config.json");
        assert!(config.contains(class), "{tower}: {config}");
        assert_eq!(dir.join(&folder).join("tokenizer.json").is_file(), tokenizer, "{tower}");
    }
    let out = fairvlm(&["export", "--run", "run", "--checkpoint", "first", "--output", "hf"], &dir);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("first"), "an unknown checkpoint is named");
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
        (&["train", "--config", "nodata.toml", "--quiet", "--run", "r"], "missing"),
        (&["eval", "--run", "nowhere"], "nowhere"),
    ];
    for (args, needle) in cases {
        let out = fairvlm(args, &dir);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        // The cause is said once, not again by the error chain.
        assert!(err.matches("No such file").count() <= 1, "{args:?}: {err}");
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

/// Two `fairvlm train` processes on the same `--run` at the same moment: exactly one trains,
/// the other stops at once naming the lock's owner, and the folder holds one valid run.
#[test]
fn two_trainings_into_one_folder_exactly_one_proceeds() {
    let dir = scratch("lock");
    let config = dir.join("tiny.toml");
    std::fs::write(&config, TINY.replace("source = \"fairvlmed\"\nroot = \"bench\"\n", "").replace("epochs = 2", "epochs = 3")).expect("config");
    let start = |_: usize| {
        Command::new(env!("CARGO_BIN_EXE_fairvlm"))
            .args(["-q", "train", "--config", "tiny.toml", "--run", "run"])
            .current_dir(&dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn")
    };
    let children: Vec<_> = (0..2).map(start).collect();
    let pids: Vec<u32> = children.iter().map(|c| c.id()).collect();
    let outputs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().expect("wait")).collect();
    let ok: Vec<usize> = (0..2).filter(|&i| outputs[i].status.success()).collect();
    assert_eq!(ok.len(), 1, "exactly one proceeds: {:?}", outputs.iter().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).collect::<Vec<_>>());
    let (winner, loser) = (ok[0], 1 - ok[0]);
    let err = String::from_utf8_lossy(&outputs[loser].stderr);
    assert!(err.contains(&format!("is in use by pid {}", pids[winner])), "{err}");
    assert_eq!(outputs[loser].status.code(), Some(2));
    // The folder holds the winner's run, whole: eval reads it back.
    let eval = fairvlm(&["eval", "--run", "run"], &dir);
    assert!(eval.status.success(), "{}", String::from_utf8_lossy(&eval.stderr));
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("run")).expect("run").flatten().filter(|e| e.file_name().to_string_lossy().ends_with(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A training killed with SIGKILL leaves its lock file behind; the next process takes it over,
/// says whose it was, and cleans what the killed one left.
#[test]
fn a_killed_runs_lock_is_taken_over() {
    let dir = scratch("stale-lock");
    std::fs::write(dir.join("tiny.toml"), TINY.replace("source = \"fairvlmed\"\nroot = \"bench\"\n", "").replace("epochs = 2", "epochs = 200")).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_fairvlm")).args(["-q", "train", "--config", "tiny.toml", "--run", "run"]).current_dir(&dir).spawn().expect("spawn");
    let lock = dir.join("run/run.lock");
    let t0 = std::time::Instant::now();
    while std::fs::read_to_string(&lock).map_or(true, |s| s.is_empty()) && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let pid = child.id();
    child.kill().expect("kill");
    child.wait().expect("wait");
    std::fs::write(dir.join("run/.config.toml.999.tmp"), b"left by a kill").expect("leftover");
    let out = fairvlm(&["train", "--config", "tiny.toml", "--run", "run", "--resume", "--set", "optim.epochs=1"], &dir);
    let err = String::from_utf8_lossy(&out.stderr);
    // The killed run may or may not have finished an epoch; either way the lock is taken over.
    assert!(err.contains(&format!("took over the lock of pid {pid}")), "{err}");
    assert!(!dir.join("run/.config.toml.999.tmp").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn config_print_round_trips_and_check_names_the_key() {
    let dir = scratch("config-print");
    for method in ["clip", "fairclip", "fair-moe", "ogm-ge", "multifair"] {
        let out = fairvlm(&["config", "print", "--method", method], &dir);
        assert!(out.status.success(), "{method}: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(text.contains(&format!("method = \"{method}\"")) && text.contains("# Seed of the data order"), "{text}");
        std::fs::write(dir.join(format!("{method}.toml")), &text).expect("write");
        // What `fairvlm train` reads is the method's defaults.
        let read = trainer::Experiment::from_file(&dir.join(format!("{method}.toml"))).expect("read back");
        assert_eq!(format!("{read:?}"), format!("{:?}", trainer::defaults_for(read.method)), "{method}");
        let out = fairvlm(&["config", "check", &format!("{method}.toml")], &dir);
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("a valid"), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = fairvlm(&["config", "check", "clip.toml", "--set", "optim.lr=-1"], &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("optim.lr"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = fairvlm(&["config", "print", "--markdown"], &dir);
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("# Experiment configs"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn completions_for_each_shell() {
    let dir = scratch("completions");
    for (shell, needle) in [("bash", "_fairvlm()"), ("zsh", "#compdef fairvlm"), ("fish", "complete -c fairvlm")] {
        let out = fairvlm(&["completions", shell], &dir);
        assert!(out.status.success(), "{shell}: {}", String::from_utf8_lossy(&out.stderr));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(needle) && script.contains("export"), "{shell}: {}", &script[..script.len().min(300)]);
    }
    let out = fairvlm(&["completions", "tcsh"], &dir);
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_run_that_fails_while_running_exits_1() {
    // Usage errors exit 2 (`bad_input_exits_2_naming_the_problem`); a failure while running
    // (here a training that diverges, a run folder that cannot be created) exits 1.
    let dir = scratch("runtime-failure");
    let diverging = "method = \"clip\"\n[data]\nvocab_size = 300\ncontext_length = 32\n[data.synthetic]\nimage_size = 32\nsizes = [64, 32, 32]\n[model]\npreset = \"tiny\"\n[optim]\noptimizer = \"adamw\"\nlr = 1e30\nepochs = 1\nbatch_size = 16\n[eval]\nbootstrap = 0\n";
    std::fs::write(dir.join("diverge.toml"), diverging).expect("config");
    let out = fairvlm(&["-q", "train", "--config", "diverge.toml", "--run", "r"], &dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("the loss is") && err.contains("optim.lr"), "{err}");
    let out = fairvlm(&["-q", "train", "--config", "diverge.toml", "--run", "diverge.toml/run"], &dir);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn old_spellings_work_with_a_warning_and_ignored_flags_are_named() {
    let dir = scratch("vocabulary");
    std::fs::write(dir.join("tiny.toml"), TINY).expect("config");
    // `synth --out` is `synth -o` now: it still works, and says so.
    let out = fairvlm(&["synth", "--out", "bench", "--config", "tiny.toml"], &dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(dir.join("bench/Test").is_dir());
    assert!(err.contains("--out is now --output"), "{err}");
    // The new spelling has no warning.
    let out = fairvlm(&["synth", "-o", "bench2", "--config", "tiny.toml"], &dir);
    assert!(out.status.success() && !String::from_utf8_lossy(&out.stderr).contains("WARN"), "{}", String::from_utf8_lossy(&out.stderr));
    // Flags that a source does not read are named, with the sources that read them; --quiet
    // keeps warnings.
    let out = fairvlm(&["-q", "lora", "prepare", "--source", "fundus", "--correlation", "0.9", "--task", "age", "--size", "8", "-o", "parties"], &dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("--correlation is ignored for --source fundus (read by fashion-mnist)"), "{err}");
    assert!(err.contains("--task is ignored for --source fundus"), "{err}");
    assert!(!err.contains("--size"), "--size is read by every source: {err}");
    // Export's flags for the other kind of run.
    let out = fairvlm(&["export", "--run", "parties", "-o", "hf", "--lora", "adapter"], &dir);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--lora is ignored: parties is not a LoRA run"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn every_flag_of_every_subcommand_has_one_name_per_concept() {
    // The run folder is --run, anything else written is -o/--output: no visible --out or
    // --model is left (the old spellings are hidden aliases).
    let dir = scratch("one-vocabulary");
    for path in [
        &["train"][..],
        &["eval"],
        &["export"],
        &["synth"],
        &["gpu-check"],
        &["lora", "prepare"],
        &["lora", "pretrain"],
        &["lora", "developer"],
        &["lora", "run"],
        &["lora", "audit"],
    ] {
        let mut args = path.to_vec();
        args.push("--help");
        let out = fairvlm(&args, &dir);
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{path:?}");
        assert!(!help.contains("--out ") && !help.contains("--model "), "{path:?}: {help}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
