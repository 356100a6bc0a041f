//! Writing a [`Clip`] as a Hugging Face `CLIPModel` folder: `config.json` and
//! `model.safetensors` with Hugging Face's keys and layouts, the inverse of
//! [`crate::Checkpoint`]'s loading. The module's names already are the checkpoint's keys; what
//! changes is the layout: linear weights are stored `[out, in]`, layer norms' `gamma`/`beta`
//! as `weight`/`bias`, and the logit scale as a 0-d tensor.

use std::path::Path;
use std::rc::Rc;

use burn::prelude::*;
use burn::tensor::{Shape, TensorData};
use burn_store::{KeyRemapper, ModuleAdapter, ModuleSnapshot, SafetensorsStore, TensorSnapshot};
use serde_json::json;

use crate::error::{Error, Result};
use crate::layers::{Activation, TransformerEncoder};
use crate::pretrained::{renames, BERT_NAMES, VIT_NAMES};
use crate::text::Pooling;
use crate::{Clip, ClipConfig, TextTransformer, TextTransformerConfig, VisionTransformer, VisionTransformerConfig, VitClassifier, VitClassifierConfig};

/// Writes `model` (of configuration `config`) to the folder `dir` as a Hugging Face
/// `CLIPModel`: `config.json` and `model.safetensors`. The folder loads back with
/// [`crate::Checkpoint::clip_model`], and in transformers with `CLIPModel.from_pretrained`.
/// Only the plain CLIP architecture has such a form: a model with mixture-of-experts layers, a
/// BERT-layout or bidirectional text tower, or a pooler is refused, naming what differs.
///
/// ```
/// use burn::backend::Flex;
/// use vlm_backbone::{Checkpoint, ClipConfig};
/// let device = Default::default();
/// let config = ClipConfig::tiny();
/// let model = config.init::<Flex>(&device);
/// let dir = std::env::temp_dir().join(format!("clip-export-doc-{}", std::process::id()));
/// vlm_backbone::save_clip(&model, &config, &dir)?;
/// let (back, report) = Checkpoint::open(&dir)?.clip_model::<Flex>(&device)?;
/// assert!(report.unused.is_empty());
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), vlm_backbone::Error>(())
/// ```
pub fn save_clip<B: Backend>(model: &Clip<B>, config: &ClipConfig, dir: &Path) -> Result<()> {
    if model.visual_feature_moe.is_some() || model.text_feature_moe.is_some() {
        return Err(refusal(dir, "feature_moe", "a CLIPModel has no feature-level mixture of experts"));
    }
    check_plain(&model.vision_model.encoder, "vision_config", dir)?;
    check_plain(&model.text_model.encoder, "text_config", dir)?;
    if !config.vision.clip_layout || config.vision.pooler {
        return Err(refusal(
            dir,
            "vision_config",
            "the image tower is not in CLIP's layout (pre-layernorm, no pooler): write the towers one at a time (save_vision_tower, save_text_tower)",
        ));
    }
    check_clip_text(&config.text, dir)?;
    let cfg = json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": config.projection_dim,
        "logit_scale_init_value": config.logit_scale_init,
        "vision_config": vision_json(&config.vision, Some(config.projection_dim)),
        "text_config": text_json(&config.text, Some(config.projection_dim)),
    });
    write_folder(dir, &cfg, model, &[], Layout::Clip)
}

