//! MultiFair's multimodal glaucoma classifiers (Zubair et al., arXiv 2510.07328, released
//! code `multifair_models.py` / `models_module.py`): a fundus ViT and a second modality (a
//! clinical-note text encoder, or an OCT volume encoder over 10 B-scans), each projected to `P`
//! dimensions, fused by a post-norm transformer over the two tokens, and classified from the
//! fundus token; plus the auxiliary per-modality heads that see detached features. A concat
//! fusion (`Linear(2P, classes)`, OGM-GE's head) is the alternative whose unimodal logits can be
//! read off the shared weights.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};

use crate::norm::{LayerNorm, LayerNormConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;
use burn::tensor::Distribution;
use serde::{Deserialize, Serialize};

use crate::layers::gelu;

use crate::layers::Attention;
use crate::text::{TextTransformer, TextTransformerConfig};
use crate::vision::{VisionTransformer, VisionTransformerConfig};

/// PyTorch's `nn.TransformerEncoderLayer` as MultiFair builds it: post-norm
/// (`norm_first = False`), GELU, dropout after attention, inside and after the feed-forward.
/// (PyTorch also drops attention weights; with two or ten tokens this is left out.)
#[derive(Module, Debug)]
pub struct PostNormLayer<B: Backend> {
    /// Self-attention.
    pub self_attn: Attention<B>,
    /// Feed-forward expansion.
    pub linear1: Linear<B>,
    /// Feed-forward projection back.
    pub linear2: Linear<B>,
    /// Norm after the attention residual.
    pub norm1: LayerNorm<B>,
    /// Norm after the feed-forward residual.
    pub norm2: LayerNorm<B>,
    /// Dropout (active only with an autodiff backend, i.e. in training).
    pub dropout: Dropout,
}

impl<B: Backend> PostNormLayer<B> {
    /// `x = norm1(x + drop(attn(x))); x = norm2(x + drop(linear2(drop(gelu(linear1(x))))))`.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let x = self.norm1.forward(x.clone() + self.dropout.forward(self.self_attn.forward(x, None)));
        let ff = self.linear2.forward(self.dropout.forward(gelu(self.linear1.forward(x.clone()))));
        self.norm2.forward(x + self.dropout.forward(ff))
    }
}

/// Sizes of a [`PostNormEncoder`].
#[derive(Config, Debug)]
pub struct PostNormEncoderConfig {
    /// Token width.
    pub width: usize,
    /// Layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// Feed-forward width as a multiple of `width` (MultiFair: 4).
    #[config(default = 4)]
    pub ff_ratio: usize,
    /// Dropout (MultiFair: 0.1).
    #[config(default = 0.1)]
    pub dropout: f64,
}

impl PostNormEncoderConfig {
    /// Creates the encoder.
    pub fn init<B: Backend>(&self, device: &B::Device) -> PostNormEncoder<B> {
        let layers = (0..self.layers)
            .map(|_| PostNormLayer {
                self_attn: Attention::new(self.width, self.heads, device),
                linear1: LinearConfig::new(self.width, self.width * self.ff_ratio).init(device),
                linear2: LinearConfig::new(self.width * self.ff_ratio, self.width).init(device),
                norm1: LayerNormConfig::new(self.width).init(device),
                norm2: LayerNormConfig::new(self.width).init(device),
                dropout: DropoutConfig::new(self.dropout).init(),
            })
            .collect();
        PostNormEncoder { layers }
    }
}

/// A stack of [`PostNormLayer`]s (`nn.TransformerEncoder`).
#[derive(Module, Debug)]
pub struct PostNormEncoder<B: Backend> {
    /// The layers.
    pub layers: Vec<PostNormLayer<B>>,
}

impl<B: Backend> PostNormEncoder<B> {
    /// Applies the layers to [batch, tokens, width].
    pub fn forward(&self, mut x: Tensor<B, 3>) -> Tensor<B, 3> {
        for layer in &self.layers {
            x = layer.forward(x);
        }
        x
    }
}

/// `[Dropout →] Linear(width, P) → LayerNorm → Dropout`: an encoder's feature to the fusion
/// width (the text branch has the leading dropout).
#[derive(Module, Debug)]
pub struct Projection<B: Backend> {
    /// The linear map.
    pub linear: Linear<B>,
    /// The norm.
    pub norm: LayerNorm<B>,
    /// Dropout.
    pub dropout: Dropout,
    /// Whether dropout is also applied to the input.
    pub input_dropout: bool,
}

