//! The experiment file (TOML). Every field has a default; unknown keys and bad values are
//! errors that name the key. The defaults of `[optim]` and `[fairclip]` are the papers' (the
//! FairCLIP scripts'); the shipped `configs/benchmark-*.toml` override what training from
//! scratch on the CPU needs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A whole experiment.
///
/// ```
/// let exp = trainer::Experiment::from_toml_str("method = \"fairclip\"\n[optim]\nepochs = 3\n", "inline")?;
/// assert_eq!(exp.optim.lr, 1e-5); // FairCLIP's script
/// assert_eq!(exp.fairclip.lambda, 1e-6);
/// assert!(trainer::Experiment::from_toml_str("[optim]\nlearning_rate = 1\n", "inline").is_err());
/// # Ok::<(), trainer::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Experiment {
    /// Seed of the data order, the initialisation and the synthetic data.
    pub seed: u64,
    /// The method.
    pub method: Method,
    /// Data.
    pub data: DataConfig,
    /// Model sizes.
    pub model: ModelConfig,
    /// Optimiser and schedule.
    pub optim: OptimConfig,
    /// FairCLIP's regulariser (method `fairclip`).
    pub fairclip: FairClipConfig,
    /// Evaluation and model selection.
    pub eval: EvalConfig,
    /// FO-MoE layers (methods `fair-moe`, `fo-moe`).
    pub moe: MoeConfig,
    /// The Fairness-Oriented Loss (method `fair-moe`).
    pub fol: FolConfig,
    /// MultiFair's multimodal classifier (methods `late-fusion`, `ogm-ge`, `multifair`).
    pub multimodal: MultimodalConfig,
    /// OGM-GE's modulation (method `ogm-ge`).
    pub ogm: OgmConfig,
    /// MultiFair's modulation (method `multifair`).
    pub multifair: MultiFairConfig,
}

impl Default for Experiment {
    fn default() -> Self {
        Self {
            seed: 0,
            method: Method::Clip,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            optim: OptimConfig::default(),
            fairclip: FairClipConfig::default(),
            eval: EvalConfig::default(),
            moe: MoeConfig::default(),
            fol: FolConfig::default(),
            multimodal: MultimodalConfig::default(),
            ogm: OgmConfig::default(),
            multifair: MultiFairConfig::default(),
        }
    }
}

/// Training methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// CLIP fine-tuning with the symmetric InfoNCE loss (FairCLIP's "CLIP" rows).
    Clip,
    /// CLIP loss plus λ · Σ_g Sinkhorn(batch similarities, group-g similarities).
    Fairclip,
    /// Fair-MoE: the FO-MoE model (`[moe]`) trained with the Fairness-Oriented Loss (`[fol]`);
    /// the attribute, group batches and distance term come from `[fairclip]`.
    FairMoe,
    /// The FO-MoE model trained with the CLIP loss only (the paper's "w/o FOL" ablation).
    FoMoe,
    /// MultiFair's fundus + text classifier (`[multimodal]`) trained with cross-entropy, no
    /// modulation: the plain multimodal baseline.
    LateFusion,
    /// The same classifier with OGM-GE's modality-level modulation (`[ogm]`; needs
    /// `multimodal.fusion = "concat"`, whose halves give the unimodal logits).
    OgmGe,
    /// MultiFair: modality-level (CGGM-style) and group-level gradient modulation
    /// (`[multifair]`).
    Multifair,
}

impl Method {
    /// The name used in files and tables.
    pub fn name(self) -> &'static str {
        match self {
            Method::Clip => "clip",
            Method::Fairclip => "fairclip",
            Method::FairMoe => "fair-moe",
            Method::FoMoe => "fo-moe",
            Method::LateFusion => "late-fusion",
            Method::OgmGe => "ogm-ge",
            Method::Multifair => "multifair",
        }
    }

    /// Whether the method trains the multimodal classifier (else the CLIP dual encoder).
    pub fn is_multimodal(self) -> bool {
        matches!(self, Method::LateFusion | Method::OgmGe | Method::Multifair)
    }

    /// Whether the model carries FO-MoE layers.
    pub fn uses_moe(self) -> bool {
        matches!(self, Method::FairMoe | Method::FoMoe)
    }

    /// Whether the method draws per-group batches.
    pub fn uses_group_batches(self) -> bool {
        matches!(self, Method::Fairclip | Method::FairMoe)
    }
}

