//! The CLIP dual encoder (Hugging Face `CLIPModel` layout).

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::softmax;

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
}

fn l2_normalize<B: Backend>(x: Tensor<B, 2>) -> Tensor<B, 2> {
    let norm = x.clone().powf_scalar(2.0).sum_dim(1).sqrt().clamp_min(1e-12);
    x / norm
}

impl<B: Backend> Clip<B> {
    /// L2-normalised image embeddings [batch, projection_dim].
    pub fn encode_image(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        l2_normalize(self.visual_projection.forward(self.vision_model.forward(images)))
    }

    /// L2-normalised text embeddings [batch, projection_dim].
    pub fn encode_text(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        l2_normalize(self.text_projection.forward(self.text_model.forward(tokens)))
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
