//! The Sinkhorn divergence of geomloss (`SamplesLoss("sinkhorn", p=2, blur, scaling)`,
//! tensorised backend, balanced, uniform weights), reproduced step by step.

use burn::prelude::*;

use crate::clip::log_sum_exp;
use crate::error::{Error, Result};

/// Settings of [`sinkhorn_divergence`]; the defaults are geomloss's.
///
/// ```
/// let cfg = fair_losses::SinkhornConfig::new(1e-6);
/// assert_eq!(cfg.scaling, 0.5);
/// assert!(cfg.debias);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SinkhornConfig {
    /// The blur σ: the final temperature is ε = σ². FairCLIP's script uses 1e-6.
    pub blur: f64,
    /// Ratio between successive blurs of the ε-scaling (geomloss default 0.5).
    pub scaling: f64,
    /// Subtract the two self-transport terms (the Sinkhorn *divergence*; geomloss default).
    pub debias: bool,
    /// Start of the ε-scaling (geomloss's `diameter`); `None` measures the point clouds'
    /// bounding box, as geomloss does by default.
    pub diameter: Option<f64>,
}

impl SinkhornConfig {
    /// geomloss's defaults with the given blur.
    pub fn new(blur: f64) -> Self {
        Self { blur, scaling: 0.5, debias: true, diameter: None }
    }

    fn validate(&self) -> Result<()> {
        if !(self.blur.is_finite() && self.blur > 0.0) {
            return Err(Error::Parameter(format!("blur {} must be a finite number > 0", self.blur)));
        }
        if let Some(d) = self.diameter {
            if !(d.is_finite() && d > 0.0) {
                return Err(Error::Parameter(format!("diameter {d} must be a finite number > 0")));
            }
        }
        if !(self.scaling > 0.0 && self.scaling < 1.0) {
            return Err(Error::Parameter(format!("scaling {} must be in (0, 1)", self.scaling)));
        }
        Ok(())
    }
}

/// geomloss's `epsilon_schedule(p=2, diameter, blur, scaling)`: `[d²]`, then
/// `exp(e)` for `e` in `numpy.arange(2 ln d, 2 ln blur, 2 ln scaling)`, then `blur²`.
///
/// ```
/// let eps = fair_losses::epsilon_schedule(1.0, 0.25, 0.5);
/// assert_eq!(eps.len(), 4); // 1, exp(0)=1, exp(2 ln 0.5)=0.25, then 0.0625
/// assert!((eps[3] - 0.0625).abs() < 1e-15);
/// ```
pub fn epsilon_schedule(diameter: f64, blur: f64, scaling: f64) -> Vec<f64> {
    let p = 2.0;
    let (start, stop, step) = (p * diameter.ln(), p * blur.ln(), p * scaling.ln());
    // numpy.arange: ceil((stop - start) / step) values start + i * step.
    let len = ((stop - start) / step).ceil();
    let len = if len.is_finite() && len > 0.0 { len as usize } else { 0 };
    let mut eps = Vec::with_capacity(len + 2);
    eps.push(diameter.powf(p));
    eps.extend((0..len).map(|i| (start + i as f64 * step).exp()));
    eps.push(blur.powf(p));
    eps
}

/// `C_ij = ½‖x_i − y_j‖²`, computed as geomloss does: `(|x|² − 2 x·y + |y|²) / 2`.
fn half_sq_dist<B: Backend>(x: Tensor<B, 2>, y: Tensor<B, 2>) -> Tensor<B, 2> {
    let xx = x.clone().powf_scalar(2.0).sum_dim(1); // [N, 1]
    let yy = y.clone().powf_scalar(2.0).sum_dim(1).transpose(); // [1, M]
    let xy = x.matmul(y.transpose()); // [N, M]
    (xx - xy * 2.0 + yy) / 2.0
}

/// geomloss's tensorised soft-min: `−ε log Σ_j exp(h_j − C_ij/ε)`, `h` of shape [1, M].
fn softmin<B: Backend>(eps: f64, c: Tensor<B, 2>, h: Tensor<B, 2>) -> Tensor<B, 2> {
    log_sum_exp(h - c / eps, 1).transpose() * (-eps) // [1, N]
}

