//! Helpers shared by the trainer's integration tests: a tiny experiment and quiet runs.
#![allow(dead_code)]

use std::path::PathBuf;

use burn::backend::{Autodiff, Flex};
use trainer::{Experiment, RunOptions};

pub type B = Autodiff<Flex>;

pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("fairvlm-trainer-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

pub fn tiny(method: &str, epochs: usize) -> Experiment {
    let text = format!(
        r#"
seed = 3
method = "{method}"
[data]
vocab_size = 300
context_length = 32
[data.synthetic]
image_size = 32
sizes = [96, 40, 40]
text_signal = 1.0
[model]
preset = "tiny"
[optim]
optimizer = "adamw"
lr = 2e-3
betas = [0.9, 0.98]
weight_decay = 0.0
batch_size = 16
epochs = {epochs}
[fairclip]
group_batch_size = 8
lambda = 1e-3
blur = 1e-2
[eval]
bootstrap = 20
batch_size = 64
"#
    );
    Experiment::from_toml_str(&text, "tiny").expect("tiny config")
}

pub fn quiet(out: PathBuf) -> RunOptions {
    RunOptions { out, resume: false, progress: false, stop_after: None, nodes: None }
}

/// burn's random generator is global to the process: tests whose training draws random
/// numbers (dropout, noise) hold this lock so that parallel tests cannot take their draws.
pub fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|p| p.into_inner())
}