/// Where the data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// The built-in synthetic benchmark, generated in memory from `[data.synthetic]`.
    Synthetic,
    /// A folder in Harvard-FairVLMed's format (`root`): the real download or `fairvlm synth`'s.
    Fairvlmed,
    /// A folder in Harvard-FairVision's format (`root`: `train/`, `val/`, `test/`) for the
    /// multimodal methods' OCT pairing.
    Fairvision,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `synthetic` or `fairvlmed`.
    pub source: DataSource,
    /// The dataset folder (source `fairvlmed`); relative paths are relative to the config file.
    pub root: Option<PathBuf>,
    /// A summary CSV whose text replaces the npz notes (FairCLIP trains on the GPT-4 summaries:
    /// `gpt-4_summarized_notes.csv`).
    pub summary_csv: Option<PathBuf>,
    /// Drop samples with an unknown (-1) attribute; unset does what FairCLIP does (drop them
    /// from validation and test only).
    pub filter_unknown: Option<bool>,
    /// Unreadable files: `fail` (default) or `skip` (counted and reported).
    pub on_error: OnErrorConfig,
    /// Vocabulary of a tokenizer trained here (without `model.text.tokenizer`).
    pub vocab_size: usize,
    /// Tokens per text (CLIP: 77).
    pub context_length: usize,
    /// FairCLIP truncates notes to this many characters before tokenising.
    pub note_chars: usize,
    /// The synthetic benchmark (source `synthetic`): [`fair_data::SynthConfig`]'s fields, with
    /// `[[data.synthetic.effects]]` entries for [`fair_data::GroupEffect`]; unset fields are the
    /// default benchmark's.
    pub synthetic: fair_data::SynthConfig,
    /// The synthetic OCT volumes (`multimodal.pairing = "oct"` with source `synthetic`).
    pub oct: fair_data::OctSynth,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: DataSource::Synthetic,
            root: None,
            summary_csv: None,
            filter_unknown: None,
            on_error: OnErrorConfig::Fail,
            vocab_size: 1000,
            context_length: 77,
            note_chars: 180,
            synthetic: fair_data::SynthConfig::default(),
            oct: fair_data::OctSynth::default(),
        }
    }
}

/// `[data] on_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnErrorConfig {
    /// Stop at the first unreadable file, naming it.
    Fail,
    /// Skip unreadable files and count them.
    Skip,
}

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
            None => Ok(self.preset_config(2, 2).vision),
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
            // One CLIPModel for both towers brings its joint space too (train.rs loads it).
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
    fn check_towers(&self) -> Result<(), String> {
        let vision = [("image_size", self.image_size), ("patch_size", self.patch_size), ("vision_width", self.vision_width), ("vision_layers", self.vision_layers), ("vision_heads", self.vision_heads)];
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

    fn preset_config(&self, vocab_size: usize, context_length: usize) -> vlm_backbone::ClipConfig {
        use vlm_backbone::{ClipConfig, TextTransformerConfig, VisionTransformerConfig};
        let base = match self.preset.unwrap_or(Preset::Small) {
            Preset::Tiny => ClipConfig::tiny(),
            Preset::Small => ClipConfig::new(
                VisionTransformerConfig::new(64, 16, 128, 3, 4),
                TextTransformerConfig::new(vocab_size, context_length, 128, 2, 4),
                128,
            ),
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
        let text = TextTransformerConfig::new(
            vocab_size,
            context_length,
            self.text_width.unwrap_or(t.width),
            self.text_layers.unwrap_or(t.layers),
            self.text_heads.unwrap_or(t.heads),
        );
        ClipConfig::new(vision, text, self.projection_dim.unwrap_or(base.projection_dim))
    }
}

impl Experiment {
    /// MultiFair's classifier for a vocabulary and context length: the `[model]` image tower
    /// for the fundus, its text tower made bidirectional with `[CLS]` pooling (BERT's), and
    /// the `[multimodal]` fusion.
    pub fn multimodal_config(&self, vocab_size: usize, context_length: usize) -> Result<vlm_backbone::MultimodalClassifierConfig, String> {
        use vlm_backbone::{Fusion, MultimodalClassifierConfig, Pooling, SecondModality, VisionTransformerConfig};
        let clip = self.model.clip_config(vocab_size, context_length)?;
        let m = &self.multimodal;
        let second = match m.pairing {
            PairingConfig::Text => SecondModality::Text(clip.text.with_causal(false).with_pooling(Pooling::Cls)),
            PairingConfig::Oct => {
                let v = &clip.vision;
                // The fundus tower's architecture (a checkpoint's too) at the OCT slice size.
                if m.oct_heads == 0 || v.width % m.oct_heads != 0 || m.oct_size % v.patch_size != 0 {
                    return Err(format!("multimodal.oct_heads = {} / oct_size = {}: the heads must divide the image tower's width {} and the size be a multiple of its patch {}", m.oct_heads, m.oct_size, v.width, v.patch_size));
                }
                let mut vit: VisionTransformerConfig = v.clone();
                vit.image_size = m.oct_size;
                let vit = vit.with_pooler(false);
                SecondModality::Oct { vit, slices: m.oct_slices, layers: m.oct_layers, heads: m.oct_heads }
            }
        };
        Ok(MultimodalClassifierConfig::new(clip.vision, second, m.proj_dim)
            .with_fusion(match m.fusion {
                FusionConfig::Transformer => Fusion::Transformer,
                FusionConfig::Concat => Fusion::Concat,
            })
            .with_fusion_layers(m.fusion_layers)
            .with_fusion_heads(m.fusion_heads)
            .with_dropout(m.dropout))
    }
}

/// Optimisers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OptimizerKind {
    /// Adam with L2 weight decay added to the gradient (PyTorch `Adam`, the papers' choice).
    Adam,
    /// AdamW (decoupled weight decay).
    Adamw,
}

