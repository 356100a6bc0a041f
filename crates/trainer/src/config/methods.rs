//! The methods' own sections that the trainer declares: `[fairclip]`, `[fol]`, `[multimodal]`.
//! (`[moe]` is vlm-backbone's `FoMoeSettings`, `[ogm]` and `[multifair]` gradmod's own types.) Each is read by the
//! recipes that name it (see `recipes/`).

use serde::{Deserialize, Serialize};

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
    pub variant: fair_losses::FairClipVariant,
}

impl Default for FairClipConfig {
    fn default() -> Self {
        Self { attribute: "race".into(), lambda: 1e-6, blur: 1e-6, scaling: 0.5, group_batch_size: 32, variant: fair_losses::FairClipVariant::Official }
    }
}

/// `[fol]`: the Fairness-Oriented Loss; each term switchable for ablations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FolConfig {
    /// Formula.
    pub form: fair_losses::FolForm,
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
        Self { form: fair_losses::FolForm::Code, lambda_moe: 1e-4, image_token: true, text_token: true, image_feature: true, text_feature: true, distance: true }
    }
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
    pub fusion: vlm_backbone::Fusion,
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
            fusion: vlm_backbone::Fusion::Transformer,
            fusion_layers: 3,
            fusion_heads: 8,
            dropout: 0.1,
            head_lr: 1e-5,
            head_weight_decay: 3e-3,
            grad_clip: 0.8,
        }
    }
}
