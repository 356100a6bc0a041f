//! The one optimiser builder and the one learning-rate schedule, for every method and for
//! the benches.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;
use fused_ops::{Adam, AdamW};

use crate::checkpoint::{load_record, save_record};
use crate::config::{OptimConfig, OptimizerKind};
use crate::error::Result;

/// The optimiser of a module: PyTorch's `Adam` (L2 weight decay added to the gradient, the
/// papers' choice) or `AdamW` (decoupled weight decay), with `[optim]`'s betas, ε and decay.
/// Both are burn's, computed as one pass per parameter on the CPU backend (`fused_ops`), with
/// burn's records.
pub enum Optim<B: AutodiffBackend, M: AutodiffModule<B>> {
    /// Adam.
    Adam(OptimizerAdaptor<Adam, M, B>),
    /// AdamW.
    AdamW(OptimizerAdaptor<AdamW, M, B>),
    /// SGD with momentum (burn's, without dampening: PyTorch's).
    Sgd(OptimizerAdaptor<burn::optim::Sgd<B::InnerBackend>, M, B>),
}

impl<B: AutodiffBackend, M: AutodiffModule<B>> Optim<B, M> {
    /// The optimiser `[optim]` describes.
    ///
    /// ```
    /// use burn::backend::{Autodiff, Flex};
    /// use burn::nn::{Linear, LinearConfig};
    /// let optim = trainer::Optim::<Autodiff<Flex>, Linear<Autodiff<Flex>>>::new(&trainer::OptimConfig::default());
    /// assert!(matches!(optim, trainer::Optim::Adam(_))); // the papers' default
    /// ```
    pub fn new(o: &OptimConfig) -> Self {
        match o.optimizer {
            OptimizerKind::Adam => Optim::Adam(Adam::new(o.betas[0] as f32, o.betas[1] as f32, o.eps as f32, o.weight_decay as f32).init()),
            OptimizerKind::Adamw => Optim::AdamW(AdamW::new(o.betas[0] as f32, o.betas[1] as f32, o.eps as f32, o.weight_decay as f32).init()),
            OptimizerKind::Sgd => Optim::Sgd(
                burn::optim::SgdConfig::new()
                    .with_momentum(Some(burn::optim::momentum::MomentumConfig::new().with_momentum(o.momentum).with_dampening(0.0)))
                    .with_weight_decay((o.weight_decay != 0.0).then(|| burn::optim::decay::WeightDecayConfig::new(o.weight_decay as f32)))
                    .init(),
            ),
        }
    }

    /// AdamW with `weight_decay`, ε where given, and burn's other defaults (the auxiliary
    /// heads', the LoRA parties').
    pub fn adamw(epsilon: Option<f32>, weight_decay: f64) -> Self {
        Optim::AdamW(AdamW::new(0.9, 0.999, epsilon.unwrap_or(1e-5), weight_decay as f32).init())
    }

    /// One update of `module` with learning rate `lr`.
    pub fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        tap::record(&module, &grads);
        match self {
            Optim::Adam(o) => o.step(lr, module, grads),
            Optim::AdamW(o) => o.step(lr, module, grads),
            Optim::Sgd(o) => o.step(lr, module, grads),
        }
    }

    /// Writes the moments (burn's binary record; the recorder appends `.bin`).
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        match self {
            Optim::Adam(o) => save_record::<B, _>(o.to_record(), path),
            Optim::AdamW(o) => save_record::<B, _>(o.to_record(), path),
            Optim::Sgd(o) => save_record::<B, _>(o.to_record(), path),
        }
    }

    /// Restores what [`Optim::save`] wrote.
    pub(crate) fn load(&mut self, path: &Path, device: &B::Device) -> Result<()> {
        *self = match self {
            Optim::Adam(o) => Optim::Adam(o.clone().load_record(load_record::<B, _>(path, device)?)),
            Optim::AdamW(o) => Optim::AdamW(o.clone().load_record(load_record::<B, _>(path, device)?)),
            Optim::Sgd(o) => Optim::Sgd(o.clone().load_record(load_record::<B, _>(path, device)?)),
        };
        Ok(())
    }
}

/// The learning rate of every step: `lr`, after a linear warm-up over `warmup_steps`
/// (`lr · min((step + 1) / warmup_steps, 1)`; none with 0, as the papers). A pure function of
/// the step, so a resumed run needs no scheduler state. (burn's `LinearLrScheduler` holds
/// its position as state and interpolates from an initial rate, which is not this formula.)
///
/// ```
/// let s = trainer::Schedule { lr: 1e-3, warmup_steps: 4 };
/// assert_eq!(s.lr(0), 2.5e-4);
/// assert_eq!(s.lr(3), 1e-3);
/// assert_eq!(s.lr(100), 1e-3);
/// assert_eq!(s.scaled(0, 1e-4), 2.5e-5); // another base rate, warmed up alike
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    /// The base learning rate.
    pub lr: f64,
    /// Steps of linear warm-up.
    pub warmup_steps: usize,
}

