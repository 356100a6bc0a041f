//! LoRA adapters interoperate with Hugging Face peft, both ways, on a tiny randomly initialised
//! Hugging Face CLIP vision transformer (fixtures and their script in tests/fixtures/peft):
//! peft's adapter file loads into our ViT and gives peft's outputs, and the adapter file our
//! writer produces loaded into peft gave the outputs our ViT gives with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::backend::{flex::FlexDevice, Flex};
use burn::module::Param;
use burn::prelude::*;
use burn_store::{ModuleSnapshot, SafetensorsStore};
use lora_fair::{load_adapters, save_adapters, AdapterConfig, LoraAdapter, LoraConfig};
use vlm_backbone::{VisionTransformer, VisionTransformerConfig};

type B = Flex;
const D: FlexDevice = FlexDevice;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/peft")
}

fn tensor(file: &str, key: &str) -> Tensor<B, 2> {
    let bytes = std::fs::read(fixtures().join(file)).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor(key).unwrap();
    let data: Vec<f32> = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let shape = v.shape().to_vec();
    let rows = shape[0];
    Tensor::from_data(TensorData::new(data.clone(), [rows, data.len() / rows]), &D)
}

fn pixels() -> Tensor<B, 4> {
    let bytes = std::fs::read(fixtures().join("inputs.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let v = st.tensor("pixel_values").unwrap();
    let data: Vec<f32> = v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    Tensor::from_data(TensorData::new(data, [2, 3, 16, 16]), &D)
}

/// The tiny tower with the fixture's base weights (every record key must be in the file).
fn base() -> VisionTransformer<B> {
    let mut vit = VisionTransformerConfig::new(16, 8, 32, 2, 2).init::<B>(&D);
    let res = vit.load_from(&mut SafetensorsStore::from_file(fixtures().join("base.safetensors"))).unwrap();
    assert!(res.errors.is_empty() && res.missing.is_empty(), "{res}");
    vit
}

fn close(got: Tensor<B, 2>, want: Tensor<B, 2>) {
    got.into_data().assert_approx_eq::<f32>(&want.into_data(), burn::tensor::Tolerance::absolute(1e-5));
}

#[test]
fn the_base_matches_hugging_face() {
    close(base().forward(pixels()), tensor("outputs.safetensors", "base_pooled"));
}

#[test]
fn a_peft_adapter_loads_into_our_vit_with_peft_s_outputs() {
    let (config, adapters) = load_adapters::<B>(&fixtures().join("peft"), &D).unwrap();
    assert_eq!((config.r, config.lora_alpha, config.target_modules.len()), (4, 8.0, 2));
    assert_eq!(adapters.len(), 4, "{:?}", adapters.keys().collect::<Vec<_>>());
    let vit = base().with_lora_adapters(adapters).unwrap();
    let out = vit.forward(pixels());
    // The adapter matters: the output moved away from the base's.
    let moved: f32 = (out.clone() - tensor("outputs.safetensors", "base_pooled")).abs().max().into_scalar();
    assert!(moved > 1e-2, "{moved}");
    close(out, tensor("outputs.safetensors", "peft_pooled"));
}

/// Our adapter: fixed values (no random generator involved), so the file can be rebuilt and
/// compared byte for byte with the committed one peft read.
fn our_adapters(vit: &VisionTransformer<B>) -> BTreeMap<String, LoraAdapter<B>> {
    let cfg = LoraConfig::new().with_r(4).with_alpha(8.0);
    let mut out = BTreeMap::new();
    for (l, layer) in vit.encoder.layers.iter().enumerate() {
        for (name, lin) in [("q_proj", &layer.self_attn.q_proj), ("v_proj", &layer.self_attn.v_proj)] {
            let [d_in, d_out] = lin.dims();
            let f = |rows: usize, cols: usize, salt: f32| {
                let v: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37 + salt + l as f32).sin() * 0.2).collect();
                Tensor::<B, 2>::from_data(TensorData::new(v, [rows, cols]), &D)
            };
            let mut a = LoraAdapter::new(&cfg, d_in, d_out, &D).unwrap();
            a.lora_a = Param::from_tensor(f(4, d_in, 1.0));
            a.lora_b = Param::from_tensor(f(d_out, 4, 2.0));
            out.insert(format!("encoder.layers.{l}.self_attn.{name}"), a);
        }
    }
    out
}

fn write_ours(dir: &Path) {
    let vit = base();
    let adapters = our_adapters(&vit);
    let list: Vec<(String, &LoraAdapter<B>)> = adapters.iter().map(|(p, a)| (p.clone(), a)).collect();
    let cfg = AdapterConfig::new(&LoraConfig::new().with_r(4).with_alpha(8.0), &["q_proj", "v_proj"], None);
    save_adapters(dir, &list, &cfg).unwrap();
}

/// Writes tests/fixtures/peft/ours (the second step of make_peft.py's recipe).
#[test]
#[ignore]
fn write_our_adapter() {
    write_ours(&fixtures().join("ours"));
}

#[test]
fn our_adapter_file_loaded_in_peft_gives_our_outputs() {
    let tmp = std::env::temp_dir().join(format!("peft-ours-{}", std::process::id()));
    write_ours(&tmp);
    for f in ["adapter_model.safetensors", "adapter_config.json"] {
        assert_eq!(std::fs::read(tmp.join(f)).unwrap(), std::fs::read(fixtures().join("ours").join(f)).unwrap(), "{f}: our writer's output changed; regenerate the fixture");
    }
    std::fs::remove_dir_all(&tmp).ok();
    let vit = base();
    let adapters = our_adapters(&vit);
    let out = vit.with_lora_adapters(adapters).unwrap().forward(pixels());
    close(out, tensor("outputs.safetensors", "ours_pooled"));
}
