//! Hugging Face checkpoints: a folder with `config.json` and `model.safetensors` (and, for text
//! models, `tokenizer.json`), loaded into the crate's towers through burn's store.
//!
//! Supported `model_type`s: `clip` (`CLIPModel`: both towers, projections, logit scale),
//! `clip_vision_model` and `clip_text_model` (one tower), `vit` (`ViTModel` and
//! `ViTForImageClassification`'s `vit.` part) and `bert` (`BertModel` and the `bert.` part of
//! the task models, MiniLM included). docs/weights.md lists where every key goes.
//!
//! ```no_run
//! use burn::backend::Flex;
//! use vlm_backbone::Checkpoint;
//!
//! let device = Default::default();
//! let minilm = Checkpoint::open("data/cache/all-MiniLM-L6-v2".as_ref())?;
//! let (text, report) = minilm.text_model::<Flex>(&device)?;
//! assert!(report.unused.is_empty());
//! # Ok::<(), vlm_backbone::Error>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use burn::prelude::*;
use burn::tensor::{DType, Shape, TensorData};
use burn_store::{ApplyError, KeyRemapper, ModuleAdapter, ModuleSnapshot, SafetensorsStore, TensorSnapshot};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::layers::Activation;
use crate::text::{Pooling, TextTransformer, TextTransformerConfig};
use crate::vision::{VisionTransformer, VisionTransformerConfig};
use crate::{Clip, ClipConfig};

/// What loading a checkpoint did.
///
/// ```
/// use burn::backend::Flex;
/// use vlm_backbone::Checkpoint;
///
/// // One tower of a CLIPModel: the other tower's keys are not "unused".
/// let clip = Checkpoint::open("tests/fixtures/hf/clip".as_ref())?;
/// let (_vision, report) = clip.vision_model::<Flex>(&Default::default())?;
/// assert_eq!((report.applied, report.unused.len()), (39, 0));
/// # Ok::<(), vlm_backbone::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Parameters set from the checkpoint.
    pub applied: usize,
    /// Checkpoint keys in the loaded part that no parameter took (a task head such as
    /// `classifier.weight`, for example). Buffers (`position_ids`) and the other parts of a
    /// `CLIPModel` loaded one tower at a time are not listed.
    pub unused: Vec<String>,
}

/// A Hugging Face checkpoint folder.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    dir: PathBuf,
    config: Value,
    weights: PathBuf,
    /// Key to shape, from the safetensors header.
    keys: BTreeMap<String, Vec<usize>>,
}

/// The parts of a checkpoint a model can be loaded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Vision,
    Text,
    Clip,
}

/// A key rename: a regex over a parameter's name and its replacement.
type Rename = (String, String);

/// Hugging Face `ViTModel`'s parameter names beside the tower's ([`VisionTransformer`]):
/// `{i}` stands for a layer index; a name ending in `.` is a prefix, any other a whole key.
/// Loading renames left to right, the export ([`crate::save_vision_tower`]) right to left.
pub(crate) const VIT_NAMES: &[(&str, &str)] = &[
    ("embeddings.cls_token", "embeddings.class_embedding"),
    ("embeddings.position_embeddings", "embeddings.position_embedding.weight"),
    ("embeddings.patch_embeddings.projection.", "embeddings.patch_embedding."),
    ("encoder.layer.{i}.attention.attention.query.", "encoder.layers.{i}.self_attn.q_proj."),
    ("encoder.layer.{i}.attention.attention.key.", "encoder.layers.{i}.self_attn.k_proj."),
    ("encoder.layer.{i}.attention.attention.value.", "encoder.layers.{i}.self_attn.v_proj."),
    ("encoder.layer.{i}.attention.output.dense.", "encoder.layers.{i}.self_attn.out_proj."),
    ("encoder.layer.{i}.intermediate.dense.", "encoder.layers.{i}.mlp.fc1."),
    ("encoder.layer.{i}.output.dense.", "encoder.layers.{i}.mlp.fc2."),
    ("encoder.layer.{i}.layernorm_before.", "encoder.layers.{i}.layer_norm1."),
    ("encoder.layer.{i}.layernorm_after.", "encoder.layers.{i}.layer_norm2."),
    ("layernorm.", "post_layernorm."),
    ("pooler.dense.", "pooler."),
];

