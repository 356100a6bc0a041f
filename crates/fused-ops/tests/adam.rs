//! The fused Adam and AdamW against burn's: the same weights and moments bit for bit, over
//! several steps, with and without weight decay, with the weights owned or shared, through
//! burn's records both ways.

use burn::backend::{Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, AdamWConfig, GradientsParams, Optimizer, SimpleOptimizer};
use burn::prelude::*;
use burn::record::{BinBytesRecorder, FullPrecisionSettings, Record, Recorder};
use burn::tensor::Distribution;

type B = Autodiff<Flex>;

/// The backend's seed is global: tests that draw from it run one at a time.
static SEEDED: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn seeded() -> std::sync::MutexGuard<'static, ()> {
    SEEDED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Two layers: a weight of 24,000 elements (more than one parallel chunk) and small ones.
#[derive(Module, Debug)]
struct Net<B: Backend> {
    a: Linear<B>,
    b: Linear<B>,
}

fn net() -> Net<B> {
    let device = Default::default();
    B::seed(&device, 7);
    Net { a: LinearConfig::new(120, 200).init(&device), b: LinearConfig::new(200, 3).init(&device) }
}

/// The gradients of a loss that differs from step to step.
fn grads(net: &Net<B>, step: usize) -> GradientsParams {
    let device = Default::default();
    B::seed(&device, 100 + step as u64);
    let x = Tensor::<B, 2>::random([16, 120], Distribution::Normal(0.0, 1.0), &device);
    let y = net.b.forward(burn::tensor::activation::relu(net.a.forward(x)));
    GradientsParams::from_grads((y.clone() * y).mean().backward(), net)
}

/// Panics with where and by how much `got` differs from `expected` unless they are identical.
fn assert_same(got: &[Vec<f32>], expected: &[Vec<f32>], what: &str) {
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        let differ = g.iter().zip(e).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        let max = g.iter().zip(e).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(differ == 0 && g.len() == e.len(), "{what}: tensor {i}: {differ} of {} values differ, by up to {max:e}", e.len());
    }
}

fn weights(net: &Net<B>) -> Vec<Vec<f32>> {
    let v = |t: Tensor<B, 2>| t.into_data().to_vec::<f32>().expect("f32");
    let b = |t: Tensor<B, 1>| t.into_data().to_vec::<f32>().expect("f32");
    vec![v(net.a.weight.val()), b(net.a.bias.as_ref().expect("bias").val()), v(net.b.weight.val()), b(net.b.bias.as_ref().expect("bias").val())]
}

/// `steps` updates of a fresh network with `optim`, at a learning rate that changes per step.
fn train<O: Optimizer<Net<B>, B>>(optim: O, steps: usize, net: Net<B>) -> (Net<B>, O) {
    train_sharing(optim, steps, net, false)
}

/// [`train`]; with `shared`, a clone of the network is alive during each update (as in the
/// recipes, which step a clone of the model they hold), so its weights cannot be updated in place.
fn train_sharing<O: Optimizer<Net<B>, B>>(mut optim: O, steps: usize, mut net: Net<B>, shared: bool) -> (Net<B>, O) {
    for step in 0..steps {
        let g = grads(&net, step);
        let kept = shared.then(|| net.clone());
        net = optim.step(1e-2 / (step + 1) as f64, net, g);
        drop(kept);
    }
    (net, optim)
}

#[test]
fn adam_matches_burn_bit_for_bit() {
    let _seeded = seeded();
    for decay in [0.0, 0.05] {
        let burn = AdamConfig::new().with_beta_1(0.85).with_epsilon(1e-8).with_weight_decay((decay > 0.0).then(|| WeightDecayConfig::new(decay)));
        let (expected, _) = train(burn.init::<B, Net<B>>(), 4, net());
        for shared in [false, true] {
            let (got, _) = train_sharing(fused_ops::Adam::new(0.85, 0.999, 1e-8, decay).init::<B, Net<B>>(), 4, net(), shared);
            assert_same(&weights(&got), &weights(&expected), &format!("weight decay {decay}, shared weights {shared}"));
        }
        assert_ne!(weights(&expected), weights(&net()), "the weights moved");
    }
}

