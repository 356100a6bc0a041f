//! Evaluating a finished run's checkpoint again (`fairvlm evaluate`).

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use fair_data::Prepared;

use crate::config::Experiment;
use crate::data::ExperimentData;
use crate::error::{Error, Result};
use crate::evaluate::report;
use crate::recipes::{self, Recipe, WithRecipe};

/// Evaluates a finished run's checkpoint (`best.safetensors`, `last.safetensors` or any file
/// with the same model) on a split (`test` or `validation`), with the run's own config and
/// tokenizer.
pub fn evaluate_run<B: AutodiffBackend>(run: &Path, checkpoint: &Path, split: &str, device: &B::Device) -> Result<fair_metrics::Report> {
    let exp = Experiment::from_file(&run.join("config.toml"))?;
    let tokenizer = fair_data::TextTokenizer::from_file(&run.join("tokenizer.json"), exp.data.context_length)?;
    let data = ExperimentData::load(&exp, Some(tokenizer))?;
    let prepared = match split {
        "test" => &data.test,
        "validation" => &data.validation,
        other => return Err(Error::Invalid(format!("split '{other}': expected test or validation"))),
    };
    struct Eval<'a, B: AutodiffBackend>(&'a Experiment, &'a ExperimentData, &'a Prepared, &'a Path, &'a B::Device);
    impl<B: AutodiffBackend> WithRecipe<B> for Eval<'_, B> {
        type Output = Result<Vec<f64>>;
        fn with<R: Recipe<B>>(self) -> Self::Output {
            let Eval(exp, data, split, checkpoint, device) = self;
            let mut recipe = R::new(exp, data, device)?;
            recipe.load_weights(checkpoint, device)?;
            Ok(recipe.predict(split, device)?.positive)
        }
    }
    let scores = recipes::dispatch::<B, _>(exp.method, Eval(&exp, &data, prepared, checkpoint, device))?;
    report(&exp, prepared, scores, exp.eval.bootstrap(exp.seed))
}
