//! Scaled dot-product attention, `softmax(q kᵀ / √d_h, masked) v`, per batch and head.
//!
//! burn's autodiff composes it from a batched product, a division, a mask fill, the softmax and
//! a second product, and the heads' transposes make every step's gradient a strided tensor
//! that the CPU backend copies element by element. Here each (batch, head) pair is one rayon
//! task: two GEMMs forward (reading q, k and v through their strides, writing the output in
//! `[b, t, h, d_h]` order so that merging the heads is free), four backward, the softmax and
//! its gradient in between. The probabilities are kept for the backward pass, as the
//! composition keeps them.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::Flex;
use burn::prelude::*;
use burn::tensor::{DType, Shape};
use rayon::prelude::*;

use crate::cast::{classify, from_autodiff, from_plain, mask_of, AdTensor, Cpu};
use crate::kernels::{new_tensor, softmax_rows_backward, softmax_rows_inplace, zeros};

/// `softmax(q kᵀ / √d_h) v` for `q`, `k`, `v` of `[batch, heads, tokens, d_h]`; `mask`
/// (`[batch, tokens, tokens]`, `true` where a query may not attend to a key) sets those scores
/// to −10⁹ before the softmax. The scores and the softmax are computed in f32 at least (a
/// half-precision `q` has its scores cast up and its probabilities cast back before the second
/// product).
///
/// On the CPU backend (f32) one fused pass each way (see the module's documentation); on
/// other backends burn's composition.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let device = Default::default();
/// let q = Tensor::<Flex, 4>::zeros([1, 1, 2, 4], &device);
/// let v = Tensor::<Flex, 4>::from_floats([[[[1.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]]]], &device);
/// // Equal scores: every query takes the mean of the values.
/// let out = fused_ops::attention(q.clone(), q, v, None).into_data().to_vec::<f32>().unwrap();
/// assert_eq!(out, vec![2.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]);
/// ```
pub fn attention<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, mask: Option<Tensor<B, 3, Bool>>) -> Tensor<B, 4> {
    match (classify(q), classify(k), classify(v)) {
        (Cpu::Autodiff(q), Cpu::Autodiff(k), Cpu::Autodiff(v)) => match mask.map(mask_of).transpose() {
            Ok(mask) => from_autodiff(autodiff(q, k, v, mask)),
            Err(m) => composed(from_autodiff(q), from_autodiff(k), from_autodiff(v), Some(m)),
        },
        (Cpu::Plain(q), Cpu::Plain(k), Cpu::Plain(v)) => match mask.map(mask_of).transpose() {
            Ok(mask) => from_plain(forward(&q, &k, &v, mask.as_ref()).0),
            Err(m) => composed(from_plain(q), from_plain(k), from_plain(v), Some(m)),
        },
        (q, k, v) => composed(q.into_tensor(), k.into_tensor(), v.into_tensor(), mask),
    }
}

/// burn's composition (the other backends' path).
fn composed<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, mask: Option<Tensor<B, 3, Bool>>) -> Tensor<B, 4> {
    let [b, h, t, dh] = q.dims();
    let s = k.dims()[2];
    let dtype = q.dtype();
    // Half-precision products give f32 scores; f32 and f64 keep their own type.
    let score_type = if matches!(dtype, DType::F16 | DType::BF16) { DType::F32 } else { dtype };
    let mut scores = q.matmul(k.swap_dims(2, 3)).cast(score_type) / (dh as f64).sqrt();
    if let Some(m) = mask {
        scores = scores.mask_fill(m.unsqueeze_dim::<4>(1).expand([b, h, t, s]), -1.0e9);
    }
    burn::tensor::activation::softmax(scores, 3).cast(dtype).matmul(v)
}

/// A tensor's strides and its data, for reading one (batch, head) block through its strides.
#[derive(Clone, Copy)]
struct View {
    ptr: *const f32,
    strides: [isize; 4],
}

// SAFETY: a `View` only reads the storage of a tensor the caller keeps alive for the whole
// parallel pass; the blocks are read concurrently, never written.
unsafe impl Send for View {}
unsafe impl Sync for View {}

