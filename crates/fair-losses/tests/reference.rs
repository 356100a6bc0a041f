//! fair-losses against PyTorch and geomloss (fixtures/reference.json, made by
//! fixtures/make_reference.py in float64), and gradient checks against finite differences.

use burn::backend::{flex::FlexDevice, Autodiff, Flex};
use burn::prelude::*;
use burn::tensor::{DType, TensorData};
use fair_losses::{
    clip_contrastive_loss, fairclip_regularizer, fol_term, gradient_reversal, log_sum_exp, lora_orthogonality, mean_entropy, official_similarities, pair_similarities,
    sinkhorn_divergence, surrogate_auc, surrogate_auc_gap, AdapterPair, FairClipVariant, FolForm, SinkhornConfig,
};
use serde_json::Value;

type B = Autodiff<Flex>;

fn reference() -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("reference.json")).expect("valid JSON")
}

fn matrix(v: &Value) -> (Vec<f64>, [usize; 2]) {
    let rows = v.as_array().expect("rows");
    let cols = rows.first().and_then(Value::as_array).map_or(0, Vec::len);
    let data: Vec<f64> = rows.iter().flat_map(|r| r.as_array().expect("row").iter().map(|x| x.as_f64().expect("number"))).collect();
    (data, [rows.len(), cols])
}

fn tensor64(v: &Value) -> Tensor<B, 2> {
    let (data, shape) = matrix(v);
    Tensor::from_data(TensorData::new(data, shape), (&FlexDevice, DType::F64))
}

fn values<const D: usize>(t: Tensor<Flex, D>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().expect("f64 data")
}

fn scalar(t: Tensor<B, 1>) -> f64 {
    values(t.inner())[0]
}

fn assert_close(what: &str, ours: &[f64], theirs: &[f64], rel: f64) {
    assert_eq!(ours.len(), theirs.len(), "{what}: lengths");
    let scale = theirs.iter().fold(0.0f64, |m, x| m.max(x.abs())).max(1e-300);
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!((a - b).abs() <= rel * scale, "{what}[{i}]: ours {a}, reference {b} (rel {rel} of {scale})");
    }
}

fn flat(v: &Value) -> Vec<f64> {
    match v.as_array() {
        Some(a) if a.first().is_some_and(Value::is_array) => matrix(v).0,
        Some(a) => a.iter().filter_map(Value::as_f64).collect(),
        None => vec![v.as_f64().expect("number")],
    }
}

#[test]
fn sinkhorn_matches_geomloss_values_and_gradients() {
    for case in reference()["sinkhorn"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let x = tensor64(&case["x"]).require_grad();
        let y = tensor64(&case["y"]).require_grad();
        let cfg = SinkhornConfig { debias: case["debias"].as_bool().unwrap_or(true), ..SinkhornConfig::new(case["blur"].as_f64().expect("blur")) };
        let loss = sinkhorn_divergence(x.clone(), y.clone(), &cfg).expect("loss");
        assert_close(&format!("{name} value"), &[scalar(loss.clone())], &[case["value"].as_f64().expect("value")], 1e-10);
        let grads = loss.backward();
        let gx = values(x.grad(&grads).expect("grad x"));
        let gy = values(y.grad(&grads).expect("grad y"));
        assert_close(&format!("{name} grad x"), &gx, &flat(&case["grad_x"]), 1e-9);
        assert_close(&format!("{name} grad y"), &gy, &flat(&case["grad_y"]), 1e-9);
    }
}

#[test]
fn sinkhorn_in_f32_is_close_to_the_f64_reference() {
    let case = &reference()["sinkhorn"][0];
    let (x, xs) = matrix(&case["x"]);
    let (y, ys) = matrix(&case["y"]);
    let x = Tensor::<Flex, 2>::from_data(TensorData::new(x.iter().map(|&v| v as f32).collect(), xs), &FlexDevice);
    let y = Tensor::<Flex, 2>::from_data(TensorData::new(y.iter().map(|&v| v as f32).collect(), ys), &FlexDevice);
    let v: f32 = sinkhorn_divergence(x, y, &SinkhornConfig::new(case["blur"].as_f64().expect("blur"))).expect("loss").into_scalar();
    let r = case["value"].as_f64().expect("value");
    assert!(((v as f64) - r).abs() < 1e-5 * r.abs().max(1.0), "{v} vs {r}");
}

