//! Each primitive against a hand-computed case, OGM-GE and the balancing factors against the
//! reference formulas, a finite-difference check of the direction term, and the promise that
//! a parameter outside the modulated set steps exactly as without modulation.

use burn::backend::{flex::FlexDevice, Autodiff, Flex};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{GradientsParams, Optimizer, SgdConfig};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use gradmod::{clip_global_norm, cosine, direction_loss, flatten, global_norm, pcgrad, scale, scale_with_noise, unflatten, GroupModulation, ModalityBalance, OgmGe, ParamSet};

type B = Autodiff<Flex>;
const D: FlexDevice = FlexDevice;

/// burn's random generator is global to the process: tests that seed it and draw from it
/// (initialisation, GE noise) take this lock so that parallel tests cannot interleave draws.
fn rng_lock() -> std::sync::MutexGuard<'static, ()> {
    static RNG: std::sync::Mutex<()> = std::sync::Mutex::new(());
    RNG.lock().unwrap_or_else(|p| p.into_inner())
}

fn vals<const N: usize>(t: Tensor<Flex, N>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().expect("data")
}

/// Two "encoders" and a head, with a loss whose gradients are known in closed form.
#[derive(Module, Debug)]
// burn's derive expects the backend parameter to be called `B` (it shadows the alias here).
struct Toy<B: Backend> {
    fundus: Linear<B>,
    text: Linear<B>,
    head: Linear<B>,
}

fn toy() -> Toy<B> {
    B::seed(&D, 3);
    Toy { fundus: LinearConfig::new(3, 2).init(&D), text: LinearConfig::new(3, 2).init(&D), head: LinearConfig::new(2, 1).init(&D) }
}

fn grads_of(m: &Toy<B>) -> GradientsParams {
    let x = Tensor::<B, 2>::from_floats([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0]], &D);
    let loss = m.head.forward(m.fundus.forward(x.clone()) + m.text.forward(x)).powi_scalar(2).sum();
    GradientsParams::from_grads::<B, Toy<B>>(loss.backward(), m)
}

#[test]
fn scale_multiplies_only_the_chosen_set() {
    let _rng = rng_lock();
    let m = toy();
    let base = grads_of(&m);
    let mut g = grads_of(&m);
    scale::<Flex>(&mut g, &ParamSet::of(&m.fundus), 0.25).expect("scale");
    let w = |g: &GradientsParams, l: &Linear<B>| vals(g.get::<Flex, 2>(l.weight.id).expect("grad"));
    for (a, b) in w(&g, &m.fundus).iter().zip(w(&base, &m.fundus)) {
        assert_eq!(*a, (b as f32 * 0.25) as f64);
    }
    assert_eq!(w(&g, &m.text), w(&base, &m.text));
    assert_eq!(w(&g, &m.head), w(&base, &m.head));
    assert!(scale::<Flex>(&mut g, &ParamSet::of(&m.fundus), f64::NAN).is_err());
}

#[test]
fn global_norm_and_clipping_follow_pytorch() {
    let _rng = rng_lock();
    let m = toy();
    let set = ParamSet::of::<B, _>(&m);
    let mut g = grads_of(&m);
    let by_hand: f64 = set
        .iter()
        .map(|(id, s)| match s.len() {
            1 => vals(g.get::<Flex, 1>(id).expect("grad")).iter().map(|v| v * v).sum::<f64>(),
            _ => vals(g.get::<Flex, 2>(id).expect("grad")).iter().map(|v| v * v).sum::<f64>(),
        })
        .sum::<f64>()
        .sqrt();
    let norm = global_norm::<Flex>(&mut g, &set).expect("norm");
    assert!((norm - by_hand).abs() < 1e-5 * by_hand);
    let before = clip_global_norm::<Flex>(&mut g, &set, norm / 4.0).expect("clip");
    assert!((before - norm).abs() < 1e-9);
    let after = global_norm::<Flex>(&mut g, &set).expect("norm");
    // clip_grad_norm_: coefficient max_norm / (norm + 1e-6).
    assert!((after - norm / 4.0 * norm / (norm + 1e-6)).abs() < 1e-5 * after, "{after}");
    // Below the threshold nothing changes.
    let again = clip_global_norm::<Flex>(&mut g, &set, 10.0 * norm).expect("clip");
    assert!((global_norm::<Flex>(&mut g, &set).expect("norm") - again).abs() < 1e-9);
    assert!(clip_global_norm::<Flex>(&mut g, &set, 0.0).is_err());
}