/// Writes an image tower (of configuration `config`) to the folder `dir` as the Hugging Face
/// class of its layout: a `CLIPVisionModel` (keys under `vision_model.`; its `pooler_output` is
/// this tower's [`VisionTransformer::forward`]) for CLIP's layout, a `ViTModel` (with its
/// pooler where the tower has one) for `ViTModel`'s ([`VisionTransformerConfig::hf_vit`], a
/// tower loaded from such a checkpoint). A tower with mixture-of-experts layers or LoRA
/// adapters still attached (merge them first: [`VisionTransformer::merge_and_unload`]) is
/// refused.
///
/// ```
/// use burn::backend::Flex;
/// use vlm_backbone::{Checkpoint, VisionTransformerConfig};
/// let device = Default::default();
/// for config in [VisionTransformerConfig::new(32, 8, 32, 2, 2), VisionTransformerConfig::new(32, 8, 32, 2, 2).hf_vit()] {
///     let vit = config.init::<Flex>(&device);
///     let dir = std::env::temp_dir().join(format!("vision-export-doc-{}-{}", config.clip_layout, std::process::id()));
///     vlm_backbone::save_vision_tower(&vit, &config, &dir)?;
///     let (back, report) = Checkpoint::open(&dir)?.vision_model::<Flex>(&device)?;
///     assert!(report.unused.is_empty());
///     # std::fs::remove_dir_all(&dir).ok();
/// }
/// # Ok::<(), vlm_backbone::Error>(())
/// ```
pub fn save_vision_tower<B: Backend>(vit: &VisionTransformer<B>, config: &VisionTransformerConfig, dir: &Path) -> Result<()> {
    check_plain(&vit.encoder, "vision_config", dir)?;
    if !config.clip_layout {
        let cfg = json!({
            "architectures": ["ViTModel"],
            "model_type": "vit",
            "hidden_size": config.width,
            "intermediate_size": config.intermediate_size.unwrap_or(4 * config.width),
            "num_attention_heads": config.heads,
            "num_hidden_layers": config.layers,
            "image_size": config.image_size,
            "patch_size": config.patch_size,
            "num_channels": config.channels,
            "layer_norm_eps": config.layer_norm_eps,
            "hidden_act": act(config.activation),
            "qkv_bias": true,
        });
        return write_folder(dir, &cfg, vit, &renames(VIT_NAMES, false), Layout::Vit);
    }
    if config.pooler {
        return Err(refusal(dir, "vision_config", "a CLIP-layout image tower with a pooler has no Hugging Face class"));
    }
    let mut cfg = vision_json(config, None);
    cfg["architectures"] = json!(["CLIPVisionModel"]);
    write_folder(dir, &cfg, &ClipVisionModel { vision_model: vit.clone() }, &[], Layout::Clip)
}

/// Writes a text tower (of configuration `config`) to the folder `dir` as the Hugging Face
/// class of its layout: a `CLIPTextModel` (keys under `text_model.`) for CLIP's text tower
/// (causal, pooled at the end token), a `BertModel` (with its pooler where the tower has one)
/// for BERT's layout (a tower loaded from a BERT or MiniLM checkpoint). How a BERT tower pools
/// (mean or `[CLS]`) is the caller's choice, not part of the weights.
///
/// ```
/// use burn::backend::Flex;
/// use vlm_backbone::{Checkpoint, Pooling, TextTransformerConfig};
/// let device = Default::default();
/// for config in [TextTransformerConfig::new(64, 16, 32, 2, 2), TextTransformerConfig::bert(64, 16, 32, 2, 2, Pooling::Mean)] {
///     let text = config.init::<Flex>(&device);
///     let dir = std::env::temp_dir().join(format!("text-export-doc-{}-{}", config.bert_layout, std::process::id()));
///     vlm_backbone::save_text_tower(&text, &config, &dir)?;
///     let (back, report) = Checkpoint::open(&dir)?.text_model::<Flex>(&device)?;
///     assert!(report.unused.is_empty());
///     # std::fs::remove_dir_all(&dir).ok();
/// }
/// # Ok::<(), vlm_backbone::Error>(())
/// ```
pub fn save_text_tower<B: Backend>(text: &TextTransformer<B>, config: &TextTransformerConfig, dir: &Path) -> Result<()> {
    check_plain(&text.encoder, "text_config", dir)?;
    if config.bert_layout {
        let cfg = json!({
            "architectures": ["BertModel"],
            "model_type": "bert",
            "vocab_size": config.vocab_size,
            "max_position_embeddings": config.context_length,
            "hidden_size": config.width,
            "intermediate_size": config.intermediate_size.unwrap_or(4 * config.width),
            "num_attention_heads": config.heads,
            "num_hidden_layers": config.layers,
            "layer_norm_eps": config.layer_norm_eps,
            "hidden_act": act(config.activation),
            "type_vocab_size": config.type_vocab_size,
            "pad_token_id": config.pad_token_id,
            "position_embedding_type": "absolute",
        });
        return write_folder(dir, &cfg, text, &renames(BERT_NAMES, false), Layout::Clip);
    }
    check_clip_text(config, dir)?;
    let mut cfg = text_json(config, None);
    cfg["architectures"] = json!(["CLIPTextModel"]);
    write_folder(dir, &cfg, &ClipTextModel { text_model: text.clone() }, &[], Layout::Clip)
}