#[test]
fn clip_loss_matches_pytorch_cross_entropy() {
    for case in reference()["clip"].as_array().expect("cases") {
        let logits = tensor64(&case["logits"]).require_grad();
        let loss = clip_contrastive_loss(logits.clone()).expect("loss");
        assert_close("clip value", &[scalar(loss.clone())], &[case["value"].as_f64().expect("value")], 1e-12);
        let g = values(logits.grad(&loss.backward()).expect("grad"));
        assert_close("clip grad", &g, &flat(&case["grad"]), 1e-12);
    }
}

#[test]
fn fairclip_regularizer_matches_the_reference_in_both_variants() {
    for case in reference()["fairclip"].as_array().expect("cases") {
        let scale = case["scale"].as_f64().expect("scale");
        let cfg = SinkhornConfig::new(case["blur"].as_f64().expect("blur"));
        for (variant, key) in [(FairClipVariant::Official, "official"), (FairClipVariant::Aligned, "aligned")] {
            let r = &case[key];
            let img = tensor64(&case["image"]).require_grad();
            let txt = tensor64(&case["text"]).require_grad();
            let s = pair_similarities(img.clone(), txt.clone(), scale, variant).expect("similarities");
            assert_close(&format!("{key} similarities"), &values(s.clone().inner()), &flat(&r["similarities"]), 1e-12);
            let groups: Vec<Tensor<B, 1>> = case["groups"]
                .as_array()
                .expect("groups")
                .iter()
                .map(|g| pair_similarities(tensor64(&g["image"]), tensor64(&g["text"]), scale, variant).expect("group").detach())
                .collect();
            let total = fairclip_regularizer(s, &groups, &cfg, variant).expect("regulariser");
            assert_close(&format!("{key} value"), &[scalar(total.clone())], &[r["value"].as_f64().expect("value")], 1e-9);
            let grads = total.backward();
            assert_close(&format!("{key} grad image"), &values(img.grad(&grads).expect("grad")), &flat(&r["grad_image"]), 1e-8);
            assert_close(&format!("{key} grad text"), &values(txt.grad(&grads).expect("grad")), &flat(&r["grad_text"]), 1e-8);
        }
    }
}

/// Central differences of `f` at `x` (f64) against the autodiff gradient.
fn grad_check(name: &str, x0: Vec<f64>, shape: [usize; 2], f: impl Fn(Tensor<B, 2>) -> Tensor<B, 1>, rel: f64) {
    let make = |v: Vec<f64>| Tensor::<B, 2>::from_data(TensorData::new(v, shape), (&FlexDevice, DType::F64));
    let x = make(x0.clone()).require_grad();
    let y = f(x.clone());
    let analytic = values(x.grad(&y.backward()).expect("gradient"));
    let h = 1e-6;
    let numeric: Vec<f64> = (0..x0.len())
        .map(|i| {
            let (mut p, mut m) = (x0.clone(), x0.clone());
            p[i] += h;
            m[i] -= h;
            (scalar(f(make(p))) - scalar(f(make(m)))) / (2.0 * h)
        })
        .collect();
    assert_close(&format!("{name}: autodiff vs finite differences"), &analytic, &numeric, rel);
}

