//! Sets of parameters and the gradient primitives that act on them: scaling, Gaussian noise,
//! global-norm clipping, flattening and cosine, and PCGrad's projection of conflicting
//! gradients.
//!
//! Gradients live in burn's [`GradientsParams`], on the *inner* backend of the autodiff
//! backend that computed them: with `Autodiff<Flex>`, call these functions with `B = Flex`
//! (`B::InnerBackend` in generic code).

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;

use crate::error::{Error, Result};

/// Some parameters of a model (an encoder, a head), by id, with their shapes: what a
/// modulation acts on.
///
/// ```
/// use burn::backend::Flex;
/// use burn::nn::LinearConfig;
/// use gradmod::ParamSet;
///
/// let layer = LinearConfig::new(3, 2).init::<Flex>(&Default::default());
/// let set = ParamSet::of(&layer);
/// assert_eq!((set.len(), set.numel()), (2, 3 * 2 + 2));
/// assert_eq!(set.with_rank(2).len(), 1); // the weight only
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParamSet {
    entries: Vec<(ParamId, Vec<usize>)>,
}

struct Collect(Vec<(ParamId, Vec<usize>)>);

impl<B: Backend> ModuleVisitor<B> for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        self.0.push((param.id, param.lazy_shape().to_vec()));
    }
}

impl ParamSet {
    /// Every float parameter of `module` (a whole model or one of its fields).
    pub fn of<B: Backend, M: Module<B>>(module: &M) -> Self {
        let mut c = Collect(Vec::new());
        module.visit(&mut c);
        ParamSet { entries: c.0 }
    }

    /// Only the parameters of rank `rank` (OGM-GE's code modulates the 4-D convolution kernels
    /// only).
    pub fn with_rank(mut self, rank: usize) -> Self {
        self.entries.retain(|(_, s)| s.len() == rank);
        self
    }

    /// The parameters of both sets (each once).
    pub fn union(mut self, other: &ParamSet) -> Self {
        for e in &other.entries {
            if !self.contains(e.0) {
                self.entries.push(e.clone());
            }
        }
        self
    }

    /// Whether the set holds the parameter.
    pub fn contains(&self, id: ParamId) -> bool {
        self.entries.iter().any(|(i, _)| *i == id)
    }

    /// Number of parameter tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.entries.iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }

    /// The ids and shapes, in the module's order.
    pub fn iter(&self) -> impl Iterator<Item = (ParamId, &[usize])> {
        self.entries.iter().map(|(i, s)| (*i, s.as_slice()))
    }
}

/// A function applied to one gradient tensor of any rank.
trait GradFn<B: Backend> {
    fn apply<const D: usize>(&mut self, grad: Tensor<B, D>) -> Tensor<B, D>;
}

/// Applies `f` to the gradient of every parameter of `set` that has one (a parameter that
/// took no part in the loss has none and is skipped, as PyTorch skips `grad is None`).
fn for_each<B: Backend, F: GradFn<B>>(grads: &mut GradientsParams, set: &ParamSet, f: &mut F) -> Result<()> {
    macro_rules! rank {
        ($id:expr, $d:literal) => {
            if let Some(g) = grads.remove::<B, $d>($id) {
                grads.register::<B, $d>($id, f.apply(g));
            }
        };
    }
    for (id, shape) in set.iter() {
        match shape.len() {
            1 => rank!(id, 1),
            2 => rank!(id, 2),
            3 => rank!(id, 3),
            4 => rank!(id, 4),
            5 => rank!(id, 5),
            6 => rank!(id, 6),
            r => return Err(Error::Rank(r)),
        }
    }
    Ok(())
}

/// The first element of a tensor as f64.
pub(crate) fn scalar<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    t.into_data().convert::<f64>().to_vec::<f64>().map_or(f64::NAN, |v| v.first().copied().unwrap_or(f64::NAN))
}

struct Scale(f64);

impl<B: Backend> GradFn<B> for Scale {
    fn apply<const D: usize>(&mut self, g: Tensor<B, D>) -> Tensor<B, D> {
        g * self.0
    }
}