/// `[optim]`. Defaults: FairCLIP's `finetune_*.sh` (Adam, lr 1e-5, betas (0.1, 0.1), eps 1e-6,
/// weight decay 6e-5, batch 32, 10 epochs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    /// Adam or AdamW.
    pub optimizer: OptimizerKind,
    /// Learning rate.
    pub lr: f64,
    /// Adam's β₁, β₂.
    pub betas: [f64; 2],
    /// Adam's ε.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// Samples per step.
    pub batch_size: usize,
    /// Passes over the training split.
    pub epochs: usize,
    /// Linear warm-up of the learning rate over this many steps (0: none, as the papers).
    pub warmup_steps: usize,
    /// Learning rate of the text tower (CLIP methods), for a pretrained text encoder
    /// fine-tuned beside an image tower trained from scratch; unset: `lr`. Warm-up scales both.
    pub text_lr: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        Self {
            optimizer: OptimizerKind::Adam,
            lr: 1e-5,
            betas: [0.1, 0.1],
            eps: 1e-6,
            weight_decay: 6e-5,
            batch_size: 32,
            epochs: 10,
            warmup_steps: 0,
            text_lr: None,
        }
    }
}

/// Which FairCLIP similarities (see [`fair_losses::FairClipVariant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VariantConfig {
    /// The released code's (default).
    Official,
    /// The paper's reading.
    Aligned,
}

/// `[fairclip]`. Defaults: `scripts/finetune_FairCLIP.sh` (λ 1e-6, blur 1e-6, group batch 32).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FairClipConfig {
    /// The attribute whose groups are matched.
    pub attribute: String,
    /// Weight λ of the regulariser (the paper's text says 1e-7).
    pub lambda: f64,
    /// Sinkhorn blur σ.
    pub blur: f64,
    /// geomloss ε-scaling ratio.
    pub scaling: f64,
    /// Samples per group batch.
    pub group_batch_size: usize,
    /// Official code or paper.
    pub variant: VariantConfig,
}

impl Default for FairClipConfig {
    fn default() -> Self {
        Self { attribute: "race".into(), lambda: 1e-6, blur: 1e-6, scaling: 0.5, group_batch_size: 32, variant: VariantConfig::Official }
    }
}

/// Expert capacity rules of the token MoE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapacityRule {
    /// The code: `int(capacity_reference · rate · k / experts)` (197 tokens for every tower).
    Code,
    /// The paper: from each sequence's real token count.
    Tokens,
    /// No capacity limit.
    None,
}

