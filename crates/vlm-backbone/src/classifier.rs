//! An image classifier: a ViT and a linear head on its pooled class token (timm's and Hugging
//! Face's `ViTForImageClassification` layout), the model that fairness-aware LoRA adapts.

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;

use crate::vision::{VisionTransformer, VisionTransformerConfig};

/// Sizes of a [`VitClassifier`].
#[derive(Config, Debug)]
pub struct VitClassifierConfig {
    /// The image tower.
    pub vit: VisionTransformerConfig,
    /// Number of classes.
    pub classes: usize,
}

impl VitClassifierConfig {
    /// Creates the model with random weights.
    pub fn init<B: Backend>(&self, device: &B::Device) -> VitClassifier<B> {
        VitClassifier { vit: self.vit.init(device), classifier: LinearConfig::new(self.vit.width, self.classes).init(device) }
    }
}

/// A ViT with a classification head.
#[derive(Module, Debug)]
pub struct VitClassifier<B: Backend> {
    /// The image tower.
    pub vit: VisionTransformer<B>,
    /// `Linear(width, classes)` on the pooled class token.
    pub classifier: Linear<B>,
}

impl<B: Backend> VitClassifier<B> {
    /// Logits [batch, classes] of images [batch, 3, H, W].
    ///
    /// ```
    /// use burn::backend::Flex;
    /// use burn::prelude::*;
    /// use lora_fair::LoraConfig;
    /// use vlm_backbone::{VisionTransformerConfig, VitClassifierConfig};
    ///
    /// let device = Default::default();
    /// let model = VitClassifierConfig::new(VisionTransformerConfig::new(16, 8, 16, 2, 2), 2).init::<Flex>(&device);
    /// // LoRA fine-tuning: freeze the tower, adapt q and v, train the new head.
    /// let model = model.with_lora(&LoraConfig::new().with_r(4), &["q_proj", "v_proj"], &device)?;
    /// assert_eq!(model.forward(Tensor::zeros([3, 3, 16, 16], &device)).dims(), [3, 2]);
    /// # Ok::<(), lora_fair::Error>(())
    /// ```
    pub fn forward(&self, images: Tensor<B, 4>) -> Tensor<B, 2> {
        self.classifier.forward(self.vit.forward(images))
    }

    /// The usual LoRA set-up: the tower frozen, adapters on the `targets` projections, the head
    /// trainable.
    pub fn with_lora<S: AsRef<str>>(self, cfg: &lora_fair::LoraConfig, targets: &[S], device: &B::Device) -> lora_fair::Result<Self> {
        Ok(VitClassifier { vit: self.vit.no_grad().with_lora(cfg, targets, device)?, classifier: self.classifier })
    }
}
