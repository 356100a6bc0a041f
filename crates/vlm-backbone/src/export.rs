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
use crate::layers::Activation;
use crate::text::Pooling;
use crate::{Clip, ClipConfig};

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
    let refuse = |key: &str, problem: &str| Err(Error::Config { path: dir.join("config.json"), key: key.into(), problem: problem.into() });
    let (v, t) = (&config.vision, &config.text);
    if model.visual_feature_moe.is_some() || model.text_feature_moe.is_some() {
        return refuse("feature_moe", "a CLIPModel has no feature-level mixture of experts");
    }
    if model.vision_model.encoder.layers.iter().chain(&model.text_model.encoder.layers).any(|l| l.moe.is_some()) {
        return refuse("token_moe", "a CLIPModel has no token-level mixture of experts");
    }
    if !v.clip_layout || v.pooler {
        return refuse("vision_config", "the image tower is not in CLIP's layout (pre-layernorm, no pooler)");
    }
    if !t.causal || t.pooling != Pooling::Eot || t.bert_layout || t.pooler || t.type_vocab_size > 0 {
        return refuse("text_config", "the text tower is not CLIP's (causal, pooled at the end token, no pooler)");
    }
    let act = |a: Activation| match a {
        Activation::QuickGelu => "quick_gelu",
        Activation::Gelu => "gelu",
        Activation::Relu => "relu",
    };
    let cfg = json!({
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": config.projection_dim,
        "logit_scale_init_value": config.logit_scale_init,
        "vision_config": {
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
            "projection_dim": config.projection_dim,
        },
        "text_config": {
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
            "projection_dim": config.projection_dim,
        },
    });
    std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.to_owned(), source })?;
    let config_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(&cfg).map_err(|e| Error::Format { path: config_path.clone(), problem: e.to_string() })?;
    std::fs::write(&config_path, text).map_err(|source| Error::Io { path: config_path.clone(), source })?;
    let weights = dir.join("model.safetensors");
    let format_err = |problem: String| Error::Format { path: weights.clone(), problem };
    let renames = KeyRemapper::from_patterns(vec![(r"\.gamma$", ".weight"), (r"\.beta$", ".bias")]).map_err(|e| format_err(format!("key rule: {e}")))?;
    let mut store = SafetensorsStore::from_file(&weights).overwrite(true).remap(renames).with_to_adapter(ToHf);
    model.save_into(&mut store).map_err(|e| format_err(e.to_string()))
}

/// Module layout to Hugging Face's: linear weights transposed to `[out, in]`, the `[1]` logit
/// scale to a 0-d tensor.
#[derive(Debug, Clone, Copy)]
struct ToHf;

impl ModuleAdapter for ToHf {
    fn adapt(&self, snapshot: &TensorSnapshot) -> TensorSnapshot {
        let path = snapshot.path_stack.clone().unwrap_or_default();
        let param = path.last().cloned().unwrap_or_default();
        let module = snapshot.module_type().unwrap_or_default();
        let shape = snapshot.shape.to_vec();
        let transpose = matches!(module.as_str(), "Struct:Linear" | "Struct:LoraLinear") && param == "weight" && shape.len() == 2;
        let scalar = param == "logit_scale" && shape == [1];
        if !transpose && !scalar {
            return snapshot.clone();
        }
        let target: Vec<usize> = if transpose { vec![shape[1], shape[0]] } else { vec![] };
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
    fn a_model_with_experts_is_refused() {
        let device = Default::default();
        let config = ClipConfig::tiny();
        let mut model = config.init::<Flex>(&device);
        model = model.with_fo_moe(&FoMoeConfig::new(2), &device).expect("fo-moe");
        let err = super::save_clip(&model, &config, &std::env::temp_dir().join("clip-export-moe")).unwrap_err().to_string();
        assert!(err.contains("mixture of experts"), "{err}");
    }
}
