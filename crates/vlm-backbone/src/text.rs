//! The text encoder: Hugging Face `CLIPTextTransformer`'s layout, or `BertModel`'s (BERT,
//! MiniLM) with [`TextTransformerConfig::bert`].

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};

use crate::norm::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::activation::tanh;

use crate::layers::{Activation, TransformerEncoder, TransformerEncoderConfig};

/// How token states become one text feature.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The state at the end-of-text token: the first position holding
    /// [`TextTransformerConfig::eos_token_id`], or without one the largest token id of each row
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
    /// MLP hidden width; `None` is `4 x width`.
    #[config(default = "None")]
    pub intermediate_size: Option<usize>,
    /// Layer norm epsilon (CLIP: 1e-5; BERT: 1e-12).
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// BERT's layout: post-norm layers, a norm on the embeddings and none at the end (off:
    /// CLIP's pre-norm layers and `final_layer_norm`).
    #[config(default = false)]
    pub bert_layout: bool,
    /// Token types (BERT: 2; 0 for none). The model always uses type 0, as a single sentence.
    #[config(default = 0)]
    pub type_vocab_size: usize,
    /// BERT's pooler, `tanh(dense(state[0]))`, for [`TextTransformer::pooler_output`].
    #[config(default = false)]
    pub pooler: bool,
    /// The end-of-text id that [`Pooling::Eot`] looks for (Hugging Face CLIP's
    /// `eos_token_id`); `None`: the largest id of the row.
    #[config(default = "None")]
    pub eos_token_id: Option<usize>,
    /// The start-of-text id the tokenizer puts first (Hugging Face CLIP's `bos_token_id`). The
    /// forward does not use it; an export writes it to `config.json` for the tokenizer's users.
    #[config(default = "None")]
    pub bos_token_id: Option<usize>,
}

impl TextTransformerConfig {
    /// OpenAI CLIP's text tower (vocabulary 49,408, context 77, width 512, 12 layers, 8 heads).
    pub fn clip_b16() -> Self {
        Self::new(49_408, 77, 512, 12, 8)
    }

    /// `BertModel`'s layout (bidirectional, post-norm, GELU, eps 1e-12, two token types,
    /// pooler) with `pooling` of the token states; `context_length` is
    /// `max_position_embeddings`. all-MiniLM-L6-v2 is
    /// `TextTransformerConfig::bert(30522, 512, 384, 6, 12, Pooling::Mean)`.
    pub fn bert(vocab_size: usize, context_length: usize, width: usize, layers: usize, heads: usize, pooling: Pooling) -> Self {
        Self::new(vocab_size, context_length, width, layers, heads)
            .with_causal(false)
            .with_pooling(pooling)
            .with_activation(Activation::Gelu)
            .with_layer_norm_eps(1e-12)
            .with_bert_layout(true)
            .with_type_vocab_size(2)
            .with_pooler(true)
    }

    /// Creates the encoder with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> TextTransformer<B> {
        let ln = || LayerNormConfig::new(self.width).with_epsilon(self.layer_norm_eps).init(device);
        TextTransformer {
            embeddings: TextEmbeddings {
                token_embedding: EmbeddingConfig::new(self.vocab_size, self.width).init(device),
                position_embedding: EmbeddingConfig::new(self.context_length, self.width).init(device),
                token_type_embedding: (self.type_vocab_size > 0).then(|| EmbeddingConfig::new(self.type_vocab_size, self.width).init(device)),
                layer_norm: self.bert_layout.then(ln),
            },
            encoder: TransformerEncoderConfig::new(self.width, self.layers, self.heads)
                .with_activation(self.activation)
                .with_intermediate_size(self.intermediate_size)
                .with_layer_norm_eps(self.layer_norm_eps)
                .with_post_norm(self.bert_layout)
                .init(device),
            final_layer_norm: (!self.bert_layout).then(ln),
            pooler: self.pooler.then(|| LinearConfig::new(self.width, self.width).init(device)),
            causal: self.causal,
            pooling: self.pooling,
            pad_token_id: self.pad_token_id,
            eos_token_id: self.eos_token_id,
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
    /// BERT's token types (always type 0 here).
    pub token_type_embedding: Option<Embedding<B>>,
    /// BERT's norm of the summed embeddings (`embeddings.LayerNorm`).
    pub layer_norm: Option<LayerNorm<B>>,
}

/// A text transformer: causal with end-of-text pooling, or bidirectional with class or mean
/// pooling.
#[derive(Module, Debug)]
pub struct TextTransformer<B: Backend> {
    /// Embeddings.
    pub embeddings: TextEmbeddings<B>,
    /// The transformer.
    pub encoder: TransformerEncoder<B>,
    /// Norm after the last layer (CLIP; BERT has none).
    pub final_layer_norm: Option<LayerNorm<B>>,
    /// BERT's pooler (`pooler.dense`), used only by [`TextTransformer::pooler_output`].
    pub pooler: Option<Linear<B>>,
    /// Causal attention.
    pub causal: bool,
    /// Pooling.
    pub pooling: Pooling,
    /// Padding token id.
    pub pad_token_id: usize,
    /// End-of-text id for [`Pooling::Eot`].
    pub eos_token_id: Option<usize>,
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
        let e = &self.embeddings;
        let mut x = e.token_embedding.forward(tokens.clone()) + e.position_embedding.forward(positions);
        if let Some(types) = &e.token_type_embedding {
            x = x + types.weight.val().narrow(0, 0, 1).unsqueeze_dim::<3>(0);
        }
        if let Some(ln) = &e.layer_norm {
            x = ln.forward(x);
        }
        let mask = if self.causal {
            // true above the diagonal: a token may not look ahead.
            Some(Tensor::<B, 2, Bool>::tril_mask([t, t], 0, &device).unsqueeze_dim::<3>(0).expand([b, t, t]))
        } else {
            let pad = tokens.equal_elem(self.pad_token_id as i64); // [b, t]
            Some(pad.unsqueeze_dim::<3>(1).expand([b, t, t]))
        };
        let (states, routing) = self.encoder.forward_routed(x, mask);
        match &self.final_layer_norm {
            Some(ln) => (ln.forward(states), routing),
            None => (states, routing),
        }
    }

    /// `BertModel`'s `pooler_output`, `tanh(pooler(state[0]))`, when the model has a pooler;
    /// without one, the pooled feature ([`TextTransformer::forward`], CLIP's `pooler_output`).
    pub fn pooler_output(&self, tokens: Tensor<B, 2, Int>) -> Tensor<B, 2> {
        match &self.pooler {
            Some(p) => {
                let states = self.forward_tokens(tokens);
                let [b, _, width] = states.dims();
                tanh(p.forward(states.narrow(1, 0, 1).reshape([b, width])))
            }
            None => self.forward(tokens),
        }
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
                let idx = match self.eos_token_id {
                    // The first end token: the largest of `is_eos · (t − position)`.
                    Some(eos) => {
                        let device = tokens.device();
                        let countdown = Tensor::<B, 1, Int>::arange(0..t as i64, &device).neg().add_scalar(t as i64).reshape([1, t]);
                        (tokens.equal_elem(eos as i64).int() * countdown).argmax(1)
                    }
                    None => tokens.argmax(1),
                };
                let idx = idx.reshape([b, 1, 1]).expand([b, 1, width]);
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
