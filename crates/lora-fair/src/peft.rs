//! Adapter files in Hugging Face peft's layout: `adapter_model.safetensors` with keys
//! `base_model.model.<module path>.lora_A.weight` (`[r, in]`) and `.lora_B.weight`
//! (`[out, r]`), F32, and `adapter_config.json`.

use std::collections::BTreeMap;
use std::path::Path;

use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::linear::{LoraAdapter, LoraConfig};

const PREFIX: &str = "base_model.model.";

/// The fields of peft's `adapter_config.json` that a LoRA adapter needs (unknown fields of a
/// peft file are ignored when reading).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Always `"LORA"`.
    pub peft_type: String,
    /// Rank.
    pub r: usize,
    /// `lora_alpha`.
    pub lora_alpha: f64,
    /// `lora_dropout`.
    #[serde(default)]
    pub lora_dropout: f64,
    /// The targeted module names.
    pub target_modules: Vec<String>,
    /// rsLoRA scaling.
    #[serde(default)]
    pub use_rslora: bool,
    /// Which biases are trained: `"none"` here.
    #[serde(default = "none")]
    pub bias: String,
    /// The base model's name or path, for the reader's information.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// peft's weight layout flag (false: torch `[out, in]`).
    #[serde(default)]
    pub fan_in_fan_out: bool,
}

fn none() -> String {
    "none".into()
}

impl AdapterConfig {
    /// The config of adapters made with `cfg` on `targets`.
    pub fn new(cfg: &LoraConfig, targets: &[&str], base_model: Option<&str>) -> Self {
        AdapterConfig {
            peft_type: "LORA".into(),
            r: cfg.r,
            lora_alpha: cfg.alpha,
            lora_dropout: cfg.dropout,
            target_modules: targets.iter().map(|t| t.to_string()).collect(),
            use_rslora: cfg.use_rslora,
            bias: "none".into(),
            base_model_name_or_path: base_model.map(str::to_string),
            fan_in_fan_out: false,
        }
    }

    /// The matching [`LoraConfig`].
    pub fn lora_config(&self) -> LoraConfig {
        LoraConfig::new().with_r(self.r).with_alpha(self.lora_alpha).with_dropout(self.lora_dropout).with_use_rslora(self.use_rslora)
    }
}

fn file_err(path: &Path, message: impl Into<String>) -> Error {
    Error::File { path: path.to_owned(), message: message.into() }
}

fn f32_bytes<B: Backend>(t: Tensor<B, 2>) -> Vec<u8> {
    let v = t.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default();
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Writes `adapters` (module path → adapter) as a peft adapter folder.
pub fn save_adapters<B: Backend>(dir: &Path, adapters: &[(String, &LoraAdapter<B>)], config: &AdapterConfig) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| file_err(dir, e.to_string()))?;
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (path, a) in adapters {
        let (ta, tb) = (a.lora_a.val(), a.lora_b.val());
        buffers.push((format!("{PREFIX}{path}.lora_A.weight"), ta.dims().to_vec(), f32_bytes(ta)));
        buffers.push((format!("{PREFIX}{path}.lora_B.weight"), tb.dims().to_vec(), f32_bytes(tb)));
    }
    let file = dir.join("adapter_model.safetensors");
    let views = buffers
        .iter()
        .map(|(k, shape, bytes)| TensorView::new(Dtype::F32, shape.clone(), bytes).map(|v| (k.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| file_err(&file, e.to_string()))?;
    let metadata = Some([("format".to_string(), "pt".to_string())].into_iter().collect());
    safetensors::serialize_to_file(views, metadata, &file).map_err(|e| file_err(&file, e.to_string()))?;
    let cfg = dir.join("adapter_config.json");
    let text = serde_json::to_string_pretty(config).map_err(|e| file_err(&cfg, e.to_string()))?;
    std::fs::write(&cfg, text + "\n").map_err(|e| file_err(&cfg, e.to_string()))
}

/// Reads a peft LoRA adapter folder: its config and, per module path, the adapter (scaling
/// from the config).
pub fn load_adapters<B: Backend>(dir: &Path, device: &B::Device) -> Result<(AdapterConfig, BTreeMap<String, LoraAdapter<B>>)> {
    let cfg_path = dir.join("adapter_config.json");
    let text = std::fs::read_to_string(&cfg_path).map_err(|e| file_err(&cfg_path, e.to_string()))?;
    let config: AdapterConfig = serde_json::from_str(&text).map_err(|e| file_err(&cfg_path, e.to_string()))?;
    if config.peft_type != "LORA" || config.fan_in_fan_out || config.r == 0 {
        return Err(file_err(
            &cfg_path,
            format!("peft_type {}, r {}, fan_in_fan_out {}: expected a LoRA adapter with r >= 1 in torch layout", config.peft_type, config.r, config.fan_in_fan_out),
        ));
    }
    let file = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&file).map_err(|e| file_err(&file, e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| file_err(&file, e.to_string()))?;
    let matrix = |key: &str| -> Result<Tensor<B, 2>> {
        let view = st.tensor(key).map_err(|e| file_err(&file, format!("{key}: {e}")))?;
        let shape = view.shape();
        if shape.len() != 2 || view.dtype() != Dtype::F32 {
            return Err(file_err(&file, format!("{key}: expected a 2-d F32 tensor, got {:?} {:?}", view.dtype(), shape)));
        }
        let data: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        Ok(Tensor::from_data(TensorData::new(data, [shape[0], shape[1]]), device))
    };
    let scaling = config.lora_config().scaling();
    let mut out = BTreeMap::new();
    for name in st.names() {
        let Some(path) = name.strip_prefix(PREFIX).and_then(|n| n.strip_suffix(".lora_A.weight")) else { continue };
        let a = matrix(name)?;
        let b = matrix(&format!("{PREFIX}{path}.lora_B.weight"))?;
        if a.dims()[0] != config.r {
            return Err(file_err(&file, format!("{name}: rank {} but adapter_config.json says r = {}", a.dims()[0], config.r)));
        }
        out.insert(path.to_string(), LoraAdapter::from_weights(a, b, scaling).map_err(|e| file_err(&file, format!("{path}: {e}")))?);
    }
    if out.is_empty() {
        return Err(file_err(&file, "no lora_A weights under base_model.model."));
    }
    Ok((config, out))
}