/// Multiplies the gradients of `set` by `factor` (`grad *= factor`).
///
/// ```
/// use burn::backend::{Autodiff, Flex};
/// use burn::nn::LinearConfig;
/// use burn::optim::GradientsParams;
/// use burn::prelude::*;
/// use gradmod::{scale, ParamSet};
///
/// let device = Default::default();
/// let layer = LinearConfig::new(2, 1).init::<Autodiff<Flex>>(&device);
/// let x = Tensor::<Autodiff<Flex>, 2>::ones([4, 2], &device);
/// let mut grads = GradientsParams::from_grads(layer.forward(x).sum().backward(), &layer);
/// scale::<Flex>(&mut grads, &ParamSet::of(&layer), 0.5)?;
/// let bias = grads.get::<Flex, 1>(layer.bias.as_ref().unwrap().id).unwrap();
/// assert_eq!(bias.into_data().to_vec::<f32>().unwrap(), vec![2.0]); // 4 rows x 0.5
/// # Ok::<(), gradmod::Error>(())
/// ```
pub fn scale<B: Backend>(grads: &mut GradientsParams, set: &ParamSet, factor: f64) -> Result<()> {
    if !factor.is_finite() {
        return Err(Error::Setting(format!("gradient scale {factor}: expected a finite number")));
    }
    for_each::<B, _>(grads, set, &mut Scale(factor))
}

struct Enhance(f64);

impl<B: Backend> GradFn<B> for Enhance {
    fn apply<const D: usize>(&mut self, g: Tensor<B, D>) -> Tensor<B, D> {
        let sigma = std_unbiased(g.clone()) + 1e-8;
        let noise = Tensor::<B, D>::random(g.shape(), Distribution::Normal(0.0, sigma), &g.device());
        g * self.0 + noise
    }
}

/// Unbiased standard deviation of all elements (PyTorch's `Tensor.std()`); 0 for one element.
fn std_unbiased<B: Backend, const D: usize>(t: Tensor<B, D>) -> f64 {
    let n = t.shape().num_elements();
    if n < 2 {
        return 0.0;
    }
    let flat = t.reshape([n]);
    let mean = scalar(flat.clone().mean());
    let ss = scalar((flat - mean).powi_scalar(2).sum());
    (ss / (n - 1) as f64).sqrt()
}

/// OGM-GE's modulation with Gaussian enhancement: `grad ← factor·grad + ε`, with
/// `ε ~ N(0, σ²)` elementwise and `σ = std(grad) + 1e-8` (unbiased, over the tensor, before
/// scaling), per parameter tensor, as the official code does. The noise comes from the
/// backend's random generator (`B::seed` makes it reproducible).
pub fn scale_with_noise<B: Backend>(grads: &mut GradientsParams, set: &ParamSet, factor: f64) -> Result<()> {
    if !factor.is_finite() {
        return Err(Error::Setting(format!("gradient scale {factor}: expected a finite number")));
    }
    for_each::<B, _>(grads, set, &mut Enhance(factor))
}

struct SquaredNorm(f64);

impl<B: Backend> GradFn<B> for SquaredNorm {
    fn apply<const D: usize>(&mut self, g: Tensor<B, D>) -> Tensor<B, D> {
        let n = scalar(g.clone().powi_scalar(2).sum());
        self.0 += n;
        g
    }
}

/// The L2 norm of the gradients of `set`, taken together.
pub fn global_norm<B: Backend>(grads: &mut GradientsParams, set: &ParamSet) -> Result<f64> {
    let mut acc = SquaredNorm(0.0);
    for_each::<B, _>(grads, set, &mut acc)?;
    Ok(acc.0.sqrt())
}

/// PyTorch's `clip_grad_norm_(params, max_norm)`: if the global norm exceeds `max_norm`, every
/// gradient of `set` is multiplied by `max_norm / (norm + 1e-6)`. Returns the norm before
/// clipping.
pub fn clip_global_norm<B: Backend>(grads: &mut GradientsParams, set: &ParamSet, max_norm: f64) -> Result<f64> {
    if !(max_norm > 0.0 && max_norm.is_finite()) {
        return Err(Error::Setting(format!("max_norm {max_norm}: expected a positive number")));
    }
    let norm = global_norm::<B>(grads, set)?;
    let coef = max_norm / (norm + 1e-6);
    if coef < 1.0 {
        scale::<B>(grads, set, coef)?;
    }
    Ok(norm)
}

struct Flatten<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> GradFn<B> for Flatten<B> {
    fn apply<const D: usize>(&mut self, g: Tensor<B, D>) -> Tensor<B, D> {
        let n = g.shape().num_elements();
        self.0.push(g.clone().reshape([n]));
        g
    }
}

