//! A linear layer that can carry a LoRA adapter, with peft's conventions: `A` is `[r, in]`
//! (Kaiming-uniform, peft's default `init_lora_weights=True`), `B` is `[out, r]` (zeros, so a
//! new adapter is a no-op), `y = W x + b + scaling · B A dropout(x)`, scaling `alpha / r` or
//! `alpha / √r` (rsLoRA); merging adds `scaling · (B A)ᵀ` to the frozen weight.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::error::{Error, Result};

/// `x · weight + bias` for `x [..., in]`, `weight [in, out]`, as one matrix product over every
/// row of `x`.
///
/// burn's `linear` multiplies each leading index separately (`[b, t, in] x [1, in, out]` is `b`
/// products of `t` rows), and its weight gradient makes one `[in, out]` matrix per leading index
/// before summing them. Flattening to `[b·t, in]` first gives the CPU backend one large product
/// forward and one per gradient (docs/benchmarks.md, "Training step against PyTorch"). The
/// values are the same products, summed in another order.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let device = Default::default();
/// let x = Tensor::<Flex, 3>::ones([2, 3, 4], &device);
/// let w = Tensor::<Flex, 2>::ones([4, 5], &device);
/// let y = lora_fair::linear(x, w, Some(Tensor::ones([5], &device)));
/// assert_eq!(y.dims(), [2, 3, 5]);
/// assert_eq!(y.into_data().to_vec::<f32>().unwrap(), vec![5.0; 30]);
/// ```
pub fn linear<B: Backend, const D: usize>(x: Tensor<B, D>, weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Tensor<B, D> {
    if D <= 2 {
        return burn::tensor::module::linear(x, weight, bias);
    }
    let dims = x.dims();
    let out = weight.dims()[1];
    let rows: usize = dims[..D - 1].iter().product();
    let y = burn::tensor::module::linear(x.reshape([rows, dims[D - 1]]), weight, bias);
    let mut shape = dims;
    shape[D - 1] = out;
    y.reshape(shape)
}

/// LoRA hyper-parameters (peft's `LoraConfig` names and defaults).
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank `r`.
    #[config(default = 8)]
    pub r: usize,
    /// `lora_alpha`.
    #[config(default = 8.0)]
    pub alpha: f64,
    /// Dropout on the adapter's input only (`lora_dropout`).
    #[config(default = 0.0)]
    pub dropout: f64,
    /// rsLoRA: scaling `alpha / √r` instead of `alpha / r`.
    #[config(default = false)]
    pub use_rslora: bool,
}

impl LoraConfig {
    /// The adapter's output scaling.
    ///
    /// ```
    /// use lora_fair::LoraConfig;
    /// assert_eq!(LoraConfig::new().with_r(16).with_alpha(32.0).scaling(), 2.0);
    /// assert_eq!(LoraConfig::new().with_r(16).with_alpha(32.0).with_use_rslora(true).scaling(), 8.0);
    /// ```
    pub fn scaling(&self) -> f64 {
        if self.use_rslora {
            self.alpha / (self.r as f64).sqrt()
        } else {
            self.alpha / self.r as f64
        }
    }

    fn validate(&self) -> Result<()> {
        if self.r == 0 {
            return Err(Error::Setting("r = 0: the rank must be at least 1".into()));
        }
        if !self.alpha.is_finite() || !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::Setting(format!("alpha = {}, dropout = {}: expected a finite alpha and dropout in [0, 1)", self.alpha, self.dropout)));
        }
        Ok(())
    }
}

/// The low-rank update of one layer.
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    /// `lora_A.weight`, `[r, in]`.
    pub lora_a: Param<Tensor<B, 2>>,
    /// `lora_B.weight`, `[out, r]`.
    pub lora_b: Param<Tensor<B, 2>>,
    /// `alpha / r` (or `/ √r`).
    pub scaling: f64,
    /// Dropout on the adapter input.
    pub dropout: Dropout,
}

