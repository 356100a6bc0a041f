//! The text encoder (Hugging Face `CLIPTextTransformer` layout).

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig};
use burn::prelude::*;

use crate::layers::{Activation, TransformerEncoder, TransformerEncoderConfig};

/// How token states become one text feature.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The state at the end-of-text token, found as the largest token id of each row
    /// (OpenAI CLIP's convention: the end token has the largest id). Used with causal attention.
    Eot,
    /// The state of the first token (BERT's `[CLS]`).
    Cls,
    /// The mean of the states of the non-padding tokens (sentence-transformers).
    Mean,
}

/// Sizes and behaviour of a [`TextTransformer`].
#[derive(Config, Debug)]
pub struct TextTransformerConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Maximum tokens per text (CLIP: 77).
    pub context_length: usize,
    /// Token width.
    pub width: usize,
    /// Transformer layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Causal attention (CLIP) or bidirectional (BERT-style).
    #[config(default = true)]
    pub causal: bool,
    /// Pooling of the token states.
    #[config(default = "Pooling::Eot")]
    pub pooling: Pooling,
    /// Token id of padding (ignored by attention in bidirectional mode and by mean pooling).
    #[config(default = 0)]
    pub pad_token_id: usize,
    /// MLP activation.
    #[config(default = "Activation::QuickGelu")]
    pub activation: Activation,
}

impl TextTransformerConfig {
    /// OpenAI CLIP's text tower (vocabulary 49,408, context 77, width 512, 12 layers, 8 heads).
    pub fn clip_b16() -> Self {
        Self::new(49_408, 77, 512, 12, 8)
    }

    /// Creates the encoder with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> TextTransformer<B> {
        TextTransformer {
            embeddings: TextEmbeddings {
                token_embedding: EmbeddingConfig::new(self.vocab_size, self.width).init(device),
                position_embedding: EmbeddingConfig::new(self.context_length, self.width).init(device),
            },
            encoder: TransformerEncoderConfig::new(self.width, self.layers, self.heads)
                .with_activation(self.activation)
                .init(device),
            final_layer_norm: LayerNormConfig::new(self.width).init(device),
            causal: self.causal,
            pooling: self.pooling,
            pad_token_id: self.pad_token_id,
        }
    }
}

/// Token and position embeddings.
#[derive(Module, Debug)]
pub struct TextEmbeddings<B: Backend> {
    /// Token ids to vectors.
    pub token_embedding: Embedding<B>,
    /// Learned positions.
    pub position_embedding: Embedding<B>,
}

/// A text transformer: causal with end-of-text pooling, or bidirectional with class or mean
/// pooling.
#[derive(Module, Debug)]
pub struct TextTransformer<B: Backend> {
    /// Embeddings.
    pub embeddings: TextEmbeddings<B>,
    /// The transformer.
    pub encoder: TransformerEncoder<B>,
    /// Norm after the last layer.
    pub final_layer_norm: LayerNorm<B>,
    /// Causal attention.
    pub causal: bool,
    /// Pooling.
    pub pooling: Pooling,
    /// Padding token id.
    pub pad_token_id: usize,
}

impl<B: Backend> TextTransformer<B> {
    /// Token states after the final norm: [batch, tokens, width] for ids [batch, tokens]
    /// (at most `context_length` tokens).
    pub fn forward_tokens(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 3> {
        self.forward_tokens_routed(tokens).0
    }

    /// [`TextTransformer::forward_tokens`] and the routing weights of its MoE layers.
    pub fn forward_tokens_routed(&self, tokens: Tensor<B, 2, Int>) -> (Tensor<B, 3>, Vec<Tensor<B, 2>>) {
        let [b, t] = tokens.dims();
        let device = tokens.device();
        let positions = Tensor::<B, 1, Int>::arange(0..t as i64, &device).reshape([1, t]);
        let x = self.embeddings.token_embedding.forward(tokens.clone())
            + self.embeddings.position_embedding.forward(positions);
        let mask = if self.causal {
            // true above the diagonal: a token may not look ahead.
            Some(Tensor::<B, 2, Bool>::tril_mask([t, t], 0, &device).unsqueeze_dim::<3>(0).expand([b, t, t]))
        } else {
            let pad = tokens.equal_elem(self.pad_token_id as i64); // [b, t]
            Some(pad.unsqueeze_dim::<3>(1).expand([b, t, t]))
        };
        let (states, routing) = self.encoder.forward_routed(x, mask);
        (self.final_layer_norm.forward(states), routing)
    }

    /// The pooled text feature: [batch, width].
    pub fn forward(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        self.forward_routed(tokens).0
    }

    /// The pooled text feature and the routing weights of the MoE layers.
    pub fn forward_routed(&self, tokens: Tensor<B, 2, Int>) -> (Tensor<B, 2>, Vec<Tensor<B, 2>>) {
        let (states, routing) = self.forward_tokens_routed(tokens.clone());
        let [b, t, width] = states.dims();
        let pooled = match self.pooling {
            Pooling::Eot => {
                let idx = tokens.argmax(1).reshape([b, 1, 1]).expand([b, 1, width]);
                states.gather(1, idx).reshape([b, width])
            }
            Pooling::Cls => states.narrow(1, 0, 1).reshape([b, width]),
            Pooling::Mean => {
                let keep = tokens.not_equal_elem(self.pad_token_id as i64).float().reshape([b, t, 1]);
                let count = keep.clone().sum_dim(1).clamp_min(1.0); // [b, 1, 1]
                ((states * keep).sum_dim(1) / count).reshape([b, width])
            }
        };
        (pooled, routing)
    }
}
