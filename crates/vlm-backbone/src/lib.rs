//! Vision and vision-language backbones on burn, generic over the backend.
//!
//! - [`VisionTransformer`]: a CLIP/ViT image encoder (patch convolution, class token, learned
//!   positions, pre-norm transformer, pooled class token).
//! - [`TextTransformer`]: a text encoder, causal with end-of-text pooling (CLIP) or
//!   bidirectional with class-token or mean pooling.
//! - [`Clip`]: the dual encoder with projections and a learnable logit scale, the contrastive
//!   logits and FairCLIP's zero-shot scoring; [`Clip::with_fo_moe`] turns it into Fair-MoE's
//!   FO-MoE model, whose routing weights [`Clip::encode_image_routed`] exposes.
//! - [`VitClassifier`]: a ViT with a classification head, the model fairness-aware LoRA adapts
//!   ([`VitClassifier::with_lora`]).
//! - [`MultimodalClassifier`]: MultiFair's fundus + text or fundus + OCT-volume classifier
//!   with transformer (or OGM-GE's concat) fusion, and its [`AuxiliaryHeads`].
//!
//! - [`Checkpoint`]: Hugging Face checkpoints (`CLIPModel`, `ViTModel`, `BertModel` and
//!   MiniLM) loaded into these towers, with numerical parity to transformers.
//!
//! Field names follow Hugging Face's `CLIPModel` (`vision_model.embeddings.patch_embedding`,
//! `encoder.layers.N.self_attn.q_proj`, `visual_projection`, ...), so that loading a checkpoint
//! is a plain key mapping.
//!
//! ```
//! use burn::backend::Flex;
//! use burn::prelude::*;
//! use vlm_backbone::ClipConfig;
//!
//! let device = Default::default();
//! let model = ClipConfig::tiny().init::<Flex>(&device);
//! let images = Tensor::<Flex, 4>::zeros([2, 3, 32, 32], &device);
//! let tokens = Tensor::<Flex, 2, Int>::from_ints([[1, 5, 9, 2, 0, 0], [1, 7, 2, 0, 0, 0]], &device);
//! let logits = model.forward(images, tokens);
//! assert_eq!(logits.dims(), [2, 2]);
//! ```

#![warn(missing_docs)]

mod classifier;
mod clip;
mod error;
mod export;
mod fomoe;
mod layers;
mod multimodal;
mod norm;
mod precision;
mod pretrained;
mod text;
mod vision;

pub use error::{Error, Result};
pub use export::{save_clip, save_text_tower, save_vision_tower, save_vit_classifier};
pub use precision::{autocast, precision, Autocast, Precision};
pub use pretrained::{Checkpoint, LoadReport};

pub use classifier::{VitClassifier, VitClassifierConfig};
pub use clip::{Clip, ClipConfig, Routing};
pub use fomoe::{CapacityRule, FoMoeConfig, FoMoeSettings};
pub use layers::{gelu, Activation, Attention, EncoderLayer, Mlp, TransformerEncoder, TransformerEncoderConfig};
pub use multimodal::{
    AuxiliaryHeads, ClassifierHead, Fusion, MultimodalClassifier, MultimodalClassifierConfig, MultimodalOutput, OctEncoder, PostNormEncoder, PostNormEncoderConfig, PostNormLayer,
    Projection, SecondInput, SecondModality,
};
pub use norm::{LayerNorm, LayerNormConfig};
pub use text::{Pooling, TextTransformer, TextTransformerConfig};
pub use vision::{VisionTransformer, VisionTransformerConfig};
