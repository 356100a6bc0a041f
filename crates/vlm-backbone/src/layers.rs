//! Transformer building blocks with Hugging Face CLIP's names.

use burn::module::Module;
use burn::nn::LinearConfig;

use crate::norm::{LayerNorm, LayerNormConfig};
use std::collections::BTreeMap;

use burn::prelude::*;
use burn::tensor::activation::relu;
use fused_ops::{attention, quick_gelu};
use lora_fair::{is_target, LoraAdapter, LoraConfig, LoraLinear};
use moe_layers::TokenMoe;

use crate::precision::to_half;

/// The exact GELU, `x·Φ(x) = ½·x·(1 + erf(x/√2))`, built from `erf` so that its gradient is
/// exact on every backend. burn 0.21's `gelu` is exact forward, but its default
/// `gelu_backward`, which the GPU backends (cubecl: wgpu, CUDA) use, differentiates the tanh
/// approximation instead: 7.7e-4 relative error in the gradient, measured on wgpu against the
/// CPU backend (`trainer::parity::kernels`).
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let x = Tensor::<Flex, 1>::from_floats([-1.0, 0.0, 2.0], &Default::default());
/// let y = vlm_backbone::gelu(x).into_data().to_vec::<f32>().unwrap();
/// assert!((y[0] + 0.158_655_25).abs() < 1e-6 && y[1] == 0.0 && (y[2] - 1.954_499_7).abs() < 1e-6);
/// ```
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    (x.clone() * std::f64::consts::FRAC_1_SQRT_2).erf().add_scalar(1.0).mul(x).mul_scalar(0.5)
}

/// Activation of the MLP.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x · σ(1.702 x)`, OpenAI CLIP's.
    QuickGelu,
    /// The exact (erf) GELU, BERT's and ViT's.
    Gelu,
    /// ReLU (Fair-MoE's experts).
    Relu,
}

impl Activation {
    /// Applies the activation.
    pub fn apply<B: Backend, const D: usize>(self, x: Tensor<B, D>) -> Tensor<B, D> {
        match self {
            Activation::QuickGelu => quick_gelu(x),
            Activation::Gelu => gelu(x),
            Activation::Relu => relu(x),
        }
    }
}

/// Multi-head self-attention with separate q/k/v/out projections.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    /// Query projection.
    pub q_proj: LoraLinear<B>,
    /// Key projection.
    pub k_proj: LoraLinear<B>,
    /// Value projection.
    pub v_proj: LoraLinear<B>,
    /// Output projection.
    pub out_proj: LoraLinear<B>,
    /// Number of heads.
    pub heads: usize,
}

impl<B: Backend> Attention<B> {
    /// Creates the layer; `width` must be a multiple of `heads`.
    pub fn new(width: usize, heads: usize, device: &B::Device) -> Self {
        let lin = || LoraLinear::from(LinearConfig::new(width, width).init(device));
        Self { q_proj: lin(), k_proj: lin(), v_proj: lin(), out_proj: lin(), heads }
    }

    /// `x`: [batch, tokens, width]. `mask`: [batch, tokens, tokens], `true` where a query may
    /// not attend to a key.
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 3, Bool>>) -> Tensor<B, 3> {
        let [b, t, d] = x.dims();
        let h = self.heads;
        // Under mixed precision the products run in half, the masking and softmax in x's type.
        let dtype = x.dtype();
        let x = to_half(x);
        let split = |y: Tensor<B, 3>| y.reshape([b, t, h, d / h]).swap_dims(1, 2); // [b, h, t, dh]
        let q = split(self.q_proj.forward(x.clone()));
        let k = split(self.k_proj.forward(x.clone()));
        let v = split(self.v_proj.forward(x));
        // softmax(q kᵀ / √d_h, masked) v, the scores and softmax in f32 (fused on the CPU).
        let out = attention(q, k, v, mask).swap_dims(1, 2).reshape([b, t, d]);
        self.out_proj.forward(out).cast(dtype)
    }
}

