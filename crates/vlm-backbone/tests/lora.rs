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