#[test]
fn adamw_matches_burn_bit_for_bit() {
    let _seeded = seeded();
    for decay in [0.0, 0.1] {
        let burn = AdamWConfig::new().with_beta_2(0.98).with_epsilon(1e-6).with_weight_decay(decay);
        let (expected, _) = train(burn.init::<B, Net<B>>(), 4, net());
        for shared in [false, true] {
            let (got, _) = train_sharing(fused_ops::AdamW::new(0.9, 0.98, 1e-6, decay).init::<B, Net<B>>(), 4, net(), shared);
            assert_same(&weights(&got), &weights(&expected), &format!("weight decay {decay}, shared weights {shared}"));
        }
    }
}

/// A record written to bytes and read back as another record type (as a checkpoint file is).
fn through_bytes<R: Record<B>, S: Record<B>>(record: R) -> S {
    let recorder = BinBytesRecorder::<FullPrecisionSettings>::default();
    let bytes = recorder.record(record, ()).expect("written");
    recorder.load(bytes, &Default::default()).expect("read as the other optimiser's record")
}

#[test]
fn burns_records_load_both_ways() {
    let _seeded = seeded();
    let burn = || AdamWConfig::new().with_weight_decay(0.01).init::<B, Net<B>>();
    let fused = || fused_ops::AdamW::new(0.9, 0.999, 1e-5, 0.01).init::<B, Net<B>>();
    // Two steps of burn's, then one of the fused optimiser from burn's record, and the reverse.
    let (net_2, burn_2) = train(burn(), 2, net());
    let (expected, _) = train(burn_2.clone(), 1, net_2.clone());
    let resumed = fused().load_record(through_bytes(burn_2.to_record()));
    let (got, _) = train(resumed, 1, net_2);
    // The third step here runs at the first step's rate (train restarts its count): the same
    // for both, so the comparison stands.
    assert_same(&weights(&got), &weights(&expected), "resumed");

    let (net_2, fused_2) = train(fused(), 2, net());
    let (expected, _) = train(fused_2.clone(), 1, net_2.clone());
    let (got, _) = train(burn().load_record(through_bytes(fused_2.to_record())), 1, net_2);
    assert_same(&weights(&got), &weights(&expected), "resumed");
}

#[test]
fn strided_tensors_and_other_backends_take_burns_arithmetic() {
    let _seeded = seeded();
    let device = Default::default();
    Flex::seed(&device, 3);
    // A transposed view (not contiguous) on the plain CPU backend: fused after a copy.
    let p = Tensor::<Flex, 2>::random([40, 30], Distribution::Normal(0.0, 1.0), &device).transpose();
    let g = Tensor::<Flex, 2>::random([30, 40], Distribution::Normal(0.0, 1.0), &device);
    let burn = AdamWConfig::new().with_weight_decay(0.1).build();
    let fused = fused_ops::AdamW::new(0.9, 0.999, 1e-5, 0.1);
    let (e, se) = SimpleOptimizer::<Flex>::step(&burn, 0.1, p.clone(), g.clone(), None);
    let (f, sf) = SimpleOptimizer::<Flex>::step(&fused, 0.1, p.clone(), g.clone(), None);
    assert_eq!(f.into_data().to_vec::<f32>().expect("f32"), e.into_data().to_vec::<f32>().expect("f32"));
    let (se, sf) = (se.expect("state"), sf.expect("state"));
    assert_eq!(sf.momentum.time, se.momentum.time);
    assert_eq!(sf.momentum.moment_2.into_data().to_vec::<f32>().expect("f32"), se.momentum.moment_2.into_data().to_vec::<f32>().expect("f32"));

    // Autodiff tensors are not what the fused pass runs on: burn's optimiser runs.
    let pa = Tensor::<B, 2>::from_data(p.into_data(), &device);
    let ga = Tensor::<B, 2>::from_data(g.into_data(), &device);
    let (e, _) = SimpleOptimizer::<B>::step(&burn, 0.1, pa.clone(), ga.clone(), None);
    let (f, _) = SimpleOptimizer::<B>::step(&fused, 0.1, pa, ga, None);
    assert_eq!(f.into_data().to_vec::<f32>().expect("f32"), e.into_data().to_vec::<f32>().expect("f32"));
}