/// Hugging Face `BertModel`'s parameter names beside the text tower's, as [`VIT_NAMES`].
pub(crate) const BERT_NAMES: &[(&str, &str)] = &[
    ("embeddings.word_embeddings.", "embeddings.token_embedding."),
    ("embeddings.position_embeddings.", "embeddings.position_embedding."),
    ("embeddings.token_type_embeddings.", "embeddings.token_type_embedding."),
    ("embeddings.LayerNorm.", "embeddings.layer_norm."),
    ("encoder.layer.{i}.attention.self.query.", "encoder.layers.{i}.self_attn.q_proj."),
    ("encoder.layer.{i}.attention.self.key.", "encoder.layers.{i}.self_attn.k_proj."),
    ("encoder.layer.{i}.attention.self.value.", "encoder.layers.{i}.self_attn.v_proj."),
    ("encoder.layer.{i}.attention.output.dense.", "encoder.layers.{i}.self_attn.out_proj."),
    ("encoder.layer.{i}.attention.output.LayerNorm.", "encoder.layers.{i}.layer_norm1."),
    ("encoder.layer.{i}.intermediate.dense.", "encoder.layers.{i}.mlp.fc1."),
    ("encoder.layer.{i}.output.dense.", "encoder.layers.{i}.mlp.fc2."),
    ("encoder.layer.{i}.output.LayerNorm.", "encoder.layers.{i}.layer_norm2."),
    ("pooler.dense.", "pooler."),
];

/// The key rules of a name table: Hugging Face's names to the module's (`to_module`), or back.
pub(crate) fn renames(names: &[(&str, &str)], to_module: bool) -> Vec<Rename> {
    names
        .iter()
        .map(|&(hf, module)| {
            let (from, to) = if to_module { (hf, module) } else { (module, hf) };
            // The names hold only letters, `_`, `.` and `{i}`: `.` is the one regex character.
            let end = if from.ends_with('.') { "" } else { "$" };
            (format!("^{}{end}", from.replace('.', r"\.").replace("{i}", r"(\d+)")), to.replace("{i}", "$1"))
        })
        .collect()
}