/// Writes a [`VitClassifier`] (of configuration `config`, an image tower in CLIP's layout and a
/// linear head on its pooled class token) to the folder `dir` in a form transformers and peft
/// read. `peft: None` folds the LoRA adapters into the tower: `config.json` and
/// `model.safetensors` are a `CLIPVisionModel`. `peft: Some(adapter_config)` keeps them apart:
/// `base/` is the `CLIPVisionModel` without adapters and `adapter/` the peft LoRA folder on it
/// (keys `base_model.model.encoder.layers.N...`, as peft names them on transformers 5's
/// `CLIPVisionModel`). In both, transformers has no
/// class for the head, so it is written beside the tower as `classifier.safetensors`
/// (`classifier.weight` `[classes, width]`, `classifier.bias`): the logits are
/// `pooler_output @ weight.T + bias`.
///
/// ```
/// use burn::backend::Flex;
/// use vlm_backbone::{Checkpoint, VisionTransformerConfig, VitClassifierConfig};
/// let device = Default::default();
/// let config = VitClassifierConfig::new(VisionTransformerConfig::new(16, 8, 16, 2, 2), 2);
/// let model = config.init::<Flex>(&device).with_lora(&lora_fair::LoraConfig::new().with_r(2), &["q_proj", "v_proj"], &device)?;
/// let dir = std::env::temp_dir().join(format!("vit-classifier-export-doc-{}", std::process::id()));
/// vlm_backbone::save_vit_classifier(&model, &config, &dir, None)?;
/// assert!(dir.join("classifier.safetensors").is_file());
/// Checkpoint::open(&dir)?.vision_model::<Flex>(&device)?;
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn save_vit_classifier<B: Backend>(model: &VitClassifier<B>, config: &VitClassifierConfig, dir: &Path, peft: Option<&lora_fair::AdapterConfig>) -> Result<()> {
    // peft names adapters by the module tree of the class it loads; this one is
    // CLIPVisionModel's.
    if !config.vit.clip_layout {
        return Err(refusal(dir, "vision_config", "the classifier's tower is not in CLIP's layout"));
    }
    match peft {
        None => save_vision_tower(&model.vit.clone().merge_and_unload(), &config.vit, dir)?,
        Some(adapter_config) => {
            // Paths relative to the tower: transformers 5's CLIPVisionModel has no
            // `vision_model` module (only its checkpoint keys keep the prefix), so peft
            // looks for `base_model.model.encoder.layers.N...`.
            let adapters = model.vit.lora_adapters();
            if adapters.is_empty() {
                return Err(refusal(dir, "adapter", "the model has no LoRA adapters to write as a peft adapter"));
            }
            save_vision_tower(&model.vit.clone().unload_lora(), &config.vit, &dir.join("base"))?;
            let adapter_dir = dir.join("adapter");
            lora_fair::save_adapters(&adapter_dir, &adapters, adapter_config).map_err(|e| Error::Format { path: adapter_dir.clone(), problem: e.to_string() })?;
        }
    }
    write_weights(&dir.join("classifier.safetensors"), &Head { classifier: model.classifier.clone() }, &[], Layout::Clip)
}

/// The head of a [`VitClassifier`] under the name transformers' image classifiers give it.
#[derive(Module, Debug)]
struct Head<B: Backend> {
    classifier: burn::nn::Linear<B>,
}

/// `CLIPVisionModel`'s module tree: the tower under `vision_model`.
#[derive(Module, Debug)]
struct ClipVisionModel<B: Backend> {
    vision_model: VisionTransformer<B>,
}

/// `CLIPTextModel`'s module tree: the tower under `text_model`.
#[derive(Module, Debug)]
struct ClipTextModel<B: Backend> {
    text_model: TextTransformer<B>,
}

fn refusal(dir: &Path, key: &str, problem: &str) -> Error {
    Error::Config { path: dir.join("config.json"), key: key.into(), problem: problem.into() }
}

