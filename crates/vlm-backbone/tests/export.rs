//! The export runs in transformers: a CLIP that fairvlm initialised (seeded `ClipConfig::tiny()`)
//! written by `save_clip` (tests/fixtures/export/clip, by the ignored `write_export`), loaded by
//! transformers' `CLIPModel.from_pretrained` in make_export.py, which stored its outputs on
//! fixed inputs. Here: today's export is still that folder, and fairvlm's outputs on the same
//! inputs match transformers' within 1e-5.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorData;
use vlm_backbone::{save_clip, Clip, ClipConfig};

type B = Flex;

mod stored;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/export")
}

/// The model make_export.py was given.
fn model() -> (Clip<B>, ClipConfig) {
    let device = Default::default();
    B::seed(&device, 19);
    let config = ClipConfig::tiny();
    (config.init::<B>(&device), config)
}

#[test]
#[ignore = "writes tests/fixtures/export/clip: run by `cargo xtask fixtures` before make_export.py"]
fn write_export() {
    let (model, config) = model();
    save_clip(&model, &config, &fixture().join("clip")).expect("export");
}

#[test]
fn an_exported_clip_gives_fairvlms_outputs_in_transformers() {
    let (model, config) = model();
    // Today's export is the folder transformers was given.
    let dir = std::env::temp_dir().join(format!("export-fixture-{}", std::process::id()));
    save_clip(&model, &config, &dir).expect("export");
    assert_eq!(stored::read(&dir.join("model.safetensors")), stored::read(&fixture().join("clip/model.safetensors")), "the export changed: rerun `cargo xtask fixtures`");
    let ours: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config")).expect("json");
    let theirs: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("clip/config.json")).expect("config")).expect("json");
    assert_eq!(ours, theirs, "config.json changed: rerun `cargo xtask fixtures`");
    std::fs::remove_dir_all(&dir).ok();

    let outputs = stored::read(&fixture().join("outputs.safetensors"));
    let get = |name: &str| outputs.get(name).unwrap_or_else(|| panic!("no {name} in outputs.safetensors"));
    let device = Default::default();
    let pixels = get("pixel_values");
    let images = Tensor::<B, 4>::from_data(TensorData::new(pixels.f32.clone(), pixels.shape.clone()), &device);
    let ids = get("input_ids");
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.i64.clone(), ids.shape.clone()), &device);
    let mut worst: f32 = 0.0;
    for (name, ours) in [
        ("logits_per_image", model.forward(images.clone(), tokens.clone())),
        ("image_embeds", model.encode_image(images.clone())),
        ("text_embeds", model.encode_text(tokens.clone())),
    ] {
        let theirs = get(name);
        assert_eq!(ours.dims().to_vec(), theirs.shape, "{name}");
        let ours = ours.into_data().to_vec::<f32>().expect("f32");
        let diff = ours.iter().zip(&theirs.f32).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        println!("{name}: max |fairvlm - transformers| = {diff:.2e}");
        assert!(diff <= 1e-5, "{name}: max difference {diff:.2e} > 1e-5");
        worst = worst.max(diff);
    }
    assert!(worst.is_finite());
}
