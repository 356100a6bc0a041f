//! The ViT image encoder (Hugging Face `CLIPVisionTransformer` layout).

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};

use crate::norm::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::activation::tanh;
use burn::tensor::Distribution;

use crate::layers::{Activation, TransformerEncoder, TransformerEncoderConfig};

/// Sizes of a [`VisionTransformer`].
#[derive(Config, Debug)]
pub struct VisionTransformerConfig {
    /// Input images are `image_size x image_size`.
    pub image_size: usize,
    /// Square patch side.
    pub patch_size: usize,
    /// Token width.
    pub width: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Input channels.
    #[config(default = 3)]
    pub channels: usize,
    /// MLP activation (CLIP: QuickGELU; ViT: GELU).
    #[config(default = "Activation::QuickGelu")]
    pub activation: Activation,
    /// MLP hidden width; `None` is `4 x width`.
    #[config(default = "None")]
    pub intermediate_size: Option<usize>,
    /// Layer norm epsilon (CLIP: 1e-5; ViT: 1e-12).
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// CLIP's layout: a norm before the transformer (`pre_layrnorm`) and a bias-free patch
    /// convolution. Off is Hugging Face `ViTModel`'s: no pre-norm, a patch bias.
    #[config(default = true)]
    pub clip_layout: bool,
    /// `ViTModel`'s pooler, `tanh(dense(cls))`, for [`VisionTransformer::pooler_output`].
    #[config(default = false)]
    pub pooler: bool,
}

impl VisionTransformerConfig {
    /// ViT-B/16 at 224 px, as OpenAI CLIP's image tower (197 tokens).
    pub fn vit_b16() -> Self {
        Self::new(224, 16, 768, 12, 12)
    }

    /// Hugging Face `ViTModel`'s layout (GELU, eps 1e-12, patch bias, no pre-norm), e.g.
    /// `google/vit-base-patch16-224-in21k` is `VisionTransformerConfig::new(224, 16, 768, 12, 12).hf_vit()`.
    pub fn hf_vit(self) -> Self {
        self.with_activation(Activation::Gelu).with_layer_norm_eps(1e-12).with_clip_layout(false)
    }

    /// Number of tokens: patches plus the class token.
    pub fn tokens(&self) -> usize {
        (self.image_size / self.patch_size).pow(2) + 1
    }

    /// Creates the encoder with random weights (class and position embeddings ~ N(0, 0.02)).
    pub fn init<B: Backend>(&self, device: &B::Device) -> VisionTransformer<B> {
        let embeddings = VisionEmbeddings {
            patch_embedding: Conv2dConfig::new([self.channels, self.width], [self.patch_size; 2]).with_stride([self.patch_size; 2]).with_bias(!self.clip_layout).init(device),
            class_embedding: Param::from_tensor(Tensor::random([self.width], Distribution::Normal(0.0, 0.02), device)),
            position_embedding: EmbeddingConfig::new(self.tokens(), self.width).init(device),
            patch_size: self.patch_size,
        };
        let ln = || LayerNormConfig::new(self.width).with_epsilon(self.layer_norm_eps).init(device);
        VisionTransformer {
            embeddings,
            pre_layrnorm: self.clip_layout.then(ln),
            encoder: TransformerEncoderConfig::new(self.width, self.layers, self.heads)
                .with_activation(self.activation)
                .with_intermediate_size(self.intermediate_size)
                .with_layer_norm_eps(self.layer_norm_eps)
                .init(device),
            post_layernorm: ln(),
            pooler: self.pooler.then(|| LinearConfig::new(self.width, self.width).init(device)),
        }
    }
}

/// Patch, class and position embeddings.
#[derive(Module, Debug)]
pub struct VisionEmbeddings<B: Backend> {
    /// Non-overlapping patches to tokens (no bias in CLIP, a bias in `ViTModel`).
    pub patch_embedding: Conv2d<B>,
    /// The class token.
    pub class_embedding: Param<Tensor<B, 1>>,
    /// Learned positions of the class token and the patches.
    pub position_embedding: Embedding<B>,
    /// Patch side.
    pub patch_size: usize,
}

/// A ViT image encoder: pooled output is the layer-normed class token.
#[derive(Module, Debug)]
pub struct VisionTransformer<B: Backend> {
    /// Embeddings.
    pub embeddings: VisionEmbeddings<B>,
    /// Norm before the transformer (CLIP only; Hugging Face spells it `pre_layrnorm`).
    pub pre_layrnorm: Option<LayerNorm<B>>,
    /// The transformer.
    pub encoder: TransformerEncoder<B>,
    /// Norm of the pooled class token (`ViTModel`: `layernorm`, applied to every token).
    pub post_layernorm: LayerNorm<B>,
    /// `ViTModel`'s pooler (`pooler.dense`), used only by [`VisionTransformer::pooler_output`].
    pub pooler: Option<Linear<B>>,
}

impl<B: Backend> VisionTransformer<B> {
    /// Tokens after the last layer: [batch, 1 + patches, width] for images [batch, C, H, W].
    pub fn forward_tokens(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        self.forward_tokens_routed(images).0
    }

