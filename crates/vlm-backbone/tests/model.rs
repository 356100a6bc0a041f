//! Shapes, attention masks, pooling, gradient flow, finite-difference checks of the layers, and
//! a few training steps of the tiny CLIP.

use burn::backend::{flex::FlexDevice, Autodiff, Flex};
use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::Distribution;
use vlm_backbone::{Activation, ClipConfig, Pooling, TextTransformerConfig, TransformerEncoderConfig, VisionTransformerConfig};

mod common;
use common::{grad_check, ToF64};

type B = Autodiff<Flex>;
const D: FlexDevice = FlexDevice;

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

fn vec2(t: Tensor<Flex, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec::<f32>().expect("f32")
}

#[test]
fn shapes() {
    assert_eq!(VisionTransformerConfig::vit_b16().tokens(), 197);
    let cfg = ClipConfig::tiny();
    let model = cfg.init::<Flex>(&D);
    let images = Tensor::<Flex, 4>::random([3, 3, 32, 32], Distribution::Normal(0.0, 1.0), &D);
    assert_eq!(model.vision_model.forward_tokens(images.clone()).dims(), [3, 17, 32]);
    assert_eq!(model.encode_image(images.clone()).dims(), [3, 16]);
    let tokens = Tensor::<Flex, 2, Int>::from_ints([[1, 4, 63, 0], [1, 5, 6, 63], [1, 63, 0, 0]], &D);
    assert_eq!(model.encode_text(tokens.clone()).dims(), [3, 16]);
    assert_eq!(model.forward(images.clone(), tokens).dims(), [3, 3]);
    let norms = vec2(model.encode_image(images).powf_scalar(2.0).sum_dim(1));
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-5));
    let scale: f32 = model.logit_scale.val().into_scalar();
    assert!((scale - (1.0f32 / 0.07).ln()).abs() < 1e-6);
}

#[test]
fn causal_text_does_not_look_ahead_and_bidirectional_does() {
    let causal = TextTransformerConfig::new(32, 8, 16, 2, 2).init::<Flex>(&D);
    let bidir = TextTransformerConfig::new(32, 8, 16, 2, 2).with_causal(false).with_pooling(Pooling::Cls).init::<Flex>(&D);
    let a = Tensor::<Flex, 2, Int>::from_ints([[1, 2, 3, 4, 5, 6]], &D);
    let b = Tensor::<Flex, 2, Int>::from_ints([[1, 2, 3, 9, 9, 9]], &D);
    let first3 = |m: &vlm_backbone::TextTransformer<Flex>, t: Tensor<Flex, 2, Int>| vec2(m.forward_tokens(t).narrow(1, 0, 3).reshape([3, 16]));
    assert!(close(&first3(&causal, a.clone()), &first3(&causal, b.clone()), 1e-5), "causal states changed by later tokens");
    assert!(!close(&first3(&bidir, a), &first3(&bidir, b), 1e-5), "bidirectional states ignored later tokens");
}

#[test]
fn eot_and_mean_pooling() {
    let causal = TextTransformerConfig::new(32, 8, 16, 1, 2).init::<Flex>(&D);
    let tokens = Tensor::<Flex, 2, Int>::from_ints([[1, 4, 31, 0, 0]], &D);
    let states = causal.forward_tokens(tokens.clone());
    // End-of-text pooling takes the state at the largest id (31, position 2).
    assert!(close(&vec2(causal.forward(tokens)), &vec2(states.narrow(1, 2, 1).reshape([1, 16])), 1e-6));

    let mean = TextTransformerConfig::new(32, 8, 16, 1, 2).with_causal(false).with_pooling(Pooling::Mean).init::<Flex>(&D);
    let short = Tensor::<Flex, 2, Int>::from_ints([[1, 4, 7]], &D);
    let padded = Tensor::<Flex, 2, Int>::from_ints([[1, 4, 7, 0, 0]], &D);
    assert!(close(&vec2(mean.forward(short)), &vec2(mean.forward(padded)), 1e-5), "padding changed the mean-pooled feature");
}