impl<B: Backend> LoraAdapter<B> {
    /// A fresh adapter for a `d_in → d_out` layer: `A ~ U(−1/√in, 1/√in)` (PyTorch's
    /// `kaiming_uniform_(a=√5)`, peft's default), `B = 0`.
    pub fn new(cfg: &LoraConfig, d_in: usize, d_out: usize, device: &B::Device) -> Result<Self> {
        cfg.validate()?;
        let bound = 1.0 / (d_in as f64).sqrt();
        Ok(LoraAdapter {
            lora_a: Param::from_tensor(Tensor::random([cfg.r, d_in], Distribution::Uniform(-bound, bound), device)),
            lora_b: Param::from_tensor(Tensor::zeros([d_out, cfg.r], device)),
            scaling: cfg.scaling(),
            dropout: DropoutConfig::new(cfg.dropout).init(),
        })
    }

    /// An adapter from existing matrices (`A [r, in]`, `B [out, r]`, peft's layout).
    pub fn from_weights(lora_a: Tensor<B, 2>, lora_b: Tensor<B, 2>, scaling: f64) -> Result<Self> {
        let ([r, _], [_, r2]) = (lora_a.dims(), lora_b.dims());
        if r != r2 {
            return Err(Error::Shape(format!("lora_A {:?} and lora_B {:?} disagree on the rank", lora_a.dims(), lora_b.dims())));
        }
        Ok(LoraAdapter { lora_a: Param::from_tensor(lora_a), lora_b: Param::from_tensor(lora_b), scaling, dropout: DropoutConfig::new(0.0).init() })
    }

    /// The update in burn's weight layout `[in, out]`: `scaling · (B A)ᵀ`.
    pub fn delta_weight(&self) -> Tensor<B, 2> {
        self.lora_a.val().transpose().matmul(self.lora_b.val().transpose()) * self.scaling
    }

    /// `scaling · B A dropout(x)` for `x [..., in]`.
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let h = linear(self.dropout.forward(x), self.lora_a.val().transpose().cast(dtype), None);
        linear(h, self.lora_b.val().transpose().cast(dtype), None) * self.scaling
    }
}

/// A linear layer (burn's layout: weight `[in, out]`) that may carry a LoRA adapter. Without
/// one it is exactly `burn::nn::Linear`, with the same record keys (`weight`, `bias`).
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    /// `[in, out]`; frozen once an adapter is attached.
    pub weight: Param<Tensor<B, 2>>,
    /// `[out]`; frozen with the weight.
    pub bias: Option<Param<Tensor<B, 1>>>,
    /// The adapter (peft's `lora_A` / `lora_B`).
    pub lora: Option<LoraAdapter<B>>,
    /// Whether the adapter is merged into `weight` (then the forward skips it).
    pub merged: bool,
}

impl<B: Backend> From<Linear<B>> for LoraLinear<B> {
    fn from(l: Linear<B>) -> Self {
        LoraLinear { weight: l.weight, bias: l.bias, lora: None, merged: false }
    }
}

impl<B: Backend> LoraLinear<B> {
    /// `[in, out]` of the layer.
    pub fn dims(&self) -> [usize; 2] {
        let s = self.weight.lazy_shape();
        [s[0], s[1]]
    }

    /// Attaches a fresh adapter and freezes the base weight and bias, so only the adapter
    /// trains.
    ///
    /// ```
    /// use burn::backend::Flex;
    /// use burn::nn::LinearConfig;
    /// use burn::prelude::*;
    /// use lora_fair::{LoraConfig, LoraLinear};
    ///
    /// let device = Default::default();
    /// let base = LinearConfig::new(6, 4).init::<Flex>(&device);
    /// let x = Tensor::<Flex, 2>::ones([2, 6], &device);
    /// let plain = base.forward(x.clone());
    /// let layer = LoraLinear::from(base).with_adapter(&LoraConfig::new().with_r(2), &device)?;
    /// // B starts at zero: the adapted layer computes what the base did.
    /// layer.forward(x).into_data().assert_approx_eq::<f32>(&plain.into_data(), Default::default());
    /// # Ok::<(), lora_fair::Error>(())
    /// ```
    pub fn with_adapter(self, cfg: &LoraConfig, device: &B::Device) -> Result<Self> {
        let [d_in, d_out] = self.dims();
        let lora = LoraAdapter::new(cfg, d_in, d_out, device)?;
        Ok(LoraLinear { weight: self.weight.set_require_grad(false), bias: self.bias.map(|b| b.set_require_grad(false)), lora: Some(lora), merged: false })
    }