impl<B: Backend> Projection<B> {
    fn new(input: usize, output: usize, dropout: f64, input_dropout: bool, device: &B::Device) -> Self {
        Projection {
            linear: LinearConfig::new(input, output).init(device),
            norm: LayerNormConfig::new(output).init(device),
            dropout: DropoutConfig::new(dropout).init(),
            input_dropout,
        }
    }

    /// Applies the projection.
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let x = if self.input_dropout { self.dropout.forward(x) } else { x };
        self.dropout.forward(self.norm.forward(self.linear.forward(x)))
    }
}

/// MultiFair's OCT branch: 10 B-scans through one shared slice ViT, a learned slice position
/// embedding, a small post-norm transformer over the slice tokens, the first token out.
#[derive(Module, Debug)]
pub struct OctEncoder<B: Backend> {
    /// The ViT shared by all slices.
    pub oct_slice_encoder: VisionTransformer<B>,
    /// Slice positions `[1, slices, width]`, N(0, 0.02).
    pub oct_pos_encoding: Param<Tensor<B, 3>>,
    /// The aggregator over slice tokens.
    pub oct_aggregator: PostNormEncoder<B>,
}

impl<B: Backend> OctEncoder<B> {
    /// `volumes`: [batch, slices, H, W], one channel per slice (z-scored by the data loader);
    /// the channel is repeated to the ViT's 3. Returns [batch, width].
    pub fn forward(&self, volumes: Tensor<B, 4>) -> Tensor<B, 2> {
        let [b, s, h, w] = volumes.dims();
        let slices = volumes.reshape([b * s, 1, h, w]).repeat_dim(1, 3);
        let tokens = self.oct_slice_encoder.forward(slices); // [b*s, width]
        let width = tokens.dims()[1];
        let x = tokens.reshape([b, s, width]) + self.oct_pos_encoding.val();
        self.oct_aggregator.forward(x).narrow(1, 0, 1).reshape([b, width])
    }
}

/// How the two projected features become logits. In TOML (and JSON): `"transformer"` or
/// `"concat"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fusion {
    /// MultiFair: a post-norm transformer over the two tokens, the fundus token to
    /// `Linear(P,P) → LN → GELU → Dropout → Linear(P, classes)`.
    Transformer,
    /// OGM-GE: `Linear(2P, classes)` on the concatenation; unimodal logits are read off its
    /// halves.
    Concat,
}

/// The second modality's encoder.
#[derive(Config, Debug)]
pub enum SecondModality {
    /// A clinical note (MultiFair on FairVLMed).
    Text(TextTransformerConfig),
    /// An OCT volume of `slices` B-scans (MultiFair on FairVision).
    Oct {
        /// The slice ViT.
        vit: VisionTransformerConfig,
        /// Number of B-scans (MultiFair: 10).
        slices: usize,
        /// Aggregator layers (2) and heads (4).
        layers: usize,
        /// Aggregator heads.
        heads: usize,
    },
}

/// Sizes of a [`MultimodalClassifier`].
#[derive(Config, Debug)]
pub struct MultimodalClassifierConfig {
    /// The fundus ViT.
    pub fundus: VisionTransformerConfig,
    /// The second encoder.
    pub second: SecondModality,
    /// Fusion width `P` (MultiFair: 256 on FairVLMed, 128 on FairVision).
    pub proj_dim: usize,
    /// Fusion.
    #[config(default = "Fusion::Transformer")]
    pub fusion: Fusion,
    /// Fusion transformer layers (3 / 2).
    #[config(default = 3)]
    pub fusion_layers: usize,
    /// Fusion heads (8 / 4).
    #[config(default = 8)]
    pub fusion_heads: usize,
    /// Dropout everywhere (0.1).
    #[config(default = 0.1)]
    pub dropout: f64,
    /// Classes (2: glaucoma or not).
    #[config(default = 2)]
    pub classes: usize,
}

/// The fused classifier's head (names follow the code's `nn.Sequential` positions' roles).
#[derive(Module, Debug)]
pub struct ClassifierHead<B: Backend> {
    /// `Linear(P, P)`.
    pub dense: Linear<B>,
    /// `LayerNorm(P)` (transformer fusion) — absent in the auxiliary heads.
    pub norm: Option<LayerNorm<B>>,
    /// Dropout.
    pub dropout: Dropout,
    /// `Linear(P, classes)`: the last weight, which CGGM's direction term compares.
    pub out: Linear<B>,
}

impl<B: Backend> ClassifierHead<B> {
    /// Applies the head: GELU after a norm (the fused classifier), ReLU without (auxiliary).
    pub fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        let h = self.dense.forward(x);
        let h = match &self.norm {
            Some(n) => gelu(n.forward(h)),
            None => relu(h),
        };
        self.out.forward(self.dropout.forward(h))
    }
}