/// The feed-forward block: `fc2(act(fc1(x)))`.
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    /// Expansion.
    pub fc1: LoraLinear<B>,
    /// Projection back.
    pub fc2: LoraLinear<B>,
    /// Activation between them.
    pub activation: Activation,
}

impl<B: Backend> Mlp<B> {
    /// `width -> hidden -> width`.
    pub fn new(width: usize, hidden: usize, activation: Activation, device: &B::Device) -> Self {
        Self { fc1: LoraLinear::from(LinearConfig::new(width, hidden).init(device)), fc2: LoraLinear::from(LinearConfig::new(hidden, width).init(device)), activation }
    }

    /// Applies the block.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        // Under mixed precision the products run in half, the activation in x's type.
        let dtype = x.dtype();
        let hidden = self.activation.apply(self.fc1.forward(to_half(x)).cast(dtype));
        self.fc2.forward(to_half(hidden)).cast(dtype)
    }
}

/// A transformer layer, pre-norm (CLIP, ViT): `h = x + attn(ln1(x)); out = h + mlp(ln2(h))`,
/// or post-norm (BERT): `h = ln1(x + attn(x)); out = ln2(h + mlp(h))`.
#[derive(Module, Debug)]
pub struct EncoderLayer<B: Backend> {
    /// Self-attention.
    pub self_attn: Attention<B>,
    /// Norm before attention.
    pub layer_norm1: LayerNorm<B>,
    /// Feed-forward block.
    pub mlp: Mlp<B>,
    /// Norm before the MLP.
    pub layer_norm2: LayerNorm<B>,
    /// FO-MoE's token-level mixture of experts, which replaces `mlp` when present (the dense
    /// MLP is kept, as the checkpoint it was initialised from).
    pub moe: Option<TokenMoe<B>>,
    /// Post-norm (BERT) instead of pre-norm.
    pub post_norm: bool,
}

impl<B: Backend> EncoderLayer<B> {
    /// Applies the layer.
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 3, Bool>>) -> Tensor<B, 3> {
        self.forward_routed(x, mask).0
    }

    /// Applies the layer and returns the MoE's routing weights (`[tokens x batch, experts]`)
    /// when the layer has one.
    pub fn forward_routed(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 3, Bool>>) -> (Tensor<B, 3>, Option<Tensor<B, 2>>) {
        let feed_forward = |y: Tensor<B, 3>| match &self.moe {
            Some(moe) => {
                let out = moe.forward(y);
                (out.output, Some(out.routing))
            }
            None => (self.mlp.forward(y), None),
        };
        if self.post_norm {
            let h = self.layer_norm1.forward(x.clone() + self.self_attn.forward(x, mask));
            let (y, routing) = feed_forward(h.clone());
            (self.layer_norm2.forward(h + y), routing)
        } else {
            let h = x.clone() + self.self_attn.forward(self.layer_norm1.forward(x), mask);
            let (y, routing) = feed_forward(self.layer_norm2.forward(h.clone()));
            (h + y, routing)
        }
    }
}

/// Attaches a fresh LoRA adapter to `layer` when `path` is targeted.
fn adapt<B: Backend, S: AsRef<str>>(layer: LoraLinear<B>, path: &str, cfg: &LoraConfig, targets: &[S], device: &B::Device) -> lora_fair::Result<LoraLinear<B>> {
    if is_target(path, targets) {
        layer.with_adapter(cfg, device)
    } else {
        Ok(layer)
    }
}

impl<B: Backend> EncoderLayer<B> {
    /// Attaches LoRA adapters to the projections whose path under `prefix` (`self_attn.q_proj`,
    /// `k_proj`, `v_proj`, `out_proj`, `mlp.fc1`, `mlp.fc2`) matches `targets` by peft's rule;
    /// their base weights are frozen. Other parameters are left as they are.
    pub fn with_lora<S: AsRef<str>>(self, prefix: &str, cfg: &LoraConfig, targets: &[S], device: &B::Device) -> lora_fair::Result<Self> {
        let a = self.self_attn;
        let p = |name: &str| format!("{prefix}.{name}");
        let self_attn = Attention {
            q_proj: adapt(a.q_proj, &p("self_attn.q_proj"), cfg, targets, device)?,
            k_proj: adapt(a.k_proj, &p("self_attn.k_proj"), cfg, targets, device)?,
            v_proj: adapt(a.v_proj, &p("self_attn.v_proj"), cfg, targets, device)?,
            out_proj: adapt(a.out_proj, &p("self_attn.out_proj"), cfg, targets, device)?,
            heads: a.heads,
        };
        let m = self.mlp;
        let mlp = Mlp { fc1: adapt(m.fc1, &p("mlp.fc1"), cfg, targets, device)?, fc2: adapt(m.fc2, &p("mlp.fc2"), cfg, targets, device)?, activation: m.activation };
        Ok(EncoderLayer { self_attn, mlp, ..self })
    }
}