#[test]
fn zero_shot_is_the_softmax_of_raw_cosines() {
    let model = ClipConfig::tiny().init::<Flex>(&D);
    let images = Tensor::<Flex, 4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &D);
    let prompts = Tensor::<Flex, 2, Int>::from_ints([[1, 10, 11, 63], [1, 10, 12, 63]], &D);
    let p = model.zero_shot(images.clone(), prompts.clone()).into_data().to_vec::<f32>().expect("f32");
    let cos = vec2(model.encode_image(images).matmul(model.encode_text(prompts).transpose()));
    for (i, pi) in p.iter().enumerate() {
        let (z0, z1) = (cos[2 * i], cos[2 * i + 1]);
        let expect = (z1.exp()) / (z0.exp() + z1.exp());
        assert!((pi - expect).abs() < 1e-6);
    }
}

#[derive(Default)]
struct Ids(Vec<ParamId>);
impl<Bk: Backend> ModuleVisitor<Bk> for Ids {
    fn visit_float<const N: usize>(&mut self, p: &Param<Tensor<Bk, N>>) {
        self.0.push(p.id);
    }
}

#[test]
fn every_parameter_gets_a_gradient_and_training_lowers_the_loss() {
    let mut model = ClipConfig::tiny().init::<B>(&D);
    let images = Tensor::<B, 4>::random([4, 3, 32, 32], Distribution::Normal(0.0, 1.0), &D);
    let tokens = Tensor::<B, 2, Int>::from_ints([[1, 4, 63, 0], [1, 5, 6, 63], [1, 63, 0, 0], [1, 9, 9, 63]], &D);
    let loss_of = |m: &vlm_backbone::Clip<B>| fair_losses::clip_contrastive_loss(m.forward(images.clone(), tokens.clone())).expect("loss");
    let loss = loss_of(&model);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut ids = Ids::default();
    model.visit(&mut ids);
    assert!(ids.0.len() > 30);
    // Every parameter (class token and logit scale included) takes part in the loss.
    for id in &ids.0 {
        let has = grads.get::<Flex, 1>(*id).is_some() || grads.get::<Flex, 2>(*id).is_some() || grads.get::<Flex, 4>(*id).is_some();
        assert!(has, "parameter {id} got no gradient");
    }
    let first: f32 = loss_of(&model).into_scalar();
    let mut opt = AdamWConfig::new().with_weight_decay(0.0).init::<B, vlm_backbone::Clip<B>>();
    for _ in 0..5 {
        let loss = loss_of(&model);
        let g = GradientsParams::from_grads(loss.backward(), &model);
        model = opt.step(1e-3, model, g);
    }
    let last: f32 = loss_of(&model).into_scalar();
    assert!(last < first * 0.8, "loss {first} -> {last}");
}

#[test]
fn layer_gradients_match_finite_differences() {
    for act in [Activation::QuickGelu, Activation::Gelu, Activation::Relu] {
        let enc = TransformerEncoderConfig::new(8, 1, 2).with_activation(act).init::<B>(&D).map(&mut ToF64);
        grad_check(&format!("encoder layer ({act:?})"), [2, 3, 8], |x| enc.forward(x, None));
    }
    let enc = TransformerEncoderConfig::new(8, 2, 2).init::<B>(&D).map(&mut ToF64);
    let mask = Tensor::<B, 2, Bool>::tril_mask([3, 3], 0, &D).unsqueeze_dim::<3>(0).expand([2, 3, 3]);
    grad_check("causal encoder", [2, 3, 8], |x| enc.forward(x, Some(mask.clone())));
    // BERT's post-norm layers, with an intermediate width that is not 4x and a padding mask.
    let enc = TransformerEncoderConfig::new(8, 2, 2)
        .with_post_norm(true)
        .with_intermediate_size(Some(12))
        .with_activation(Activation::Gelu)
        .with_layer_norm_eps(1e-12)
        .init::<B>(&D)
        .map(&mut ToF64);
    let pad = Tensor::<B, 1, Bool>::from_bool(TensorData::from([false, false, true]), &D).reshape([1, 1, 3]).expand([2, 3, 3]);
    grad_check("post-norm encoder", [2, 3, 8], |x| enc.forward(x, Some(pad.clone())));
}
