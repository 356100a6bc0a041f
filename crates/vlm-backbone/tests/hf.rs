//! Parity with Hugging Face transformers: tiny randomly initialised `CLIPModel`, `ViTModel` and
//! `BertModel` checkpoints and their outputs on fixed inputs (tests/fixtures/hf, made by
//! make_hf.py with transformers 5.24), loaded through [`Checkpoint`] and run here; every
//! output within 1e-4. Also the error paths: a missing tensor, a mis-shaped tensor, an
//! unused key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::TensorData;
use safetensors::{Dtype, SafeTensors};
use vlm_backbone::{Checkpoint, Error};

type B = Flex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf").join(name)
}

mod stored;
use stored::Stored;

fn outputs(model: &str) -> BTreeMap<String, Stored> {
    stored::read(&fixture(model).join("outputs.safetensors"))
}

fn floats<const D: usize>(s: &Stored) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(s.f32.clone(), s.shape.clone()), &Default::default())
}

fn ints(s: &Stored) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(s.i64.clone(), s.shape.clone()), &Default::default())
}

/// Max |ours − reference| over the positions where `keep` (one flag per row of the last axis)
/// is set; asserts ≤ 1e-4 and returns it.
fn close<const D: usize>(what: &str, ours: Tensor<B, D>, reference: &Stored, keep: Option<&[i64]>) -> f32 {
    assert_eq!(ours.dims().to_vec(), reference.shape, "{what}: shape");
    let ours = ours.into_data().to_vec::<f32>().expect("f32");
    let width = *reference.shape.last().expect("rank >= 1");
    let mut worst = 0f32;
    for (i, (a, b)) in ours.iter().zip(&reference.f32).enumerate() {
        if keep.is_none_or(|k| k[i / width] != 0) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!("{what}: max abs difference {worst:.2e}");
    assert!(worst <= 1e-4, "{what}: max abs difference {worst:e}");
    worst
}

fn l2_normalize(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt();
    x / norm
}

#[test]
fn clip_matches_transformers() {
    let device = Default::default();
    let ckpt = Checkpoint::open(&fixture("clip")).expect("open");
    let (model, report) = ckpt.clip_model::<B>(&device).expect("load");
    assert!(report.unused.is_empty(), "unused: {:?}", report.unused);
    // 2 towers x 2 layers x 16 tensors, embeddings, norms, projections, logit scale.
    assert_eq!(report.applied, 2 * 2 * 16 + 3 + 4 + 2 + 2 + 2 + 1);
    let out = outputs("clip");
    let pixels = floats::<4>(&out["pixel_values"]);
    let ids = ints(&out["input_ids"]);
    let mask = &out["attention_mask"].i64;
    close("vision last_hidden_state", model.vision_model.forward_tokens(pixels.clone()), &out["vision_last_hidden_state"], None);
    close("vision pooler_output", model.vision_model.forward(pixels.clone()), &out["vision_pooler_output"], None);
    close("image_embeds", model.encode_image(pixels.clone()), &out["image_embeds"], None);
    // Transformers also masks padding keys; under the causal mask that changes only the
    // padding positions, which are left out.
    close("text last_hidden_state", model.text_model.forward_tokens(ids.clone()), &out["text_last_hidden_state"], Some(mask));
    close("text pooler_output (first end token)", model.text_model.forward(ids.clone()), &out["text_pooler_output"], None);
    close("text_embeds", model.encode_text(ids.clone()), &out["text_embeds"], None);
    close("logits_per_image", model.forward(pixels, ids), &out["logits_per_image"], None);
}

#[test]
fn one_clip_tower_at_a_time() {
    let device = Default::default();
    let ckpt = Checkpoint::open(&fixture("clip")).expect("open");
    let out = outputs("clip");
    let (vision, report) = ckpt.vision_model::<B>(&device).expect("vision");
    assert!(report.unused.is_empty(), "the text tower's keys are not the vision tower's unused keys: {:?}", report.unused);
    close("vision tower alone", vision.forward(floats(&out["pixel_values"])), &out["vision_pooler_output"], None);
    let (text, report) = ckpt.text_model::<B>(&device).expect("text");
    assert!(report.unused.is_empty(), "{:?}", report.unused);
    close("text tower alone", text.forward(ints(&out["input_ids"])), &out["text_pooler_output"], None);
}

#[test]
fn vit_matches_transformers() {
    let device = Default::default();
    let ckpt = Checkpoint::open(&fixture("vit")).expect("open");
    let (vit, report) = ckpt.vision_model::<B>(&device).expect("load");
    assert!(report.unused.is_empty(), "unused: {:?}", report.unused);
    let out = outputs("vit");
    let pixels = floats::<4>(&out["pixel_values"]);
    close("last_hidden_state", vit.last_hidden_state(pixels.clone()), &out["last_hidden_state"], None);
    close("pooler_output", vit.pooler_output(pixels), &out["pooler_output"], None);
}

#[test]
fn bert_matches_transformers() {
    let device = Default::default();
    let ckpt = Checkpoint::open(&fixture("bert")).expect("open");
    let (bert, report) = ckpt.text_model::<B>(&device).expect("load");
    assert!(report.unused.is_empty(), "unused: {:?}", report.unused);
    let out = outputs("bert");
    let ids = ints(&out["input_ids"]);
    assert!(out["attention_mask"].i64.contains(&0), "the fixture has padded rows");
    close("last_hidden_state", bert.forward_tokens(ids.clone()), &out["last_hidden_state"], None);
    close("pooler_output", bert.pooler_output(ids.clone()), &out["pooler_output"], None);
    close("mean-pooled, L2-normalised", l2_normalize(bert.forward(ids)), &out["mean_pooled"], None);
}

/// Copies a fixture folder to a fresh temporary one, with `edit` applied to its tensors.
fn edited(model: &str, name: &str, edit: impl FnOnce(&mut BTreeMap<String, (Vec<usize>, Vec<f32>)>)) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vlm-backbone-hf-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(fixture(model).join("config.json"), dir.join("config.json")).expect("copy");
    let bytes = std::fs::read(fixture(model).join("model.safetensors")).expect("read");
    let st = SafeTensors::deserialize(&bytes).expect("safetensors");
    let mut tensors: BTreeMap<String, (Vec<usize>, Vec<f32>)> =
        st.tensors().into_iter().map(|(k, v)| (k, (v.shape().to_vec(), v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()))).collect();
    edit(&mut tensors);
    let bytes: BTreeMap<String, Vec<u8>> = tensors.iter().map(|(k, (_, v))| (k.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect())).collect();
    let views: Vec<(String, safetensors::tensor::TensorView)> =
        tensors.iter().map(|(k, (shape, _))| (k.clone(), safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), &bytes[k]).expect("view"))).collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).expect("write");
    dir
}

