//! The export runs in transformers: a CLIP that fairvlm initialised (seeded `ClipConfig::tiny()`)
//! written by `save_clip` (tests/fixtures/export/clip, by the ignored `write_export`), loaded by
//! transformers' `CLIPModel.from_pretrained` in make_export.py, which stored its outputs on
//! fixed inputs. Here: today's export is still that folder, and fairvlm's outputs on the same
//! inputs match transformers' within 1e-5.
//!
//! The same for a LoRA-adapted image classifier (`save_vit_classifier`): merged into a
//! `CLIPVisionModel` (tests/fixtures/export/lora-merged) and as a base with a peft adapter
//! (tests/fixtures/export/lora-peft), loaded by transformers and peft, the head applied to
//! `pooler_output`. And for one tower in another family's layout: a ViT in `ViTModel`'s
//! layout and a BERT text tower (tests/fixtures/export/vit and bert), loaded as `ViTModel` and
//! `BertModel`.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorData;
use lora_fair::{AdapterConfig, LoraAdapter, LoraConfig};
use vlm_backbone::{
    save_clip, save_text_tower, save_vision_tower, save_vit_classifier, Clip, ClipConfig, Pooling, TextTransformer, TextTransformerConfig, VisionTransformer,
    VisionTransformerConfig, VitClassifier, VitClassifierConfig,
};

type B = Flex;

mod stored;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/export")
}

/// The backend's seeded generator is global and burn draws a parameter when it is first used:
/// each model is drawn whole (every parameter touched) under this lock, or another test's
/// draws, or a different first use, would change its values.
static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Materialize;

impl burn::module::ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

fn materialized<M: burn::module::Module<B>>(m: M) -> M {
    m.visit(&mut Materialize);
    m
}

/// The model make_export.py was given.
fn model() -> (Clip<B>, ClipConfig) {
    let _draws = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    B::seed(&device, 19);
    let config = ClipConfig::tiny();
    (materialized(config.init::<B>(&device)), config)
}

#[test]
#[ignore = "writes tests/fixtures/export/{clip, lora-merged, lora-peft, vit, bert}: run by `cargo xtask fixtures` before make_export.py"]
fn write_export() {
    let (model, config) = model();
    save_clip(&model, &config, &fixture().join("clip")).expect("export");
    write_lora(&fixture());
    write_towers(&fixture());
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

/// The LoRA classifier make_export.py was given: a seeded ViT (CLIP layout) with a 3-class head
/// and rank-4 adapters on q and v whose B is not zero (a fresh adapter would change nothing).
fn lora_model() -> (VitClassifier<B>, VitClassifierConfig, LoraConfig) {
    let _draws = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    B::seed(&device, 23);
    let config = VitClassifierConfig::new(VisionTransformerConfig::new(32, 8, 32, 2, 2), 3);
    let model = materialized(config.init::<B>(&device));
    let lora = LoraConfig::new().with_r(4).with_alpha(8.0);
    let normal = |shape: [usize; 2]| Tensor::<B, 2>::random(shape, burn::tensor::Distribution::Normal(0.0, 0.1), &device);
    let adapters = (0..2)
        .flat_map(|i| ["q_proj", "v_proj"].map(|p| format!("encoder.layers.{i}.self_attn.{p}")))
        .map(|path| (path, LoraAdapter::from_weights(normal([4, 32]), normal([32, 4]), lora.scaling()).expect("adapter")))
        .collect();
    let vit = model.vit.with_lora_adapters(adapters).expect("attach");
    (VitClassifier { vit, ..model }, config, lora)
}

fn write_lora(dir: &Path) {
    let (model, config, lora) = lora_model();
    save_vit_classifier(&model, &config, &dir.join("lora-merged"), None).expect("merged");
    let adapter_config = AdapterConfig::new(&lora, &["q_proj", "v_proj"], Some("base"));
    save_vit_classifier(&model, &config, &dir.join("lora-peft"), Some(&adapter_config)).expect("peft");
}

#[test]
fn an_exported_lora_classifier_gives_fairvlms_logits_in_transformers_and_peft() {
    let dir = std::env::temp_dir().join(format!("export-lora-fixture-{}", std::process::id()));
    write_lora(&dir);
    // Today's export is the folders transformers and peft were given.
    for file in [
        "lora-merged/model.safetensors",
        "lora-merged/classifier.safetensors",
        "lora-peft/base/model.safetensors",
        "lora-peft/adapter/adapter_model.safetensors",
        "lora-peft/classifier.safetensors",
    ] {
        assert_eq!(stored::read(&dir.join(file)), stored::read(&fixture().join(file)), "{file} changed: rerun `cargo xtask fixtures`");
    }
    for file in ["lora-merged/config.json", "lora-peft/base/config.json", "lora-peft/adapter/adapter_config.json"] {
        let read = |d: &Path| serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(d.join(file)).expect("config")).expect("json");
        assert_eq!(read(&dir), read(&fixture()), "{file} changed: rerun `cargo xtask fixtures`");
    }
    std::fs::remove_dir_all(&dir).ok();

    let outputs = stored::read(&fixture().join("outputs-lora.safetensors"));
    let get = |name: &str| outputs.get(name).unwrap_or_else(|| panic!("no {name} in outputs-lora.safetensors"));
    let (model, _, _) = lora_model();
    let pixels = get("pixel_values");
    let images = Tensor::<B, 4>::from_data(TensorData::new(pixels.f32.clone(), pixels.shape.clone()), &Default::default());
    let ours = model.forward(images);
    assert_eq!(ours.dims().to_vec(), get("logits_merged").shape);
    let ours = ours.into_data().to_vec::<f32>().expect("f32");
    for name in ["logits_merged", "logits_peft"] {
        let diff = ours.iter().zip(&get(name).f32).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        println!("{name}: max |fairvlm - transformers| = {diff:.2e}");
        assert!(diff <= 1e-5, "{name}: max difference {diff:.2e} > 1e-5");
    }
    // The adapters matter: without them the logits differ.
    assert!(get("logits_base").f32.iter().zip(&ours).any(|(a, b)| (a - b).abs() > 1e-3), "the adapters changed nothing");
}

