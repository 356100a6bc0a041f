//! FO-MoE (Fair-MoE, arXiv 2502.06094): a CLIP model whose last transformer block in each
//! tower routes tokens through a mixture of experts with expert capacity, and whose projected
//! features pass a feature-level MoE with one expert per group of the chosen attribute.

use burn::prelude::*;
use moe_layers::{Capacity, FeatureMoeConfig, FeatureRouting, Result, TokenMoeConfig};
use serde::{Deserialize, Serialize};

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

/// Expert capacity rules of the token MoE, as an experiment file spells them (`"code"`,
/// `"tokens"`, `"none"`); [`FoMoeSettings::config`] turns them into a [`Capacity`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CapacityRule {
    /// The code: `int(capacity_reference · rate · k / experts)` (197 tokens for every tower):
    /// [`Capacity::Reference`].
    Code,
    /// The paper: from each sequence's real token count: [`Capacity::FromTokens`].
    Tokens,
    /// No capacity limit: [`Capacity::Unlimited`].
    None,
}

/// [`FoMoeConfig`] as an experiment file writes it (the `[moe]` table), without the feature
/// experts, which come from the attribute's groups. Every key is optional; the defaults are
/// [`FoMoeConfig`]'s (the official code's, in all four places).
///
/// ```
/// use moe_layers::{Capacity, FeatureRouting};
/// use vlm_backbone::{CapacityRule, FoMoeSettings};
///
/// let moe: FoMoeSettings = toml::from_str("top_k = 2\ncapacity = \"tokens\"\nfeature_top_k = 1")?;
/// assert_eq!((moe.experts, moe.capacity, moe.capacity_rate), (10, CapacityRule::Tokens, 0.8));
/// moe.validate(3, "race").map_err(|e| e.to_string())?;
/// let cfg = moe.config(3);
/// assert_eq!(cfg.capacity, Capacity::FromTokens { rate: 0.8 });
/// assert_eq!((cfg.top_k, cfg.feature_experts, cfg.feature_routing), (2, 3, FeatureRouting::TopK(1)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FoMoeSettings {
    /// Token-MoE experts.
    pub experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Capacity rule.
    pub capacity: CapacityRule,
    /// Capacity rate C (rules `code` and `tokens`).
    pub capacity_rate: f64,
    /// Token count of the code's rule.
    pub capacity_reference: usize,
    /// The code's `out − x`.
    pub subtract_input: bool,
    /// Renormalise kept routing weights per token.
    pub renormalize: bool,
    /// Feature-MoE top-k (the paper); unset: dense softmax (the code).
    pub feature_top_k: Option<usize>,
    /// Token MoE in the image tower.
    pub image_token: bool,
    /// Token MoE in the text tower.
    pub text_token: bool,
    /// Feature MoE after the image projection.
    pub image_feature: bool,
    /// Feature MoE after the text projection.
    pub text_feature: bool,
}

impl Default for FoMoeSettings {
    /// [`FoMoeConfig`]'s defaults (the feature experts aside).
    fn default() -> Self {
        let c = FoMoeConfig::new(2);
        let Capacity::Reference { tokens, rate } = c.capacity else {
            unreachable!("FoMoeConfig's default capacity is the code's rule");
        };
        FoMoeSettings {
            experts: c.experts,
            top_k: c.top_k,
            capacity: CapacityRule::Code,
            capacity_rate: rate,
            capacity_reference: tokens,
            subtract_input: c.subtract_input,
            renormalize: c.renormalize,
            feature_top_k: match c.feature_routing {
                FeatureRouting::Dense => None,
                FeatureRouting::TopK(k) => Some(k),
            },
            image_token: c.image_token,
            text_token: c.text_token,
            image_feature: c.image_feature,
            text_feature: c.text_feature,
        }
    }
}

impl FoMoeSettings {
    /// The FO-MoE configuration, with `feature_experts` feature experts (one per group of the
    /// attribute).
    pub fn config(&self, feature_experts: usize) -> FoMoeConfig {
        let capacity = match self.capacity {
            CapacityRule::Code => Capacity::Reference { tokens: self.capacity_reference, rate: self.capacity_rate },
            CapacityRule::Tokens => Capacity::FromTokens { rate: self.capacity_rate },
            CapacityRule::None => Capacity::Unlimited,
        };
        FoMoeConfig::new(feature_experts)
            .with_experts(self.experts)
            .with_top_k(self.top_k)
            .with_capacity(capacity)
            .with_subtract_input(self.subtract_input)
            .with_renormalize(self.renormalize)
            .with_feature_routing(self.feature_top_k.map_or(FeatureRouting::Dense, FeatureRouting::TopK))
            .with_image_token(self.image_token)
            .with_text_token(self.text_token)
            .with_image_feature(self.image_feature)
            .with_text_feature(self.text_feature)
    }