#[test]
fn a_missing_tensor_is_named() {
    let dir = edited("bert", "missing", |t| {
        t.remove("encoder.layer.1.attention.self.value.weight");
    });
    let err = Checkpoint::open(&dir).expect("open").text_model::<B>(&Default::default()).expect_err("must fail");
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    assert!(err.to_string().contains("encoder.layers.1.self_attn.v_proj.weight"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn a_mis_shaped_tensor_names_the_key_and_both_shapes() {
    let dir = edited("vit", "shape", |t| {
        let (_, v) = t.remove("encoder.layer.0.intermediate.dense.weight").expect("key");
        t.insert("encoder.layer.0.intermediate.dense.weight".into(), (vec![32, 64], v));
    });
    let err = Checkpoint::open(&dir).expect("open").vision_model::<B>(&Default::default()).expect_err("must fail");
    let msg = err.to_string();
    assert!(msg.contains("'encoder.layer.0.intermediate.dense.weight'") && msg.contains("[32, 64]") && msg.contains("[64, 32]"), "{msg}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn unused_keys_are_reported() {
    let dir = edited("vit", "unused", |t| {
        t.insert("classifier.weight".into(), (vec![2, 32], vec![0.5; 64]));
    });
    let (_, report) = Checkpoint::open(&dir).expect("open").vision_model::<B>(&Default::default()).expect("load");
    assert_eq!(report.unused, vec!["classifier.weight".to_string()]);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn an_unsupported_config_names_the_key() {
    let dir = std::env::temp_dir().join(format!("vlm-backbone-hf-act-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(fixture("bert").join("model.safetensors"), dir.join("model.safetensors")).expect("copy");
    let config = std::fs::read_to_string(fixture("bert").join("config.json")).expect("read").replace("\"gelu\"", "\"gelu_new\"");
    std::fs::write(dir.join("config.json"), config).expect("write");
    let err = Checkpoint::open(&dir).expect("open").text_config().expect_err("must fail");
    assert!(err.to_string().contains("hidden_act") && err.to_string().contains("gelu_new"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}