/// One auxiliary head per modality, `Linear(P,P) → ReLU → Dropout → Linear(P, classes)`,
/// trained with its own optimiser on detached features.
#[derive(Module, Debug)]
pub struct AuxiliaryHeads<B: Backend> {
    /// Head per modality: fundus first.
    pub heads: Vec<ClassifierHead<B>>,
}

impl<B: Backend> AuxiliaryHeads<B> {
    /// Two heads for features of width `proj_dim`.
    pub fn new(proj_dim: usize, classes: usize, dropout: f64, device: &B::Device) -> Self {
        let head = || ClassifierHead {
            dense: LinearConfig::new(proj_dim, proj_dim).init(device),
            norm: None,
            dropout: DropoutConfig::new(dropout).init(),
            out: LinearConfig::new(proj_dim, classes).init(device),
        };
        AuxiliaryHeads { heads: vec![head(), head()] }
    }

    /// Logits of each head on its modality's feature.
    pub fn forward(&self, features: [Tensor<B, 2>; 2]) -> [Tensor<B, 2>; 2] {
        let [a, b] = features;
        [self.heads[0].forward(a), self.heads[1].forward(b)]
    }
}

/// The second modality's input.
#[derive(Debug, Clone)]
pub enum SecondInput<B: Backend> {
    /// Token ids [batch, tokens].
    Text(Tensor<B, 2, Int>),
    /// Volumes [batch, slices, H, W].
    Oct(Tensor<B, 4>),
}

/// The fused model's output.
#[derive(Debug, Clone)]
pub struct MultimodalOutput<B: Backend> {
    /// Logits [batch, classes].
    pub logits: Tensor<B, 2>,
    /// The projected unimodal features [batch, P] before fusion: fundus, second.
    pub features: [Tensor<B, 2>; 2],
}

/// MultiFair's classifier (or OGM-GE's with concat fusion).
#[derive(Module, Debug)]
pub struct MultimodalClassifier<B: Backend> {
    /// The fundus ViT.
    pub fundus_encoder: VisionTransformer<B>,
    /// The text encoder (text pairing).
    pub text_encoder: Option<TextTransformer<B>>,
    /// The OCT encoder (OCT pairing).
    pub oct_encoder: Option<OctEncoder<B>>,
    /// Fundus feature to `P`.
    pub fundus_proj: Projection<B>,
    /// Second feature to `P`.
    pub second_proj: Projection<B>,
    /// Transformer fusion.
    pub fusion: Option<PostNormEncoder<B>>,
    /// Its classifier.
    pub classifier: Option<ClassifierHead<B>>,
    /// Concat fusion: `Linear(2P, classes)`.
    pub fc_out: Option<Linear<B>>,
}

impl MultimodalClassifierConfig {
    /// Creates the model with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> MultimodalClassifier<B> {
        let p = self.proj_dim;
        let (text_encoder, oct_encoder, second_width, text) = match &self.second {
            SecondModality::Text(t) => (Some(t.init(device)), None, t.width, true),
            SecondModality::Oct { vit, slices, layers, heads } => {
                let enc = OctEncoder {
                    oct_slice_encoder: vit.init(device),
                    oct_pos_encoding: Param::from_tensor(Tensor::random([1, *slices, vit.width], Distribution::Normal(0.0, 0.02), device)),
                    oct_aggregator: PostNormEncoderConfig::new(vit.width, *layers, *heads).with_dropout(self.dropout).init(device),
                };
                (None, Some(enc), vit.width, false)
            }
        };
        let transformer = self.fusion == Fusion::Transformer;
        MultimodalClassifier {
            fundus_encoder: self.fundus.init(device),
            text_encoder,
            oct_encoder,
            fundus_proj: Projection::new(self.fundus.width, p, self.dropout, false, device),
            second_proj: Projection::new(second_width, p, self.dropout, text, device),
            fusion: transformer.then(|| PostNormEncoderConfig::new(p, self.fusion_layers, self.fusion_heads).with_dropout(self.dropout).init(device)),
            classifier: transformer.then(|| ClassifierHead {
                dense: LinearConfig::new(p, p).init(device),
                norm: Some(LayerNormConfig::new(p).init(device)),
                dropout: DropoutConfig::new(self.dropout).init(),
                out: LinearConfig::new(p, self.classes).init(device),
            }),
            fc_out: (!transformer).then(|| LinearConfig::new(2 * p, self.classes).init(device)),
        }
    }
}