impl<B: Backend> EncoderLayer<B> {
    /// The layer's projections, by path under `prefix`, for adapter bookkeeping.
    fn projections(&self, prefix: &str) -> [(String, &LoraLinear<B>); 6] {
        let a = &self.self_attn;
        let p = |name: &str| format!("{prefix}.{name}");
        [
            (p("self_attn.q_proj"), &a.q_proj),
            (p("self_attn.k_proj"), &a.k_proj),
            (p("self_attn.v_proj"), &a.v_proj),
            (p("self_attn.out_proj"), &a.out_proj),
            (p("mlp.fc1"), &self.mlp.fc1),
            (p("mlp.fc2"), &self.mlp.fc2),
        ]
    }
}

/// Takes the adapter for `path` out of `adapters` and attaches it (base frozen).
fn attach<B: Backend>(layer: LoraLinear<B>, path: &str, adapters: &mut BTreeMap<String, LoraAdapter<B>>) -> lora_fair::Result<LoraLinear<B>> {
    match adapters.remove(path) {
        Some(a) => layer.with_lora(a).map_err(|e| lora_fair::Error::Shape(format!("{path}: {e}"))),
        None => Ok(layer),
    }
}

impl<B: Backend> TransformerEncoder<B> {
    /// Every attached adapter with its module path (`{prefix}.layers.{i}.self_attn.q_proj`,
    /// ...), e.g. for [`lora_fair::save_adapters`].
    pub fn lora_adapters(&self, prefix: &str) -> Vec<(String, &LoraAdapter<B>)> {
        self.layers.iter().enumerate().flat_map(|(i, l)| l.projections(&format!("{prefix}.layers.{i}"))).filter_map(|(path, lin)| lin.lora.as_ref().map(|a| (path, a))).collect()
    }

    /// Attaches the adapters whose paths name this encoder's projections (as
    /// [`lora_fair::load_adapters`] returns them), removing them from `adapters`.
    pub fn attach_lora_adapters(self, prefix: &str, adapters: &mut BTreeMap<String, LoraAdapter<B>>) -> lora_fair::Result<Self> {
        let mut layers = Vec::with_capacity(self.layers.len());
        for (i, l) in self.layers.into_iter().enumerate() {
            let p = |name: &str| format!("{prefix}.layers.{i}.{name}");
            let a = l.self_attn;
            let self_attn = Attention {
                q_proj: attach(a.q_proj, &p("self_attn.q_proj"), adapters)?,
                k_proj: attach(a.k_proj, &p("self_attn.k_proj"), adapters)?,
                v_proj: attach(a.v_proj, &p("self_attn.v_proj"), adapters)?,
                out_proj: attach(a.out_proj, &p("self_attn.out_proj"), adapters)?,
                heads: a.heads,
            };
            let m = l.mlp;
            let mlp = Mlp { fc1: attach(m.fc1, &p("mlp.fc1"), adapters)?, fc2: attach(m.fc2, &p("mlp.fc2"), adapters)?, activation: m.activation };
            layers.push(EncoderLayer { self_attn, mlp, ..l });
        }
        Ok(TransformerEncoder { layers })
    }

    /// Folds every adapter into its frozen weight and drops it (peft's `merge_and_unload`).
    pub fn merge_and_unload(self) -> Self {
        self.map_projections(LoraLinear::merge_and_unload)
    }