fn pseudo_random(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

#[test]
fn gradient_checks() {
    grad_check("clip loss", pseudo_random(25, 1).iter().map(|v| v * 5.0).collect(), [5, 5], |x| clip_contrastive_loss(x).expect("loss"), 1e-7);
    grad_check("log_sum_exp", pseudo_random(12, 2).iter().map(|v| v * 50.0).collect(), [3, 4], |x| log_sum_exp(x, 1).sum(), 1e-7);
    // The Sinkhorn gradient is the envelope-theorem gradient at the computed potentials (as in
    // geomloss); it is the derivative of the value once the solver has converged. geomloss's
    // default schedule (scaling 0.5) stops after a few iterations, so the check anneals slowly
    // from a fixed diameter (else the annealing path moves with the extreme points) to test the
    // formula, not the truncation; and with blurs of the data's spread, where Sinkhorn converges
    // fast. (Measured at blur 0.5: the gap on x[0] of the 1-d case shrinks from 6.5e-4 at scaling
    // 0.5 to 5e-5 at 0.95 and 7e-6 at 0.995.)
    let converged = |blur: f64| SinkhornConfig { scaling: 0.995, diameter: Some(4.0), ..SinkhornConfig::new(blur) };
    let y = Tensor::<B, 2>::from_data(TensorData::new(pseudo_random(6, 3), [6, 1]), (&FlexDevice, DType::F64));
    for blur in [2.0, 1.0] {
        let cfg = converged(blur);
        grad_check(&format!("sinkhorn blur {blur}"), pseudo_random(8, 4), [8, 1], |x| sinkhorn_divergence(x, y.clone(), &cfg).expect("loss"), 1e-3);
    }
    let y2 = Tensor::<B, 2>::from_data(TensorData::new(pseudo_random(10, 5), [5, 2]), (&FlexDevice, DType::F64));
    let cfg = converged(1.0);
    grad_check("sinkhorn 2-d", pseudo_random(8, 6), [4, 2], |x| sinkhorn_divergence(x, y2.clone(), &cfg).expect("loss"), 1e-3);
    let txt = Tensor::<B, 2>::from_data(TensorData::new(pseudo_random(12, 7), [4, 3]), (&FlexDevice, DType::F64));
    let group = Tensor::<B, 1>::from_data(TensorData::new(vec![0.2, 0.5, 0.9], [3]), (&FlexDevice, DType::F64));
    let cfg = converged(1.0);
    for variant in [FairClipVariant::Official, FairClipVariant::Aligned] {
        grad_check(
            &format!("fairclip {variant:?}"),
            pseudo_random(12, 8),
            [4, 3],
            |img| {
                let s = pair_similarities(img, txt.clone(), 1.5, variant).expect("sims");
                fairclip_regularizer(s, std::slice::from_ref(&group), &cfg, variant).expect("reg")
            },
            1e-3,
        );
    }
    grad_check("official similarities", pseudo_random(16, 9), [4, 4], |l| official_similarities(l).sum(), 1e-7);
    let groups: Vec<Tensor<B, 2>> = (0..2).map(|g| Tensor::<B, 2>::from_data(TensorData::new(pseudo_random(15, 10 + g), [5, 3]), (&FlexDevice, DType::F64))).collect();
    for form in [FolForm::Paper, FolForm::Code] {
        grad_check(&format!("FOL {form:?}"), pseudo_random(18, 12), [6, 3], |w| fol_term(w, &groups, form, 0.5).expect("fol"), 1e-7);
    }
}

#[test]
fn fol_forms_follow_their_formulas() {
    let d = (&FlexDevice, DType::F64);
    // Column variances: batch [1, 1/3], group [0.25, 0].
    let batch = Tensor::<B, 2>::from_data(TensorData::new(vec![0.0, 1.0, 1.0, 0.0, 2.0, 1.0], [3, 2]), d);
    let group = Tensor::<B, 2>::from_data(TensorData::new(vec![0.5, 0.5, 1.0, 0.5], [2, 2]), d);
    let paper = scalar(fol_term(batch.clone(), &[group.clone(), group.clone()], FolForm::Paper, 7.0).expect("paper"));
    let expected = 2.0 * ((1.0f64 - 0.125).powi(2) + (1.0f64 / 3.0).powi(2));
    assert!((paper - expected).abs() < 1e-12, "{paper} vs {expected}");
    let lambda = 1e-4;
    let code = scalar(fol_term(batch, &[group], FolForm::Code, lambda).expect("code"));
    let (v, vg) = ((1.0 + 1.0 / 3.0) / 2.0, (0.125 + 0.0) / 2.0);
    let expected = -lambda * v + lambda * (vg - v) * (vg - v);
    assert!((code - expected).abs() < 1e-15, "{code} vs {expected}");
    let one_row = Tensor::<B, 2>::from_data(TensorData::new(vec![0.5, 0.5], [1, 2]), d);
    assert!(fol_term(one_row.clone(), &[], FolForm::Paper, 1.0).is_err(), "a variance needs 2 rows");
    let three = Tensor::<B, 2>::from_data(TensorData::new(vec![0.5; 6], [2, 3]), d);
    assert!(fol_term(three.clone(), &[three.clone().narrow(1, 0, 2)], FolForm::Code, 1.0).is_err(), "expert counts must agree");
}

#[test]
fn bad_arguments_are_errors() {
    let d = FlexDevice;
    let x = Tensor::<Flex, 2>::from_floats([[0.0, 1.0]], &d);
    let y = Tensor::<Flex, 2>::from_floats([[0.0], [1.0]], &d);
    assert!(sinkhorn_divergence(x.clone(), y.clone(), &SinkhornConfig::new(0.1)).is_err());
    assert!(sinkhorn_divergence(y.clone(), y.clone(), &SinkhornConfig::new(0.0)).is_err());
    assert!(sinkhorn_divergence(y.clone(), y.clone(), &SinkhornConfig { scaling: 1.0, ..SinkhornConfig::new(0.1) }).is_err());
    assert!(clip_contrastive_loss(x.clone()).is_err());
    assert!(pair_similarities(x.clone(), y.clone(), 1.0, FairClipVariant::Official).is_err());
    let s = Tensor::<Flex, 1>::from_floats([0.1, 0.2], &d);
    assert!(fairclip_regularizer(s, &[], &SinkhornConfig::new(0.1), FairClipVariant::Aligned).is_err());
    // Coincident points: zero, not a division by zero.
    let z = Tensor::<Flex, 2>::from_floats([[0.5], [0.5]], &d);
    let v: f32 = sinkhorn_divergence(z.clone(), z, &SinkhornConfig::new(0.1)).expect("loss").into_scalar();
    assert_eq!(v, 0.0);
}

#[test]
fn surrogate_auc_and_gap_match_pytorch_values_and_gradients() {
    use burn::tensor::activation::softmax;
    for case in reference()["surrogate_auc"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("name");
        let labels: Vec<bool> = case["labels"].as_array().expect("labels").iter().map(|v| v.as_i64() == Some(1)).collect();
        let groups: Vec<i64> = case["groups"].as_array().expect("groups").iter().filter_map(Value::as_i64).collect();
        let q = |logits: Tensor<B, 2>| -> Tensor<B, 1> {
            let n = logits.dims()[0];
            softmax(logits, 1).narrow(1, 1, 1).reshape([n])
        };
        let logits = tensor64(&case["logits"]).require_grad();
        let auc = surrogate_auc(q(logits.clone()), &labels).expect("auc").expect("both classes");
        assert_close(&format!("{name}: surrogate AUC"), &[scalar(auc.clone())], &[case["auc"].as_f64().expect("auc")], 1e-12);
        let grad = values(logits.grad(&auc.backward()).expect("gradient"));
        assert_close(&format!("{name}: surrogate AUC gradient"), &grad, &flat(&case["grad_auc"]), 1e-10);

        let logits = tensor64(&case["logits"]).require_grad();
        let gap = surrogate_auc_gap(q(logits.clone()), &labels, &groups, 3).expect("gap").expect("groups");
        assert_close(&format!("{name}: surrogate gap"), &[scalar(gap.clone())], &[case["gap"].as_f64().expect("gap")], 1e-12);
        let grad = values(logits.grad(&gap.backward()).expect("gradient"));
        assert_close(&format!("{name}: surrogate gap gradient"), &grad, &flat(&case["grad_gap"]), 1e-10);

        let (x0, shape) = matrix(&case["logits"]);
        grad_check(&format!("{name}: surrogate AUC"), x0.clone(), shape, |l| surrogate_auc(q(l), &labels).expect("auc").expect("defined"), 1e-7);
        grad_check(&format!("{name}: surrogate gap"), x0, shape, |l| surrogate_auc_gap(q(l), &labels, &groups, 3).expect("gap").expect("defined"), 1e-6);
    }
}

#[test]
fn surrogate_auc_is_undefined_without_both_classes() {
    let d = (&FlexDevice, DType::F64);
    let q = Tensor::<B, 1>::from_data(TensorData::new(vec![0.2, 0.7, 0.4], [3]), d);
    assert!(surrogate_auc(q.clone(), &[true, true, true]).expect("valid").is_none());
    assert!(surrogate_auc(q.clone().narrow(0, 0, 1), &[true]).expect("valid").is_none());
    assert!(surrogate_auc(q.clone(), &[true, false]).is_err(), "lengths must agree");
    // One group with both classes only: no gap.
    assert!(surrogate_auc_gap(q, &[true, false, true], &[0, 0, 1], 2).expect("valid").is_none());
}

#[test]
fn lora_terms_follow_their_formulas_and_finite_differences() {
    let d = (&FlexDevice, DType::F64);
    let t = |v: Vec<f64>, shape: [usize; 2]| Tensor::<B, 2>::from_data(TensorData::new(v, shape), d);
    // Orthogonality by hand: A_T [1,3], A_S [1,3]: (A_T·A_S)²; B_T [2,1], B_S [2,1]: (B_T·B_S)².
    let pair = AdapterPair {
        task_a: t(vec![1.0, 2.0, 0.0], [1, 3]),
        task_b: t(vec![1.0, -1.0], [2, 1]),
        sensitive_a: t(vec![0.5, 0.5, 3.0], [1, 3]),
        sensitive_b: t(vec![2.0, 1.0], [2, 1]),
    };
    let value = scalar(lora_orthogonality(&[pair.clone(), pair.clone()]).expect("orth"));
    assert!((value - 2.0 * (1.5f64.powi(2) + 1.0)).abs() < 1e-12, "{value}");
    let sa = t(pseudo_random(8, 21), [2, 4]);
    let sb = t(pseudo_random(6, 22), [3, 2]);
    let tb = t(pseudo_random(6, 23), [3, 2]);
    grad_check(
        "orthogonality wrt A_T",
        pseudo_random(8, 24),
        [2, 4],
        |a| lora_orthogonality(&[AdapterPair { task_a: a, task_b: tb.clone(), sensitive_a: sa.clone(), sensitive_b: sb.clone() }]).expect("orth"),
        1e-7,
    );
    let ta = t(pseudo_random(8, 25), [2, 4]);
    grad_check(
        "orthogonality wrt B_T",
        pseudo_random(6, 26),
        [3, 2],
        |b| lora_orthogonality(&[AdapterPair { task_a: ta.clone(), task_b: b, sensitive_a: sa.clone(), sensitive_b: sb.clone() }]).expect("orth"),
        1e-7,
    );
    // The auditor's adapters get no gradient.
    let sa_g = sa.clone().require_grad();
    let g = lora_orthogonality(&[AdapterPair { task_a: ta.clone(), task_b: tb.clone(), sensitive_a: sa_g.clone(), sensitive_b: sb.clone() }]).expect("orth").backward();
    assert!(sa_g.grad(&g).is_none(), "the sensitive adapter is fixed");
    let mismatched = AdapterPair { task_a: t(vec![0.0; 3], [1, 3]), task_b: tb.clone(), sensitive_a: sa.clone(), sensitive_b: sb.clone() };
    assert!(lora_orthogonality(&[mismatched]).is_err());
    assert!(lora_orthogonality::<B>(&[]).is_err());

    // Entropy: uniform over 4 classes is ln 4; a certain prediction is 0.
    let h = scalar(mean_entropy(t(vec![0.0, 0.0, 0.0, 0.0, 50.0, 0.0, 0.0, 0.0], [2, 4])));
    assert!((h - 4f64.ln() / 2.0).abs() < 1e-12, "{h}");
    grad_check("mean entropy", pseudo_random(12, 27).iter().map(|v| v * 3.0).collect(), [3, 4], mean_entropy, 1e-7);

    // Gradient reversal: same value, gradient −λ.
    let x = t(pseudo_random(6, 28), [2, 3]).require_grad();
    let y = gradient_reversal(x.clone(), 0.7);
    assert_eq!(values(y.clone().inner()), values(x.clone().inner()));
    let g = values(x.grad(&(y * 2.0).sum().backward()).expect("grad"));
    assert!(g.iter().all(|v| (v + 1.4).abs() < 1e-12), "{g:?}");
}