/// `[moe]`: FO-MoE's layers. Defaults: the official code (10 experts, top 3, capacity 0.8 of
/// 197 tokens, `out − x`, dense feature MoEs), in all four places (the paper's full model).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MoeConfig {
    /// Token-MoE experts.
    pub experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Capacity rule.
    pub capacity: CapacityRule,
    /// Capacity rate C.
    pub capacity_rate: f64,
    /// Token count of the code's rule.
    pub capacity_reference: usize,
    /// The code's `out − x`.
    pub subtract_input: bool,
    /// Renormalise kept routing weights per token.
    pub renormalize: bool,
    /// Feature-MoE top-k (the paper); unset: dense softmax (the code).
    pub feature_top_k: Option<usize>,
    /// Token MoE in the image tower.
    pub image_token: bool,
    /// Token MoE in the text tower.
    pub text_token: bool,
    /// Feature MoE after the image projection.
    pub image_feature: bool,
    /// Feature MoE after the text projection.
    pub text_feature: bool,
}

impl Default for MoeConfig {
    fn default() -> Self {
        Self {
            experts: 10,
            top_k: 3,
            capacity: CapacityRule::Code,
            capacity_rate: 0.8,
            capacity_reference: 197,
            subtract_input: true,
            renormalize: false,
            feature_top_k: None,
            image_token: true,
            text_token: true,
            image_feature: true,
            text_feature: true,
        }
    }
}

/// Which FOL formula (see [`fair_losses::FolForm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FolFormConfig {
    /// The released code's.
    Code,
    /// The paper's.
    Paper,
}

/// `[fol]`: the Fairness-Oriented Loss; each term switchable for ablations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FolConfig {
    /// Formula.
    pub form: FolFormConfig,
    /// λ_moe of the code's form (1e-4).
    pub lambda_moe: f64,
    /// F_EI: the image token MoE's term.
    pub image_token: bool,
    /// F_ET: the text token MoE's term.
    pub text_token: bool,
    /// F_FI: the image feature MoE's term.
    pub image_feature: bool,
    /// F_FT: the text feature MoE's term.
    pub text_feature: bool,
    /// The Sinkhorn distance term (FairCLIP's, weighted by `fairclip.lambda`).
    pub distance: bool,
}

impl Default for FolConfig {
    fn default() -> Self {
        Self { form: FolFormConfig::Code, lambda_moe: 1e-4, image_token: true, text_token: true, image_feature: true, text_feature: true, distance: true }
    }
}

impl MoeConfig {
    /// The FO-MoE settings, with one feature expert per group of `attribute`.
    pub fn fo_moe(&self, attribute: &str) -> vlm_backbone::FoMoeConfig {
        use moe_layers::{Capacity, FeatureRouting};
        let capacity = match self.capacity {
            CapacityRule::Code => Capacity::Reference { tokens: self.capacity_reference, rate: self.capacity_rate },
            CapacityRule::Tokens => Capacity::FromTokens { rate: self.capacity_rate },
            CapacityRule::None => Capacity::Unlimited,
        };
        vlm_backbone::FoMoeConfig::new(attribute_groups(attribute))
            .with_experts(self.experts)
            .with_top_k(self.top_k)
            .with_capacity(capacity)
            .with_subtract_input(self.subtract_input)
            .with_renormalize(self.renormalize)
            .with_feature_routing(self.feature_top_k.map_or(FeatureRouting::Dense, FeatureRouting::TopK))
            .with_image_token(self.image_token)
            .with_text_token(self.text_token)
            .with_image_feature(self.image_feature)
            .with_text_feature(self.text_feature)
    }
}

/// Groups of each attribute with a known code (the feature MoE's expert count in the code).
pub fn attribute_groups(attribute: &str) -> usize {
    match attribute {
        "race" | "language" => 3,
        _ => 2,
    }
}

/// The split that picks the best epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectOn {
    /// Validation AUC (default; the clean protocol).
    Validation,
    /// Test AUC, as the official FairCLIP and Fair-MoE code does.
    Test,
}