/// Refuses a tower whose encoder has experts or attached adapters, which no Hugging Face
/// class holds.
fn check_plain<B: Backend>(encoder: &TransformerEncoder<B>, key: &str, dir: &Path) -> Result<()> {
    if encoder.layers.iter().any(|l| l.moe.is_some()) {
        return Err(refusal(dir, "token_moe", "a Hugging Face tower has no token-level mixture of experts"));
    }
    if !encoder.lora_adapters("encoder").is_empty() {
        return Err(refusal(dir, key, "the tower has LoRA adapters attached: merge them first (merge_and_unload) or write them as a peft adapter"));
    }
    Ok(())
}

/// Refuses a text tower that is not CLIP's.
fn check_clip_text(t: &TextTransformerConfig, dir: &Path) -> Result<()> {
    if !t.causal || t.pooling != Pooling::Eot || t.bert_layout || t.pooler || t.type_vocab_size > 0 {
        return Err(refusal(
            dir,
            "text_config",
            "the text tower is not CLIP's (causal, pooled at the end token, no pooler): write it alone (save_text_tower), as a BertModel if it has BERT's layout",
        ));
    }
    Ok(())
}

fn act(a: Activation) -> &'static str {
    match a {
        Activation::QuickGelu => "quick_gelu",
        Activation::Gelu => "gelu",
        Activation::Relu => "relu",
    }
}

/// `CLIPVisionConfig`'s keys.
fn vision_json(v: &VisionTransformerConfig, projection_dim: Option<usize>) -> serde_json::Value {
    let mut cfg = json!({
        "model_type": "clip_vision_model",
        "hidden_size": v.width,
        "intermediate_size": v.intermediate_size.unwrap_or(4 * v.width),
        "num_attention_heads": v.heads,
        "num_hidden_layers": v.layers,
        "image_size": v.image_size,
        "patch_size": v.patch_size,
        "num_channels": v.channels,
        "layer_norm_eps": v.layer_norm_eps,
        "hidden_act": act(v.activation),
    });
    if let Some(p) = projection_dim {
        cfg["projection_dim"] = json!(p);
    }
    cfg
}

/// `CLIPTextConfig`'s keys.
fn text_json(t: &TextTransformerConfig, projection_dim: Option<usize>) -> serde_json::Value {
    let mut cfg = json!({
        "model_type": "clip_text_model",
        "vocab_size": t.vocab_size,
        "max_position_embeddings": t.context_length,
        "hidden_size": t.width,
        "intermediate_size": t.intermediate_size.unwrap_or(4 * t.width),
        "num_attention_heads": t.heads,
        "num_hidden_layers": t.layers,
        "layer_norm_eps": t.layer_norm_eps,
        "hidden_act": act(t.activation),
        "pad_token_id": t.pad_token_id,
        // Transformers' legacy rule: an end id of 2 pools at the largest id, as a tower
        // without an end id does here.
        "eos_token_id": t.eos_token_id.unwrap_or(2),
    });
    // Null without a tokenizer's start id: transformers would otherwise assume CLIP's 49406.
    cfg["bos_token_id"] = json!(t.bos_token_id);
    if let Some(p) = projection_dim {
        cfg["projection_dim"] = json!(p);
    }
    cfg
}

/// Writes `config.json` and the module as `model.safetensors` in Hugging Face's layout, its
/// keys renamed by `rules` (regex, replacement; after `gamma`/`beta` become `weight`/`bias`).
fn write_folder<B: Backend, M: Module<B>>(dir: &Path, cfg: &serde_json::Value, module: &M, rules: &[(String, String)], layout: Layout) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
    let config_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(cfg).map_err(|e| Error::Format { path: config_path.clone(), problem: e.to_string() })?;
    std::fs::write(&config_path, text).map_err(|source| Error::Io { path: config_path.clone(), source })?;
    write_weights(&dir.join("model.safetensors"), module, rules, layout)
}

