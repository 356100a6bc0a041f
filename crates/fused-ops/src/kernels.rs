//! The CPU kernels on plain f32 slices: vectorised by the compiler for the widest instruction set
//! the CPU has (chosen at run time), and split across burn-flex's rayon pool.

use burn::backend::flex::FlexTensor;
use burn::tensor::DType;
use rayon::prelude::*;

/// Elements per parallel task: below this a pass stays on the calling thread.
const CHUNK: usize = 16 * 1024;

/// `e^x` for f32 (Cephes' `expf`: `x = n ln 2 + r`, a degree-6 polynomial in `r`, `2^n` built
/// from its bits), branch-free so that it vectorises. The input is clamped to [-87.3, 88]:
/// below, the result is the smallest normal float instead of a denormal or 0; above, e^88.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(-87.3, 88.0);
    let n = (x * std::f32::consts::LOG2_E + 0.5).floor();
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = (((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5) * (r * r) + r + 1.0;
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// `e^x` for f64: `x = n ln 2 + r` with |r| ≤ ln 2 / 2, the Taylor polynomial of degree 13
/// in `r` (truncation below 1e-17 relative; no division, so it vectorises well), `2^n` from its
/// bits; clamped to [-708, 709].
#[inline(always)]
pub(crate) fn exp64(x: f64) -> f64 {
    const C1: f64 = 6.931_457_519_531_25e-1;
    const C2: f64 = 1.428_606_820_309_417_2e-6;
    let x = x.clamp(-708.0, 709.0);
    let n = (x * std::f64::consts::LOG2_E + 0.5).floor();
    let r = x - n * C1 - n * C2;
    // 1 / k! for k = 13 down to 0.
    const C: [f64; 14] = [
        1.6059043836821613e-10,
        2.08767569878681e-09,
        2.505210838544172e-08,
        2.755731922398589e-07,
        2.7557319223985893e-06,
        2.48015873015873e-05,
        0.0001984126984126984,
        0.001388888888888889,
        0.008333333333333333,
        0.041666666666666664,
        0.16666666666666666,
        0.5,
        1.0,
        1.0,
    ];
    let p = C.iter().fold(0.0, |p, &c| p * r + c);
    p * f64::from_bits(((n as i64 + 1023) as u64) << 52)
}

/// Lanes of the reductions: independent partial results that the compiler keeps in one vector
/// register (a sequential float sum cannot be vectorised), combined at the end.
const LANES: usize = 16;

/// `Σ x` in `LANES` partial sums.
#[inline(always)]
fn lane_sum(x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// `Σ a b` in `LANES` partial sums.
#[inline(always)]
fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for ((acc, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *acc += x * y;
        }
    }
    acc.iter().sum::<f32>() + rest
}

/// `max x` in `LANES` partial maxima.
#[inline(always)]
fn lane_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let rest = chunks.remainder().iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter().fold(rest, |m, &v| m.max(v))
}

/// `e^(x − max)` of each element of a row, 0 where `x − max < −87` (a masked score, which the
/// composition's `exp` underflows to 0); returns the row's sum.
#[inline(always)]
fn exp_shifted(x: &mut [f32], max: f32) -> f32 {
    for x in x.iter_mut() {
        let z = *x - max;
        *x = if z < -87.0 { 0.0 } else { exp(z) };
    }
    lane_sum(x)
}

/// Defines `$name` to run `$body` compiled for AVX-512, else AVX2 with FMA, else the baseline,
/// whichever the CPU has.
macro_rules! multiversion {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$doc])*
        #[allow(clippy::too_many_arguments)]
        pub(crate) fn $name($($arg: $ty),*) {
            #[inline(always)]
            #[allow(clippy::too_many_arguments)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                #[allow(clippy::too_many_arguments)]
                fn v4($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                fn v3($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked on the line above.
                    return unsafe { v4($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA, checked on the line above.
                    return unsafe { v3($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

const K: f32 = 1.702;

// QuickGELU takes the composition's f32 steps (`t = 1.702 x`, burn-flex's two-sided sigmoid,
// `x · s`; backward `g s + ((g x) s (1 − s)) 1.702`) with a correctly rounded `exp` (f64, rounded
// once), so it rounds as burn does: a bias gradient of the tiny CLIP, sensitive to every
// rounding, differed from the wgpu backend's by 1.1e-4 with an f32 polynomial `exp`.

/// burn-flex's sigmoid of `t`: `1 / (1 + e^−t)` for `t ≥ 0`, `e^t / (1 + e^t)` below.
#[inline(always)]
fn sigmoid(t: f32) -> f32 {
    let e = exp64(-(t.abs() as f64)) as f32;
    if t >= 0.0 {
        1.0 / (1.0 + e)
    } else {
        e / (1.0 + e)
    }
}

multiversion! {
    /// `y = x · σ(1.702 x)`.
    fn quick_gelu_forward(x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = x * sigmoid(K * x);
        }
    }
}

multiversion! {
    /// `dx = g σ(1.702 x) + 1.702 g x σ'(1.702 x)`.
    fn quick_gelu_backward(x: &[f32], g: &[f32], dx: &mut [f32]) {
        for ((dx, &x), &g) in dx.iter_mut().zip(x).zip(g) {
            let s = sigmoid(K * x);
            *dx = g * s + g * x * s * (1.0 - s) * K;
        }
    }
}

multiversion! {
    /// Softmax of each row of `x` (rows of `d`) in place.
    fn softmax_rows_inplace(x: &mut [f32], d: usize) {
        for x in x.chunks_exact_mut(d) {
            let sum = exp_shifted(x, lane_max(x));
            for x in x.iter_mut() {
                *x /= sum;
            }
        }
    }
}

multiversion! {
    /// Softmax's backward on rows of `d`: `dx = y (g − Σ g y)`.
    fn softmax_rows_backward(y: &[f32], g: &[f32], dx: &mut [f32], d: usize) {
        for ((y, g), dx) in y.chunks_exact(d).zip(g.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
            let dot = lane_dot(y, g);
            for ((dx, &y), &g) in dx.iter_mut().zip(y).zip(g) {
                *dx = y * (g - dot);
            }
        }
    }
}

multiversion! {
    /// Layer norm of rows of `d`: `y = (x − μ) / √(σ² + ε) · γ + β`; writes each row's mean to
    /// `mean` and `1 / √(σ² + ε)` to `rstd`.
    fn layer_norm_rows(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, y: &mut [f32], mean: &mut [f32], rstd: &mut [f32]) {
        let d = gamma.len();
        for (((x, y), m), r) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).zip(mean.iter_mut()).zip(rstd.iter_mut()) {
            let mu = lane_sum(x) / d as f32;
            for (y, &x) in y.iter_mut().zip(x) {
                *y = x - mu;
            }
            let inv = 1.0 / (lane_dot(y, y) / d as f32 + eps).sqrt();
            for ((y, &g), &b) in y.iter_mut().zip(gamma).zip(beta) {
                *y = *y * inv * g + b;
            }
            *m = mu;
            *r = inv;
        }
    }
}

multiversion! {
    /// Layer norm's backward for rows of `d`: `dx = rstd (ĝ − mean(ĝ) − x̂ mean(ĝ x̂))` with
    /// `ĝ = g γ`, `x̂ = (x − μ) rstd`; adds `Σ g x̂` to `dgamma` and `Σ g` to `dbeta`.
    fn layer_norm_rows_backward(x: &[f32], g: &[f32], gamma: &[f32], mean: &[f32], rstd: &[f32], dx: &mut [f32], dgamma: &mut [f64], dbeta: &mut [f64]) {
        let d = gamma.len();
        for ((((x, g), dx), &mu), &inv) in x.chunks_exact(d).zip(g.chunks_exact(d)).zip(dx.chunks_exact_mut(d)).zip(mean).zip(rstd) {
            // dx holds x̂ first, then the gradient.
            for (dx, &x) in dx.iter_mut().zip(x) {
                *dx = (x - mu) * inv;
            }
            // The weight's and bias's gradients sum over every row, where terms cancel: in f64.
            for (((dg, db), &g), &xh) in dgamma.iter_mut().zip(dbeta.iter_mut()).zip(g).zip(dx.iter()) {
                *dg += (g * xh) as f64;
                *db += g as f64;
            }
            let (mut sum_g, mut sum_gx) = ([0.0f64; LANES], [0.0f64; LANES]);
            for (i, ((&g, &w), &xh)) in g.iter().zip(gamma).zip(dx.iter()).enumerate() {
                sum_g[i % LANES] += (g * w) as f64;
                sum_gx[i % LANES] += (g * w * xh) as f64;
            }
            let mg = (sum_g.iter().sum::<f64>() / d as f64) as f32;
            let mgx = (sum_gx.iter().sum::<f64>() / d as f64) as f32;
            for ((dx, &g), &w) in dx.iter_mut().zip(g).zip(gamma) {
                *dx = inv * (g * w - mg - *dx * mgx);
            }
        }
    }
}

/// The scalars of one Adam or AdamW update, as burn computes them (all f32, burn's order).
#[derive(Clone, Copy)]
pub(crate) struct AdamStep {
    pub(crate) beta_1: f32,
    pub(crate) beta_2: f32,
    /// `1 − β₁`, `1 − β₂`.
    pub(crate) factor_1: f32,
    pub(crate) factor_2: f32,
    /// Whether the moments start here (burn's first step: `m = (1 − β₁) g`, no decay of 0).
    pub(crate) first: bool,
    /// Adam's L2 penalty added to the gradient (`g + λ p`), 0 for none.
    pub(crate) l2: f32,
    pub(crate) rule: AdamRule,
    /// The learning rate as the scalar multiplication rounds it.
    pub(crate) lr: f32,
}

/// How the moments become the update.
#[derive(Clone, Copy)]
pub(crate) enum AdamRule {
    /// burn's `Adam`: `p − lr · (m · c) / (√v + ε √(1 − β₂ᵗ))`, `c = √(1 − β₂ᵗ) / (1 − β₁ᵗ)`.
    Adam { combined: f32, eps: f32 },
    /// burn's `AdamW`: `p · keep − lr · (m / b₁) / (√(v / b₂) + ε)`, `b = 1 − βᵗ`; `keep` is
    /// `1 − lr λ`, `None` where the decay is 0 (burn then leaves `p` as it is).
    AdamW { bias_1: f32, bias_2: f32, eps: f32, keep: Option<f32> },
}

/// One Adam(W) update of one parameter `p` with gradient `g` and moments `m`, `v`; returns the
/// new parameter. Every operation is burn's, in burn's order, so the result is bit for bit
/// burn's (no fused multiply-add: Rust does not contract).
#[inline(always)]
fn adam_one(p: f32, g: f32, m: &mut f32, v: &mut f32, s: &AdamStep) -> f32 {
    let g = if s.l2 != 0.0 { p * s.l2 + g } else { g };
    if s.first {
        *m = g * s.factor_1;
        *v = g * g * s.factor_2;
    } else {
        *m = *m * s.beta_1 + g * s.factor_1;
        *v = *v * s.beta_2 + g * g * s.factor_2;
    }
    match s.rule {
        AdamRule::Adam { combined, eps } => p - (*m * combined) / (v.sqrt() + eps) * s.lr,
        AdamRule::AdamW { bias_1, bias_2, eps, keep } => {
            let delta = (*m / bias_1) / ((*v / bias_2).sqrt() + eps);
            keep.map_or(p, |k| p * k) - delta * s.lr
        }
    }
}

multiversion! {
    /// Adam(W) on a chunk, the parameters updated in place.
    fn adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep) {
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *p = adam_one(*p, g, m, v, s);
        }
    }
}

multiversion! {
    /// Adam(W) on a chunk, the new parameters written to `out` (the old ones are shared).
    fn adam_update_into(p: &[f32], out: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep) {
        for ((((o, &p), &g), m), v) in out.iter_mut().zip(p).zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *o = adam_one(p, g, m, v, s);
        }
    }
}

/// [`adam_update`] over whole tensors' values, in parallel chunks; with `out`, the new
/// parameters go there and `p` is only read.
pub(crate) fn par_adam_update(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep) {
    if p.len() <= CHUNK {
        return adam_update(p, g, m, v, s);
    }
    p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(m.par_chunks_mut(CHUNK)).zip(v.par_chunks_mut(CHUNK)).for_each(|(((p, g), m), v)| adam_update(p, g, m, v, s));
}

/// [`adam_update_into`] over whole tensors' values, in parallel chunks.
pub(crate) fn par_adam_update_into(p: &[f32], out: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], s: &AdamStep) {
    if p.len() <= CHUNK {
        return adam_update_into(p, out, g, m, v, s);
    }
    out.par_chunks_mut(CHUNK)
        .zip(p.par_chunks(CHUNK))
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .for_each(|((((out, p), g), m), v)| adam_update_into(p, out, g, m, v, s));
}

/// The f32 values of `t` in row-major order (a copy only when `t` is a strided view).
pub(crate) fn values(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    let n = t.layout().num_elements();
    if t.layout().is_contiguous() {
        let start = t.layout().start_offset();
        std::borrow::Cow::Borrowed(&t.storage::<f32>()[start..start + n])
    } else {
        std::borrow::Cow::Owned(t.to_contiguous().storage::<f32>()[..n].to_vec())
    }
}

/// A new contiguous f32 tensor of `shape` filled by `fill`.
pub(crate) fn new_tensor(shape: burn::tensor::Shape, fill: impl FnOnce(&mut [f32])) -> FlexTensor {
    let mut values = vec![0.0f32; shape.num_elements()];
    fill(&mut values);
    tensor_of(shape, values)
}

/// A contiguous f32 tensor of zeros.
pub(crate) fn zeros(shape: burn::tensor::Shape) -> FlexTensor {
    tensor_of(shape.clone(), vec![0.0f32; shape.num_elements()])
}

/// `values` as a tensor of `shape`, without a copy. (`FlexTensor::empty` builds its buffer as
/// bytes, which `Bytes` then copies once more into a 16-byte-aligned one: 3 % of a CLIP
/// training step.)
fn tensor_of(shape: burn::tensor::Shape, values: Vec<f32>) -> FlexTensor {
    FlexTensor::new(burn::tensor::Bytes::from_elems(values), burn_flex::Layout::contiguous(shape), DType::F32)
}

/// Element-wise map of `x` into `y` in parallel chunks.
pub(crate) fn par_map(x: &[f32], y: &mut [f32], f: fn(&[f32], &mut [f32])) {
    if y.len() <= CHUNK {
        return f(x, y);
    }
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| f(x, y));
}