/// The gradients of `set` as one vector, in the set's order; a parameter without a gradient
/// contributes zeros, so vectors of the same set always line up.
pub fn flatten<B: Backend>(grads: &mut GradientsParams, set: &ParamSet, device: &B::Device) -> Result<Tensor<B, 1>> {
    let mut parts = Vec::with_capacity(set.len());
    for (id, shape) in set.iter() {
        let one = ParamSet { entries: vec![(id, shape.to_vec())] };
        let mut f = Flatten(Vec::new());
        for_each::<B, _>(grads, &one, &mut f)?;
        match f.0.pop() {
            Some(v) => parts.push(v),
            None => parts.push(Tensor::zeros([shape.iter().product::<usize>()], device)),
        }
    }
    if parts.is_empty() {
        return Ok(Tensor::zeros([0], device));
    }
    Ok(Tensor::cat(parts, 0))
}

/// Cosine similarity of two vectors (0 when either is zero).
pub fn cosine<B: Backend>(a: Tensor<B, 1>, b: Tensor<B, 1>) -> Result<f64> {
    if a.dims() != b.dims() {
        return Err(Error::Shape(format!("cosine of vectors of {} and {} elements", a.dims()[0], b.dims()[0])));
    }
    let dot = scalar((a.clone() * b.clone()).sum());
    let na = scalar(a.powi_scalar(2).sum()).sqrt();
    let nb = scalar(b.powi_scalar(2).sum()).sqrt();
    Ok(if na == 0.0 || nb == 0.0 { 0.0 } else { dot / (na * nb) })
}

/// Writes a flat vector back as the gradients of `set` (the inverse of [`flatten`]).
pub fn unflatten<B: Backend>(flat: Tensor<B, 1>, set: &ParamSet) -> Result<GradientsParams> {
    if flat.dims()[0] != set.numel() {
        return Err(Error::Shape(format!("{} values for {} parameters", flat.dims()[0], set.numel())));
    }
    let mut grads = GradientsParams::new();
    let mut start = 0;
    for (id, shape) in set.iter() {
        let n: usize = shape.iter().product();
        let part = flat.clone().slice(start..start + n);
        start += n;
        macro_rules! put {
            ($d:literal) => {{
                let dims: [usize; $d] = shape.try_into().map_err(|_| Error::Rank(shape.len()))?;
                grads.register::<B, $d>(id, part.reshape(dims));
            }};
        }
        match shape.len() {
            1 => put!(1),
            2 => put!(2),
            3 => put!(3),
            4 => put!(4),
            5 => put!(5),
            6 => put!(6),
            r => return Err(Error::Rank(r)),
        }
    }
    Ok(grads)
}

/// PCGrad (Yu et al., 2020): each task's gradient is projected off every other task's
/// gradient it conflicts with (negative dot product), in the order given by `order(i)` for
/// task i, and the projected gradients are summed. Returns the merged gradients of `set`.
/// PCGrad draws the order at random per task; pass a shuffled order for that, or the
/// identity for a deterministic merge.
pub fn pcgrad<B: Backend>(tasks: &mut [GradientsParams], set: &ParamSet, order: impl Fn(usize) -> Vec<usize>, device: &B::Device) -> Result<GradientsParams> {
    if tasks.is_empty() {
        return Err(Error::Setting("PCGrad needs at least one task's gradients".into()));
    }
    let flat: Vec<Tensor<B, 1>> = tasks.iter_mut().map(|g| flatten::<B>(g, set, device)).collect::<Result<_>>()?;
    let sq: Vec<f64> = flat.iter().map(|g| scalar(g.clone().powi_scalar(2).sum())).collect();
    let mut merged: Option<Tensor<B, 1>> = None;
    for (i, gi) in flat.iter().enumerate() {
        let mut g = gi.clone();
        for j in order(i) {
            if j == i || j >= flat.len() || sq[j] == 0.0 {
                continue;
            }
            let dot = scalar((g.clone() * flat[j].clone()).sum());
            if dot < 0.0 {
                g = g - flat[j].clone() * (dot / sq[j]);
            }
        }
        merged = Some(match merged {
            Some(m) => m + g,
            None => g,
        });
    }
    let merged = merged.unwrap_or_else(|| Tensor::zeros([set.numel()], device));
    unflatten::<B>(merged, set)
}
