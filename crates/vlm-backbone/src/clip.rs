//! The CLIP dual encoder (Hugging Face `CLIPModel` layout).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;
use moe_layers::FeatureMoe;

use crate::text::{TextTransformer, TextTransformerConfig};
use crate::vision::{VisionTransformer, VisionTransformerConfig};

/// Sizes of a [`Clip`] model.
#[derive(Config, Debug)]
pub struct ClipConfig {
    /// Image tower.
    pub vision: VisionTransformerConfig,
    /// Text tower.
    pub text: TextTransformerConfig,
    /// Width of the joint embedding space.
    pub projection_dim: usize,
    /// Initial `logit_scale` (CLIP: ln(1 / 0.07)).
    #[config(default = 2.659_260_036_932_778_4)]
    pub logit_scale_init: f64,
}

impl ClipConfig {
    /// OpenAI CLIP ViT-B/16 (image 224/16, width 768 x 12; text 512 x 12; projection 512).
    pub fn vit_b16() -> Self {
        Self::new(VisionTransformerConfig::vit_b16(), TextTransformerConfig::clip_b16(), 512)
    }

    /// A tiny model for tests: 32 px images in 8 px patches, width 32, 2 layers, vocabulary 64.
    pub fn tiny() -> Self {
        Self::new(VisionTransformerConfig::new(32, 8, 32, 2, 4), TextTransformerConfig::new(64, 16, 32, 2, 4), 16)
    }

    /// Creates the model with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Clip<B> {
        Clip {
            vision_model: self.vision.init(device),
            text_model: self.text.init(device),
            visual_projection: LinearConfig::new(self.vision.width, self.projection_dim).with_bias(false).init(device),
            text_projection: LinearConfig::new(self.text.width, self.projection_dim).with_bias(false).init(device),
            logit_scale: Param::from_tensor(Tensor::from_floats([self.logit_scale_init as f32], device)),
            visual_feature_moe: None,
            text_feature_moe: None,
        }
    }
}

/// The CLIP dual encoder.
#[derive(Module, Debug)]
pub struct Clip<B: Backend> {
    /// Image tower.
    pub vision_model: VisionTransformer<B>,
    /// Text tower.
    pub text_model: TextTransformer<B>,
    /// Image feature to the joint space.
    pub visual_projection: Linear<B>,
    /// Text feature to the joint space.
    pub text_projection: Linear<B>,
    /// Log of the temperature of the contrastive logits.
    pub logit_scale: Param<Tensor<B, 1>>,
    /// FO-MoE's feature-level MoE on the projected image feature (see [`crate::FoMoeConfig`]).
    pub visual_feature_moe: Option<FeatureMoe<B>>,
    /// FO-MoE's feature-level MoE on the projected text feature.
    pub text_feature_moe: Option<FeatureMoe<B>>,
}

/// The routing weights of one tower's MoEs in a forward pass (`[rows, experts]` each).
#[derive(Debug, Clone)]
pub struct Routing<B: Backend> {
    /// Token-level MoEs, in layer order (rows: tokens x batch).
    pub token: Vec<Tensor<B, 2>>,
    /// The feature-level MoE (rows: batch).
    pub feature: Option<Tensor<B, 2>>,
}

/// The feature MoE's output replaces the feature (the code computes `x + output` and
/// discards it).
fn feature_moe<B: Backend>(f: Tensor<B, 2>, moe: Option<&FeatureMoe<B>>) -> (Tensor<B, 2>, Option<Tensor<B, 2>>) {
    match moe {
        Some(m) => {
            let out = m.forward(f);
            (out.output, Some(out.routing))
        }
        None => (f, None),
    }
}

fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

impl<B: Backend> Clip<B> {
    /// L2-normalised image embeddings [batch, projection_dim].
    pub fn encode_image(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.encode_image_routed(images).0
    }

    /// L2-normalised text embeddings [batch, projection_dim].
    pub fn encode_text(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        self.encode_text_routed(tokens).0
    }

    /// [`Clip::encode_image`] and the routing weights of the image tower's MoEs.
    pub fn encode_image_routed(&self, images: Tensor<B, 4>) -> (Tensor<B, 2>, Routing<B>) {
        let (pooled, token) = self.vision_model.forward_routed(images);
        let (f, feature) = feature_moe(self.visual_projection.forward(pooled), self.visual_feature_moe.as_ref());
        (l2_normalize(f), Routing { token, feature })
    }

    /// [`Clip::encode_text`] and the routing weights of the text tower's MoEs.
    pub fn encode_text_routed(&self, tokens: Tensor<B, 2, Int>) -> (Tensor<B, 2>, Routing<B>) {
        let (pooled, token) = self.text_model.forward_routed(tokens);
        let (f, feature) = feature_moe(self.text_projection.forward(pooled), self.text_feature_moe.as_ref());
        (l2_normalize(f), Routing { token, feature })
    }

    /// `exp(logit_scale)` as a [1, 1] tensor (differentiable).
    pub fn scale(&self) -> Tensor<B, 2> {
        self.logit_scale.val().exp().reshape([1, 1])
    }

    /// `logits_per_image = exp(logit_scale) · î t̂ᵀ` for matching batches of images and texts.
    pub fn forward(&self, images: Tensor<B, 4>, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        let (i, t) = (self.encode_image(images), self.encode_text(tokens));
        i.matmul(t.transpose()) * self.scale()
    }

    /// FairCLIP's zero-shot probability of class 1: `softmax([î·t̂₀, î·t̂₁])₁` with the raw
    /// cosines (no logit scale), where t̂₀, t̂₁ embed the two class prompts
    /// (`"A photo of non-glaucoma"`, `"A photo of glaucoma"`). `prompts`: [2, tokens].
    pub fn zero_shot(&self, images: Tensor<B, 4>, prompts: Tensor<B, 2, Int>) -> Tensor<B, 1> {
        let i = self.encode_image(images);
        let t = self.encode_text(prompts);
        let b = i.dims()[0];
        softmax(i.matmul(t.transpose()), 1).narrow(1, 1, 1).reshape([b])
    }
}