/// Element-wise map of `a` and `b` into `y` in parallel chunks.
pub(crate) fn par_map2(a: &[f32], b: &[f32], y: &mut [f32], f: fn(&[f32], &[f32], &mut [f32])) {
    if y.len() <= CHUNK {
        return f(a, b, y);
    }
    y.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK)).zip(b.par_chunks(CHUNK)).for_each(|((y, a), b)| f(a, b, y));
}

/// Rows per parallel task for rows of `d`.
pub(crate) fn rows_per_task(d: usize) -> usize {
    (CHUNK / d.max(1)).max(1)
}

#[cfg(test)]
mod tests {
    use super::exp;

    #[test]
    fn exp64_is_within_two_ulp() {
        // Against f32-rounded exact values would hide its error: compare with std's f64 exp.
        let mut worst = 0.0f64;
        let mut x = -700.0f64;
        while x < 700.0 {
            let exact = x.exp();
            worst = worst.max((super::exp64(x) - exact).abs() / (exact * f64::EPSILON));
            x += 0.0137;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }

    #[test]
    fn exp_is_within_two_ulp() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let exact = (x as f64).exp();
            let ulp = f32::from_bits((exact as f32).to_bits() + 1) as f64 - exact as f32 as f64;
            worst = worst.max((exp(x) as f64 - exact).abs() / ulp);
            x += 0.000_37;
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }
}