impl Schedule {
    /// The schedule of `[optim]`.
    pub fn of(o: &OptimConfig) -> Self {
        Self { lr: o.lr, warmup_steps: o.warmup_steps }
    }

    /// The learning rate of the 0-based `step`.
    pub fn lr(&self, step: usize) -> f64 {
        self.lr * if self.warmup_steps > 0 { ((step + 1) as f64 / self.warmup_steps as f64).min(1.0) } else { 1.0 }
    }

    /// The rate of a parameter group whose base rate is `base` (e.g. `optim.text_lr`), with the
    /// same warm-up.
    pub fn scaled(&self, step: usize, base: f64) -> f64 {
        base * self.lr(step) / self.lr
    }
}

/// Dynamic loss scaling for f16 (PyTorch's `GradScaler`, with its defaults): the loss is
/// multiplied by the scale before the backward pass so that small gradients survive f16, the
/// gradients are divided by it before the step; a step whose gradients overflowed is skipped
/// and the scale halved, and after 2,000 finite steps in a row the scale doubles. With f32 and
/// bf16 the scale stays 1 and nothing is skipped.
///
/// ```
/// use vlm_backbone::Precision;
/// let mut s = trainer::LossScaler::new(Precision::F16);
/// assert_eq!(s.scale(), 65536.0);
/// s.update(false); // an overflow: skip, halve
/// assert_eq!(s.scale(), 32768.0);
/// assert_eq!(trainer::LossScaler::new(Precision::Bf16).scale(), 1.0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    scale: f64,
    growth_tracker: usize,
    dynamic: bool,
}

impl LossScaler {
    const GROWTH_INTERVAL: usize = 2000;

    /// The scaler of a run in `precision`.
    pub fn new(precision: vlm_backbone::Precision) -> Self {
        let dynamic = precision == vlm_backbone::Precision::F16;
        Self { scale: if dynamic { 65536.0 } else { 1.0 }, growth_tracker: 0, dynamic }
    }

    /// The current scale.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// `loss` times the scale, for the backward pass.
    pub fn scaled<B: burn::tensor::backend::Backend>(&self, loss: burn::tensor::Tensor<B, 1>) -> burn::tensor::Tensor<B, 1> {
        if self.dynamic {
            loss.mul_scalar(self.scale)
        } else {
            loss
        }
    }

    /// Divides the gradients of `module` by the scale; returns whether they are all finite
    /// (where not, the step must be skipped).
    pub fn unscale<B: AutodiffBackend, M: AutodiffModule<B>>(&self, grads: &mut GradientsParams, module: &M) -> bool {
        if !self.dynamic {
            return true;
        }
        let mut v = unscale::Unscale::<B> { grads, factor: 1.0 / self.scale, finite: true, backend: std::marker::PhantomData };
        module.visit(&mut v);
        v.finite
    }

    /// Writes the scale and its growth count beside the epoch's records (f16 runs only), so a
    /// resume continues with them.
    pub(crate) fn save(&self, out: &Path, epoch: usize) -> Result<()> {
        if !self.dynamic {
            return Ok(());
        }
        let path = crate::checkpoint::state_file(out, epoch, "loss-scaler.json");
        crate::checkpoint::write_atomic(&path, serde_json::to_string(self).unwrap_or_default().as_bytes())
    }

    /// Restores what [`LossScaler::save`] wrote, where it did.
    pub(crate) fn load(&mut self, out: &Path, epoch: usize) -> Result<()> {
        let path = crate::checkpoint::state_file(out, epoch, "loss-scaler.json");
        if self.dynamic && path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(crate::checkpoint::io_err(&path))?;
            *self = serde_json::from_str(&text).map_err(|e| crate::checkpoint::ckpt_err(&path, e))?;
        }
        Ok(())
    }

    /// Records whether this step's gradients were finite, adjusting the scale.
    pub fn update(&mut self, finite: bool) {
        if !self.dynamic {
            return;
        }
        if finite {
            self.growth_tracker += 1;
            if self.growth_tracker == Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.growth_tracker = 0;
            }
        } else {
            tracing::debug!("f16 gradients overflowed at loss scale {}: step skipped, scale halved", self.scale);
            self.scale *= 0.5;
            self.growth_tracker = 0;
        }
    }
}

mod unscale {
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::prelude::*;
    use burn::tensor::backend::AutodiffBackend;

    pub(super) struct Unscale<'a, B> {
        pub(super) grads: &'a mut GradientsParams,
        pub(super) factor: f64,
        pub(super) finite: bool,
        pub(super) backend: std::marker::PhantomData<B>,
    }

    impl<B: AutodiffBackend> ModuleVisitor<B> for Unscale<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) {
                let g = g.mul_scalar(self.factor);
                // A sum is finite only if every element is.
                self.finite &= g.clone().sum().into_scalar().elem::<f64>().is_finite();
                self.grads.register::<B::InnerBackend, D>(param.id, g);
            }
        }
    }
}

/// The gradients every optimiser step receives, when a caller asks for them: the one place
/// where every method's final gradients (after modulation, clipping, noise) pass, so
/// [`crate::parity`] can compare them across backends.
pub(crate) mod tap {
    use std::cell::RefCell;