/// Writes the module's parameters as safetensors in Hugging Face's layout.
fn write_weights<B: Backend, M: Module<B>>(weights: &Path, module: &M, rules: &[(String, String)], layout: Layout) -> Result<()> {
    let format_err = |problem: String| Error::Format { path: weights.to_owned(), problem };
    let mut patterns: Vec<(String, String)> = vec![(r"\.gamma$".into(), ".weight".into()), (r"\.beta$".into(), ".bias".into())];
    patterns.extend_from_slice(rules);
    let renames = KeyRemapper::from_patterns(patterns).map_err(|e| format_err(format!("key rule: {e}")))?;
    let mut store = SafetensorsStore::from_file(weights).overwrite(true).remap(renames).with_to_adapter(ToHf(layout));
    module.save_into(&mut store).map_err(|e| format_err(e.to_string()))
}

/// Whose tensor shapes the export writes: CLIP's, or `ViTModel`'s (whose class token is
/// `[1, 1, width]` and position table `[1, tokens, width]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Clip,
    Vit,
}

/// Module layout to Hugging Face's: linear weights transposed to `[out, in]`, the `[1]` logit
/// scale to a 0-d tensor, and `ViTModel`'s extra leading dimensions.
#[derive(Debug, Clone, Copy)]
struct ToHf(Layout);