impl View {
    fn of(t: &FlexTensor) -> View {
        let s = t.layout().strides();
        let data = t.storage::<f32>();
        View { ptr: data[t.layout().start_offset()..].as_ptr(), strides: [s[0], s[1], s[2], s[3]] }
    }

    /// The block of batch `b`, head `h`, and its (row, column) strides.
    fn block(&self, b: usize, h: usize) -> (*const f32, isize, isize) {
        // SAFETY: (b, h) is inside the tensor's shape, so the offset stays in its storage.
        let ptr = unsafe { self.ptr.offset(b as isize * self.strides[0] + h as isize * self.strides[1]) };
        (ptr, self.strides[2], self.strides[3])
    }
}

/// A pointer into an output that parallel tasks write in disjoint blocks.
#[derive(Clone, Copy)]
struct Out(*mut f32);

// SAFETY: each task writes only the rows of its own (batch, head) block.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The element `offset` places in (a method, so that closures capture the whole `Out`).
    ///
    /// # Safety
    /// `offset` must stay inside the output.
    unsafe fn at(self, offset: usize) -> *mut f32 {
        self.0.add(offset)
    }
}

/// `dst (m x n, rows rs_d) = beta · lhs · rhs`, single-threaded (the tasks are the parallelism).
///
/// # Safety
/// The pointers must address `m x k`, `k x n` and `m x n` matrices with the given strides.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm(m: usize, n: usize, k: usize, dst: *mut f32, rs_d: isize, lhs: (*const f32, isize, isize), rhs: (*const f32, isize, isize), beta: f32) {
    gemm::gemm(m, n, k, dst, 1, rs_d, false, lhs.0, lhs.2, lhs.1, rhs.0, rhs.2, rhs.1, 0.0, beta, false, false, false, gemm::Parallelism::None);
}

/// The output (`[b, h, t, d_h]`, stored as `[b, t, h, d_h]`) and the probabilities `[b, h, t, s]`.
fn forward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, mask: Option<&FlexTensor>) -> (FlexTensor, FlexTensor) {
    let qs = q.layout().shape();
    let (b, h, t, dh) = (qs[0], qs[1], qs[2], qs[3]);
    let s = k.layout().shape()[2];
    let scale = 1.0 / (dh as f32).sqrt();
    let (qv, kv, vv) = (View::of(q), View::of(k), View::of(v));
    let mask = mask.map(|m| m.storage::<u8>());
    let mut out = zeros(Shape::new([b, t, h, dh]));
    let o = Out(out.storage_mut::<f32>().as_mut_ptr());
    let probs = new_tensor(Shape::new([b, h, t, s]), |p| {
        p.par_chunks_mut(t * s).enumerate().for_each(|(bh, p)| {
            let (bi, hi) = (bh / h, bh % h);
            let (kp, krs, kcs) = kv.block(bi, hi);
            // SAFETY: blocks of q, k, v are t x dh, s x dh, s x dh through their strides; p is
            // this task's t x s block; the output rows of (bi, hi) are t x dh with rows h·dh
            // apart, written by this task only.
            unsafe {
                gemm(t, s, dh, p.as_mut_ptr(), s as isize, qv.block(bi, hi), (kp, kcs, krs), scale);
                if let Some(mask) = mask {
                    for (p, &m) in p.iter_mut().zip(&mask[bi * t * s..(bi + 1) * t * s]) {
                        if m != 0 {
                            *p = -1.0e9;
                        }
                    }
                }
                softmax_rows_inplace(p, s);
                let dst = o.at(bi * t * h * dh + hi * dh);
                gemm(t, dh, s, dst, (h * dh) as isize, (p.as_ptr(), s as isize, 1), vv.block(bi, hi), 1.0);
            }
        })
    });
    (out.transpose(1, 2), probs)
}