    use burn::module::{AutodiffModule, ModuleVisitor, Param};
    use burn::optim::GradientsParams;
    use burn::prelude::*;
    use burn::tensor::backend::AutodiffBackend;

    thread_local! {
        static TAPPED: RefCell<Option<Vec<Vec<f32>>>> = const { RefCell::new(None) };
    }

    /// Starts recording on this thread.
    pub(crate) fn start() {
        TAPPED.with(|t| *t.borrow_mut() = Some(Vec::new()));
    }

    /// Stops recording and returns the gradients recorded since [`start`], one per parameter in
    /// the order the steps visited them (a parameter without a gradient gives an empty one).
    pub(crate) fn take() -> Vec<Vec<f32>> {
        TAPPED.with(|t| t.borrow_mut().take()).unwrap_or_default()
    }

    pub(super) fn record<B: AutodiffBackend, M: AutodiffModule<B>>(module: &M, grads: &GradientsParams) {
        TAPPED.with(|t| {
            if let Some(out) = t.borrow_mut().as_mut() {
                module.visit(&mut Collect::<B> { grads, out, backend: std::marker::PhantomData });
            }
        });
    }

    struct Collect<'a, B> {
        grads: &'a GradientsParams,
        out: &'a mut Vec<Vec<f32>>,
        backend: std::marker::PhantomData<B>,
    }

    impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let g = self.grads.get::<B::InnerBackend, D>(param.id);
            self.out.push(g.map(|g| g.into_data().convert::<f32>().to_vec::<f32>().unwrap_or_default()).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};
    use burn::optim::GradientsParams;
    use burn::prelude::*;

    use super::LossScaler;
    use vlm_backbone::Precision;

    type B = Autodiff<Flex>;

    /// The gradients of `sum(layer(x))` under `scaler`, unscaled, and whether they were finite.
    fn step(scaler: &LossScaler) -> (Vec<f32>, bool) {
        let device = Default::default();
        B::seed(&device, 1);
        let layer: Linear<B> = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<B, 2>::from_floats([[1.0, -2.0, 0.5]], &device);
        let loss = layer.forward(x).sum();
        let mut grads = GradientsParams::from_grads(scaler.scaled(loss).backward(), &layer);
        let finite = scaler.unscale::<B, _>(&mut grads, &layer);
        let g = grads.get::<Flex, 2>(layer.weight.id).map(|g| g.into_data().to_vec::<f32>().unwrap_or_default()).unwrap_or_default();
        (g, finite)
    }

    #[test]
    fn sgd_is_pytorchs_sgd_with_momentum() {
        // PyTorch's SGD(lr 0.1, momentum 0.9, weight_decay 0.1, dampening 0) on w·x with x = 2:
        // d = g + λw, v = d on the first step and 0.9 v + d after, w ← w − lr·v.
        let device = Default::default();
        let cfg = crate::OptimConfig { optimizer: crate::config::OptimizerKind::Sgd, momentum: 0.9, weight_decay: 0.1, ..Default::default() };
        let mut optim = super::Optim::<B, Linear<B>>::new(&cfg);
        let mut layer: Linear<B> = LinearConfig::new(1, 1).with_bias(false).init(&device);
        layer.weight = burn::module::Param::from_tensor(Tensor::ones([1, 1], &device));
        let mut weights = vec![];
        for _ in 0..2 {
            let loss = layer.forward(Tensor::<B, 2>::from_floats([[2.0]], &device)).sum();
            let grads = GradientsParams::from_grads(loss.backward(), &layer);
            layer = optim.step(0.1, layer, grads);
            weights.push(layer.weight.val().into_scalar());
        }
        // w1 = 1 − 0.1·2.1 = 0.79; v2 = 0.9·2.1 + (2 + 0.079) = 3.969; w2 = 0.79 − 0.3969.
        assert!((weights[0] - 0.79).abs() < 1e-6 && (weights[1] - 0.3931).abs() < 1e-6, "{weights:?}");
    }

    #[test]
    fn unscaled_gradients_equal_the_unscaled_loss_gradients() {
        let (plain, ok_plain) = step(&LossScaler::new(Precision::F32));
        let (scaled, ok_scaled) = step(&LossScaler::new(Precision::F16));
        assert!(ok_plain && ok_scaled);
        // A power-of-two scale divides back exactly.
        assert_eq!(plain, scaled);
        assert_eq!(plain, vec![1.0, 1.0, -2.0, -2.0, 0.5, 0.5]);
    }

    #[test]
    fn an_overflow_skips_the_step_and_halves_the_scale() {
        let mut s: LossScaler = serde_json::from_str(r#"{"scale": 3e38, "growth_tracker": 5, "dynamic": true}"#).unwrap();
        let (_, finite) = step(&s);
        assert!(!finite, "3e38 x 2 overflows f32");
        s.update(finite);
        assert_eq!(s.scale(), 1.5e38);
        for _ in 0..LossScaler::GROWTH_INTERVAL {
            s.update(true);
        }
        assert_eq!(s.scale(), 3e38, "doubles after 2,000 finite steps");
    }
}
