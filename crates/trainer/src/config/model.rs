//! `[model]`: the towers' sizes (a preset with overrides) and pretrained checkpoints.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Named model sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// For tests: 32 px in 8 px patches, width 32, 2 + 2 layers.
    Tiny,
    /// Trains from scratch on a CPU in minutes: 64 px in 16 px patches, width 128, 3 + 2 layers.
    Small,
    /// OpenAI CLIP ViT-B/16 (224 px, 768 x 12; text 512 x 12; projection 512).
    VitB16,
}

/// `[model]`: a preset, and any size overridden.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Starting sizes (default `small`).
    pub preset: Option<Preset>,
    /// Input side in pixels.
    pub image_size: Option<usize>,
    /// Patch side.
    pub patch_size: Option<usize>,
    /// Image tower width.
    pub vision_width: Option<usize>,
    /// Image tower layers.
    pub vision_layers: Option<usize>,
    /// Image tower heads.
    pub vision_heads: Option<usize>,
    /// Text tower width.
    pub text_width: Option<usize>,
    /// Text tower layers.
    pub text_layers: Option<usize>,
    /// Text tower heads.
    pub text_heads: Option<usize>,
    /// Joint embedding width.
    pub projection_dim: Option<usize>,
    /// `[model.vision]`: a pretrained image tower.
    pub vision: VisionTower,
    /// `[model.text]`: a pretrained text tower and its tokenizer.
    pub text: TextTower,
}

/// `[model.vision]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct VisionTower {
    /// A Hugging Face checkpoint folder (`config.json` + `model.safetensors`: CLIPModel,
    /// CLIPVisionModel or ViTModel) whose image tower replaces the preset's; its sizes rule.
    pub weights: Option<PathBuf>,
}

/// `[model.text]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TextTower {
    /// A Hugging Face checkpoint folder (CLIPModel, CLIPTextModel, or BertModel such as
    /// all-MiniLM-L6-v2) whose text tower replaces the preset's; its sizes rule.
    pub weights: Option<PathBuf>,
    /// A `tokenizer.json`; unset: the one in `weights`, else a byte-level BPE tokenizer trained
    /// on the training notes. The tokenizer used is saved in the run folder.
    pub tokenizer: Option<PathBuf>,
    /// `false`: the checkpoint's architecture and tokenizer with random weights, the control
    /// that shows what pretraining brings. Default `true`.
    pub pretrained: bool,
}

impl Default for TextTower {
    fn default() -> Self {
        Self { weights: None, tokenizer: None, pretrained: true }
    }
}

impl TextTower {
    /// The tokenizer file to use, if any: `tokenizer`, else `weights/tokenizer.json`.
    pub fn tokenizer_file(&self) -> Result<Option<PathBuf>, String> {
        match (&self.tokenizer, &self.weights) {
            (Some(t), _) => Ok(Some(t.clone())),
            (None, Some(w)) => {
                let t = w.join("tokenizer.json");
                if t.is_file() {
                    Ok(Some(t))
                } else {
                    Err(format!("model.text.weights = {}: no tokenizer.json there; set model.text.tokenizer", w.display()))
                }
            }
            (None, None) => Ok(None),
        }
    }
}

impl ModelConfig {
    /// Side of the model's input images in pixels.
    pub fn image_size(&self) -> Result<usize, String> {
        Ok(self.vision_config()?.image_size)
    }

    /// The image tower: the checkpoint's when `[model.vision] weights` is set, else the preset
    /// with overrides.
    pub fn vision_config(&self) -> Result<vlm_backbone::VisionTransformerConfig, String> {
        match &self.vision.weights {
            Some(w) => {
                self.check_towers()?;
                vlm_backbone::Checkpoint::open(w).and_then(|c| c.vision_config()).map_err(|e| format!("model.vision.weights: {e}"))
            }
            // The vision tower does not depend on the text sizes.
            None => Ok(self.preset_vision()),
        }
    }

    /// The CLIP configuration for a vocabulary and context length: the preset with overrides,
    /// with the towers of `[model.vision]` and `[model.text]` checkpoints in place.
    pub fn clip_config(&self, vocab_size: usize, context_length: usize) -> Result<vlm_backbone::ClipConfig, String> {
        let mut cfg = self.preset_config(vocab_size, context_length);
        cfg.vision = self.vision_config()?;
        if let Some(w) = &self.text.weights {
            self.check_towers()?;
            let text = vlm_backbone::Checkpoint::open(w).and_then(|c| c.text_config()).map_err(|e| format!("model.text.weights: {e}"))?;
            if context_length > text.context_length {
                return Err(format!("data.context_length = {context_length}: the text checkpoint has only {} positions", text.context_length));
            }
            if vocab_size > text.vocab_size {
                return Err(format!("model.text.tokenizer: {vocab_size} tokens, more than the checkpoint's vocabulary of {}", text.vocab_size));
            }
            cfg.text = text;
            // One CLIPModel for both towers brings its joint space too (`towers::init_clip` loads it).
            if self.is_whole_clip() {
                let clip = vlm_backbone::Checkpoint::open(w).and_then(|c| c.clip_config()).map_err(|e| format!("model.text.weights: {e}"))?;
                cfg.projection_dim = clip.projection_dim;
                cfg.logit_scale_init = clip.logit_scale_init;
            }
        }
        Ok(cfg)
    }

