//! The three splits of an experiment, prepared once: images preprocessed, notes tokenised.

use std::path::Path;

use fair_data::{load_split, LoadOptions, OnError, Prepared, Sample, Split, TextTokenizer, VisionSample, ATTRIBUTES};

use crate::config::{DataSource, Experiment, OnErrorConfig};
use crate::error::{Error, Result};

/// Prepared splits and the text side of the experiment.
#[derive(Debug, Clone)]
pub struct ExperimentData {
    /// Training split (unknown attributes kept, as FairCLIP does).
    pub train: Prepared,
    /// Validation split.
    pub validation: Prepared,
    /// Test split.
    pub test: Prepared,
    /// The tokenizer of notes and prompts.
    pub tokenizer: TextTokenizer,
    /// The two zero-shot prompts, tokenised ([2 x context_length]).
    pub prompt_tokens: Vec<i64>,
    /// Files skipped as unreadable (with `on_error = "skip"`).
    pub skipped: Vec<String>,
    /// Samples dropped per split by the unknown-attribute filter.
    pub filtered_unknown: [usize; 3],
}

fn keep_known(samples: Vec<Sample>, filter: bool) -> (Vec<Sample>, usize) {
    if !filter {
        return (samples, 0);
    }
    let before = samples.len();
    let kept: Vec<Sample> = samples.into_iter().filter(|s| ATTRIBUTES.iter().all(|a| s.attribute(a).unwrap_or(-1) >= 0)).collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

impl ExperimentData {
    /// Loads (or generates) the splits at the model's image size. The tokenizer is
    /// `tokenizer` when given, else the config's `model.text` one, else one trained on the
    /// training notes.
    pub fn load(exp: &Experiment, tokenizer: Option<TextTokenizer>) -> Result<Self> {
        let image_size = exp.model.image_size().map_err(Error::Invalid)?;
        let d = &exp.data;
        let mut skipped = Vec::new();
        let mut filtered_unknown = [0; 3];
        if exp.oct_pairing() {
            return Self::load_vision(exp, tokenizer);
        }
        let splits: [Vec<Sample>; 3] = match d.source {
            DataSource::Synthetic => {
                let [tr, va, te] = d.synthetic.generate()?;
                let mut out = [tr, va, te];
                for (i, s) in out.iter_mut().enumerate() {
                    let filter = d.filter_unknown.unwrap_or(i > 0);
                    let (kept, dropped) = keep_known(std::mem::take(s), filter);
                    *s = kept;
                    filtered_unknown[i] = dropped;
                }
                out
            }
            DataSource::Fairvision => return Err(Error::Invalid("data.source = \"fairvision\" is read by the OCT pairing only".into())),
            DataSource::Fairvlmed => {
                let root = d.root.as_deref().ok_or_else(|| Error::Invalid("data.root is required for source fairvlmed".into()))?;
                let opts = LoadOptions {
                    summary_csv: d.summary_csv.clone(),
                    filter_unknown: d.filter_unknown,
                    on_error: match d.on_error {
                        OnErrorConfig::Fail => OnError::Fail,
                        OnErrorConfig::Skip => OnError::Skip,
                    },
                };
                let mut out: [Vec<Sample>; 3] = Default::default();
                for (i, split) in [Split::Training, Split::Validation, Split::Test].into_iter().enumerate() {
                    let loaded = load_split(root, split, &opts)?;
                    skipped.extend(loaded.skipped.iter().map(|(p, why)| format!("{}: {why}", p.display())));
                    filtered_unknown[i] = loaded.filtered_unknown;
                    out[i] = loaded.samples;
                }
                out
            }
        };
        for (samples, name) in splits.iter().zip(["training", "validation", "test"]) {
            if samples.is_empty() {
                return Err(Error::Invalid(format!("the {name} split has no samples")));
            }
        }
        // A run's own tokenizer (resume, eval) wins over the config's files.
        let file = if tokenizer.is_none() { exp.model.text.tokenizer_file().map_err(Error::Invalid)? } else { None };
        let tokenizer = match (tokenizer, file) {
            (Some(t), _) => t,
            (None, Some(path)) => TextTokenizer::from_file(&path, d.context_length)?,
            (None, None) => {
                let notes: Vec<String> = splits[0].iter().map(|s| fair_data::truncate_note(&s.note, d.note_chars)).collect();
                TextTokenizer::train(&notes, d.vocab_size, d.context_length)?
            }
        };
        let prompt_tokens = tokenizer.encode_batch(&exp.eval.prompts)?;
        let prep = |s: &[Sample]| Prepared::new(s, image_size, &tokenizer, d.note_chars);
        Ok(Self { train: prep(&splits[0])?, validation: prep(&splits[1])?, test: prep(&splits[2])?, prompt_tokens, tokenizer, skipped, filtered_unknown })
    }
}

impl ExperimentData {
    /// FairVision data (or the synthetic benchmark with OCT volumes) for the OCT pairing.
    /// There are no notes: the tokenizer is trained on the prompts only and is not used.
    fn load_vision(exp: &Experiment, tokenizer: Option<TextTokenizer>) -> Result<Self> {
        let d = &exp.data;
        let mm = &exp.multimodal;
        let mut skipped = Vec::new();
        let splits: [Vec<VisionSample>; 3] = match d.source {
            DataSource::Synthetic => d.synthetic.generate_vision(&d.oct)?,
            DataSource::Fairvision => {
                let root = d.root.as_deref().ok_or_else(|| Error::Invalid("data.root is required for source fairvision".into()))?;
                let on_error = match d.on_error {
                    OnErrorConfig::Fail => OnError::Fail,
                    OnErrorConfig::Skip => OnError::Skip,
                };
                let mut out: [Vec<VisionSample>; 3] = Default::default();
                for (i, split) in [Split::Training, Split::Validation, Split::Test].into_iter().enumerate() {
                    let loaded = fair_data::load_fairvision_split(root, split, on_error)?;
                    skipped.extend(loaded.skipped.iter().map(|(p, why)| format!("{}: {why}", p.display())));
                    out[i] = loaded.samples;
                }
                out
            }
            DataSource::Fairvlmed => return Err(Error::Invalid("multimodal.pairing = \"oct\" needs FairVision data".into())),
        };
        for (samples, name) in splits.iter().zip(["training", "validation", "test"]) {
            if samples.is_empty() {
                return Err(Error::Invalid(format!("the {name} split has no samples")));
            }
        }
        let tokenizer = match tokenizer {
            Some(t) => t,
            None => TextTokenizer::train(&exp.eval.prompts, d.vocab_size, d.context_length)?,
        };
        let image_size = exp.model.image_size().map_err(Error::Invalid)?;
        let prep = |s: &[VisionSample]| Prepared::from_vision(s, image_size, mm.oct_slices, mm.oct_size);
        Ok(Self {
            train: prep(&splits[0]),
            validation: prep(&splits[1]),
            test: prep(&splits[2]),
            prompt_tokens: tokenizer.encode_batch(&exp.eval.prompts)?,
            tokenizer,
            skipped,
            filtered_unknown: [0; 3],
        })
    }
}

/// Writes the synthetic benchmark of `exp` in FairVLMed's format (`fairvlm synth`).
/// For a multimodal experiment with the OCT pairing, the benchmark with OCT volumes in
/// Harvard-FairVision's format.
pub fn write_synthetic(exp: &Experiment, out: &Path) -> Result<[usize; 3]> {
    if exp.oct_pairing() {
        let splits = exp.data.synthetic.generate_vision(&exp.data.oct)?;
        fair_data::write_fairvision(out, &splits)?;
        return Ok([splits[0].len(), splits[1].len(), splits[2].len()]);
    }
    let splits = exp.data.synthetic.generate()?;
    fair_data::write_fairvlmed(out, &splits)?;
    Ok([splits[0].len(), splits[1].len(), splits[2].len()])
}