/// `[eval]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Model selection split.
    pub select_on: SelectOn,
    /// Zero-shot prompts of class 0 and class 1.
    pub prompts: [String; 2],
    /// Bootstrap replicates for the intervals of the final report (0: none).
    pub bootstrap: usize,
    /// Threshold of the hard predictions.
    pub threshold: f64,
    /// Samples per inference batch.
    pub batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            select_on: SelectOn::Validation,
            prompts: ["A photo of non-glaucoma".into(), "A photo of glaucoma".into()],
            bootstrap: 200,
            threshold: 0.5,
            batch_size: 128,
        }
    }
}

impl EvalConfig {
    /// The bootstrap of the final report's intervals (`None` when `bootstrap = 0`).
    pub fn bootstrap(&self, seed: u64) -> Option<fair_metrics::Bootstrap> {
        (self.bootstrap > 0).then(|| fair_metrics::Bootstrap::new(self.bootstrap, seed))
    }
}

impl Experiment {
    /// Parses and validates TOML; `origin` names the text in errors (usually the file).
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self> {
        let exp: Experiment = toml::from_str(text).map_err(|e| Error::Config { origin: origin.into(), message: e.to_string() })?;
        exp.validate().map_err(|message| Error::Config { origin: origin.into(), message })?;
        Ok(exp)
    }

    /// Reads, parses and validates a config file; relative data paths become relative to it.
    pub fn from_file(path: &Path) -> Result<Self> {
        Self::from_file_with(path, &[])
    }

