//! The fairness terms of fairness-aware LoRA with a privacy-preserving auditor (arXiv
//! 2503.05684 and its follow-up; papers.md 5.2): the orthogonality penalty between the
//! developer's and the auditor's adapters, the entropy of a sensitive head, and gradient
//! reversal for the single-process form of adversarial training.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;

use crate::error::{Error, Result};

/// One layer's adapters in peft's layout: `A [r, in]`, `B [out, r]`.
#[derive(Debug, Clone)]
pub struct AdapterPair<B: Backend> {
    /// The developer's (task) `A`.
    pub task_a: Tensor<B, 2>,
    /// The developer's `B`.
    pub task_b: Tensor<B, 2>,
    /// The auditor's (sensitive) `A`, fixed.
    pub sensitive_a: Tensor<B, 2>,
    /// The auditor's `B`, fixed.
    pub sensitive_b: Tensor<B, 2>,
}

/// O-LoRA-style orthogonality: `Σ_l ‖A_Tᵀ A_S‖²_F + ‖B_Tᵀ B_S‖²_F` in the paper's notation
/// (`A ∈ R^{d×r}`), i.e. `‖A_T A_Sᵀ‖²_F + ‖B_Tᵀ B_S‖²_F` with peft's `A [r, in]`. The auditor's
/// adapters are detached: only the developer's move.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// use fair_losses::{lora_orthogonality, AdapterPair};
///
/// let d = Default::default();
/// let e = |rows: [[f32; 3]; 1]| Tensor::<Flex, 2>::from_floats(rows, &d);
/// // Task and sensitive directions along different axes: no penalty.
/// let pair = AdapterPair { task_a: e([[1.0, 0.0, 0.0]]), task_b: e([[0.0, 1.0, 0.0]]).transpose(),
///                          sensitive_a: e([[0.0, 0.0, 1.0]]), sensitive_b: e([[1.0, 0.0, 0.0]]).transpose() };
/// assert_eq!(lora_orthogonality(&[pair])?.into_scalar(), 0.0);
/// # Ok::<(), fair_losses::Error>(())
/// ```
pub fn lora_orthogonality<B: Backend>(layers: &[AdapterPair<B>]) -> Result<Tensor<B, 1>> {
    let mut total: Option<Tensor<B, 1>> = None;
    for (l, p) in layers.iter().enumerate() {
        let (ta, sa, tb, sb) = (p.task_a.dims(), p.sensitive_a.dims(), p.task_b.dims(), p.sensitive_b.dims());
        if ta[1] != sa[1] || tb[0] != sb[0] {
            return Err(Error::Shape(format!("layer {l}: task A {ta:?} / B {tb:?} and sensitive A {sa:?} / B {sb:?} adapt different shapes")));
        }
        let a = p.task_a.clone().matmul(p.sensitive_a.clone().detach().transpose()); // [r_T, r_S]
        let b = p.task_b.clone().transpose().matmul(p.sensitive_b.clone().detach()); // [r_T, r_S]
        let term = a.powi_scalar(2).sum() + b.powi_scalar(2).sum();
        total = Some(match total {
            Some(t) => t + term,
            None => term,
        });
    }
    total.ok_or_else(|| Error::Shape("no adapter layers".into()))
}

/// Mean Shannon entropy (nats) of `softmax(logits)` over the batch. The Ent method maximises
/// it through the auditor's fixed sensitive head, so the loss added is `−λ·entropy`.
pub fn mean_entropy<B: Backend>(logits: Tensor<B, 2>) -> Tensor<B, 1> {
    let logp = log_softmax(logits, 1);
    (logp.clone().exp() * logp).sum_dim(1).mean().neg()
}

/// Gradient reversal: the value of `x`, and `−λ` times the incoming gradient on the way back
/// (Ganin & Lempitsky), so an encoder in front of an adversary maximises the adversary's loss.
pub fn gradient_reversal<B: Backend, const D: usize>(x: Tensor<B, D>, lambda: f64) -> Tensor<B, D> {
    let stopped = x.clone().detach();
    stopped.clone() + (x - stopped) * (-lambda)
}
