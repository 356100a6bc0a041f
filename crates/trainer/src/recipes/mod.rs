//! The methods. A method is a [`Recipe`]: it owns its config section's validation, builds its
//! model and optimiser, and performs one training step (forward, loss, backward, gradient
//! modulation, update) on the batches the run loop hands it; it predicts scores for
//! evaluation and saves and restores what a resume needs. The run loop (`crate::run`) does
//! everything else, identically for every method.
//!
//! One file per method, each readable next to its paper: [`clip`], [`fairclip`], [`fo_moe`],
//! [`fair_moe`] (on the CLIP dual encoder, [`contrastive`]) and [`late_fusion`], [`ogm_ge`],
//! [`multifair`] (on MultiFair's multimodal classifier, [`multimodal`]). Method names map to
//! recipes in [`dispatch`] and [`validate`], below; adding a method means adding its file, its
//! [`Method`] variant and a line in each.

pub mod clip;
pub mod contrastive;
pub mod fair_moe;
pub mod fairclip;
pub mod fo_moe;
pub mod late_fusion;
pub mod multifair;
pub mod multimodal;
pub mod ogm_ge;
mod recipe;

use burn::tensor::backend::AutodiffBackend;

use crate::config::{Experiment, Method};

pub use contrastive::{Contrastive, ContrastiveLoss, Losses};
pub use multimodal::{Modulation, Multimodal};
pub(crate) use recipe::likely_causes;
pub use recipe::{Recipe, Scores, StepInput, StepStats};

/// Something done with the recipe of a method, generic over its type: what
/// [`dispatch`] calls.
pub trait WithRecipe<B: AutodiffBackend> {
    /// The result.
    type Output;
    /// Does it with recipe `R`.
    fn with<R: Recipe<B>>(self) -> Self::Output;
}

/// Calls `job` with the recipe of `method`: the one place where method names map to recipes.
pub fn dispatch<B: AutodiffBackend, J: WithRecipe<B>>(method: Method, job: J) -> J::Output {
    match method {
        Method::Clip => job.with::<Contrastive<B, clip::Clip>>(),
        Method::Fairclip => job.with::<Contrastive<B, fairclip::FairClip>>(),
        Method::FoMoe => job.with::<Contrastive<B, fo_moe::FoMoe>>(),
        Method::FairMoe => job.with::<Contrastive<B, fair_moe::FairMoe>>(),
        Method::LateFusion => job.with::<Multimodal<B, late_fusion::LateFusion>>(),
        Method::OgmGe => job.with::<Multimodal<B, ogm_ge::OgmGe>>(),
        Method::Multifair => job.with::<Multimodal<B, multifair::MultiFair>>(),
    }
}

/// Checks the sections the active method reads (the common ones are checked by the config).
pub fn validate(exp: &Experiment) -> std::result::Result<(), String> {
    match exp.method {
        Method::Clip => <clip::Clip as ContrastiveLoss>::validate(exp),
        Method::Fairclip => <fairclip::FairClip as ContrastiveLoss>::validate(exp),
        Method::FoMoe => <fo_moe::FoMoe as ContrastiveLoss>::validate(exp),
        Method::FairMoe => <fair_moe::FairMoe as ContrastiveLoss>::validate(exp),
        Method::LateFusion => multimodal::validate::<late_fusion::LateFusion>(exp),
        Method::OgmGe => multimodal::validate::<ogm_ge::OgmGe>(exp),
        Method::Multifair => multimodal::validate::<multifair::MultiFair>(exp),
    }
}