impl<B: Backend> MultimodalClassifier<B> {
    /// The projected unimodal features [batch, P]: fundus, second.
    pub fn features(&self, fundus: Tensor<B, 4>, second: SecondInput<B>) -> [Tensor<B, 2>; 2] {
        let f = self.fundus_proj.forward(self.fundus_encoder.forward(fundus));
        let s = match (second, &self.text_encoder, &self.oct_encoder) {
            (SecondInput::Text(t), Some(enc), _) => enc.forward(t),
            (SecondInput::Oct(v), _, Some(enc)) => enc.forward(v),
            // The model and its data are built from one config, so this is a programming error.
            (SecondInput::Text(_), None, _) => panic!("text input for a model without a text encoder"),
            (SecondInput::Oct(_), _, None) => panic!("OCT input for a model without an OCT encoder"),
        };
        [f, self.second_proj.forward(s)]
    }

    /// Logits from the projected features.
    pub fn fuse(&self, features: [Tensor<B, 2>; 2]) -> Tensor<B, 2> {
        let [f, s] = features;
        match (&self.fusion, &self.classifier, &self.fc_out) {
            (Some(fusion), Some(head), _) => {
                let [b, p] = f.dims();
                let tokens = Tensor::stack::<3>(vec![f, s], 1); // [b, 2, P]: fundus first
                head.forward(fusion.forward(tokens).narrow(1, 0, 1).reshape([b, p]))
            }
            (_, _, Some(fc)) => fc.forward(Tensor::cat(vec![f, s], 1)),
            _ => panic!("a multimodal classifier needs a fusion"),
        }
    }

    /// Logits and the projected unimodal features.
    pub fn forward(&self, fundus: Tensor<B, 4>, second: SecondInput<B>) -> MultimodalOutput<B> {
        let features = self.features(fundus, second);
        MultimodalOutput { logits: self.fuse(features.clone()), features }
    }

    /// OGM-GE's unimodal logits from the concat head: `h_u·W_uᵀ + b/2`, with `W_u` the half of
    /// `fc_out`'s weight that multiplies modality u. `None` with transformer fusion.
    pub fn unimodal_logits(&self, features: [Tensor<B, 2>; 2]) -> Option<[Tensor<B, 2>; 2]> {
        let fc = self.fc_out.as_ref()?;
        let w = fc.weight.val(); // [2P, classes]
        let p = w.dims()[0] / 2;
        let half = fc.bias.as_ref().map(|b| b.val().unsqueeze_dim::<2>(0) / 2.0);
        let [f, s] = features;
        let one = |h: Tensor<B, 2>, start: usize| {
            let out = h.matmul(w.clone().narrow(0, start, p));
            match &half {
                Some(b) => out + b.clone(),
                None => out,
            }
        };
        Some([one(f, 0), one(s, p)])
    }

    /// The last weight of the fused classifier (`[P, classes]` in burn's layout), which the
    /// direction term aligns with the auxiliary heads'.
    pub fn last_weight(&self) -> Option<Tensor<B, 2>> {
        self.classifier.as_ref().map(|c| c.out.weight.val())
    }
}

#[cfg(test)]
mod tests {
    use super::{Fusion, MultimodalClassifierConfig, SecondModality};
    use crate::text::TextTransformerConfig;
    use crate::vision::VisionTransformerConfig;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Multimodal {
        fusion: Fusion,
    }

    #[test]
    fn the_fusions_are_spelled_in_kebab_case() {
        let read = |text: &str| toml::from_str::<Multimodal>(text).map(|m| m.fusion);
        assert_eq!(read("fusion = \"transformer\"").unwrap(), Fusion::Transformer);
        assert_eq!(read("fusion = \"concat\"").unwrap(), Fusion::Concat);
        for bad in ["fusion = \"Concat\"", "fusion = \"sum\"", "fusion = \"concat\"\nfusion_layers = 2"] {
            assert!(read(bad).is_err(), "{bad}");
        }
        // The classifier's config keeps its default and writes the same spelling.
        let cfg = MultimodalClassifierConfig::new(VisionTransformerConfig::new(32, 8, 32, 1, 2), SecondModality::Text(TextTransformerConfig::new(300, 8, 32, 1, 2)), 8);
        assert_eq!(cfg.fusion, Fusion::Transformer);
        let json = cfg.with_fusion(Fusion::Concat).to_string();
        assert!(json.contains("\"concat\""), "{json}");
        let back: MultimodalClassifierConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.fusion, Fusion::Concat);
    }
}