    /// [`VisionTransformer::forward_tokens`] and the routing weights of its MoE layers.
    pub fn forward_tokens_routed(&self, images: Tensor<B, 4>) -> (Tensor<B, 3>, Vec<Tensor<B, 2>>) {
        let e = &self.embeddings;
        let patches = e.patch_embedding.forward(images); // [b, width, h, w]
        let [b, width, _, _] = patches.dims();
        let patches = patches.flatten::<3>(2, 3).swap_dims(1, 2); // [b, n, width]
        let cls = e.class_embedding.val().reshape([1, 1, width]).repeat_dim(0, b);
        let x = Tensor::cat(vec![cls, patches], 1);
        let x = x + e.position_embedding.weight.val().unsqueeze_dim::<3>(0);
        let x = match &self.pre_layrnorm {
            Some(ln) => ln.forward(x),
            None => x,
        };
        self.encoder.forward_routed(x, None)
    }

    /// `ViTModel`'s `last_hidden_state`: every token after the final norm.
    pub fn last_hidden_state(&self, images: Tensor<B, 4>) -> Tensor<B, 3> {
        self.post_layernorm.forward(self.forward_tokens(images))
    }

    /// `ViTModel`'s `pooler_output`, `tanh(pooler(layernorm(cls)))`, when the model has a
    /// pooler; without one, the pooled class token ([`VisionTransformer::forward`], CLIP's
    /// `pooler_output`).
    pub fn pooler_output(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        let pooled = self.forward(images);
        match &self.pooler {
            Some(p) => tanh(p.forward(pooled)),
            None => pooled,
        }
    }

    /// Attaches LoRA adapters to the projections matching `targets` (peft's rule on paths such
    /// as `encoder.layers.3.self_attn.q_proj` or `encoder.layers.3.mlp.fc1`) and freezes their
    /// base weights. The rest of the model keeps training unless frozen by the caller
    /// (`Module::no_grad`).
    ///
    /// ```
    /// use burn::backend::Flex;
    /// use lora_fair::LoraConfig;
    /// use vlm_backbone::VisionTransformerConfig;
    ///
    /// let device = Default::default();
    /// let vit = VisionTransformerConfig::new(32, 8, 32, 2, 2).init::<Flex>(&device);
    /// let vit = vit.with_lora(&LoraConfig::new().with_r(4), &["q_proj", "v_proj"], &device)?;
    /// assert!(vit.encoder.layers[1].self_attn.v_proj.lora.is_some());
    /// assert!(vit.encoder.layers[1].self_attn.k_proj.lora.is_none());
    /// # Ok::<(), lora_fair::Error>(())
    /// ```
    pub fn with_lora<S: AsRef<str>>(self, cfg: &lora_fair::LoraConfig, targets: &[S], device: &B::Device) -> lora_fair::Result<Self> {
        Ok(VisionTransformer { encoder: self.encoder.with_lora("encoder", cfg, targets, device)?, ..self })
    }

    /// The attached adapters by module path (`encoder.layers.{i}.self_attn.q_proj`, ...: Hugging
    /// Face CLIP's names under `vision_model`).
    pub fn lora_adapters(&self) -> Vec<(String, &lora_fair::LoraAdapter<B>)> {
        self.encoder.lora_adapters("encoder")
    }

    /// Attaches adapters read from a peft folder (paths as [`VisionTransformer::lora_adapters`]
    /// gives them); a path that names no projection of this model is an error.
    pub fn with_lora_adapters(self, mut adapters: std::collections::BTreeMap<String, lora_fair::LoraAdapter<B>>) -> lora_fair::Result<Self> {
        let encoder = self.encoder.attach_lora_adapters("encoder", &mut adapters)?;
        if let Some(path) = adapters.keys().next() {
            return Err(lora_fair::Error::Shape(format!("adapter for '{path}' matches no projection of the model ({} unmatched)", adapters.len())));
        }
        Ok(VisionTransformer { encoder, ..self })
    }

    /// Folds the attached adapters into the frozen weights and drops them (peft's
    /// `merge_and_unload`); the forward is unchanged.
    pub fn merge_and_unload(self) -> Self {
        VisionTransformer { encoder: self.encoder.merge_and_unload(), ..self }
    }

    /// Drops the attached adapters without folding them in (peft's `unload`): the base tower.
    pub fn unload_lora(self) -> Self {
        VisionTransformer { encoder: self.encoder.unload_lora(), ..self }
    }

    /// The pooled image feature: [batch, width].
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.forward_routed(images).0
    }

    /// The pooled image feature and the routing weights of the MoE layers.
    pub fn forward_routed(&self, images: Tensor<B, 4>) -> (Tensor<B, 2>, Vec<Tensor<B, 2>>) {
        let (tokens, routing) = self.forward_tokens_routed(images);
        let [b, _, width] = tokens.dims();
        (self.post_layernorm.forward(tokens.narrow(1, 0, 1).reshape([b, width])), routing)
    }
}