impl ModuleAdapter for ToHf {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let path = snapshot.path_stack.clone().unwrap_or_default();
        let param = path.last().cloned().unwrap_or_default();
        let module = snapshot.module_type().unwrap_or_default();
        let shape = snapshot.shape.to_vec();
        let transpose = matches!(module.as_str(), "Struct:Linear" | "Struct:LoraLinear") && param == "weight" && shape.len() == 2;
        let vit_table = self.0 == Layout::Vit && (path == ["embeddings", "class_embedding"] || path == ["embeddings", "position_embedding", "weight"]);
        let target: Vec<usize> = if transpose {
            vec![shape[1], shape[0]]
        } else if param == "logit_scale" && shape == [1] {
            vec![]
        } else if vit_table {
            // [width] -> [1, 1, width]; [tokens, width] -> [1, tokens, width].
            let mut t = vec![1; 3 - shape.len()];
            t.extend(&shape);
            t
        } else {
            return snapshot.clone();
        };
        let data_fn = snapshot.clone_data_fn();
        let out_shape = target.clone();
        let fun = Rc::new(move || {
            let data = data_fn()?;
            if !transpose {
                return Ok(TensorData { shape: Shape::from(out_shape.clone()), ..data });
            }
            crate::pretrained::transposed(data)
        });
        TensorSnapshot::from_closure(fun, snapshot.dtype, Shape::from(target), path, snapshot.container_stack.clone().unwrap_or_default(), snapshot.tensor_id.unwrap_or_default())
    }

    fn clone_box(&self) -> Box<dyn ModuleAdapter> {
        Box::new(*self)
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::prelude::*;

    use crate::{Checkpoint, ClipConfig, FoMoeConfig};

    #[test]
    fn an_exported_clip_loads_back_to_the_same_outputs() {
        let device = Default::default();
        Flex::seed(&device, 4);
        let config = ClipConfig::tiny();
        let model = config.init::<Flex>(&device);
        let dir = std::env::temp_dir().join(format!("clip-export-{}", std::process::id()));
        super::save_clip(&model, &config, &dir).expect("export");
        let ckpt = Checkpoint::open(&dir).expect("open");
        // The same configuration, the MLP width written out (4 x width when unset).
        let mut expected = config.clone();
        expected.vision.intermediate_size = Some(128);
        expected.text.intermediate_size = Some(128);
        assert_eq!(ckpt.clip_config().expect("config").to_string(), expected.to_string());
        let (back, report) = ckpt.clip_model::<Flex>(&device).expect("load");
        assert!(report.unused.is_empty(), "{:?}", report.unused);
        let images = Tensor::<Flex, 4>::random([2, 3, 32, 32], burn::tensor::Distribution::Default, &device);
        let tokens = Tensor::<Flex, 2, Int>::from_ints([[1, 5, 9, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], [2, 7, 63, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]], &device);
        let (a, b) = (model.forward(images.clone(), tokens.clone()), back.forward(images, tokens));
        a.into_data().assert_eq(&b.into_data(), true);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_lora_tower_is_refused_until_merged_and_its_merge_loads_back_to_the_same_outputs() {
        let device = Default::default();
        Flex::seed(&device, 5);
        let config = crate::VisionTransformerConfig::new(16, 8, 16, 2, 2);
        let vit = config.init::<Flex>(&device).with_lora(&lora_fair::LoraConfig::new().with_r(2), &["q_proj", "v_proj"], &device).expect("lora");
        // B starts at zero: give the adapters a non-zero delta so the merge matters.
        let adapters = vit
            .lora_adapters()
            .into_iter()
            .map(|(p, a)| (p, lora_fair::LoraAdapter::from_weights(a.lora_a.val(), a.lora_a.val().transpose().mul_scalar(0.5), 1.0).expect("adapter")))
            .collect();
        let vit = config.init::<Flex>(&device).with_lora_adapters(adapters).expect("attach");
        let dir = std::env::temp_dir().join(format!("clip-vision-export-{}", std::process::id()));
        let err = super::save_vision_tower(&vit, &config, &dir).unwrap_err().to_string();
        assert!(err.contains("LoRA adapters attached"), "{err}");
        let images = Tensor::<Flex, 4>::random([2, 3, 16, 16], burn::tensor::Distribution::Default, &device);
        let expected = vit.forward(images.clone());
        let merged = vit.merge_and_unload();
        super::save_vision_tower(&merged, &config, &dir).expect("export");
        let (back, report) = Checkpoint::open(&dir).expect("open").vision_model::<Flex>(&device).expect("load");
        assert!(report.unused.is_empty(), "{:?}", report.unused);
        back.forward(images).into_data().assert_approx_eq::<f32>(&expected.into_data(), burn::tensor::Tolerance::absolute(1e-5));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn vit_and_bert_towers_load_back_to_the_same_outputs() {
        let device = Default::default();
        Flex::seed(&device, 6);
        let dir = std::env::temp_dir().join(format!("tower-export-{}", std::process::id()));
        let config = crate::VisionTransformerConfig::new(16, 8, 16, 2, 2).hf_vit().with_pooler(true).with_intermediate_size(Some(24));
        let vit = config.init::<Flex>(&device);
        super::save_vision_tower(&vit, &config, &dir.join("vit")).expect("export");
        let (back, report) = Checkpoint::open(&dir.join("vit")).expect("open").vision_model::<Flex>(&device).expect("load");
        assert!(report.unused.is_empty(), "{:?}", report.unused);
        let images = Tensor::<Flex, 4>::random([2, 3, 16, 16], burn::tensor::Distribution::Default, &device);
        back.pooler_output(images.clone()).into_data().assert_eq(&vit.pooler_output(images).into_data(), true);

        let config = crate::TextTransformerConfig::bert(50, 12, 16, 2, 2, crate::Pooling::Mean).with_intermediate_size(Some(24));
        let text = config.init::<Flex>(&device);
        super::save_text_tower(&text, &config, &dir.join("bert")).expect("export");
        let (back, report) = Checkpoint::open(&dir.join("bert")).expect("open").text_model::<Flex>(&device).expect("load");
        assert!(report.unused.is_empty(), "{:?}", report.unused);
        let tokens = Tensor::<Flex, 2, Int>::from_ints([[2, 7, 9, 3, 0, 0], [2, 5, 3, 0, 0, 0]], &device);
        back.pooler_output(tokens.clone()).into_data().assert_eq(&text.pooler_output(tokens.clone()).into_data(), true);
        back.forward(tokens.clone()).into_data().assert_eq(&text.forward(tokens).into_data(), true);
        // A CLIPModel cannot hold the BERT tower: the message says what to do instead.
        let clip_config = crate::ClipConfig::new(crate::VisionTransformerConfig::new(16, 8, 16, 2, 2), config.clone(), 8);
        let clip = clip_config.init::<Flex>(&device);
        let err = super::save_clip(&clip, &clip_config, &dir.join("clip")).unwrap_err().to_string();
        assert!(err.contains("save_text_tower"), "{err}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn a_model_with_experts_is_refused() {
        let device = Default::default();
        let config = ClipConfig::tiny();
        let mut model = config.init::<Flex>(&device);
        model = model.with_fo_moe(&FoMoeConfig::new(2), &device).expect("fo-moe");
        let err = super::save_clip(&model, &config, &std::env::temp_dir().join("clip-export-moe")).unwrap_err().to_string();
        assert!(err.contains("mixture of experts"), "{err}");
    }
}