    /// [`Experiment::from_file`] with `key=value` overrides (dotted keys, TOML values; a value
    /// that is not TOML is taken as a string), e.g. `optim.epochs=1` or `method=fairclip`.
    ///
    /// ```
    /// let path = std::env::temp_dir().join(format!("exp-{}.toml", std::process::id()));
    /// std::fs::write(&path, "[optim]\nepochs = 8\n")?;
    /// let exp = trainer::Experiment::from_file_with(&path, &["optim.epochs=2".into(), "method=fairclip".into()])?;
    /// assert_eq!(exp.optim.epochs, 2);
    /// assert_eq!(exp.method, trainer::Method::Fairclip);
    /// # std::fs::remove_file(&path).ok();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_file_with(path: &Path, overrides: &[String]) -> Result<Self> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.into(), source })?;
        let text = if overrides.is_empty() { text } else { apply_overrides(&text, overrides).map_err(|message| Error::Config { origin: origin.clone(), message })? };
        let mut exp = Self::from_toml_str(&text, &origin)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let m = &mut exp.model;
        for p in [&mut exp.data.root, &mut exp.data.summary_csv, &mut m.vision.weights, &mut m.text.weights, &mut m.text.tokenizer].into_iter().flatten() {
            if p.is_relative() {
                // Absolute, so that the copy saved in a run folder still points at the data.
                let joined = base.join(&*p);
                *p = std::path::absolute(&joined).unwrap_or(joined);
            }
        }
        Ok(exp)
    }

    /// The config as TOML (saved in every run folder).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    fn validate(&self) -> std::result::Result<(), String> {
        let positive = |key: &str, v: f64| if v.is_finite() && v > 0.0 { Ok(()) } else { Err(format!("{key} = {v}: expected a number > 0")) };
        let at_least = |key: &str, v: usize, min: usize| if v >= min { Ok(()) } else { Err(format!("{key} = {v}: expected at least {min}")) };
        let o = &self.optim;
        positive("optim.lr", o.lr)?;
        positive("optim.eps", o.eps)?;
        if let Some(lr) = o.text_lr {
            positive("optim.text_lr", lr)?;
            if self.method.is_multimodal() {
                return Err("optim.text_lr: the multimodal methods have one learning rate for the encoders (optim.lr)".into());
            }
        }
        for (i, b) in o.betas.iter().enumerate() {
            if !(0.0..1.0).contains(b) {
                return Err(format!("optim.betas[{i}] = {b}: expected a value in [0, 1)"));
            }
        }
        if !(o.weight_decay.is_finite() && o.weight_decay >= 0.0) {
            return Err(format!("optim.weight_decay = {}: expected a number >= 0", o.weight_decay));
        }
        at_least("optim.batch_size", o.batch_size, 2)?;
        at_least("optim.epochs", o.epochs, 1)?;
        let f = &self.fairclip;
        if !fair_data::ATTRIBUTES.contains(&f.attribute.as_str()) {
            return Err(format!("fairclip.attribute = '{}': expected one of {}", f.attribute, fair_data::ATTRIBUTES.join(", ")));
        }
        if !(f.lambda.is_finite() && f.lambda >= 0.0) {
            return Err(format!("fairclip.lambda = {}: expected a number >= 0", f.lambda));
        }
        positive("fairclip.blur", f.blur)?;
        if !(f.scaling > 0.0 && f.scaling < 1.0) {
            return Err(format!("fairclip.scaling = {}: expected a value in (0, 1)", f.scaling));
        }
        at_least("fairclip.group_batch_size", f.group_batch_size, 2)?;
        let d = &self.data;
        at_least("data.context_length", d.context_length, 4)?;
        at_least("data.vocab_size", d.vocab_size, 300)?;
        at_least("data.note_chars", d.note_chars, 1)?;
        if d.source != DataSource::Synthetic && d.root.is_none() {
            return Err("data.root: required when data.source is not \"synthetic\"".into());
        }
        let oct_pairing = self.method.is_multimodal() && self.multimodal.pairing == PairingConfig::Oct;
        if d.source == DataSource::Fairvision && !oct_pairing {
            return Err("data.source = \"fairvision\": only the multimodal methods with multimodal.pairing = \"oct\" read FairVision".into());
        }
        if oct_pairing && d.source == DataSource::Fairvlmed {
            return Err("data.source = \"fairvlmed\": multimodal.pairing = \"oct\" needs OCT volumes (source fairvision or synthetic)".into());
        }
        d.oct.validate().map_err(|e| format!("data.{e}"))?;
        for (i, n) in d.synthetic.sizes.iter().enumerate() {
            at_least(&format!("data.synthetic.sizes[{i}]"), *n, 2)?;
        }
        d.synthetic.validate().map_err(|e| format!("data.synthetic.{}", e))?;
        // Checkpoint files are read when the model is built; here only the preset's sizes.
        self.model.check_towers()?;
        let m = self.model.preset_config(d.vocab_size, d.context_length);
        let v = &m.vision;
        if v.patch_size == 0 || v.image_size % v.patch_size != 0 {
            return Err(format!("model.patch_size = {}: must divide model.image_size = {}", v.patch_size, v.image_size));
        }
        if v.width % v.heads != 0 {
            return Err(format!("model.vision_heads = {}: must divide model.vision_width = {}", v.heads, v.width));
        }
        if m.text.width % m.text.heads != 0 {
            return Err(format!("model.text_heads = {}: must divide model.text_width = {}", m.text.heads, m.text.width));
        }
        let moe = &self.moe;
        at_least("moe.experts", moe.experts, 1)?;
        if moe.top_k == 0 || moe.top_k > moe.experts {
            return Err(format!("moe.top_k = {}: expected 1 to moe.experts ({})", moe.top_k, moe.experts));
        }
        if !(moe.capacity_rate > 0.0 && moe.capacity_rate.is_finite()) {
            return Err(format!("moe.capacity_rate = {}: expected a number > 0", moe.capacity_rate));
        }
        if let Some(k) = moe.feature_top_k {
            let groups = attribute_groups(&self.fairclip.attribute);
            if k == 0 || k > groups {
                return Err(format!("moe.feature_top_k = {k}: expected 1 to {groups} (the groups of {})", self.fairclip.attribute));
            }
        }
        if !(self.fol.lambda_moe.is_finite() && self.fol.lambda_moe >= 0.0) {
            return Err(format!("fol.lambda_moe = {}: expected a number >= 0", self.fol.lambda_moe));
        }
        let mm = &self.multimodal;
        if !fair_data::ATTRIBUTES.contains(&mm.attribute.as_str()) {
            return Err(format!("multimodal.attribute = '{}': expected one of {}", mm.attribute, fair_data::ATTRIBUTES.join(", ")));
        }
        at_least("multimodal.proj_dim", mm.proj_dim, 1)?;
        at_least("multimodal.oct_slices", mm.oct_slices, 1)?;
        at_least("multimodal.oct_layers", mm.oct_layers, 1)?;
        if oct_pairing && (self.model.text.weights.is_some() || self.model.text.tokenizer.is_some()) {
            return Err("model.text: the OCT pairing has no text encoder; remove model.text.weights / tokenizer".into());
        }
        // With a vision checkpoint, multimodal_config checks these against its tower.
        let preset_vision = self.model.vision.weights.is_none();
        if preset_vision && (mm.oct_heads == 0 || m.vision.width % mm.oct_heads != 0) {
            return Err(format!("multimodal.oct_heads = {}: must divide the image tower's width", mm.oct_heads));
        }
        let patch = m.vision.patch_size;
        if preset_vision && (patch == 0 || mm.oct_size % patch != 0) {
            return Err(format!("multimodal.oct_size = {}: must be a multiple of model.patch_size = {patch}", mm.oct_size));
        }
        at_least("multimodal.fusion_layers", mm.fusion_layers, 1)?;
        if mm.fusion_heads == 0 || mm.proj_dim % mm.fusion_heads != 0 {
            return Err(format!("multimodal.fusion_heads = {}: must divide multimodal.proj_dim = {}", mm.fusion_heads, mm.proj_dim));
        }
        if !(0.0..1.0).contains(&mm.dropout) {
            return Err(format!("multimodal.dropout = {}: expected a value in [0, 1)", mm.dropout));
        }
        positive("multimodal.head_lr", mm.head_lr)?;
        if !(mm.head_weight_decay >= 0.0 && mm.grad_clip >= 0.0 && mm.grad_clip.is_finite()) {
            return Err(format!("multimodal.head_weight_decay = {}, multimodal.grad_clip = {}: expected numbers >= 0", mm.head_weight_decay, mm.grad_clip));
        }
        if self.method.is_multimodal() && self.optim.optimizer != OptimizerKind::Adamw {
            return Err("optim.optimizer: the multimodal methods train with AdamW, as MultiFair; set optim.optimizer = \"adamw\"".into());
        }
        if self.method == Method::OgmGe && mm.fusion != FusionConfig::Concat {
            return Err("multimodal.fusion: method ogm-ge reads unimodal logits off a concat head; set multimodal.fusion = \"concat\"".into());
        }
        if self.method == Method::Multifair && self.multifair.mode == MultiFairModeConfig::Faithful && mm.fusion != FusionConfig::Transformer {
            return Err("multimodal.fusion: the faithful direction term aligns the transformer fusion's classifier; set multimodal.fusion = \"transformer\"".into());
        }
        let og = &self.ogm;
        if !(og.alpha.is_finite() && og.alpha >= 0.0) || og.start_epoch == 0 || og.end_epoch < og.start_epoch {
            return Err(format!("[ogm]: alpha = {}, start_epoch = {}, end_epoch = {}: expected alpha >= 0 and 1 <= start_epoch <= end_epoch", og.alpha, og.start_epoch, og.end_epoch));
        }
        let mf = &self.multifair;
        for (key, v) in [("multifair.rho", mf.rho), ("multifair.lambda_gm", mf.lambda_gm), ("multifair.fairness_coeff", mf.fairness_coeff), ("multifair.threshold", mf.threshold), ("multifair.strength", mf.strength)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{key} = {v}: expected a number >= 0"));
            }
        }
        let e = &self.eval;
        if !(0.0..=1.0).contains(&e.threshold) {
            return Err(format!("eval.threshold = {}: expected a value in [0, 1]", e.threshold));
        }
        at_least("eval.batch_size", e.batch_size, 1)?;
        Ok(())
    }
}