/// The Sinkhorn divergence between the uniform point clouds `x` ([N, D]) and `y` ([M, D]):
///
/// `S_ε = OT_ε(a, b) − ½ OT_ε(a, a) − ½ OT_ε(b, b)` (with `debias`), cost `½‖x − y‖²`,
/// ε annealed from the squared diameter down to `blur²` ([`epsilon_schedule`]) with the
/// symmetric averaged updates of geomloss, then one last extrapolation step whose soft-mins
/// carry the gradient (the potentials are detached, as in geomloss). Returns a tensor of one
/// element. Point clouds whose points all coincide give 0.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// use fair_losses::{sinkhorn_divergence, SinkhornConfig};
/// let d = Default::default();
/// let x = Tensor::<Flex, 2>::from_floats([[0.0], [1.0]], &d);
/// let same: f32 = sinkhorn_divergence(x.clone(), x.clone(), &SinkhornConfig::new(0.01))?.into_scalar();
/// assert!(same.abs() < 1e-5);
/// let y = x.clone() + 2.0;
/// let moved: f32 = sinkhorn_divergence(x, y, &SinkhornConfig::new(0.01))?.into_scalar();
/// assert!((moved - 2.0).abs() < 1e-2); // ½ · 2² for a shift by 2
/// # Ok::<(), fair_losses::Error>(())
/// ```
pub fn sinkhorn_divergence<B: Backend>(x: Tensor<B, 2>, y: Tensor<B, 2>, cfg: &SinkhornConfig) -> Result<Tensor<B, 1>> {
    cfg.validate()?;
    let ([n, dx], [m, dy]) = (x.dims(), y.dims());
    if n == 0 || m == 0 || dx != dy {
        return Err(Error::Shape(format!("point clouds [{n}, {dx}] and [{m}, {dy}]: need points of one dimension")));
    }
    let (a_log, b_log) = (-(n as f64).ln(), -(m as f64).ln());

    // Diameter of the joint bounding box, as geomloss's max_diameter, unless given.
    let (xd, yd) = (x.clone().detach(), y.clone().detach());
    let diameter = match cfg.diameter {
        Some(d) => d,
        None => {
            let mins = Tensor::cat(vec![xd.clone().min_dim(0), yd.clone().min_dim(0)], 0).min_dim(0);
            let maxs = Tensor::cat(vec![xd.clone().max_dim(0), yd.clone().max_dim(0)], 0).max_dim(0);
            // Read in the tensor's own precision (into_scalar would round through the default float).
            (maxs - mins).powf_scalar(2.0).sum().sqrt().into_data().convert::<f64>().to_vec::<f64>().ok().and_then(|v| v.first().copied()).unwrap_or(0.0)
        }
    };
    if diameter == 0.0 {
        // Every point at the same place: nothing to transport (geomloss divides by zero here).
        return Ok((x.sum() + y.sum()) * 0.0);
    }
    let eps_list = epsilon_schedule(diameter, cfg.blur, cfg.scaling);

    // The annealing loop runs without gradients, on detached costs.
    let c_xy = half_sq_dist(xd.clone(), yd.clone());
    let c_yx = c_xy.clone().transpose();
    let c_xx = half_sq_dist(xd.clone(), xd.clone());
    let c_yy = half_sq_dist(yd.clone(), yd);
    let zeros_n = xd.clone().sum_dim(1).transpose() * 0.0; // [1, N], the input's dtype and device
    let zeros_m = y.clone().detach().sum_dim(1).transpose() * 0.0; // [1, M]
    let (al, bl) = (zeros_n.clone() + a_log, zeros_m.clone() + b_log);

    let eps0 = eps_list[0];
    let mut g_ab = softmin(eps0, c_yx.clone(), al.clone());
    let mut f_ba = softmin(eps0, c_xy.clone(), bl.clone());
    let mut f_aa = softmin(eps0, c_xx.clone(), al.clone());
    let mut g_bb = softmin(eps0, c_yy.clone(), bl.clone());
    for &eps in &eps_list {
        let ft_ba = softmin(eps, c_xy.clone(), bl.clone() + g_ab.clone() / eps);
        let gt_ab = softmin(eps, c_yx.clone(), al.clone() + f_ba.clone() / eps);
        f_ba = (f_ba + ft_ba) * 0.5;
        g_ab = (g_ab + gt_ab) * 0.5;
        if cfg.debias {
            let ft_aa = softmin(eps, c_xx.clone(), al.clone() + f_aa.clone() / eps);
            let gt_bb = softmin(eps, c_yy.clone(), bl.clone() + g_bb.clone() / eps);
            f_aa = (f_aa + ft_aa) * 0.5;
            g_bb = (g_bb + gt_bb) * 0.5;
        }
    }

    // Last extrapolation with gradients through the costs only, and (as geomloss) only
    // through their left-hand argument: C_xy = C(x, y.detach()), C_xx = C(x, x.detach()), ...
    let eps = *eps_list.last().unwrap_or(&eps0);
    let (x_c, y_c) = (x.clone().detach(), y.clone().detach());
    let f_ba_new = softmin(eps, half_sq_dist(x.clone(), y_c.clone()), (bl.clone() + g_ab / eps).detach());
    let g_ab_new = softmin(eps, half_sq_dist(y.clone(), x_c.clone()), (al.clone() + f_ba / eps).detach());
    let mut cost = f_ba_new.mean() + g_ab_new.mean();
    if cfg.debias {
        let f_aa_new = softmin(eps, half_sq_dist(x, x_c), (al + f_aa / eps).detach());
        let g_bb_new = softmin(eps, half_sq_dist(y, y_c), (bl + g_bb / eps).detach());
        cost = cost - f_aa_new.mean() - g_bb_new.mean();
    }
    Ok(cost)
}