impl Checkpoint {
    /// Opens a folder holding `config.json` and `model.safetensors` (only the safetensors
    /// header is read here).
    ///
    /// ```
    /// use burn::backend::Flex;
    /// use burn::prelude::*;
    /// use vlm_backbone::Checkpoint;
    ///
    /// // A tiny BertModel saved by transformers (the crate's parity fixture).
    /// let ckpt = Checkpoint::open("tests/fixtures/hf/bert".as_ref())?;
    /// assert_eq!(ckpt.model_type()?, "bert");
    /// let (bert, report) = ckpt.text_model::<Flex>(&Default::default())?;
    /// assert!(report.unused.is_empty());
    /// let ids = Tensor::<Flex, 2, Int>::from_ints([[2, 10, 11, 3, 0]], &Default::default());
    /// assert_eq!(bert.forward(ids).dims(), [1, 32]); // mean of the non-padding states
    /// # Ok::<(), vlm_backbone::Error>(())
    /// ```
    pub fn open(dir: &Path) -> Result<Self> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| Error::Io { path: config_path.clone(), source })?;
        let config: Value = serde_json::from_str(&text).map_err(|e| Error::Format { path: config_path.clone(), problem: format!("not JSON: {e}") })?;
        let weights = dir.join("model.safetensors");
        let keys = read_header(&weights)?;
        let ckpt = Checkpoint { dir: dir.to_owned(), config, weights, keys };
        ckpt.model_type()?;
        Ok(ckpt)
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `tokenizer.json` beside the weights, if there is one.
    pub fn tokenizer(&self) -> Option<PathBuf> {
        let p = self.dir.join("tokenizer.json");
        p.is_file().then_some(p)
    }

    /// `config.json`'s `model_type`, one of the supported ones.
    pub fn model_type(&self) -> Result<&str> {
        match self.config.get("model_type").and_then(Value::as_str) {
            Some(t @ ("clip" | "clip_vision_model" | "clip_text_model" | "vit" | "bert")) => Ok(t),
            Some(t) => Err(self.config_error("model_type", format!("'{t}' is not supported (clip, clip_vision_model, clip_text_model, vit, bert)"))),
            None => Err(self.config_error("model_type", "missing".into())),
        }
    }

    /// Whether the checkpoint holds an image tower.
    pub fn has_vision(&self) -> bool {
        matches!(self.model_type(), Ok("clip" | "clip_vision_model" | "vit"))
    }

    /// Whether the checkpoint holds a text tower.
    pub fn has_text(&self) -> bool {
        matches!(self.model_type(), Ok("clip" | "clip_text_model" | "bert"))
    }

    fn config_error(&self, key: &str, problem: String) -> Error {
        Error::Config { path: self.dir.join("config.json"), key: key.to_owned(), problem }
    }

    /// The tower's section of `config.json` and its key prefix for messages.
    fn section(&self, part: Part) -> Result<(&Value, &'static str)> {
        let ty = self.model_type()?;
        let (name, key) = match (ty, part) {
            ("clip", Part::Vision) => ("vision_config", "vision_config."),
            ("clip", Part::Text) => ("text_config", "text_config."),
            ("clip_vision_model" | "vit", Part::Vision) | ("clip_text_model" | "bert", Part::Text) => return Ok((&self.config, "")),
            _ => return Err(self.config_error("model_type", format!("'{ty}' has no {} tower", if part == Part::Vision { "image" } else { "text" }))),
        };
        // A CLIPConfig saved with every sub-config default has an empty section.
        Ok((self.config.get(name).unwrap_or(&Value::Null), key))
    }

    fn usize_or(&self, section: (&Value, &str), key: &str, default: usize) -> Result<usize> {
        match section.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_u64().map(|n| n as usize).ok_or_else(|| self.config_error(&format!("{}{key}", section.1), format!("{v}: expected a non-negative integer"))),
        }
    }

    fn f64_or(&self, section: (&Value, &str), key: &str, default: f64) -> Result<f64> {
        match section.0.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.config_error(&format!("{}{key}", section.1), format!("{v}: expected a number"))),
        }
    }

    fn activation(&self, section: (&Value, &str), default: Activation) -> Result<Activation> {
        match section.0.get("hidden_act").and_then(Value::as_str) {
            None => Ok(default),
            Some("quick_gelu") => Ok(Activation::QuickGelu),
            Some("gelu") => Ok(Activation::Gelu),
            Some("relu") => Ok(Activation::Relu),
            Some(other) => Err(self.config_error(&format!("{}hidden_act", section.1), format!("'{other}' is not supported (quick_gelu, gelu, relu)"))),
        }
    }

    /// The image tower's configuration, with Hugging Face's defaults for absent keys.
    pub fn vision_config(&self) -> Result<VisionTransformerConfig> {
        let s = self.section(Part::Vision)?;
        let vit = self.model_type()? == "vit";
        let (patch, eps, act) = if vit { (16, 1e-12, Activation::Gelu) } else { (32, 1e-5, Activation::QuickGelu) };
        if vit && s.0.get("qkv_bias").and_then(Value::as_bool) == Some(false) {
            return Err(self.config_error("qkv_bias", "false: the attention projections here always have a bias".into()));
        }
        let width = self.usize_or(s, "hidden_size", 768)?;
        let heads = self.usize_or(s, "num_attention_heads", 12)?;
        if heads == 0 || width % heads != 0 {
            return Err(self.config_error(&format!("{}num_attention_heads", s.1), format!("{heads} must divide hidden_size {width}")));
        }
        let cfg =
            VisionTransformerConfig::new(self.usize_or(s, "image_size", 224)?, self.usize_or(s, "patch_size", patch)?, width, self.usize_or(s, "num_hidden_layers", 12)?, heads)
                .with_channels(self.usize_or(s, "num_channels", 3)?)
                .with_activation(self.activation(s, act)?)
                .with_intermediate_size(Some(self.usize_or(s, "intermediate_size", 3072)?))
                .with_layer_norm_eps(self.f64_or(s, "layer_norm_eps", eps)?)
                .with_clip_layout(!vit)
                .with_pooler(vit && self.keys.keys().any(|k| k.ends_with("pooler.dense.weight")));
        if cfg.patch_size == 0 || cfg.image_size % cfg.patch_size != 0 {
            return Err(self.config_error(&format!("{}patch_size", s.1), format!("{} must divide image_size {}", cfg.patch_size, cfg.image_size)));
        }
        Ok(cfg)
    }

    /// The text tower's configuration, with Hugging Face's defaults for absent keys. BERT
    /// models pool by the mean of the non-padding states (sentence-transformers', right for
    /// MiniLM); CLIP pools at the end token.
    pub fn text_config(&self) -> Result<TextTransformerConfig> {
        let s = self.section(Part::Text)?;
        let width = self.usize_or(s, "hidden_size", if self.model_type()? == "bert" { 768 } else { 512 })?;
        let heads = self.usize_or(s, "num_attention_heads", if self.model_type()? == "bert" { 12 } else { 8 })?;
        if heads == 0 || width % heads != 0 {
            return Err(self.config_error(&format!("{}num_attention_heads", s.1), format!("{heads} must divide hidden_size {width}")));
        }
        if self.model_type()? == "bert" {
            if let Some(t) = s.0.get("position_embedding_type").and_then(Value::as_str).filter(|t| *t != "absolute") {
                return Err(self.config_error("position_embedding_type", format!("'{t}' is not supported (absolute)")));
            }
            let cfg = TextTransformerConfig::bert(
                self.usize_or(s, "vocab_size", 30_522)?,
                self.usize_or(s, "max_position_embeddings", 512)?,
                width,
                self.usize_or(s, "num_hidden_layers", 12)?,
                heads,
                Pooling::Mean,
            )
            .with_activation(self.activation(s, Activation::Gelu)?)
            .with_intermediate_size(Some(self.usize_or(s, "intermediate_size", 3072)?))
            .with_layer_norm_eps(self.f64_or(s, "layer_norm_eps", 1e-12)?)
            .with_type_vocab_size(self.usize_or(s, "type_vocab_size", 2)?)
            .with_pad_token_id(self.usize_or(s, "pad_token_id", 0)?)
            .with_pooler(self.keys.keys().any(|k| k.ends_with("pooler.dense.weight")));
            return Ok(cfg);
        }
        let eos = self.usize_or(s, "eos_token_id", 49_407)?;
        Ok(TextTransformerConfig::new(
            self.usize_or(s, "vocab_size", 49_408)?,
            self.usize_or(s, "max_position_embeddings", 77)?,
            width,
            self.usize_or(s, "num_hidden_layers", 12)?,
            heads,
        )
        .with_activation(self.activation(s, Activation::QuickGelu)?)
        .with_intermediate_size(Some(self.usize_or(s, "intermediate_size", 2048)?))
        .with_layer_norm_eps(self.f64_or(s, "layer_norm_eps", 1e-5)?)
        .with_pad_token_id(self.usize_or(s, "pad_token_id", 1)?)
        // Transformers' legacy rule: a configured end id of 2 means "the largest id".
        .with_eos_token_id((eos != 2).then_some(eos))
        .with_bos_token_id(match s.0.get("bos_token_id") {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.usize_or(s, "bos_token_id", 0)?),
        }))
    }

    /// The whole `CLIPModel`'s configuration.
    pub fn clip_config(&self) -> Result<ClipConfig> {
        if self.model_type()? != "clip" {
            return Err(self.config_error("model_type", format!("'{}' is not a CLIPModel ('clip')", self.model_type()?)));
        }
        let root = (&self.config, "");
        Ok(ClipConfig::new(self.vision_config()?, self.text_config()?, self.usize_or(root, "projection_dim", 512)?).with_logit_scale_init(self.f64_or(
            root,
            "logit_scale_init_value",
            2.659_260_036_932_778_4,
        )?))
    }

    /// The image tower with the checkpoint's weights.
    pub fn vision_model<B: Backend>(&self, device: &B::Device) -> Result<(VisionTransformer<B>, LoadReport)> {
        self.load_vision(self.vision_config()?.init(device))
    }

    /// The text tower with the checkpoint's weights.
    pub fn text_model<B: Backend>(&self, device: &B::Device) -> Result<(TextTransformer<B>, LoadReport)> {
        self.load_text(self.text_config()?.init(device))
    }

    /// The whole `CLIPModel` with the checkpoint's weights.
    pub fn clip_model<B: Backend>(&self, device: &B::Device) -> Result<(Clip<B>, LoadReport)> {
        self.load_clip(self.clip_config()?.init(device))
    }

    /// Sets a CLIP model's weights, both towers, projections and logit scale (its
    /// configuration must match [`Checkpoint::clip_config`]).
    pub fn load_clip<B: Backend>(&self, mut model: Clip<B>) -> Result<(Clip<B>, LoadReport)> {
        let report = self.apply(&mut model, Part::Clip)?;
        Ok((model, report))
    }

    /// Sets an image tower's weights (its configuration must match [`Checkpoint::vision_config`]).
    pub fn load_vision<B: Backend>(&self, mut model: VisionTransformer<B>) -> Result<(VisionTransformer<B>, LoadReport)> {
        let report = self.apply(&mut model, Part::Vision)?;
        Ok((model, report))
    }

    /// Sets a text tower's weights (its configuration must match [`Checkpoint::text_config`]).
    pub fn load_text<B: Backend>(&self, mut model: TextTransformer<B>) -> Result<(TextTransformer<B>, LoadReport)> {
        let report = self.apply(&mut model, Part::Text)?;
        Ok((model, report))
    }

    /// Key rules for a part: the prefix that selects it (other keys belong to other parts)
    /// and the renames, in order, from Hugging Face's names to the module's.
    fn rules(&self, part: Part) -> Result<(Option<&'static str>, Vec<Rename>)> {
        let ty = self.model_type()?;
        Ok(match (ty, part) {
            ("clip", Part::Clip) => (None, vec![]),
            ("clip" | "clip_vision_model", Part::Vision) => (Some("vision_model."), vec![(r"^vision_model\.".into(), String::new())]),
            ("clip" | "clip_text_model", Part::Text) => (Some("text_model."), vec![(r"^text_model\.".into(), String::new())]),
            ("vit", Part::Vision) => (None, [(r"^vit\.".to_string(), String::new())].into_iter().chain(renames(VIT_NAMES, true)).collect()),
            ("bert", Part::Text) => (None, [(r"^bert\.".to_string(), String::new())].into_iter().chain(renames(BERT_NAMES, true)).collect()),
            (ty, _) => return Err(self.config_error("model_type", format!("'{ty}' cannot be loaded into this model"))),
        })
    }

    fn apply<B: Backend, M: ModuleSnapshot<B>>(&self, model: &mut M, part: Part) -> Result<LoadReport> {
        let (prefix, rules) = self.rules(part)?;
        let format_err = |problem: String| Error::Format { path: self.weights.clone(), problem };
        let remapper = KeyRemapper::from_patterns(rules).map_err(|e| format_err(format!("key rule: {e}")))?;
        // The same renames, to name checkpoint keys in messages and to find the unused ones.
        let pairs = remapper.to_regex_pairs();
        let mut source_of = BTreeMap::new();
        for key in self.keys.keys() {
            let mut name = key.clone();
            for (re, to) in &pairs {
                if re.is_match(&name) {
                    name = re.replace_all(&name, to.as_str()).into_owned();
                }
            }
            source_of.insert(name, key.clone());
        }
        let mut store = SafetensorsStore::from_file(&self.weights).remap(remapper).with_from_adapter(HfAdapter).allow_partial(true).validate(false);
        let result = model.load_from(&mut store).map_err(|e| format_err(e.to_string()))?;
        if let Some(e) = result.errors.first() {
            return Err(match e {
                ApplyError::ShapeMismatch { path, expected, found } => {
                    let key = source_of.get(path).cloned().unwrap_or_else(|| path.clone());
                    let stored = self.keys.get(&key).cloned().unwrap_or_else(|| found.to_vec());
                    // The model's shape in the checkpoint's layout: transposed back where the
                    // adapter transposed.
                    let mut expected = expected.to_vec();
                    if stored.len() == 2 && found.len() == 2 && stored[0] == found[1] && stored[1] == found[0] && stored[0] != stored[1] {
                        expected.reverse();
                    }
                    Error::Shape { path: self.weights.clone(), key, param: path.clone(), expected, found: stored }
                }
                other => format_err(other.to_string()),
            });
        }
        if !result.missing.is_empty() {
            return Err(Error::Missing { path: self.weights.clone(), missing: result.missing.iter().map(|(p, _)| hf_name(p)).collect() });
        }
        // Norms are applied as `gamma`/`beta`, found under `weight`/`bias` (or, in old BERT
        // checkpoints, under `gamma`/`beta` themselves).
        let applied: BTreeSet<String> = result.applied.iter().flat_map(|p| [p.clone(), hf_name(p)]).collect();
        let unused = source_of
            .iter()
            .filter(|(name, key)| !applied.contains(name.as_str()) && !key.ends_with("position_ids") && prefix.is_none_or(|p| key.starts_with(p) || !self.has_prefixed_keys(p)))
            .map(|(_, key)| key.clone())
            .collect();
        Ok(LoadReport { applied: result.applied.len(), unused })
    }

    /// Whether any key carries `prefix` (a tower saved alone may have none).
    fn has_prefixed_keys(&self, prefix: &str) -> bool {
        self.keys.keys().any(|k| k.starts_with(prefix))
    }
}

