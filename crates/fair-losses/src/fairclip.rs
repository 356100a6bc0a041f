//! FairCLIP's regulariser: Sinkhorn distances between the distribution of image-text
//! similarities of the batch and of a batch drawn from each group.

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::sinkhorn::{sinkhorn_divergence, SinkhornConfig};

/// Which similarities FairCLIP compares (see docs/methods.md). In TOML: `"official"` or
/// `"aligned"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FairClipVariant {
    /// The released code (`finetune_FairCLIP.py`): `s = diag(L Lᵀᵀ) = diag(L L)` with
    /// `L = logits_per_image` (already scaled), and each group's `s_g` normalised to sum to 1;
    /// the batch side is not normalised. The default.
    #[default]
    Official,
    /// The paper's reading (A-FairCLIP, arXiv 2509.06535): the cosine similarity of each pair,
    /// `s_i = î_i · t̂_i`, unnormalised on both sides.
    Aligned,
}

/// The per-pair similarities FairCLIP feeds to the Sinkhorn distance, from L2-normalised
/// image and text features ([B, E] each) and the logit scale `exp(logit_scale)`.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// use fair_losses::{pair_similarities, FairClipVariant};
/// let d = Default::default();
/// let img = Tensor::<Flex, 2>::from_floats([[1.0, 0.0], [0.0, 1.0]], &d);
/// let txt = Tensor::<Flex, 2>::from_floats([[1.0, 0.0], [0.6, 0.8]], &d);
/// let s = pair_similarities(img, txt, 1.0, FairClipVariant::Aligned)?;
/// assert_eq!(s.into_data().to_vec::<f32>().unwrap(), vec![1.0, 0.8]);
/// # Ok::<(), fair_losses::Error>(())
/// ```
pub fn pair_similarities<B: Backend>(image: Tensor<B, 2>, text: Tensor<B, 2>, scale: f64, variant: FairClipVariant) -> Result<Tensor<B, 1>> {
    let ([bi, ei], [bt, et]) = (image.dims(), text.dims());
    if bi != bt || ei != et {
        return Err(Error::Shape(format!("image features [{bi}, {ei}] and text features [{bt}, {et}]")));
    }
    Ok(match variant {
        FairClipVariant::Official => official_similarities(image.matmul(text.transpose()) * scale),
        FairClipVariant::Aligned => (image * text).sum_dim(1).reshape([bi]),
    })
}

/// The released code's per-pair "similarities" from `logits_per_image` `L` (already scaled):
/// `diag(L @ logits_per_textᵀ) = diag(L L)`, i.e. `s_i = Σ_j L_ij L_ji`. Taking `L` from the
/// model keeps the gradient that reaches the logit scale, as in the code.
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// let l = Tensor::<Flex, 2>::from_floats([[1.0, 2.0], [3.0, 4.0]], &Default::default());
/// let s = fair_losses::official_similarities(l);
/// assert_eq!(s.into_data().to_vec::<f32>().unwrap(), vec![7.0, 22.0]); // 1·1+2·3, 3·2+4·4
/// ```
pub fn official_similarities<B: Backend>(logits_per_image: Tensor<B, 2>) -> Tensor<B, 1> {
    let b = logits_per_image.dims()[0];
    (logits_per_image.clone() * logits_per_image.transpose()).sum_dim(1).reshape([b])
}

/// `Σ_g S_ε(batch, group_g)` over the groups' similarity vectors, each compared with the
/// batch's as 1-D point clouds. With [`FairClipVariant::Official`] each group vector is first
/// divided by its sum, as the released code does. The group similarities come from a forward
/// pass without gradients in the official code: pass them detached to reproduce it.
pub fn fairclip_regularizer<B: Backend>(batch: Tensor<B, 1>, groups: &[Tensor<B, 1>], cfg: &SinkhornConfig, variant: FairClipVariant) -> Result<Tensor<B, 1>> {
    fairclip_group_divergences(batch, groups, cfg, variant)?.into_iter().reduce(|total, d| total + d).ok_or_else(|| Error::Shape("no group similarities".into()))
}

/// The terms of [`fairclip_regularizer`], one per group: `S_ε(batch, group_g)`. Their values
/// are FairCLIP's mechanism (which group's similarities the regulariser pulls towards the
/// batch's, and how far they are).
///
/// ```
/// use burn::backend::Flex;
/// use burn::prelude::*;
/// use fair_losses::{fairclip_group_divergences, fairclip_regularizer, FairClipVariant, SinkhornConfig};
/// let d = Default::default();
/// let batch = Tensor::<Flex, 1>::from_floats([0.1, 0.5, 0.9, 0.4], &d);
/// let groups = [Tensor::<Flex, 1>::from_floats([0.1, 0.5], &d), Tensor::<Flex, 1>::from_floats([2.0, 3.0], &d)];
/// let cfg = SinkhornConfig::new(0.05);
/// let terms = fairclip_group_divergences(batch.clone(), &groups, &cfg, FairClipVariant::Aligned).unwrap();
/// let [near, far] = [0, 1].map(|g| terms[g].clone().into_scalar());
/// assert!(far > near); // the group whose similarities lie far from the batch's
/// let total = fairclip_regularizer(batch, &groups, &cfg, FairClipVariant::Aligned).unwrap().into_scalar();
/// assert!((total - (near + far)).abs() < 1e-5);
/// ```
pub fn fairclip_group_divergences<B: Backend>(batch: Tensor<B, 1>, groups: &[Tensor<B, 1>], cfg: &SinkhornConfig, variant: FairClipVariant) -> Result<Vec<Tensor<B, 1>>> {
    let n = batch.dims()[0];
    let x = batch.reshape([n, 1]);
    groups
        .iter()
        .map(|g| {
            let m = g.dims()[0];
            let g = match variant {
                FairClipVariant::Official => g.clone() / g.clone().sum().reshape([1]),
                FairClipVariant::Aligned => g.clone(),
            };
            sinkhorn_divergence(x.clone(), g.reshape([m, 1]), cfg)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::FairClipVariant;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FairClip {
        variant: FairClipVariant,
    }

    #[test]
    fn the_variants_are_spelled_in_kebab_case() {
        let read = |text: &str| toml::from_str::<FairClip>(text).map(|f| f.variant);
        assert_eq!(read("variant = \"official\"").unwrap(), FairClipVariant::Official);
        assert_eq!(read("variant = \"aligned\"").unwrap(), FairClipVariant::Aligned);
        assert_eq!(FairClipVariant::default(), FairClipVariant::Official);
        for bad in ["variant = \"Official\"", "variant = \"paper\"", "variant = \"official\"\nlambda = 1"] {
            assert!(read(bad).is_err(), "{bad}");
        }
        assert_eq!(toml::Value::try_from(FairClipVariant::Aligned).unwrap().as_str(), Some("aligned"));
    }
}