    /// Attaches a given adapter (loaded from a file), freezing the base.
    pub fn with_lora(self, lora: LoraAdapter<B>) -> Result<Self> {
        let [d_in, d_out] = self.dims();
        let ([_, a_in], [b_out, _]) = (lora.lora_a.lazy_shape().dims::<2>(), lora.lora_b.lazy_shape().dims::<2>());
        if a_in != d_in || b_out != d_out {
            return Err(Error::Shape(format!("adapter for {a_in} → {b_out} on a {d_in} → {d_out} layer")));
        }
        Ok(LoraLinear { weight: self.weight.set_require_grad(false), bias: self.bias.map(|b| b.set_require_grad(false)), lora: Some(lora), merged: false })
    }

    /// `x W + b`, plus the adapter's update unless it is merged.
    ///
    /// The weights take the input's float type: an f16 or bf16 input (mixed precision) runs
    /// the product in half precision while the parameters stay f32 (the cast's gradient comes
    /// back in f32).
    pub fn forward<const D: usize>(&self, x: Tensor<B, D>) -> Tensor<B, D> {
        let dtype = x.dtype();
        let y = linear(x.clone(), self.weight.val().cast(dtype), self.bias.as_ref().map(|b| b.val().cast(dtype)));
        match (&self.lora, self.merged) {
            (Some(l), false) => y + l.forward(x),
            _ => y,
        }
    }

    /// Adds the adapter's update to the weight (peft's `merge`): inference then costs one
    /// matmul. Does nothing without an adapter or when already merged.
    pub fn merge(self) -> Self {
        match (&self.lora, self.merged) {
            (Some(l), false) => {
                let w = self.weight.val().detach() + l.delta_weight().detach();
                LoraLinear { weight: Param::initialized(self.weight.id, w).set_require_grad(false), merged: true, ..self }
            }
            _ => self,
        }
    }

    /// Subtracts the merged update again (peft's `unmerge`).
    pub fn unmerge(self) -> Self {
        match (&self.lora, self.merged) {
            (Some(l), true) => {
                let w = self.weight.val().detach() - l.delta_weight().detach();
                LoraLinear { weight: Param::initialized(self.weight.id, w).set_require_grad(false), merged: false, ..self }
            }
            _ => self,
        }
    }

    /// Folds the adapter into the weight and drops it (peft's `merge_and_unload`): a frozen
    /// plain layer computing what the adapted one did.
    pub fn merge_and_unload(self) -> Self {
        match (&self.lora, self.merged) {
            (Some(l), false) => {
                let w = self.weight.val().detach() + l.delta_weight().detach();
                LoraLinear { weight: Param::initialized(self.weight.id, w).set_require_grad(false), bias: self.bias, lora: None, merged: false }
            }
            _ => LoraLinear { lora: None, merged: false, ..self },
        }
    }

    /// Drops the adapter without folding it in (peft's `unload`): the frozen base layer, as it
    /// was before the adapter was attached (a merged adapter is subtracted first).
    pub fn unload(self) -> Self {
        let base = if self.merged { self.unmerge() } else { self };
        LoraLinear { lora: None, merged: false, ..base }
    }

    /// The layer's effective map as a plain `burn::nn::Linear` (an unmerged adapter's update
    /// added to the weight), e.g. to copy it into MoE experts.
    pub fn to_linear(&self) -> Linear<B> {
        let weight = match (&self.lora, self.merged) {
            (Some(l), false) => self.weight.val() + l.delta_weight(),
            _ => self.weight.val(),
        };
        Linear { weight: Param::from_tensor(weight), bias: self.bias.as_ref().map(|b| Param::from_tensor(b.val())) }
    }

    /// Trainable scalars: the adapter's when it has one, else the whole layer's.
    pub fn trainable_parameters(&self) -> usize {
        match &self.lora {
            Some(l) => l.lora_a.lazy_shape().num_elements() + l.lora_b.lazy_shape().num_elements(),
            None => self.weight.lazy_shape().num_elements() + self.bias.as_ref().map_or(0, |b| b.lazy_shape().num_elements()),
        }
    }
}
