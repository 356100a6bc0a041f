//! Routing masks: top-k experts per token, then at most `capacity` tokens per expert and
//! sequence. Masks are constants (no gradient), so gradients reach the kept gate weights only,
//! as `gates * mask` does in the official code.

use burn::prelude::*;
use burn::tensor::IndexingUpdateOp;

/// A 0/1 mask of `weights`' shape with ones at the `k` largest entries along `dim`.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let w = Tensor::<Flex, 2>::from_floats([[0.1, 0.5, 0.4], [0.7, 0.2, 0.1]], &Default::default());
/// let m = moe_layers::top_k_mask(w, 2, 1);
/// assert_eq!(m.into_data().to_vec::<f32>().unwrap(), vec![0.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
/// ```
pub fn top_k_mask<B: Backend, const D: usize>(weights: Tensor<B, D>, k: usize, dim: usize) -> Tensor<B, D> {
    let weights = weights.detach();
    let (values, indices) = weights.clone().topk_with_indices(k, dim);
    let ones = values.ones_like();
    weights.zeros_like().scatter(dim, indices, ones, IndexingUpdateOp::Add)
}

/// Fair-MoE's `Top_c(Top_r(W, k), cap)` on gate probabilities `[batch, tokens, experts]`: keep
/// each token's `k` largest weights, then for every (sequence, expert) the `cap` largest of
/// those along the tokens; everything else becomes 0. The weights are not renormalised (as the
/// code). Returns the routed weights (differentiable where kept).
pub fn route_with_capacity<B: Backend>(gates: Tensor<B, 3>, k: usize, cap: usize) -> Tensor<B, 3> {
    let chosen = gates.clone() * top_k_mask(gates, k, 2);
    let tokens = chosen.dims()[1];
    if cap >= tokens {
        return chosen;
    }
    // Entries already zero may be among the `cap` kept: harmless, they stay zero.
    let keep = top_k_mask(chosen.clone(), cap, 1);
    chosen * keep
}