    /// Drops every adapter without folding it in (peft's `unload`): the base encoder.
    pub fn unload_lora(self) -> Self {
        self.map_projections(LoraLinear::unload)
    }

    /// `f` applied to every projection of every layer.
    fn map_projections(self, f: impl Fn(LoraLinear<B>) -> LoraLinear<B>) -> Self {
        let layers = self
            .layers
            .into_iter()
            .map(|l| {
                let a = l.self_attn;
                let self_attn = Attention { q_proj: f(a.q_proj), k_proj: f(a.k_proj), v_proj: f(a.v_proj), out_proj: f(a.out_proj), heads: a.heads };
                let m = l.mlp;
                let mlp = Mlp { fc1: f(m.fc1), fc2: f(m.fc2), activation: m.activation };
                EncoderLayer { self_attn, mlp, ..l }
            })
            .collect();
        TransformerEncoder { layers }
    }

    /// [`EncoderLayer::with_lora`] on every layer (`{prefix}.layers.{i}`).
    pub fn with_lora<S: AsRef<str>>(self, prefix: &str, cfg: &LoraConfig, targets: &[S], device: &B::Device) -> lora_fair::Result<Self> {
        let layers = self.layers.into_iter().enumerate().map(|(i, l)| l.with_lora(&format!("{prefix}.layers.{i}"), cfg, targets, device)).collect::<lora_fair::Result<Vec<_>>>()?;
        Ok(TransformerEncoder { layers })
    }
}

/// Sizes of a transformer encoder.
#[derive(Config, Debug)]
pub struct TransformerEncoderConfig {
    /// Token width.
    pub width: usize,
    /// Number of layers.
    pub layers: usize,
    /// Attention heads.
    pub heads: usize,
    /// MLP hidden width (Hugging Face's `intermediate_size`); `None` is `4 x width`.
    #[config(default = "None")]
    pub intermediate_size: Option<usize>,
    /// MLP activation.
    #[config(default = "Activation::QuickGelu")]
    pub activation: Activation,
    /// Layer norm epsilon (CLIP: 1e-5; BERT and ViT: 1e-12).
    #[config(default = 1e-5)]
    pub layer_norm_eps: f64,
    /// Post-norm layers (BERT) instead of pre-norm (CLIP, ViT).
    #[config(default = false)]
    pub post_norm: bool,
}

impl TransformerEncoderConfig {
    /// Creates the encoder.
    pub fn init<B: Backend>(&self, device: &B::Device) -> TransformerEncoder<B> {
        let ln = || LayerNormConfig::new(self.width).with_epsilon(self.layer_norm_eps).init(device);
        let layers = (0..self.layers)
            .map(|_| EncoderLayer {
                self_attn: Attention::new(self.width, self.heads, device),
                layer_norm1: ln(),
                mlp: Mlp::new(self.width, self.intermediate_size.unwrap_or(4 * self.width), self.activation, device),
                layer_norm2: ln(),
                moe: None,
                post_norm: self.post_norm,
            })
            .collect();
        TransformerEncoder { layers }
    }
}

/// A stack of [`EncoderLayer`]s (Hugging Face: `encoder.layers`).
#[derive(Module, Debug)]
pub struct TransformerEncoder<B: Backend> {
    /// The layers, applied in order.
    pub layers: Vec<EncoderLayer<B>>,
}

impl<B: Backend> TransformerEncoder<B> {
    /// Applies every layer with the same mask.
    pub fn forward(&self, x: Tensor<B, 3>, mask: Option<Tensor<B, 3, Bool>>) -> Tensor<B, 3> {
        self.forward_routed(x, mask).0
    }

    /// Applies every layer and collects the routing weights of the MoE layers, in order.
    pub fn forward_routed(&self, mut x: Tensor<B, 3>, mask: Option<Tensor<B, 3, Bool>>) -> (Tensor<B, 3>, Vec<Tensor<B, 2>>) {
        let mut routing = Vec::new();
        for layer in &self.layers {
            let (y, r) = layer.forward_routed(x, mask.clone());
            x = y;
            routing.extend(r);
        }
        (x, routing)
    }
}