/// The towers make_export.py loads as `ViTModel` and `BertModel`: seeded, with poolers.
fn towers() -> ((VisionTransformer<B>, VisionTransformerConfig), (TextTransformer<B>, TextTransformerConfig)) {
    let _draws = RNG.lock().unwrap_or_else(|e| e.into_inner());
    let device = Default::default();
    B::seed(&device, 29);
    let vit_config = VisionTransformerConfig::new(32, 8, 32, 2, 2).hf_vit().with_pooler(true).with_intermediate_size(Some(64));
    let vit = materialized(vit_config.init::<B>(&device));
    let bert_config = TextTransformerConfig::bert(64, 16, 32, 2, 2, Pooling::Cls).with_intermediate_size(Some(64));
    let bert = materialized(bert_config.init::<B>(&device));
    ((vit, vit_config), (bert, bert_config))
}

fn write_towers(dir: &Path) {
    let ((vit, vit_config), (bert, bert_config)) = towers();
    save_vision_tower(&vit, &vit_config, &dir.join("vit")).expect("vit");
    save_text_tower(&bert, &bert_config, &dir.join("bert")).expect("bert");
}

#[test]
fn exported_vit_and_bert_towers_give_fairvlms_outputs_in_transformers() {
    let dir = std::env::temp_dir().join(format!("export-towers-fixture-{}", std::process::id()));
    write_towers(&dir);
    for file in ["vit/model.safetensors", "bert/model.safetensors"] {
        assert_eq!(stored::read(&dir.join(file)), stored::read(&fixture().join(file)), "{file} changed: rerun `cargo xtask fixtures`");
    }
    std::fs::remove_dir_all(&dir).ok();
    let outputs = stored::read(&fixture().join("outputs-towers.safetensors"));
    let get = |name: &str| outputs.get(name).unwrap_or_else(|| panic!("no {name} in outputs-towers.safetensors"));
    let device = Default::default();
    let ((vit, _), (bert, _)) = towers();
    let pixels = get("pixel_values");
    let images = Tensor::<B, 4>::from_data(TensorData::new(pixels.f32.clone(), pixels.shape.clone()), &device);
    let ids = get("input_ids");
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids.i64.clone(), ids.shape.clone()), &device);
    for (name, ours, shape) in [
        ("vit_last_hidden_state", vit.last_hidden_state(images.clone()).into_data(), 3),
        ("vit_pooler_output", vit.pooler_output(images).into_data(), 2),
        ("bert_last_hidden_state", bert.forward_tokens(tokens.clone()).into_data(), 3),
        ("bert_pooler_output", bert.pooler_output(tokens).into_data(), 2),
    ] {
        let theirs = get(name);
        assert_eq!(ours.shape.len(), shape, "{name}");
        assert_eq!(ours.shape.to_vec(), theirs.shape, "{name}");
        let ours = ours.to_vec::<f32>().expect("f32");
        let diff = ours.iter().zip(&theirs.f32).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        println!("{name}: max |fairvlm - transformers| = {diff:.2e}");
        assert!(diff <= 1e-5, "{name}: max difference {diff:.2e} > 1e-5");
    }
}