    /// Both towers name the same `CLIPModel` folder (and the text tower is pretrained).
    pub fn is_whole_clip(&self) -> bool {
        match (&self.vision.weights, &self.text.weights) {
            (Some(v), Some(t)) if v == t && self.text.pretrained => vlm_backbone::Checkpoint::open(v).is_ok_and(|c| c.model_type().is_ok_and(|t| t == "clip")),
            _ => false,
        }
    }

    /// A checkpoint sets its tower's sizes: overriding them too is an error (no file is read).
    pub(crate) fn check_towers(&self) -> Result<(), String> {
        let vision = [
            ("image_size", self.image_size),
            ("patch_size", self.patch_size),
            ("vision_width", self.vision_width),
            ("vision_layers", self.vision_layers),
            ("vision_heads", self.vision_heads),
        ];
        let text = [("text_width", self.text_width), ("text_layers", self.text_layers), ("text_heads", self.text_heads)];
        if self.projection_dim.is_some() && self.vision.weights.is_some() && self.vision.weights == self.text.weights {
            return Err("model.projection_dim: both towers come from one checkpoint, whose projections set it; remove the key".into());
        }
        if !self.text.pretrained && self.text.weights.is_none() {
            return Err("model.text.pretrained = false: needs model.text.weights (the architecture to start from random weights)".into());
        }
        for (tower, weights, keys) in [("vision", &self.vision.weights, &vision[..]), ("text", &self.text.weights, &text[..])] {
            if let (Some(_), Some((key, _))) = (weights, keys.iter().find(|(_, v)| v.is_some())) {
                return Err(format!("model.{key}: the checkpoint in model.{tower}.weights sets this size; remove the key"));
            }
        }
        Ok(())
    }

    /// Checks the preset's sizes (checkpoint files are read when the model is built).
    pub(crate) fn validate(&self, vocab_size: usize, context_length: usize) -> Result<(), String> {
        self.check_towers()?;
        let m = self.preset_config(vocab_size, context_length);
        let v = &m.vision;
        // Sizes of zero divide by zero below (or train a constant model); sizes past these
        // caps abort on allocation (a ViT-L/14 at 336 px is 1,024 wide, 24 layers, 16 heads).
        for (key, value, max) in [
            ("model.image_size", v.image_size, 4096),
            ("model.vision_width", v.width, 8192),
            ("model.vision_layers", v.layers, 256),
            ("model.vision_heads", v.heads, 256),
            ("model.text_width", m.text.width, 8192),
            ("model.text_layers", m.text.layers, 256),
            ("model.text_heads", m.text.heads, 256),
            ("model.projection_dim", m.projection_dim, 8192),
        ] {
            if value == 0 || value > max {
                return Err(format!("{key} = {value}: expected 1 to {max}"));
            }
        }
        if v.patch_size == 0 || v.image_size % v.patch_size != 0 {
            return Err(format!("model.patch_size = {}: must divide model.image_size = {}", v.patch_size, v.image_size));
        }
        if v.width % v.heads != 0 {
            return Err(format!("model.vision_heads = {}: must divide model.vision_width = {}", v.heads, v.width));
        }
        if m.text.width % m.text.heads != 0 {
            return Err(format!("model.text_heads = {}: must divide model.text_width = {}", m.text.heads, m.text.width));
        }
        Ok(())
    }

    /// The preset's image tower (with overrides), whatever `[model.vision] weights` says.
    pub(crate) fn preset_vision(&self) -> vlm_backbone::VisionTransformerConfig {
        self.preset_config(2, 2).vision
    }

    fn preset_config(&self, vocab_size: usize, context_length: usize) -> vlm_backbone::ClipConfig {
        use vlm_backbone::{ClipConfig, TextTransformerConfig, VisionTransformerConfig};
        let base = match self.preset.unwrap_or(Preset::Small) {
            Preset::Tiny => ClipConfig::tiny(),
            Preset::Small => ClipConfig::new(VisionTransformerConfig::new(64, 16, 128, 3, 4), TextTransformerConfig::new(vocab_size, context_length, 128, 2, 4), 128),
            Preset::VitB16 => ClipConfig::vit_b16(),
        };
        let v = &base.vision;
        let t = &base.text;
        let vision = VisionTransformerConfig::new(
            self.image_size.unwrap_or(v.image_size),
            self.patch_size.unwrap_or(v.patch_size),
            self.vision_width.unwrap_or(v.width),
            self.vision_layers.unwrap_or(v.layers),
            self.vision_heads.unwrap_or(v.heads),
        );
        let text =
            TextTransformerConfig::new(vocab_size, context_length, self.text_width.unwrap_or(t.width), self.text_layers.unwrap_or(t.layers), self.text_heads.unwrap_or(t.heads));
        ClipConfig::new(vision, text, self.projection_dim.unwrap_or(base.projection_dim))
    }
}