/// Fusion of the multimodal classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FusionConfig {
    /// MultiFair's post-norm transformer over the two projected tokens.
    Transformer,
    /// OGM-GE's `Linear(2P, 2)` on the concatenation.
    Concat,
}

/// The second modality of the multimodal classifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PairingConfig {
    /// The clinical note (FairVLMed).
    Text,
    /// The OCT volume (FairVision).
    Oct,
}

/// `[multimodal]`: MultiFair's classifier on the fundus image and the note or the OCT volume
/// (FairVLMed code settings; the towers come from `[model]`: the text tower bidirectional with
/// `[CLS]` pooling as BERT, the OCT slice ViT the fundus ViT's architecture at `oct_size`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultimodalConfig {
    /// The second modality.
    pub pairing: PairingConfig,
    /// B-scans per volume (10).
    pub oct_slices: usize,
    /// Side of a B-scan fed to the slice ViT (the code: 224).
    pub oct_size: usize,
    /// Layers of the slice aggregator (2).
    pub oct_layers: usize,
    /// Its heads (4).
    pub oct_heads: usize,
    /// The attribute of the group-level modulation (MultiFair: `gender`).
    pub attribute: String,
    /// Fusion width `P` (256).
    pub proj_dim: usize,
    /// Fusion.
    pub fusion: FusionConfig,
    /// Fusion transformer layers (3).
    pub fusion_layers: usize,
    /// Fusion heads (8).
    pub fusion_heads: usize,
    /// Dropout (0.1).
    pub dropout: f64,
    /// Learning rate of the auxiliary heads' AdamW (1e-5).
    pub head_lr: f64,
    /// Their weight decay (3e-3).
    pub head_weight_decay: f64,
    /// Global gradient-norm clip of the model, every method (0.8); 0 turns it off.
    pub grad_clip: f64,
}

