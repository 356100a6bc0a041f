//! The one optimiser builder and the one learning-rate schedule, for every method and for
//! the benches.

use std::path::Path;

use burn::module::AutodiffModule;
use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{Adam, AdamConfig, AdamW, AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::backend::AutodiffBackend;

use crate::checkpoint::{load_record, save_record};
use crate::config::{OptimConfig, OptimizerKind};
use crate::error::Result;

/// The optimiser of a module: PyTorch's `Adam` (L2 weight decay added to the gradient, the
/// papers' choice) or `AdamW` (decoupled weight decay), with `[optim]`'s betas, ε and decay.
pub enum Optim<B: AutodiffBackend, M: AutodiffModule<B>> {
    /// Adam.
    Adam(OptimizerAdaptor<Adam, M, B>),
    /// AdamW.
    AdamW(OptimizerAdaptor<AdamW, M, B>),
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
            OptimizerKind::Adam => Optim::Adam(
                AdamConfig::new()
                    .with_beta_1(o.betas[0] as f32)
                    .with_beta_2(o.betas[1] as f32)
                    .with_epsilon(o.eps as f32)
                    .with_weight_decay((o.weight_decay > 0.0).then(|| WeightDecayConfig::new(o.weight_decay as f32)))
                    .init(),
            ),
            OptimizerKind::Adamw => Optim::AdamW(
                AdamWConfig::new().with_beta_1(o.betas[0] as f32).with_beta_2(o.betas[1] as f32).with_epsilon(o.eps as f32).with_weight_decay(o.weight_decay as f32).init(),
            ),
        }
    }

    /// AdamW with `weight_decay`, ε where given, and burn's other defaults (the auxiliary
    /// heads', the LoRA parties').
    pub fn adamw(epsilon: Option<f32>, weight_decay: f64) -> Self {
        let cfg = AdamWConfig::new().with_weight_decay(weight_decay as f32);
        Optim::AdamW(match epsilon {
            Some(eps) => cfg.with_epsilon(eps).init(),
            None => cfg.init(),
        })
    }

    /// One update of `module` with learning rate `lr`.
    pub fn step(&mut self, lr: f64, module: M, grads: GradientsParams) -> M {
        tap::record(&module, &grads);
        match self {
            Optim::Adam(o) => o.step(lr, module, grads),
            Optim::AdamW(o) => o.step(lr, module, grads),
        }
    }

    /// Writes the moments (burn's binary record; the recorder appends `.bin`).
    pub(crate) fn save(&self, path: &Path) -> Result<()> {
        match self {
            Optim::Adam(o) => save_record::<B, _>(o.to_record(), path),
            Optim::AdamW(o) => save_record::<B, _>(o.to_record(), path),
        }
    }

    /// Restores what [`Optim::save`] wrote.
    pub(crate) fn load(&mut self, path: &Path, device: &B::Device) -> Result<()> {
        *self = match self {
            Optim::Adam(o) => Optim::Adam(o.clone().load_record(load_record::<B, _>(path, device)?)),
            Optim::AdamW(o) => Optim::AdamW(o.clone().load_record(load_record::<B, _>(path, device)?)),
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