/// A gradient of `[b, h, rows, d_h]` laid out as `[b, rows, h, d_h]`, filled by `f(bh, dst, row_stride)`.
fn grad_tensor(b: usize, h: usize, rows: usize, dh: usize, f: impl Fn(usize, *mut f32, isize) + Sync) -> FlexTensor {
    let mut g = zeros(Shape::new([b, rows, h, dh]));
    let out = Out(g.storage_mut::<f32>().as_mut_ptr());
    (0..b * h).into_par_iter().for_each(|bh| {
        let (bi, hi) = (bh / h, bh % h);
        // SAFETY: the block of (bi, hi) starts inside the buffer; `f` writes its rows only.
        let dst = unsafe { out.at(bi * rows * h * dh + hi * dh) };
        f(bh, dst, (h * dh) as isize)
    });
    g.transpose(1, 2)
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 3> for AttentionBackward {
    /// q, k, v and the probabilities.
    type State = (FlexTensor, FlexTensor, FlexTensor, FlexTensor);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [pq, pk, pv] = ops.parents;
        let g = grads.consume::<Flex>(&ops.node);
        let (q, k, v, p) = ops.state;
        let qs = q.layout().shape();
        let (b, h, t, dh) = (qs[0], qs[1], qs[2], qs[3]);
        let s = k.layout().shape()[2];
        let scale = 1.0 / (dh as f32).sqrt();
        let (qv, kv, vv, gv) = (View::of(&q), View::of(&k), View::of(&v), View::of(&g));
        let probs = p.storage::<f32>();
        // dS = P ⊙ (dP − rowsum(P ⊙ dP)) with dP = dO vᵀ, per (batch, head), kept for dQ and dK.
        let ds = new_tensor(Shape::new([b, h, t, s]), |ds| {
            ds.par_chunks_mut(t * s).enumerate().for_each(|(bh, ds)| {
                let (bi, hi) = (bh / h, bh % h);
                let (vp, vrs, vcs) = vv.block(bi, hi);
                let mut dp = vec![0.0f32; t * s];
                // SAFETY: dO's block is t x dh, vᵀ's is dh x s, dp is t x s.
                unsafe { gemm(t, s, dh, dp.as_mut_ptr(), s as isize, gv.block(bi, hi), (vp, vcs, vrs), 1.0) };
                softmax_rows_backward(&probs[bh * t * s..(bh + 1) * t * s], &dp, ds, s);
            })
        });
        let dss = ds.storage::<f32>();
        if let Some(node) = pv {
            // dV = Pᵀ dO.
            let dv = grad_tensor(b, h, s, dh, |bh, dst, rs| unsafe {
                // SAFETY: Pᵀ's block is s x t, dO's t x dh, dst s x dh rows rs apart.
                gemm(s, dh, t, dst, rs, (probs[bh * t * s..].as_ptr(), 1, s as isize), gv.block(bh / h, bh % h), 1.0)
            });
            grads.register::<Flex>(node.id, dv);
        }
        if let Some(node) = pq {
            // dQ = dS k / √d_h.
            let dq = grad_tensor(b, h, t, dh, |bh, dst, rs| unsafe {
                // SAFETY: dS's block is t x s, k's s x dh, dst t x dh rows rs apart.
                gemm(t, dh, s, dst, rs, (dss[bh * t * s..].as_ptr(), s as isize, 1), kv.block(bh / h, bh % h), scale)
            });
            grads.register::<Flex>(node.id, dq);
        }
        if let Some(node) = pk {
            // dK = dSᵀ q / √d_h.
            let dk = grad_tensor(b, h, s, dh, |bh, dst, rs| unsafe {
                // SAFETY: dSᵀ's block is s x t, q's t x dh, dst s x dh rows rs apart.
                gemm(s, dh, t, dst, rs, (dss[bh * t * s..].as_ptr(), 1, s as isize), qv.block(bh / h, bh % h), scale)
            });
            grads.register::<Flex>(node.id, dk);
        }
    }
}

fn autodiff(q: AdTensor, k: AdTensor, v: AdTensor, mask: Option<FlexTensor>) -> AdTensor {
    match AttentionBackward.prepare::<NoCheckpointing>([q.node.clone(), k.node.clone(), v.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let (out, probs) = forward(&q.primitive, &k.primitive, &v.primitive, mask.as_ref());
            prep.finish((q.primitive, k.primitive, v.primitive, probs), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(&q.primitive, &k.primitive, &v.primitive, mask.as_ref()).0),
    }
}