impl Default for MultimodalConfig {
    fn default() -> Self {
        Self {
            pairing: PairingConfig::Text,
            oct_slices: 10,
            oct_size: 32,
            oct_layers: 2,
            oct_heads: 4,
            attribute: "gender".into(),
            proj_dim: 256,
            fusion: FusionConfig::Transformer,
            fusion_layers: 3,
            fusion_heads: 8,
            dropout: 0.1,
            head_lr: 1e-5,
            head_weight_decay: 3e-3,
            grad_clip: 0.8,
        }
    }
}

/// `[ogm]`: OGM-GE (the official code's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OgmConfig {
    /// α (0.1).
    pub alpha: f64,
    /// Gaussian enhancement (OGM-GE rather than OGM).
    pub gaussian_enhancement: bool,
    /// First epoch with modulation (1-based).
    pub start_epoch: usize,
    /// Last epoch with modulation.
    pub end_epoch: usize,
    /// Modulate only 4-D kernels, as the code (there: the ResNets' convolutions; here: the
    /// patch embeddings). `false` modulates every parameter of the encoders.
    pub conv_only: bool,
}

impl Default for OgmConfig {
    fn default() -> Self {
        Self { alpha: 0.1, gaussian_enhancement: true, start_epoch: 1, end_epoch: 1000, conv_only: false }
    }
}

/// MultiFair's two readings (docs/methods.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MultiFairModeConfig {
    /// The released code: magnitude modulation only (direction and fairness terms inert).
    CodeExact,
    /// Plus the differentiable direction term and the surrogate-AUC fairness term.
    Faithful,
}

/// `[multifair]`: MultiFair's modulation (FairVLMed code settings).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MultiFairConfig {
    /// Reading.
    pub mode: MultiFairModeConfig,
    /// ρ, the scale of the modality factors (1.2).
    pub rho: f64,
    /// λ_gm, the direction term's weight (0.15; `faithful` only).
    pub lambda_gm: f64,
    /// The fairness term's weight (0.5; `faithful` only).
    pub fairness_coeff: f64,
    /// τ, the trigger threshold on the batch's group AUC gap (0.07).
    pub threshold: f64,
    /// fm, the strength of the group factors (0.5).
    pub strength: f64,
}

impl Default for MultiFairConfig {
    fn default() -> Self {
        Self { mode: MultiFairModeConfig::CodeExact, rho: 1.2, lambda_gm: 0.15, fairness_coeff: 0.5, threshold: 0.07, strength: 0.5 }
    }
}

/// Applies `key=value` overrides to a TOML document.
pub(crate) fn apply_overrides(text: &str, overrides: &[String]) -> std::result::Result<String, String> {
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    for o in overrides {
        let (key, raw) = o.split_once('=').ok_or_else(|| format!("override '{o}': expected key=value"))?;
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let parts: Vec<&str> = key.trim().split('.').collect();
        let (last, path) = parts.split_last().ok_or_else(|| format!("override '{o}': empty key"))?;
        let mut table = &mut doc;
        for p in path {
            let entry = table.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().ok_or_else(|| format!("override '{o}': '{p}' is not a table"))?;
        }
        table.insert(last.to_string(), value);
    }
    toml::to_string(&doc).map_err(|e| e.to_string())
}
