//! Routing invariants, equivalence with a dense reference, gradients (autodiff against
//! central differences in f64) for the token- and feature-level MoE.

use burn::backend::{Autodiff, Flex};
use burn::module::{Module, ModuleMapper, Param};
use burn::nn::LinearConfig;
use burn::prelude::*;
use burn::tensor::{DType, Distribution};
use moe_layers::{load_balancing_loss, Capacity, FeatureMoeConfig, FeatureRouting, TokenMoeConfig};

type B = Autodiff<Flex>;
const D: burn::backend::flex::FlexDevice = burn::backend::flex::FlexDevice;

fn rows(t: Tensor<B, 2>) -> Vec<Vec<f32>> {
    let [n, m] = t.dims();
    let v = t.into_data().convert::<f32>().to_vec::<f32>().expect("f32");
    (0..n).map(|i| v[i * m..(i + 1) * m].to_vec()).collect()
}

#[test]
fn each_token_reaches_at_most_k_experts_and_each_expert_at_most_its_capacity() {
    B::seed(&D, 1);
    for (capacity, tokens) in [(Capacity::Reference { tokens: 197, rate: 0.8 }, 60), (Capacity::FromTokens { rate: 0.8 }, 50), (Capacity::FromTokens { rate: 0.3 }, 40)] {
        let moe = TokenMoeConfig::new(16, 32).with_capacity(capacity).init::<B>(&D).expect("moe");
        let x = Tensor::<B, 3>::random([3, tokens, 16], Distribution::Normal(0.0, 1.0), &D);
        let out = moe.forward(x);
        let cap = moe.capacity_for(tokens);
        let r = rows(out.routing);
        for row in &r {
            assert!(row.iter().filter(|&&w| w > 0.0).count() <= 3, "{capacity:?}: a token routed to more than k experts");
        }
        for s in 0..3 {
            #[allow(clippy::needless_range_loop)] // `e` picks one column of many rows
            for e in 0..10 {
                let taken = (0..tokens).filter(|&t| r[s * tokens + t][e] > 0.0).count();
                assert!(taken <= cap, "{capacity:?}: expert {e} takes {taken} > {cap} tokens of sequence {s}");
            }
        }
        if let Capacity::FromTokens { rate } = capacity {
            assert_eq!(cap, (tokens as f64 * rate * 3.0 / 10.0) as usize);
            // A tight capacity drops some routed tokens entirely.
            if rate < 0.5 {
                assert!(r.iter().any(|row| row.iter().all(|&w| w == 0.0)));
            }
        }
    }
    let code = TokenMoeConfig::new(16, 32).init::<B>(&D).expect("moe");
    assert_eq!(code.capacity_for(77), 47, "the code's hard-coded int(197 * 0.8 * 3 / 10)");
}

#[test]
fn sparse_dispatch_equals_the_dense_mixture() {
    B::seed(&D, 2);
    for subtract in [false, true] {
        let moe = TokenMoeConfig::new(12, 24).with_capacity(Capacity::FromTokens { rate: 0.6 }).with_subtract_input(subtract).init::<B>(&D).expect("moe");
        let x = Tensor::<B, 3>::random([2, 9, 12], Distribution::Normal(0.0, 1.0), &D);
        let out = moe.forward(x.clone());
        let flat = x.clone().reshape([18, 12]);
        let mut dense = flat.zeros_like();
        for (n, e) in moe.experts.iter().enumerate() {
            dense = dense + e.forward(flat.clone()) * out.routing.clone().narrow(1, n, 1);
        }
        let mut dense = dense.reshape([2, 9, 12]);
        if subtract {
            dense = dense - x;
        }
        let diff = (out.output - dense).abs().max().into_scalar();
        assert!(diff < 1e-5, "subtract {subtract}: {diff}");
    }
}

#[test]
fn experts_copied_from_an_mlp_reproduce_it() {
    B::seed(&D, 3);
    let fc1 = LinearConfig::new(8, 32).init::<B>(&D);
    let fc2 = LinearConfig::new(32, 8).init::<B>(&D);
    let moe = TokenMoeConfig::new(8, 32).with_capacity(Capacity::Unlimited).with_renormalize(true).with_subtract_input(false).init_from_mlp(&fc1, &fc2, &D).expect("moe");
    let x = Tensor::<B, 3>::random([2, 5, 8], Distribution::Normal(0.0, 1.0), &D);
    let mlp = fc2.forward(burn::tensor::activation::relu(fc1.forward(x.clone())));
    let diff = (moe.forward(x).output - mlp).abs().max().into_scalar();
    assert!(diff < 1e-5, "{diff}");
    // The copies are separate parameters.
    let ids: std::collections::HashSet<_> = moe.experts.iter().map(|e| e.fc1.weight.id).collect();
    assert_eq!(ids.len(), 10);
    assert!(!ids.contains(&fc1.weight.id));
    assert!(TokenMoeConfig::new(8, 16).init_from_mlp(&fc1, &fc2, &D).is_err(), "shape mismatch is an error");
    assert!(TokenMoeConfig::new(8, 32).with_top_k(11).init::<B>(&D).is_err(), "k > experts is an error");
}

