//! FO-MoE (Fair-MoE, arXiv 2502.06094): a CLIP model whose last transformer block in each
//! tower routes tokens through a mixture of experts with expert capacity, and whose projected
//! features pass a feature-level MoE with one expert per group of the chosen attribute.

use burn::prelude::*;
use moe_layers::{Capacity, FeatureMoeConfig, FeatureRouting, Result, TokenMoeConfig};

use crate::clip::Clip;

/// Where and how FO-MoE is inserted. Defaults: the official code (10 experts, top 3,
/// capacity rate 0.8 against 197 tokens, experts copied from the block's MLP with ReLU, the
/// `out − x` output, dense feature MoEs), in all four places (the paper's full model).
#[derive(Config, Debug)]
pub struct FoMoeConfig {
    /// Experts of the feature MoEs: the number of groups of the attribute (the code's M²).
    pub feature_experts: usize,
    /// Token-MoE experts M¹.
    #[config(default = 10)]
    pub experts: usize,
    /// Experts per token k¹.
    #[config(default = 3)]
    pub top_k: usize,
    /// Expert capacity.
    #[config(default = "Capacity::Reference { tokens: 197, rate: 0.8 }")]
    pub capacity: Capacity,
    /// Subtract the MoE input from its output (the code).
    #[config(default = true)]
    pub subtract_input: bool,
    /// Renormalise the kept routing weights per token (neither code nor paper).
    #[config(default = false)]
    pub renormalize: bool,
    /// Feature-MoE mixing: dense (code) or top-k (paper).
    #[config(default = "FeatureRouting::Dense")]
    pub feature_routing: FeatureRouting,
    /// Token MoE in the image tower's last block.
    #[config(default = true)]
    pub image_token: bool,
    /// Token MoE in the text tower's last block.
    #[config(default = true)]
    pub text_token: bool,
    /// Feature MoE after the image projection.
    #[config(default = true)]
    pub image_feature: bool,
    /// Feature MoE after the text projection.
    #[config(default = true)]
    pub text_feature: bool,
}

impl<B: Backend> Clip<B> {
    /// Inserts FO-MoE: the last block's MLP of each chosen tower becomes a token MoE whose
    /// experts are copies of that MLP (ReLU experts, as the code), and feature MoEs follow the
    /// projections.
    ///
    /// ```
    /// use burn::backend::Flex;
    /// use burn::prelude::*;
    /// use vlm_backbone::{ClipConfig, FoMoeConfig};
    /// let device = Default::default();
    /// let model = ClipConfig::tiny().init::<Flex>(&device).with_fo_moe(&FoMoeConfig::new(3), &device)?;
    /// let (features, routing) = model.encode_image_routed(Tensor::zeros([2, 3, 32, 32], &device));
    /// assert_eq!(features.dims(), [2, 16]);
    /// assert_eq!(routing.token[0].dims(), [2 * 17, 10]); // 16 patches + class token, 10 experts
    /// assert_eq!(routing.feature.unwrap().dims(), [2, 3]);
    /// # Ok::<(), moe_layers::Error>(())
    /// ```
    pub fn with_fo_moe(mut self, cfg: &FoMoeConfig, device: &B::Device) -> Result<Self> {
        let token = |width: usize, hidden: usize| {
            TokenMoeConfig::new(width, hidden)
                .with_experts(cfg.experts)
                .with_top_k(cfg.top_k)
                .with_capacity(cfg.capacity)
                .with_subtract_input(cfg.subtract_input)
                .with_renormalize(cfg.renormalize)
        };
        for (on, layers) in [(cfg.image_token, &mut self.vision_model.encoder.layers), (cfg.text_token, &mut self.text_model.encoder.layers)] {
            if let (true, Some(last)) = (on, layers.last_mut()) {
                let [width, hidden] = last.mlp.fc1.weight.dims();
                last.moe = Some(token(width, hidden).init_from_mlp(&last.mlp.fc1.to_linear(), &last.mlp.fc2.to_linear(), device)?);
            }
        }
        let feature = |width: usize| FeatureMoeConfig::new(width, cfg.feature_experts).with_routing(cfg.feature_routing).init(device);
        if cfg.image_feature {
            self.visual_feature_moe = Some(feature(self.visual_projection.weight.dims()[1])?);
        }
        if cfg.text_feature {
            self.text_feature_moe = Some(feature(self.text_projection.weight.dims()[1])?);
        }
        Ok(self)
    }
}
