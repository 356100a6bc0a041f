//! The LoRA layer against its formula, merge/unmerge, frozen base, initialisation, gradients
//! against finite differences, and record keys shared with `burn::nn::Linear`.

use burn::backend::{flex::FlexDevice, Autodiff, Flex};
use burn::nn::{Linear, LinearConfig};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::{DType, Distribution, TensorData};
use lora_fair::{LoraAdapter, LoraConfig, LoraLinear};

type B = Autodiff<Flex>;
const D: FlexDevice = FlexDevice;

fn values<const N: usize>(t: Tensor<Flex, N>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().expect("data")
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

/// A layer with a non-trivial adapter (B random, as after some training).
fn trained(d_in: usize, d_out: usize, cfg: &LoraConfig) -> LoraLinear<Flex> {
    let d = Default::default();
    let base = LinearConfig::new(d_in, d_out).init::<Flex>(&d);
    let a = Tensor::<Flex, 2>::random([cfg.r, d_in], Distribution::Normal(0.0, 0.5), &d);
    let b = Tensor::<Flex, 2>::random([d_out, cfg.r], Distribution::Normal(0.0, 0.5), &d);
    LoraLinear::from(base).with_lora(LoraAdapter::from_weights(a, b, cfg.scaling()).expect("adapter")).expect("layer")
}

#[test]
fn forward_is_the_base_plus_the_scaled_low_rank_update() {
    let cfg = LoraConfig::new().with_r(3).with_alpha(6.0);
    let layer = trained(5, 4, &cfg);
    let x = Tensor::<Flex, 3>::random([2, 3, 5], Distribution::Normal(0.0, 1.0), &Default::default());
    let lora = layer.lora.as_ref().expect("adapter");
    // y = x W + b + s · x Aᵀ Bᵀ, written out with plain matmuls.
    let x2 = x.clone().reshape([6, 5]);
    let expected = x2.clone().matmul(layer.weight.val())
        + layer.bias.as_ref().expect("bias").val().unsqueeze_dim::<2>(0)
        + x2.matmul(lora.lora_a.val().transpose()).matmul(lora.lora_b.val().transpose()) * 2.0;
    assert!(close(&values(layer.forward(x).reshape([6, 4])), &values(expected), 1e-5));
}

#[test]
fn merge_gives_the_same_outputs_and_unmerge_restores_the_weight() {
    let layer = trained(8, 6, &LoraConfig::new().with_r(2).with_alpha(4.0).with_use_rslora(true));
    let x = Tensor::<Flex, 2>::random([5, 8], Distribution::Normal(0.0, 1.0), &Default::default());
    let before = values(layer.weight.val());
    let unmerged = values(layer.forward(x.clone()));
    let merged = layer.merge();
    assert!(merged.merged);
    assert!(close(&values(merged.forward(x.clone())), &unmerged, 1e-5), "merged forward");
    let merged_twice = merged.merge(); // a no-op
    let back = merged_twice.unmerge();
    assert!(!back.merged);
    assert!(close(&values(back.weight.val()), &before, 1e-6), "unmerge restores W");
    assert!(close(&values(back.forward(x)), &unmerged, 1e-5));
}

#[test]
fn only_the_adapter_trains() {
    let base = LinearConfig::new(4, 3).init::<B>(&D);
    let layer = LoraLinear::from(base).with_adapter(&LoraConfig::new().with_r(2), &D).expect("layer");
    let x = Tensor::<B, 2>::random([6, 4], Distribution::Normal(0.0, 1.0), &D);
    let grads = GradientsParams::from_grads(layer.forward(x).powi_scalar(2).sum().backward(), &layer);
    let lora = layer.lora.as_ref().expect("adapter");
    assert!(grads.get::<Flex, 2>(lora.lora_a.id).is_some() && grads.get::<Flex, 2>(lora.lora_b.id).is_some());
    assert!(grads.get::<Flex, 2>(layer.weight.id).is_none(), "the base weight is frozen");
    assert!(grads.get::<Flex, 1>(layer.bias.as_ref().expect("bias").id).is_none(), "the base bias is frozen");
    assert_eq!(layer.trainable_parameters(), 2 * 4 + 3 * 2);
}

#[test]
fn initialisation_follows_peft() {
    let (d_in, d_out, r) = (64, 32, 8);
    let layer = LoraLinear::from(LinearConfig::new(d_in, d_out).init::<Flex>(&Default::default())).with_adapter(&LoraConfig::new().with_r(r), &Default::default()).expect("layer");
    let lora = layer.lora.as_ref().expect("adapter");
    let a = values(lora.lora_a.val());
    let bound = 1.0 / (d_in as f64).sqrt();
    assert_eq!(lora.lora_a.val().dims(), [r, d_in]);
    assert_eq!(lora.lora_b.val().dims(), [d_out, r]);
    assert!(a.iter().all(|v| v.abs() <= bound + 1e-7), "A ~ U(-1/sqrt(in), 1/sqrt(in))");
    assert!(a.iter().map(|v| v.abs()).fold(0.0, f64::max) > 0.8 * bound, "A spans its range");
    assert!(values(lora.lora_b.val()).iter().all(|v| *v == 0.0), "B = 0");
    assert_eq!(lora.scaling, 1.0);
}

#[test]
fn adapter_gradients_match_finite_differences() {
    let d64 = (&D, DType::F64);
    let x = Tensor::<B, 2>::from_data(TensorData::new((0..12).map(|i| ((i * 7) % 5) as f64 / 2.5 - 1.0).collect::<Vec<_>>(), [3, 4]), d64);
    let a0: Vec<f64> = (0..8).map(|i| ((i * 3) % 7) as f64 / 3.5 - 1.0).collect();
    let b0: Vec<f64> = (0..6).map(|i| ((i * 5) % 11) as f64 / 5.5 - 1.0).collect();
    type Grads = Option<(Vec<f64>, Vec<f64>)>;
    let loss = |a: Vec<f64>, b: Vec<f64>, grad: bool| -> (f64, Grads) {
        let mut ta = Tensor::<B, 2>::from_data(TensorData::new(a, [2, 4]), d64);
        let mut tb = Tensor::<B, 2>::from_data(TensorData::new(b, [3, 2]), d64);
        if grad {
            ta = ta.require_grad();
            tb = tb.require_grad();
        }
        let adapter = LoraAdapter::from_weights(ta.clone(), tb.clone(), 1.5).expect("adapter");
        let y = adapter.forward(x.clone()).powi_scalar(2).sum();
        let v = values(y.clone().inner())[0];
        let g = grad.then(|| {
            let g = y.backward();
            (values(ta.grad(&g).expect("ga")), values(tb.grad(&g).expect("gb")))
        });
        (v, g)
    };
    let (_, g) = loss(a0.clone(), b0.clone(), true);
    let (ga, gb) = g.expect("grads");
    let h = 1e-6;
    for i in 0..a0.len() {
        let (mut p, mut m) = (a0.clone(), a0.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (loss(p, b0.clone(), false).0 - loss(m, b0.clone(), false).0) / (2.0 * h);
        assert!((ga[i] - fd).abs() < 1e-6 * fd.abs().max(1.0), "dA[{i}]: {} vs {fd}", ga[i]);
    }
    for i in 0..b0.len() {
        let (mut p, mut m) = (b0.clone(), b0.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (loss(a0.clone(), p, false).0 - loss(a0.clone(), m, false).0) / (2.0 * h);
        assert!((gb[i] - fd).abs() < 1e-6 * fd.abs().max(1.0), "dB[{i}]: {} vs {fd}", gb[i]);
    }
}

#[test]
fn without_an_adapter_the_record_is_a_linear_layers() {
    let d = Default::default();
    let base: Linear<Flex> = LinearConfig::new(3, 2).init(&d);
    let wrapped = LoraLinear::from(base);
    let dir = std::env::temp_dir().join(format!("lora-fair-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("layer.safetensors");
    use burn::store::{ModuleSnapshot, SafetensorsStore};
    wrapped.save_into(&mut SafetensorsStore::from_file(&path).overwrite(true)).expect("save");
    let mut fresh: Linear<Flex> = LinearConfig::new(3, 2).init(&d);
    let res = fresh.load_from(&mut SafetensorsStore::from_file(&path)).expect("load");
    assert!(res.missing.is_empty() && res.errors.is_empty(), "{res:?}");
    assert_eq!(values(fresh.weight.val()), values(wrapped.weight.val()));
    assert_eq!(values(fresh.bias.expect("bias").val()), values(wrapped.bias.expect("bias").val()));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_settings_and_shapes_are_errors() {
    let d = Default::default();
    let layer = || LoraLinear::from(LinearConfig::new(4, 3).init::<Flex>(&d));
    assert!(layer().with_adapter(&LoraConfig::new().with_r(0), &d).is_err());
    assert!(layer().with_adapter(&LoraConfig::new().with_dropout(1.0), &d).is_err());
    let wrong = LoraAdapter::from_weights(Tensor::<Flex, 2>::zeros([2, 5], &d), Tensor::zeros([3, 2], &d), 1.0).expect("adapter");
    assert!(layer().with_lora(wrong).is_err(), "in-features must match");
    assert!(LoraAdapter::<Flex>::from_weights(Tensor::zeros([2, 4], &d), Tensor::zeros([3, 3], &d), 1.0).is_err(), "ranks must match");
}

#[test]
fn adapter_folders_round_trip_with_peft_keys() {
    use lora_fair::{load_adapters, save_adapters, AdapterConfig};
    let cfg = LoraConfig::new().with_r(2).with_alpha(8.0).with_use_rslora(true);
    let l1 = trained(5, 4, &cfg);
    let l2 = trained(4, 3, &cfg);
    let dir = std::env::temp_dir().join(format!("lora-fair-peft-{}", std::process::id()));
    let config = AdapterConfig::new(&cfg, &["q_proj", "fc1"], Some("tiny-vit"));
    let adapters = vec![
        ("vision_model.encoder.layers.0.self_attn.q_proj".to_string(), l1.lora.as_ref().expect("a1")),
        ("vision_model.encoder.layers.0.mlp.fc1".to_string(), l2.lora.as_ref().expect("a2")),
    ];
    save_adapters(&dir, &adapters, &config).expect("save");
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("adapter_config.json")).expect("config")).expect("json");
    assert_eq!((json["peft_type"].as_str(), json["r"].as_u64(), json["use_rslora"].as_bool()), (Some("LORA"), Some(2), Some(true)));
    let (read_cfg, read) = load_adapters::<Flex>(&dir, &Default::default()).expect("load");
    assert_eq!(read_cfg, config);
    assert_eq!(read.keys().cloned().collect::<Vec<_>>(), vec!["vision_model.encoder.layers.0.mlp.fc1".to_string(), "vision_model.encoder.layers.0.self_attn.q_proj".to_string()]);
    let back = &read["vision_model.encoder.layers.0.self_attn.q_proj"];
    let orig = l1.lora.as_ref().expect("a1");
    assert_eq!(values(back.lora_a.val()), values(orig.lora_a.val()));
    assert_eq!(values(back.lora_b.val()), values(orig.lora_b.val()));
    assert_eq!(back.scaling, cfg.scaling());
    // The raw file holds peft's keys and torch's shapes.
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).expect("file");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).expect("header");
    assert_eq!(header["base_model.model.vision_model.encoder.layers.0.self_attn.q_proj.lora_A.weight"]["shape"], serde_json::json!([2, 5]));
    assert_eq!(header["base_model.model.vision_model.encoder.layers.0.self_attn.q_proj.lora_B.weight"]["shape"], serde_json::json!([4, 2]));
    // A config that is not LoRA is refused, naming the file.
    std::fs::write(dir.join("adapter_config.json"), r#"{"peft_type": "IA3", "r": 2, "lora_alpha": 8, "target_modules": []}"#).expect("write");
    let err = load_adapters::<Flex>(&dir, &Default::default()).expect_err("not lora").to_string();
    assert!(err.contains("adapter_config.json") && err.contains("IA3"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}