#[test]
fn gradients_reach_the_gate_and_the_experts_that_got_tokens() {
    B::seed(&D, 4);
    let moe = TokenMoeConfig::new(16, 32).with_capacity(Capacity::FromTokens { rate: 0.8 }).init::<B>(&D).expect("moe");
    let x = Tensor::<B, 3>::random([2, 20, 16], Distribution::Normal(0.0, 1.0), &D);
    let out = moe.forward(x);
    let used: Vec<bool> = (0..10).map(|e| rows(out.routing.clone()).iter().any(|r| r[e] > 0.0)).collect();
    let grads = (out.output.powf_scalar(2.0).sum() + out.routing.var(0).sum()).backward();
    let norm = |g: Option<Tensor<Flex, 2>>| g.map_or(0.0, |g| g.abs().sum().into_scalar());
    assert!(norm(moe.gate_fc1.weight.val().grad(&grads)) > 0.0, "gate_fc1");
    assert!(norm(moe.gate_fc2.weight.val().grad(&grads)) > 0.0, "gate_fc2");
    for (e, expert) in moe.experts.iter().enumerate() {
        let g = norm(expert.fc1.weight.val().grad(&grads));
        assert_eq!(g > 0.0, used[e], "expert {e}: used {} grad {g}", used[e]);
    }

    let fmoe = FeatureMoeConfig::new(16, 3).init::<B>(&D).expect("feature moe");
    let f = Tensor::<B, 2>::random([6, 16], Distribution::Normal(0.0, 1.0), &D);
    let out = fmoe.forward(f);
    let grads = (out.output.sum() + out.routing.var(0).sum()).backward();
    assert!(norm(fmoe.gate_fc2.weight.val().grad(&grads)) > 0.0);
    assert!(fmoe.experts.iter().all(|e| norm(e.fc1.weight.val().grad(&grads)) > 0.0), "dense: every expert");
}

#[test]
fn feature_moe_dense_sums_to_one_and_top_k_keeps_k() {
    B::seed(&D, 5);
    let f = Tensor::<B, 2>::random([7, 16], Distribution::Normal(0.0, 1.0), &D);
    let dense = FeatureMoeConfig::new(16, 3).init::<B>(&D).expect("dense");
    for row in rows(dense.forward(f.clone()).routing) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
    let top1 = FeatureMoeConfig::new(16, 3).with_routing(FeatureRouting::TopK(1)).init::<B>(&D).expect("top1");
    for row in rows(top1.forward(f).routing) {
        assert_eq!(row.iter().filter(|&&w| w > 0.0).count(), 1);
    }
    assert!(FeatureMoeConfig::new(16, 2).with_routing(FeatureRouting::TopK(3)).init::<B>(&D).is_err());
}

#[test]
fn load_balancing_loss_is_one_when_balanced_and_larger_when_not() {
    let p = Tensor::<B, 2>::from_floats([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]], &D);
    let r = p.clone() * moe_layers::top_k_mask(p.clone(), 1, 1);
    let l = load_balancing_loss(r, p).into_scalar();
    assert!((l - 2.0 * 0.8).abs() < 1e-6, "{l}"); // f = [1, 0], P = [0.8, 0.2]
}

struct ToF64;
impl<Bk: Backend> ModuleMapper<Bk> for ToF64 {
    fn map_float<const N: usize>(&mut self, param: Param<Tensor<Bk, N>>) -> Param<Tensor<Bk, N>> {
        let (id, tensor, mapper) = param.consume();
        Param::from_mapped_value(id, tensor.cast(DType::F64), mapper)
    }
}

/// Central differences of `sum(f(x) * w)` with respect to the input, in f64.
fn grad_check<const R: usize>(name: &str, shape: [usize; R], f: impl Fn(Tensor<B, R>) -> Tensor<B, R>) {
    let n: usize = shape.iter().product();
    let x0: Vec<f64> = (0..n).map(|i| ((i * 7919) % 97) as f64 / 48.5 - 1.0).collect();
    let w: Vec<f64> = (0..n).map(|i| ((i * 104_729) % 89) as f64 / 44.5 - 1.0).collect();
    let make = |v: Vec<f64>| Tensor::<B, R>::from_data(TensorData::new(v, shape), (&D, DType::F64));
    let weights = make(w);
    let value = |x: Tensor<B, R>| -> f64 { (f(x) * weights.clone()).sum().inner().into_data().convert::<f64>().to_vec::<f64>().expect("f64")[0] };
    let x = make(x0.clone()).require_grad();
    let y = (f(x.clone()) * weights.clone()).sum();
    let g = x.grad(&y.backward()).expect("grad").into_data().convert::<f64>().to_vec::<f64>().expect("f64");
    let h = 1e-6;
    let scale = g.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
    for i in 0..n {
        let (mut p, mut m) = (x0.clone(), x0.clone());
        p[i] += h;
        m[i] -= h;
        let fd = (value(make(p)) - value(make(m))) / (2.0 * h);
        assert!((fd - g[i]).abs() <= 1e-5 * scale, "{name}: d/dx[{i}] autodiff {} vs finite difference {fd}", g[i]);
    }
}

#[test]
fn gradient_checks_against_finite_differences() {
    B::seed(&D, 6);
    for subtract in [false, true] {
        let moe = TokenMoeConfig::new(8, 16)
            .with_experts(4)
            .with_top_k(2)
            .with_capacity(Capacity::FromTokens { rate: 0.9 })
            .with_subtract_input(subtract)
            .init::<B>(&D)
            .expect("moe")
            .map(&mut ToF64);
        grad_check(&format!("token MoE (subtract_input {subtract})"), [2, 5, 8], |x| moe.forward(x).output);
    }
    for routing in [FeatureRouting::Dense, FeatureRouting::TopK(2)] {
        let fmoe = FeatureMoeConfig::new(8, 3).with_routing(routing).init::<B>(&D).expect("fmoe").map(&mut ToF64);
        grad_check(&format!("feature MoE ({routing:?})"), [4, 8], |f| fmoe.forward(f).output);
    }
}