#[test]
fn gaussian_enhancement_scales_then_adds_noise_of_the_gradients_spread() {
    let _rng = rng_lock();
    // A big gradient so the noise statistics are sharp: d(sum(W x))/dW = x broadcast.
    let layer: Linear<B> = LinearConfig::new(400, 100).with_bias(false).init(&D);
    let x = Tensor::<B, 2>::from_data(TensorData::new((0..400).map(|i| (i % 7) as f32 - 3.0).collect::<Vec<_>>(), [1, 400]), &D);
    let set = ParamSet::of(&layer);
    let clean = vals(GradientsParams::from_grads(layer.forward(x.clone()).sum().backward(), &layer).get::<Flex, 2>(layer.weight.id).expect("grad"));
    let n = clean.len() as f64;
    let mean = clean.iter().sum::<f64>() / n;
    let sigma = (clean.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() + 1e-8;
    let k = 0.3;
    let mut noisy = Vec::new();
    for seed in [5, 5, 6] {
        Flex::seed(&D, seed);
        let mut g = GradientsParams::from_grads(layer.forward(x.clone()).sum().backward(), &layer);
        scale_with_noise::<Flex>(&mut g, &set, k).expect("ge");
        noisy.push(vals(g.get::<Flex, 2>(layer.weight.id).expect("grad")));
    }
    assert_eq!(noisy[0], noisy[1], "the backend seed makes the noise reproducible");
    assert_ne!(noisy[0], noisy[2]);
    let eps: Vec<f64> = noisy[0].iter().zip(&clean).map(|(g, c)| g - k * c).collect();
    let e_mean = eps.iter().sum::<f64>() / n;
    let e_std = (eps.iter().map(|v| (v - e_mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert!(e_mean.abs() < 4.0 * sigma / n.sqrt(), "noise mean {e_mean}");
    assert!((e_std / sigma - 1.0).abs() < 0.03, "noise std {e_std} vs σ {sigma}");
}

#[test]
fn flatten_cosine_and_unflatten_round_trip() {
    let _rng = rng_lock();
    let m = toy();
    let set = ParamSet::of(&m.fundus).union(&ParamSet::of(&m.head));
    let mut g = grads_of(&m);
    let flat = flatten::<Flex>(&mut g, &set, &D).expect("flatten");
    assert_eq!(flat.dims()[0], set.numel());
    assert!((cosine(flat.clone(), flat.clone() * 3.0).expect("cos") - 1.0).abs() < 1e-6);
    assert!((cosine(flat.clone(), -flat.clone()).expect("cos") + 1.0).abs() < 1e-6);
    let mut back = unflatten::<Flex>(flat.clone(), &set).expect("unflatten");
    assert_eq!(vals(flatten::<Flex>(&mut back, &set, &D).expect("flatten")), vals(flat));
    let a = Tensor::<Flex, 1>::from_floats([1.0, 0.0], &D);
    let b = Tensor::<Flex, 1>::from_floats([1.0, 1.0], &D);
    assert!((cosine(a.clone(), b).expect("cos") - 0.5f64.sqrt()).abs() < 1e-7);
    assert!(cosine(a, Tensor::<Flex, 1>::from_floats([1.0], &D)).is_err());
}

#[test]
fn pcgrad_projects_conflicting_gradients() {
    let _rng = rng_lock();
    // One parameter vector [2]; task gradients g1 = [1, 0], g2 = [-1, 1] conflict (dot −1):
    // g1' = g1 − (−1/2)·g2 = [0.5, 0.5], g2' = g2 − (−1/1)·g1 = [0, 1]; sum [0.5, 1.5].
    let layer: Linear<B> = LinearConfig::new(1, 2).with_bias(false).init(&D);
    let set = ParamSet::of(&layer);
    let task = |v: [f32; 2]| unflatten::<Flex>(Tensor::<Flex, 1>::from_floats(v, &D), &set).expect("grads");
    let mut tasks = vec![task([1.0, 0.0]), task([-1.0, 1.0])];
    let mut merged = pcgrad::<Flex>(&mut tasks, &set, |i| vec![1 - i], &D).expect("pcgrad");
    assert_eq!(vals(flatten::<Flex>(&mut merged, &set, &D).expect("flat")), vec![0.5, 1.5]);
    // Agreeing gradients are summed unchanged.
    let mut tasks = vec![task([1.0, 0.0]), task([1.0, 1.0])];
    let mut merged = pcgrad::<Flex>(&mut tasks, &set, |i| vec![1 - i], &D).expect("pcgrad");
    assert_eq!(vals(flatten::<Flex>(&mut merged, &set, &D).expect("flat")), vec![2.0, 1.0]);
}

#[test]
fn ogm_ge_coefficients_follow_the_reference_formula() {
    let _rng = rng_lock();
    let logits_a = [[2.0f32, -1.0], [0.3, 0.1], [-0.5, 1.5], [1.0, 1.0]];
    let logits_v = [[4.0f32, -2.0], [1.0, -1.0], [-2.0, 3.0], [0.0, 2.0]];
    let labels = [0i64, 0, 1, 1];
    let s = |l: &[[f32; 2]; 4]| -> f64 {
        l.iter()
            .zip(labels)
            .map(|(r, y)| {
                let (a, b) = (r[0] as f64, r[1] as f64);
                let m = a.max(b);
                let z = (a - m).exp() + (b - m).exp();
                ((if y == 0 { a } else { b }) - m).exp() / z
            })
            .sum()
    };
    let (sa, sv) = (s(&logits_a), s(&logits_v));
    let ogm = OgmGe { alpha: 0.8, ..OgmGe::default() };
    let c = ogm
        .coefficients(Tensor::<Flex, 2>::from_floats(logits_a, &D), Tensor::<Flex, 2>::from_floats(logits_v, &D), Tensor::<Flex, 1, Int>::from_ints(labels, &D))
        .expect("coefficients");
    assert!((c.scores[0] - sa).abs() < 1e-6 && (c.scores[1] - sv).abs() < 1e-6);
    assert!(sv > sa, "the visual modality is the confident one here");
    let expected = 1.0 - (0.8 * sv / sa).tanh();
    assert_eq!(c.coefficients[0], 1.0);
    assert!((c.coefficients[1] - expected).abs() < 1e-6, "{:?} vs {expected}", c.coefficients);
    // Swapped, the other modality is damped; a tie damps modality 0, as the code's `else`.
    let c = ogm
        .coefficients(Tensor::<Flex, 2>::from_floats(logits_v, &D), Tensor::<Flex, 2>::from_floats(logits_a, &D), Tensor::<Flex, 1, Int>::from_ints(labels, &D))
        .expect("coefficients");
    assert!((c.coefficients[0] - expected).abs() < 1e-6 && c.coefficients[1] == 1.0);
    let same = Tensor::<Flex, 2>::from_floats(logits_a, &D);
    let c = ogm.coefficients(same.clone(), same, Tensor::<Flex, 1, Int>::from_ints(labels, &D)).expect("coefficients");
    assert!((c.coefficients[0] - (1.0 - 0.8f64.tanh())).abs() < 1e-6 && c.coefficients[1] == 1.0);
    assert!(OgmGe { start_epoch: 2, end_epoch: 3, ..ogm }.active(3) && !OgmGe { start_epoch: 2, end_epoch: 3, ..ogm }.active(4));
}

#[test]
fn a_parameter_outside_the_modulated_set_steps_bit_identically() {
    let _rng = rng_lock();
    let run = |modulate: bool| -> Toy<B> {
        let m = toy();
        // SGD: Adam would undo a constant scale of the gradients.
        let mut opt = SgdConfig::new().init::<B, Toy<B>>();
        let mut g = grads_of(&m);
        if modulate {
            let c = OgmGe::default();
            let k = gradmod::OgmCoefficients { scores: [1.0, 2.0], ratio: 2.0, coefficients: [1.0, 0.4] };
            Flex::seed(&D, 9);
            c.apply::<Flex>(1, &mut g, [&ParamSet::of(&m.fundus), &ParamSet::of(&m.text)], &k).expect("apply");
        }
        opt.step(1e-2, m, g)
    };
    let (plain, modulated) = (run(false), run(true));
    let w = |l: &Linear<B>| vals(l.weight.val().inner());
    assert_eq!(w(&plain.head), w(&modulated.head), "the head is not modulated");
    assert_ne!(w(&plain.text), w(&modulated.text));
    assert_ne!(w(&plain.fundus), w(&modulated.fundus), "GE noise reaches the undamped modality too");
}

#[test]
fn modality_balance_and_group_modulation_follow_the_code() {
    let _rng = rng_lock();
    let mut b = ModalityBalance::new(2);
    let f = b.update(&[Some(0.7), Some(0.55)]).expect("update"); // d = 0.2, 0.05
    let s = 0.25 + 1e-8;
    assert!((f[0] - (s - 0.2) / s).abs() < 1e-12 && (f[1] - (s - 0.05) / s).abs() < 1e-12);
    let f = b.update(&[None, Some(0.45)]).expect("update"); // d = 0, −0.1
    let s = 0.1 + 1e-8;
    assert!((f[0] - (s - 0.0) / s).abs() < 1e-12 && (f[1] - (s - 0.1) / s).abs() < 1e-12);
    assert_eq!(b.previous(), &[0.7, 0.45]);
    assert!(b.update(&[Some(0.5)]).is_err());

    let mut g = GroupModulation::new(2, 2, 0.5, 0.07).expect("new");
    g.update(&[vec![0.6, 0.2], vec![0.5, 0.5]]).expect("update");
    let e = g.ema().to_vec();
    assert!((e[0][0] - 0.51).abs() < 1e-12 && (e[0][1] - 0.47).abs() < 1e-12 && e[1] == vec![0.5, 0.5]);
    // Ē_0 = 0.49; f_0 = [1 + 0.5(−0.02)/0.07, 1 + 0.5(0.02)/0.07]; the batch is 3/4 group 1.
    let f = g.factors(&[0.25, 0.75]).expect("factors");
    let expected = 0.25 * (1.0 - 0.01 / 0.07) + 0.75 * (1.0 + 0.01 / 0.07);
    assert!((f[0] - expected).abs() < 1e-12 && (f[1] - 1.0).abs() < 1e-12, "{f:?}");
    assert!((g.gap() - (0.02 + 0.02) / 4.0).abs() < 1e-12);
    // Trigger: group 0 ranks perfectly (AUC 1), group 1 inversely (AUC 0); group 2 has one sample.
    let labels = [true, false, true, false, true];
    let scores = [0.9, 0.1, 0.2, 0.8, 0.5];
    let groups = [0, 0, 1, 1, 2];
    let g3 = GroupModulation::new(1, 3, 0.5, 0.07).expect("new");
    assert_eq!(g3.trigger(&labels, &scores, &groups).expect("trigger"), (1.0, true));
    assert_eq!(g3.trigger(&labels[..2], &scores[..2], &groups[..2]).expect("trigger"), (0.0, false));
    assert!(GroupModulation::new(1, 1, 0.5, 0.07).is_err());
}

#[test]
fn direction_loss_matches_its_formula_and_finite_differences() {
    let _rng = rng_lock();
    let d64 = (&D, DType::F64);
    let heads = vec![
        Tensor::<B, 2>::from_data(TensorData::new(vec![0.3, -0.2, 0.5, 0.1], [2, 2]), d64),
        Tensor::<B, 2>::from_data(TensorData::new(vec![-0.4, 0.6, 0.2, 0.9], [2, 2]), d64),
    ];
    let bal = [0.3, 0.7];
    let w0 = vec![0.1, 0.4, -0.3, 0.8];
    let make = |v: Vec<f64>| Tensor::<B, 2>::from_data(TensorData::new(v, [2, 2]), d64);
    let value = |v: Vec<f64>| vals(direction_loss(&bal, make(v), &heads).expect("loss").inner())[0];
    let cos = |a: &[f64], b: &[f64]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
        dot / (a.iter().map(|x| x * x).sum::<f64>().sqrt() * b.iter().map(|x| x * x).sum::<f64>().sqrt())
    };
    let expected = 0.5 * (1.0 - 0.3 * cos(&w0, &[0.3, -0.2, 0.5, 0.1]) - 0.7 * cos(&w0, &[-0.4, 0.6, 0.2, 0.9]));
    assert!((value(w0.clone()) - expected).abs() < 1e-12);
    let w = make(w0.clone()).require_grad();
    let loss = direction_loss(&bal, w.clone(), &heads).expect("loss");
    let analytic = vals(w.grad(&loss.backward()).expect("grad"));
    let h = 1e-6;
    for i in 0..4 {
        let (mut p, mut m) = (w0.clone(), w0.clone());
        p[i] += h;
        m[i] -= h;
        let numeric = (value(p) - value(m)) / (2.0 * h);
        assert!((analytic[i] - numeric).abs() < 1e-8, "∂/∂w[{i}]: {} vs {numeric}", analytic[i]);
    }
    assert!(direction_loss(&bal[..1], make(w0), &heads).is_err());
}
