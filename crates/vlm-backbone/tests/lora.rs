//! LoRA injected into the ViT by peft's target names: a fresh adapter changes nothing, only
//! targeted projections get adapters, frozen bases get no gradient, and the checkpoint keys of
//! a model without adapters are unchanged.

use burn::backend::{flex::FlexDevice, Autodiff, Flex};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use lora_fair::LoraConfig;
use vlm_backbone::VisionTransformerConfig;

type B = Autodiff<Flex>;
const D: FlexDevice = FlexDevice;

#[test]
fn lora_on_the_vit_starts_as_a_no_op_and_trains_only_the_adapters() {
    let vit = VisionTransformerConfig::new(16, 8, 16, 2, 2).init::<B>(&D);
    let images = Tensor::<B, 4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &D);
    let before = vit.forward(images.clone()).inner().into_data();
    let targets = ["q_proj", "v_proj", "fc1", "fc2"];
    // Freeze everything, then add adapters (which are trainable): the LoRA fine-tuning setup.
    let vit = vit.no_grad().with_lora(&LoraConfig::new().with_r(2).with_alpha(4.0), &targets, &D).expect("lora");
    vit.forward(images.clone()).inner().into_data().assert_approx_eq::<f32>(&before, Default::default());
    let mut adapted = 0;
    for layer in &vit.encoder.layers {
        let a = &layer.self_attn;
        assert!(a.q_proj.lora.is_some() && a.v_proj.lora.is_some() && a.k_proj.lora.is_none() && a.out_proj.lora.is_none());
        assert!(layer.mlp.fc1.lora.is_some() && layer.mlp.fc2.lora.is_some());
        adapted += [&a.q_proj, &a.v_proj, &layer.mlp.fc1, &layer.mlp.fc2].iter().map(|l| l.trainable_parameters()).sum::<usize>();
    }
    // r = 2: (in + out) · r per adapted projection; width 16, MLP 64.
    assert_eq!(adapted, 2 * (2 * (16 + 16) * 2 + (16 + 64) * 2 + (64 + 16) * 2));
    let grads = GradientsParams::from_grads(vit.forward(images).sum().backward(), &vit);
    assert_eq!(grads.len(), 2 * 4 * 2, "gradients reach the adapters (A and B of 4 projections in 2 layers) and nothing else");
}

#[test]
fn adapters_travel_through_a_peft_folder_into_another_copy_of_the_model() {
    use lora_fair::{load_adapters, save_adapters, AdapterConfig};
    // The auditor/developer setting: both hold the same frozen base; only adapters travel.
    let base = VisionTransformerConfig::new(16, 8, 16, 2, 2).init::<Flex>(&Default::default());
    // burn draws parameters lazily: touch them all once so that the clones share the base.
    let _ = base.forward(Tensor::zeros([1, 3, 16, 16], &Default::default()));
    let cfg = LoraConfig::new().with_r(2).with_alpha(4.0);
    let targets = ["q_proj", "fc2"];
    let mut tuned = base.clone().with_lora(&cfg, &targets, &Default::default()).expect("lora");
    // Stand in for training: give every B a value.
    for layer in tuned.encoder.layers.iter_mut() {
        for lin in [&mut layer.self_attn.q_proj, &mut layer.mlp.fc2] {
            if let Some(a) = lin.lora.as_mut() {
                let dims = a.lora_b.val().dims();
                a.lora_b = burn::module::Param::from_tensor(Tensor::random(dims, Distribution::Normal(0.0, 0.3), &Default::default()));
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("vlm-lora-peft-{}", std::process::id()));
    save_adapters(&dir, &tuned.lora_adapters(), &AdapterConfig::new(&cfg, &targets, None)).expect("save");
    let (_, adapters) = load_adapters::<Flex>(&dir, &Default::default()).expect("load");
    assert_eq!(adapters.len(), 4);
    let received = base.clone().with_lora_adapters(adapters).expect("attach");
    let images = Tensor::<Flex, 4>::random([2, 3, 16, 16], Distribution::Normal(0.0, 1.0), &Default::default());
    received.forward(images.clone()).into_data().assert_approx_eq::<f32>(&tuned.forward(images.clone()).into_data(), Default::default());
    let plain = base.forward(images).into_data();
    assert_ne!(received.forward(Tensor::<Flex, 4>::zeros([1, 3, 16, 16], &Default::default())).into_data(), plain, "the adapters change the model");
    // An adapter for a module the model does not have is refused.
    let (_, mut adapters) = load_adapters::<Flex>(&dir, &Default::default()).expect("load");
    let any = adapters.values().next().cloned().expect("one");
    adapters.insert("encoder.layers.7.self_attn.q_proj".into(), any);
    assert!(VisionTransformerConfig::new(16, 8, 16, 2, 2).init::<Flex>(&Default::default()).with_lora_adapters(adapters).is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_lora_classifier_trains_only_adapters_and_head() {
    use vlm_backbone::VitClassifierConfig;
    let model = VitClassifierConfig::new(VisionTransformerConfig::new(16, 8, 16, 2, 2), 3).init::<B>(&D);
    let model = model.with_lora(&LoraConfig::new().with_r(2), &["q_proj", "v_proj"], &D).expect("lora");
    let images = Tensor::<B, 4>::random([4, 3, 16, 16], Distribution::Normal(0.0, 1.0), &D);
    let grads = GradientsParams::from_grads(model.forward(images).sum().backward(), &model);
    // 2 layers x 2 projections x (A, B), plus the head's weight and bias.
    assert_eq!(grads.len(), 2 * 2 * 2 + 2);
    assert!(grads.get::<Flex, 2>(model.classifier.weight.id).is_some());
}