/// A 2-D f32 tensor's transpose (the linear weights' `[in, out]` against PyTorch's
/// `[out, in]`).
pub(crate) fn transposed(data: TensorData) -> std::result::Result<TensorData, burn_store::TensorSnapshotError> {
    let (rows, cols) = (data.shape[0], data.shape[1]);
    let v = data.to_vec::<f32>().map_err(|e| burn_store::TensorSnapshotError::DataError(format!("{e:?}")))?;
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    Ok(TensorData::new(t, [cols, rows]))
}

/// A module path as Hugging Face would name it (`gamma`/`beta` are `weight`/`bias`).
fn hf_name(path: &str) -> String {
    match path.rsplit_once('.') {
        Some((head, "gamma")) => format!("{head}.weight"),
        Some((head, "beta")) => format!("{head}.bias"),
        _ => path.to_owned(),
    }
}

/// Reads a safetensors header: key to shape (the `__metadata__` entry left out).
fn read_header(path: &Path) -> Result<BTreeMap<String, Vec<usize>>> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    let bad = |problem: String| Error::Format { path: path.to_owned(), problem };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(|_| bad("shorter than a safetensors header".into()))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(bad(format!("header length {len}: not a safetensors file")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header).map_err(|_| bad("header cut short".into()))?;
    let header: BTreeMap<String, Value> = serde_json::from_slice(&header).map_err(|e| bad(format!("header is not JSON: {e}")))?;
    header
        .into_iter()
        .filter(|(k, _)| k != "__metadata__")
        .map(|(k, v)| {
            let shape = v
                .get("shape")
                .and_then(Value::as_array)
                .and_then(|dims| dims.iter().map(|d| d.as_u64().map(|d| d as usize)).collect::<Option<Vec<_>>>())
                .ok_or_else(|| bad(format!("tensor '{k}' has no shape")))?;
            Ok((k, shape))
        })
        .collect()
}

