//! The fused CPU kernels against burn's compositions on the same backend (forward values and
//! every input's gradient), and against finite differences.

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::activation::{sigmoid, softmax};
use burn::tensor::Distribution;

type B = Autodiff<Flex>;

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32")
}

/// `max |a − b| / max |b|`.
fn rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(b).fold(0.0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn random<const D: usize>(shape: [usize; D], seed: u64, scale: f64) -> Tensor<B, D> {
    let device = Default::default();
    B::seed(&device, seed);
    Tensor::<B, D>::random(shape, Distribution::Normal(0.0, scale), &device)
}

/// The composition `fused_ops::attention` replaces.
fn attention_composed(q: Tensor<B, 4>, k: Tensor<B, 4>, v: Tensor<B, 4>, mask: Option<Tensor<B, 3, Bool>>) -> Tensor<B, 4> {
    let [b, h, t, dh] = q.dims();
    let mut scores = q.matmul(k.swap_dims(2, 3)) / (dh as f64).sqrt();
    if let Some(m) = mask {
        scores = scores.mask_fill(m.unsqueeze_dim::<4>(1).expand([b, h, t, t]), -1.0e9);
    }
    softmax(scores, 3).matmul(v)
}

#[test]
fn quick_gelu_matches_the_composition() {
    // Large enough for the parallel path, with values far into both tails.
    let x = random([4, 33, 700], 1, 4.0).require_grad();
    let w = random([4, 33, 700], 2, 1.0);
    let fused = fused_ops::quick_gelu(x.clone());
    let composed = x.clone() * sigmoid(x.clone() * 1.702);
    assert!(rel(&values(fused.clone()), &values(composed.clone())) < 1e-6);
    let gf = x.grad(&(fused * w.clone()).sum().backward()).expect("grad");
    let gc = x.grad(&(composed * w).sum().backward()).expect("grad");
    let (gf, gc) = (gf.into_data().to_vec::<f32>().expect("f32"), gc.into_data().to_vec::<f32>().expect("f32"));
    assert!(rel(&gf, &gc) < 1e-6, "{}", rel(&gf, &gc));
}

#[test]
fn softmax_matches_the_composition() {
    let x = random([6, 5, 197, 197], 3, 3.0).require_grad();
    let w = random([6, 5, 197, 197], 4, 1.0);
    let fused = fused_ops::softmax(x.clone(), 3);
    let composed = softmax(x.clone(), 3);
    let r = rel(&values(fused.clone()), &values(composed.clone()));
    assert!(r < 1e-6, "forward {r}");
    let gf = x.grad(&(fused * w.clone()).sum().backward()).expect("grad").into_data().to_vec::<f32>().expect("f32");
    let gc = x.grad(&(composed * w).sum().backward()).expect("grad").into_data().to_vec::<f32>().expect("f32");
    assert!(rel(&gf, &gc) < 1e-5, "{}", rel(&gf, &gc));
    // Another dimension than the last is burn's own softmax.
    let y = random([3, 4], 5, 1.0);
    assert_eq!(values(fused_ops::softmax(y.clone(), 0)), values(softmax(y, 0)));
}

fn check_attention(b: usize, h: usize, t: usize, dh: usize, causal: bool) {
    let device = Default::default();
    // q, k, v as the model makes them: heads split from [b, t, h·dh] (strided views).
    let heads = |x: Tensor<B, 3>| x.reshape([b, t, h, dh]).swap_dims(1, 2);
    let (xq, xk, xv) = (random([b, t, h * dh], 6, 1.0).require_grad(), random([b, t, h * dh], 7, 1.0).require_grad(), random([b, t, h * dh], 8, 1.0).require_grad());
    let w = random([b, h, t, dh], 9, 1.0);
    let mask = causal.then(|| Tensor::<B, 2, Bool>::tril_mask([t, t], 0, &device).unsqueeze_dim::<3>(0).expand([b, t, t]));
    let fused = fused_ops::attention(heads(xq.clone()), heads(xk.clone()), heads(xv.clone()), mask.clone());
    let composed = attention_composed(heads(xq.clone()), heads(xk.clone()), heads(xv.clone()), mask);
    let r = rel(&values(fused.clone()), &values(composed.clone()));
    assert!(r < 1e-5, "forward {r}");
    let gf = (fused * w.clone()).sum().backward();
    let gc = (composed * w).sum().backward();
    for (name, x) in [("q", &xq), ("k", &xk), ("v", &xv)] {
        let a = x.grad(&gf).expect("grad").into_data().to_vec::<f32>().expect("f32");
        let c = x.grad(&gc).expect("grad").into_data().to_vec::<f32>().expect("f32");
        let r = rel(&a, &c);
        assert!(r < 1e-5, "d{name}: {r}");
    }
}

#[test]
fn attention_matches_the_composition() {
    // A ViT's shape (bidirectional) and a text tower's (causal), each with several heads.
    check_attention(2, 3, 17, 16, false);
    check_attention(3, 4, 40, 8, true);
    check_attention(1, 2, 197, 64, false);
}

#[test]
fn attention_gradient_matches_finite_differences() {
    let (b, h, t, dh) = (1, 2, 5, 3);
    let q = random([b, h, t, dh], 10, 1.0);
    let k = random([b, h, t, dh], 11, 1.0);
    let v = random([b, h, t, dh], 12, 1.0);
    let w = random([b, h, t, dh], 13, 1.0);
    let f = |q: Tensor<B, 4>| (fused_ops::attention(q, k.clone(), v.clone(), None) * w.clone()).sum().into_scalar() as f64;
    let qg = q.clone().require_grad();
    let grad = values(qg.grad(&(fused_ops::attention(qg.clone(), k.clone(), v.clone(), None) * w.clone()).sum().backward()).map(Tensor::<B, 4>::from_inner).expect("grad"));
    let base = values(q.clone());
    let eps = 1e-2;
    for i in 0..base.len() {
        let shifted = |d: f32| {
            let mut x = base.clone();
            x[i] += d;
            Tensor::<B, 4>::from_data(TensorData::new(x, [b, h, t, dh]), &Default::default())
        };
        let numeric = (f(shifted(eps)) - f(shifted(-eps))) / (2.0 * eps as f64);
        assert!((numeric - grad[i] as f64).abs() < 2e-3 * (1.0 + numeric.abs()), "element {i}: numeric {numeric}, analytic {}", grad[i]);
    }
}

#[test]
fn layer_norm_matches_burns() {
    let device = Default::default();
    let x = random([3, 41, 768], 15, 2.0).require_grad();
    let gamma = random([768], 16, 1.0).require_grad();
    let beta = random([768], 17, 1.0).require_grad();
    let w = random([3, 41, 768], 18, 1.0);
    let fused = fused_ops::layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), 1e-5);
    // burn's composition under autodiff (ModuleOps::layer_norm's default).
    let (var, mean) = x.clone().var_mean_bias(2);
    let composed = (x.clone() - mean) / (var + 1e-5).sqrt() * gamma.clone().unsqueeze::<3>() + beta.clone().unsqueeze::<3>();
    let r = rel(&values(fused.clone()), &values(composed.clone()));
    assert!(r < 1e-5, "forward {r}");
    let gf = (fused * w.clone()).sum().backward();
    let gc = (composed * w).sum().backward();
    for (name, a, c) in [
        ("x", x.grad(&gf).map(|g| g.into_data()), x.grad(&gc).map(|g| g.into_data())),
        ("gamma", gamma.grad(&gf).map(|g| g.into_data()), gamma.grad(&gc).map(|g| g.into_data())),
        ("beta", beta.grad(&gf).map(|g| g.into_data()), beta.grad(&gc).map(|g| g.into_data())),
    ] {
        let (a, c) = (a.expect("grad").to_vec::<f32>().expect("f32"), c.expect("grad").to_vec::<f32>().expect("f32"));
        let r = rel(&a, &c);
        assert!(r < 1e-5, "d{name}: {r}");
    }
    // Without β, and on the plain backend (evaluation).
    let plain = Tensor::<Flex, 2>::from_floats([[1.0, 2.0, 4.0]], &device);
    let y = fused_ops::layer_norm(plain.clone(), Tensor::ones([3], &device), None, 1e-5);
    let burn_ln = burn::nn::LayerNormConfig::new(3).init::<Flex>(&device).forward(plain);
    let (y, e) = (y.into_data().to_vec::<f32>().expect("f32"), burn_ln.into_data().to_vec::<f32>().expect("f32"));
    assert!(rel(&y, &e) < 1e-6);
}

#[test]
fn other_dtypes_take_the_composition() {
    let x = random([2, 3], 14, 1.0).cast(burn::tensor::DType::F16);
    let y = fused_ops::quick_gelu(x.clone()).cast(burn::tensor::DType::F32);
    let c = (x.clone() * sigmoid(x * 1.702)).cast(burn::tensor::DType::F32);
    assert_eq!(values(y), values(c));
}