    /// Checks the settings against the `feature_groups` groups of `attribute` (the feature
    /// experts); the message names the `moe.` key.
    pub fn validate(&self, feature_groups: usize, attribute: &str) -> Result<(), String> {
        if self.experts < 1 {
            return Err(format!("moe.experts = {}: expected at least 1", self.experts));
        }
        if self.top_k == 0 || self.top_k > self.experts {
            return Err(format!("moe.top_k = {}: expected 1 to moe.experts ({})", self.top_k, self.experts));
        }
        if !(self.capacity_rate > 0.0 && self.capacity_rate.is_finite()) {
            return Err(format!("moe.capacity_rate = {}: expected a number > 0", self.capacity_rate));
        }
        if let Some(k) = self.feature_top_k {
            if k == 0 || k > feature_groups {
                return Err(format!("moe.feature_top_k = {k}: expected 1 to {feature_groups} (the groups of {attribute})"));
            }
        }
        Ok(())
    }
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

#[cfg(test)]
mod tests {
    use moe_layers::{Capacity, FeatureRouting};

    use super::{CapacityRule, FoMoeConfig, FoMoeSettings};

    #[test]
    fn the_toml_keys_and_defaults_are_the_trainers() {
        let text = "experts = 4\ntop_k = 2\ncapacity = \"none\"\ncapacity_rate = 1.5\ncapacity_reference = 50\nsubtract_input = false\nrenormalize = true\nfeature_top_k = 2\nimage_token = false\ntext_token = false\nimage_feature = false\ntext_feature = false";
        let moe: FoMoeSettings = toml::from_str(text).unwrap();
        let expected = FoMoeSettings {
            experts: 4,
            top_k: 2,
            capacity: CapacityRule::None,
            capacity_rate: 1.5,
            capacity_reference: 50,
            subtract_input: false,
            renormalize: true,
            feature_top_k: Some(2),
            image_token: false,
            text_token: false,
            image_feature: false,
            text_feature: false,
        };
        assert_eq!(moe, expected);
        let defaults: FoMoeSettings = toml::from_str("").unwrap();
        let code = FoMoeSettings {
            experts: 10,
            top_k: 3,
            capacity: CapacityRule::Code,
            capacity_rate: 0.8,
            capacity_reference: 197,
            subtract_input: true,
            renormalize: false,
            feature_top_k: None,
            image_token: true,
            text_token: true,
            image_feature: true,
            text_feature: true,
        };
        assert_eq!(defaults, code);
        for (word, rule) in [("code", CapacityRule::Code), ("tokens", CapacityRule::Tokens), ("none", CapacityRule::None)] {
            assert_eq!(toml::from_str::<FoMoeSettings>(&format!("capacity = \"{word}\"")).unwrap().capacity, rule);
        }
        for bad in ["capacity = \"Code\"", "capacity = \"unlimited\"", "experts = 4\nfeature_experts = 3"] {
            assert!(toml::from_str::<FoMoeSettings>(bad).is_err(), "{bad}");
        }
        assert_eq!(toml::from_str::<FoMoeSettings>(&toml::to_string(&moe).unwrap()).unwrap(), moe);
    }

    #[test]
    fn the_default_settings_give_the_default_config() {
        let (made, direct) = (FoMoeSettings::default().config(3), FoMoeConfig::new(3));
        assert_eq!(made.to_string(), direct.to_string());
        let rules = |capacity, feature_top_k| FoMoeSettings { capacity, feature_top_k, capacity_rate: 0.5, capacity_reference: 50, ..FoMoeSettings::default() }.config(2);
        assert_eq!(rules(CapacityRule::Code, None).capacity, Capacity::Reference { tokens: 50, rate: 0.5 });
        assert_eq!(rules(CapacityRule::Tokens, None).capacity, Capacity::FromTokens { rate: 0.5 });
        let none = rules(CapacityRule::None, Some(1));
        assert_eq!((none.capacity, none.feature_routing, none.feature_experts), (Capacity::Unlimited, FeatureRouting::TopK(1), 2));
    }

    #[test]
    fn validation_names_the_key() {
        let d = FoMoeSettings::default();
        assert_eq!(d.validate(2, "gender"), Ok(()));
        assert_eq!(FoMoeSettings { experts: 0, ..d }.validate(2, "gender").unwrap_err(), "moe.experts = 0: expected at least 1");
        assert_eq!(FoMoeSettings { top_k: 11, ..d }.validate(2, "gender").unwrap_err(), "moe.top_k = 11: expected 1 to moe.experts (10)");
        assert_eq!(FoMoeSettings { top_k: 0, ..d }.validate(2, "gender").unwrap_err(), "moe.top_k = 0: expected 1 to moe.experts (10)");
        assert_eq!(FoMoeSettings { capacity_rate: 0.0, ..d }.validate(2, "gender").unwrap_err(), "moe.capacity_rate = 0: expected a number > 0");
        assert!(FoMoeSettings { capacity_rate: f64::INFINITY, ..d }.validate(2, "gender").is_err());
        assert_eq!(FoMoeSettings { feature_top_k: Some(3), ..d }.validate(2, "gender").unwrap_err(), "moe.feature_top_k = 3: expected 1 to 2 (the groups of gender)");
        assert!(FoMoeSettings { feature_top_k: Some(0), ..d }.validate(3, "race").is_err());
        assert_eq!(FoMoeSettings { feature_top_k: Some(3), ..d }.validate(3, "race"), Ok(()));
    }
}