/// PyTorch layouts to burn's: `[out, in]` weights of linear layers (burn's `Linear` and our
/// `LoraLinear`) transposed, layer norms' `weight`/`bias` found as `gamma`/`beta`, ViT's
/// `[1, 1, d]` class token and `[1, n, d]` positions and CLIP's 0-d logit scale reshaped,
/// half precision widened to f32.
#[derive(Debug, Clone, Copy)]
struct HfAdapter;

impl ModuleAdapter for HfAdapter {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let path = snapshot.path_stack.clone().unwrap_or_default();
        let param = path.last().map(String::as_str).unwrap_or_default();
        let module = snapshot.module_type().unwrap_or_default();
        let shape = snapshot.shape.to_vec();
        let transpose = matches!(module.as_str(), "Struct:Linear" | "Struct:LoraLinear") && param == "weight" && shape.len() == 2;
        let new_shape: Vec<usize> = if transpose {
            vec![shape[1], shape[0]]
        } else if shape.is_empty() {
            vec![1]
        } else if shape.len() == 3 && shape[0] == 1 && (param == "class_embedding" || (module == "Struct:Embedding" && param == "weight")) {
            if param == "class_embedding" {
                vec![shape[2]]
            } else {
                vec![shape[1], shape[2]]
            }
        } else {
            shape.clone()
        };
        let widen = matches!(snapshot.dtype, DType::F16 | DType::BF16 | DType::F64);
        if !transpose && new_shape == shape && !widen {
            return snapshot.clone();
        }
        let data_fn = snapshot.clone_data_fn();
        let dtype = if widen { DType::F32 } else { snapshot.dtype };
        let target = new_shape.clone();
        let fun = Rc::new(move || {
            let mut data = data_fn()?;
            if widen {
                data = data.convert_dtype(DType::F32);
            }
            if transpose {
                return transposed(data);
            }
            Ok(TensorData { shape: Shape::from(target.clone()), ..data })
        });
        TensorSnapshot::from_closure(fun, dtype, Shape::from(new_shape), path, snapshot.container_stack.clone().unwrap_or_default(), snapshot.tensor_id.unwrap_or_default())
    }

    fn get_alternative_param_name(&self, param_name: &str, container_type: &str) -> Option<String> {
        match (container_type, param_name) {
            ("Struct:LayerNorm", "gamma") => Some("weight".into()),
            ("Struct:LayerNorm", "beta") => Some("bias".into()),
            _ => None,
        }
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("vlm-backbone-pretrained-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_folder_without_config_names_the_file() {
        let dir = scratch("noconfig");
        let err = Checkpoint::open(&dir).expect_err("no config.json");
        assert!(matches!(err, Error::Io { .. }) && err.to_string().contains("config.json"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn a_file_that_is_not_safetensors_is_refused() {
        let dir = scratch("garbage");
        std::fs::write(dir.join("config.json"), r#"{"model_type": "bert"}"#).expect("write");
        std::fs::write(dir.join("model.safetensors"), b"\xff\xff\xff\xff\xff\xff\xff\xffnot a header").expect("write");
        let err = Checkpoint::open(&dir).expect_err("garbage");
        assert!(matches!(err, Error::Format { .. }) && err.to_string().contains("model.safetensors"), "{err}");
        std::fs::write(dir.join("model.safetensors"), [2u8, 0, 0, 0, 0, 0, 0, 0, b'{', b'x']).expect("write");
        let err = Checkpoint::open(&dir).expect_err("bad json");
        assert!(err.to_string().contains("not JSON"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn an_unsupported_model_type_names_the_key() {
        let dir = scratch("gpt2");
        std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2"}"#).expect("write");
        std::fs::write(dir.join("model.safetensors"), [2u8, 0, 0, 0, 0, 0, 0, 0, b'{', b'}']).expect("write");
        let err = Checkpoint::open(&dir).expect_err("gpt2");
        assert!(matches!(&err, Error::Config { key, .. } if key == "model_type") && err.to_string().contains("'gpt2'"), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn config_values_of_the_wrong_type_name_the_key() {
        let dir = scratch("types");
        std::fs::write(dir.join("config.json"), r#"{"model_type": "clip", "vision_config": {"hidden_size": "768"}}"#).expect("write");
        std::fs::write(dir.join("model.safetensors"), [2u8, 0, 0, 0, 0, 0, 0, 0, b'{', b'}']).expect("write");
        let ckpt = Checkpoint::open(&dir).expect("open");
        let err = ckpt.vision_config().expect_err("string width");
        assert!(err.to_string().contains("vision_config.hidden_size"), "{err}");
        // Absent keys take Hugging Face's defaults: CLIP's text tower is 512 x 12, 8 heads.
        let text = ckpt.text_config().expect("defaults");
        assert_eq!((text.vocab_size, text.width, text.layers, text.heads, text.eos_token_id), (49_408, 512, 12, 8, Some(49_407)));
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn norm_parameters_are_named_as_hugging_face_names_them() {
        assert_eq!(hf_name("encoder.layers.0.layer_norm1.gamma"), "encoder.layers.0.layer_norm1.weight");
        assert_eq!(hf_name("post_layernorm.beta"), "post_layernorm.bias");
        assert_eq!(hf_name("mlp.fc1.weight"), "mlp.fc1.weight");
    }
}
