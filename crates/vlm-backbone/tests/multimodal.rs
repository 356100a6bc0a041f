//! MultiFair's multimodal classifier: shapes of both pairings and fusions, OGM-GE's unimodal
//! logits adding up to the concat head, detached auxiliary features, finite-difference checks
//! of the post-norm layer and the OCT aggregator.

use burn::backend::{flex::FlexDevice, Autodiff, Flex};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use vlm_backbone::{
    AuxiliaryHeads, Fusion, MultimodalClassifierConfig, Pooling, PostNormEncoderConfig, SecondInput, SecondModality, TextTransformerConfig, VisionTransformerConfig,
};

mod common;
use common::{grad_check, ToF64};

type B = Autodiff<Flex>;
const D: FlexDevice = FlexDevice;

fn fundus_vit() -> VisionTransformerConfig {
    VisionTransformerConfig::new(16, 8, 16, 1, 2)
}

fn text_config(fusion: Fusion) -> MultimodalClassifierConfig {
    let text = TextTransformerConfig::new(50, 6, 16, 1, 2).with_causal(false).with_pooling(Pooling::Cls);
    MultimodalClassifierConfig::new(fundus_vit(), SecondModality::Text(text), 8).with_fusion(fusion).with_fusion_layers(1).with_fusion_heads(2)
}

fn oct_config() -> MultimodalClassifierConfig {
    let second = SecondModality::Oct { vit: VisionTransformerConfig::new(16, 8, 16, 1, 2), slices: 4, layers: 1, heads: 2 };
    MultimodalClassifierConfig::new(fundus_vit(), second, 8).with_fusion_layers(1).with_fusion_heads(2)
}

fn values<const N: usize>(t: Tensor<Flex, N>) -> Vec<f64> {
    t.into_data().convert::<f64>().to_vec::<f64>().expect("data")
}

#[test]
fn both_pairings_and_fusions_give_logits_and_features() {
    let fundus = Tensor::<B, 4>::random([3, 3, 16, 16], Distribution::Normal(0.0, 1.0), &D);
    let tokens = Tensor::<B, 2, Int>::from_ints([[1, 5, 7, 0, 0, 0], [1, 9, 0, 0, 0, 0], [1, 3, 3, 3, 4, 2]], &D);
    for fusion in [Fusion::Transformer, Fusion::Concat] {
        let model = text_config(fusion).init::<B>(&D);
        let out = model.forward(fundus.clone(), SecondInput::Text(tokens.clone()));
        assert_eq!(out.logits.dims(), [3, 2]);
        assert_eq!(out.features[0].dims(), [3, 8]);
        assert_eq!(out.features[1].dims(), [3, 8]);
        assert_eq!(model.unimodal_logits(out.features).is_some(), fusion == Fusion::Concat);
        assert_eq!(model.last_weight().is_some(), fusion == Fusion::Transformer);
    }
    let model = oct_config().init::<B>(&D);
    let volumes = Tensor::<B, 4>::random([3, 4, 16, 16], Distribution::Normal(0.0, 1.0), &D);
    let out = model.forward(fundus, SecondInput::Oct(volumes));
    assert_eq!(out.logits.dims(), [3, 2]);
    // Every parameter of the OCT branch takes part (slice ViT, positions, aggregator).
    let grads = GradientsParams::from_grads(out.logits.sum().backward(), &model);
    let oct = model.oct_encoder.as_ref().expect("oct encoder");
    assert!(grads.get::<Flex, 3>(oct.oct_pos_encoding.id).is_some());
    assert!(grads.get::<Flex, 4>(oct.oct_slice_encoder.embeddings.patch_embedding.weight.id).is_some());
    assert!(grads.get::<Flex, 2>(oct.oct_aggregator.layers[0].linear1.weight.id).is_some());
}

#[test]
fn unimodal_logits_add_up_to_the_concat_head() {
    let model = text_config(Fusion::Concat).init::<Flex>(&Default::default());
    let d = Default::default();
    let f = Tensor::<Flex, 2>::random([4, 8], Distribution::Normal(0.0, 1.0), &d);
    let s = Tensor::<Flex, 2>::random([4, 8], Distribution::Normal(0.0, 1.0), &d);
    let fused = model.fuse([f.clone(), s.clone()]);
    let [a, b] = model.unimodal_logits([f, s]).expect("concat");
    let (x, y) = (values(fused), values(a + b));
    assert!(x.iter().zip(&y).all(|(p, q)| (p - q).abs() < 1e-5), "{x:?} vs {y:?}");
}

#[test]
fn auxiliary_heads_on_detached_features_leave_the_encoders_without_gradient() {
    let model = text_config(Fusion::Transformer).init::<B>(&D);
    let heads = AuxiliaryHeads::<B>::new(8, 2, 0.1, &D);
    let fundus = Tensor::<B, 4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &D);
    let tokens = Tensor::<B, 2, Int>::from_ints([[1, 5, 7, 0, 0, 0], [1, 9, 0, 0, 0, 0]], &D);
    let [f, s] = model.features(fundus, SecondInput::Text(tokens));
    let [a, b] = heads.forward([f.detach(), s.detach()]);
    let loss = a.sum() + b.sum();
    let mut raw = loss.backward();
    let g_heads = GradientsParams::from_module(&mut raw, &heads);
    assert!(g_heads.get::<Flex, 2>(heads.heads[0].out.weight.id).is_some());
    let g_model = GradientsParams::from_module(&mut raw, &model);
    assert!(g_model.is_empty(), "detached features pass no gradient to the encoders");
}

#[test]
fn post_norm_layers_match_finite_differences() {
    // Dropout 0: the check is of the deterministic function.
    let enc = PostNormEncoderConfig::new(8, 2, 2).with_dropout(0.0).init::<B>(&D).map(&mut ToF64);
    grad_check("post-norm encoder", [2, 3, 8], |x| enc.forward(x));
}
