//! The three splits of an experiment: notes tokenised once, images read from their files by
//! the streaming pipeline when a batch needs them (the synthetic benchmark, generated in
//! memory, is preprocessed once).

use std::path::Path;

use fair_data::{load_split, LoadOptions, OnError, Prepared, Sample, Split, TextTokenizer, VisionSample, ATTRIBUTES};

use crate::checkpoint::write_atomic;
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
    /// Files skipped as unreadable (with `on_error = "skip"`): split, file, reason.
    pub skipped: Vec<[String; 3]>,
    /// Samples dropped per split by the unknown-attribute filter.
    pub filtered_unknown: [usize; 3],
    /// What the data loader warned about (an attribute with a single value...).
    pub warnings: Vec<String>,
    /// The synthetic benchmark's oracle scores of the test split, in its order (the best
    /// any image model can do: [`fair_data::SynthConfig::generate_with_oracle`]); `None` for
    /// real data.
    pub oracle: Option<Vec<f64>>,
}

/// The tokenizer of a run: its own (`given`: resume, eval) over the config's file, over one
/// trained on `training_texts`.
fn choose_tokenizer(exp: &Experiment, given: Option<TextTokenizer>, training_texts: impl FnOnce() -> Vec<String>) -> Result<TextTokenizer> {
    let d = &exp.data;
    if let Some(t) = given {
        return Ok(t);
    }
    Ok(match exp.model.text.tokenizer_file().map_err(Error::Invalid)? {
        Some(path) => TextTokenizer::from_file(&path, d.context_length)?,
        None => TextTokenizer::train(&training_texts(), d.vocab_size, d.context_length)?,
    })
}

/// The splits' names in reports and errors.
pub const SPLITS: [&str; 3] = ["train", "validation", "test"];

fn on_error(c: OnErrorConfig) -> OnError {
    c.into()
}

/// The samples (and their oracle scores) whose attributes are all known, with `filter`; the
/// number dropped.
fn keep_known(samples: Vec<Sample>, oracle: Vec<f64>, filter: bool) -> (Vec<Sample>, Vec<f64>, usize) {
    if !filter {
        return (samples, oracle, 0);
    }
    let before = samples.len();
    let (kept, oracle): (Vec<Sample>, Vec<f64>) = samples.into_iter().zip(oracle).filter(|(s, _)| ATTRIBUTES.iter().all(|a| s.attribute(a).unwrap_or(-1) >= 0)).unzip();
    let dropped = before - kept.len();
    (kept, oracle, dropped)
}

impl ExperimentData {
    /// Loads (or generates) the splits at the model's image size. The tokenizer is
    /// `tokenizer` when given, else the config's `model.text` one, else one trained on the
    /// training notes.
    pub fn load(exp: &Experiment, tokenizer: Option<TextTokenizer>) -> Result<Self> {
        exp.data.limits.install();
        let image_size = exp.model.image_size().map_err(Error::Invalid)?;
        let d = &exp.data;
        let mut skipped = Vec::new();
        let mut filtered_unknown = [0; 3];
        let mut oracle = None;
        if exp.oct_pairing() {
            return Self::load_vision(exp, tokenizer);
        }
        if d.source == DataSource::Folder {
            return Self::load_folder(exp, tokenizer);
        }
        let mut indexed: Option<[fair_data::Loaded; 3]> = None;
        let splits: [Vec<Sample>; 3] = match d.source {
            DataSource::Synthetic => {
                let (mut out, scores) = exp.synthetic().generate_with_oracle()?;
                for ((i, s), scores) in out.iter_mut().enumerate().zip(scores) {
                    let filter = d.filter_unknown.unwrap_or(i > 0);
                    let (kept, scores, dropped) = keep_known(std::mem::take(s), scores, filter);
                    *s = kept;
                    filtered_unknown[i] = dropped;
                    if i == 2 {
                        oracle = Some(scores);
                    }
                }
                out
            }
            DataSource::Fairvision => return Err(Error::Invalid("data.source = \"fairvision\" is read by the OCT pairing only".into())),
            DataSource::Fairvlmed => {
                let root = d.root.as_deref().ok_or_else(|| Error::Invalid("data.root is required for source fairvlmed".into()))?;
                let opts = LoadOptions { summary_csv: d.summary_csv.clone(), filter_unknown: d.filter_unknown, on_error: on_error(d.on_error), index_only: true };
                let mut loaded: [fair_data::Loaded; 3] = Default::default();
                for (i, split) in [Split::Training, Split::Validation, Split::Test].into_iter().enumerate() {
                    let l = load_split(root, split, &opts)?;
                    skipped.extend(l.skipped.iter().map(|(p, why)| [SPLITS[i].to_string(), p.display().to_string(), why.clone()]));
                    filtered_unknown[i] = l.filtered_unknown;
                    loaded[i] = l;
                }
                let out = loaded.clone().map(|l| l.samples);
                indexed = Some(loaded);
                out
            }
            DataSource::Folder => unreachable!("read by load_folder"),
        };
        for (samples, name) in splits.iter().zip(["training", "validation", "test"]) {
            if samples.is_empty() {
                return Err(Error::Invalid(format!("the {name} split has no samples")));
            }
        }
        let tokenizer = choose_tokenizer(exp, tokenizer, || splits[0].iter().map(|s| fair_data::truncate_note(&s.note, d.note_chars)).collect())?;
        let prompt_tokens = tokenizer.encode_batch(&exp.eval.prompts)?;
        let [train, validation, test] = match &indexed {
            Some(loaded) => [0, 1, 2].map(|i| Prepared::from_fairvlmed_files(&loaded[i], image_size, &tokenizer, d.note_chars)),
            None => [0, 1, 2].map(|i| Prepared::new(&splits[i], image_size, &tokenizer, d.note_chars)),
        };
        let pipe = |p: Prepared| p.with_pipeline(d.pipeline);
        Ok(Self { train: pipe(train?), validation: pipe(validation?), test: pipe(test?), prompt_tokens, tokenizer, skipped, filtered_unknown, warnings: vec![], oracle })
    }

    /// A dataset in the generic format (`[data.folder]`): texts tokenised, images streamed.
    fn load_folder(exp: &Experiment, tokenizer: Option<TextTokenizer>) -> Result<Self> {
        let d = &exp.data;
        let root = d.root.as_deref().ok_or_else(|| Error::Invalid("data.root is required for source folder".into()))?;
        let opts = LoadOptions { summary_csv: None, filter_unknown: d.filter_unknown, on_error: on_error(d.on_error), index_only: true };
        let data = fair_data::load_folder(root, &d.folder, &opts)?;
        let tokenizer = choose_tokenizer(exp, tokenizer, || {
            // Without a text column, the tokenizer is trained on the prompts (the texts are empty).
            let mut texts: Vec<String> = data.splits[0].texts.iter().map(|t| fair_data::truncate_note(t, d.note_chars)).collect();
            texts.extend(exp.eval.prompts.iter().cloned());
            texts
        })?;
        let image_size = exp.model.image_size().map_err(Error::Invalid)?;
        let [train, validation, test] = [0, 1, 2].map(|i| Prepared::from_folder(&data.splits[i], image_size, &tokenizer, d.note_chars).map(|p| p.with_pipeline(d.pipeline)));
        let skipped = data.splits.iter().zip(SPLITS).flat_map(|(s, name)| s.skipped.iter().map(move |(p, why)| [name.to_string(), p.display().to_string(), why.clone()])).collect();
        Ok(Self {
            train: train?,
            validation: validation?,
            test: test?,
            prompt_tokens: tokenizer.encode_batch(&exp.eval.prompts)?,
            tokenizer,
            skipped,
            filtered_unknown: [0, 1, 2].map(|i| data.splits[i].filtered_unknown),
            warnings: data.warnings,
            oracle: None,
        })
    }

    /// The number of known values of `attribute` in the training split (FairCLIP's, FO-MoE's
    /// and MultiFair's groups).
    pub fn attribute_groups(&self, attribute: &str) -> Result<usize> {
        Ok(self.train.attributes.column(attribute)?.values.len())
    }

    /// The dataset card of the three splits (`fairvlm data check`): reads every image once.
    pub fn card(&self, dataset: &str, threads: usize) -> fair_data::DatasetCard {
        let splits =
            [(SPLITS[0], &self.train, self.filtered_unknown[0]), (SPLITS[1], &self.validation, self.filtered_unknown[1]), (SPLITS[2], &self.test, self.filtered_unknown[2])];
        let skipped: Vec<(String, String, String)> = self.skipped.iter().map(|[a, b, c]| (a.clone(), b.clone(), c.clone())).collect();
        let mut card = fair_data::DatasetCard::compute(dataset, &splits, &skipped, threads);
        card.warnings.splice(0..0, self.warnings.iter().cloned());
        card
    }
}

impl ExperimentData {
    /// FairVision data (or the synthetic benchmark with OCT volumes) for the OCT pairing.
    /// There are no notes: the tokenizer is trained on the prompts only and is not used.
    fn load_vision(exp: &Experiment, tokenizer: Option<TextTokenizer>) -> Result<Self> {
        let d = &exp.data;
        let mm = &exp.multimodal;
        let mut skipped = Vec::new();
        let mut indexed: Option<[fair_data::LoadedVision; 3]> = None;
        let splits: [Vec<VisionSample>; 3] = match d.source {
            DataSource::Synthetic => exp.synthetic().generate_vision(&d.oct)?,
            DataSource::Fairvision => {
                let root = d.root.as_deref().ok_or_else(|| Error::Invalid("data.root is required for source fairvision".into()))?;
                let mut loaded: [fair_data::LoadedVision; 3] = Default::default();
                for (i, split) in [Split::Training, Split::Validation, Split::Test].into_iter().enumerate() {
                    let l = fair_data::index_fairvision_split(root, split, on_error(d.on_error))?;
                    skipped.extend(l.skipped.iter().map(|(p, why)| [SPLITS[i].to_string(), p.display().to_string(), why.clone()]));
                    loaded[i] = l;
                }
                let out = loaded.clone().map(|l| l.samples);
                indexed = Some(loaded);
                out
            }
            DataSource::Fairvlmed | DataSource::Folder => return Err(Error::Invalid("multimodal.pairing = \"oct\" needs FairVision data".into())),
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
        let [train, validation, test] = match &indexed {
            Some(loaded) => [0, 1, 2].map(|i| Prepared::from_fairvision_files(&loaded[i], image_size, mm.oct_slices, mm.oct_size)),
            None => [0, 1, 2].map(|i| Prepared::from_vision(&splits[i], image_size, mm.oct_slices, mm.oct_size)),
        }
        .map(|p| p.with_pipeline(d.pipeline));
        Ok(Self {
            train,
            validation,
            test,
            prompt_tokens: tokenizer.encode_batch(&exp.eval.prompts)?,
            tokenizer,
            skipped,
            filtered_unknown: [0; 3],
            warnings: vec![],
            oracle: None,
        })
    }
}

/// Writes the synthetic benchmark of `exp` in FairVLMed's format (`fairvlm synth`).
/// For a multimodal experiment with the OCT pairing, the benchmark with OCT volumes in
/// Harvard-FairVision's format.
pub fn write_synthetic(exp: &Experiment, out: &Path) -> Result<[usize; 3]> {
    if exp.oct_pairing() {
        let splits = exp.synthetic().generate_vision(&exp.data.oct)?;
        fair_data::write_fairvision(out, &splits)?;
        return Ok([splits[0].len(), splits[1].len(), splits[2].len()]);
    }
    let splits = exp.synthetic().generate()?;
    fair_data::write_fairvlmed(out, &splits)?;
    Ok([splits[0].len(), splits[1].len(), splits[2].len()])
}

impl ExperimentData {
    /// Says which files `on_error = "skip"` left out: a warning per file (the first 20, then a
    /// count) and `skipped.csv` in the run folder `out`.
    pub(crate) fn report_skipped(&self, out: &Path) -> Result<()> {
        let data = self;
        if data.skipped.is_empty() {
            return Ok(());
        }
        for [split, file, why] in data.skipped.iter().take(20) {
            tracing::warn!("skipped {file} ({split}): {why}");
        }
        if data.skipped.len() > 20 {
            tracing::warn!("... and {} more skipped files", data.skipped.len() - 20);
        }
        let quote = |v: &str| format!("\"{}\"", v.replace('"', "\"\""));
        let csv: String =
            std::iter::once("split,file,reason\n".to_string()).chain(data.skipped.iter().map(|r| r.iter().map(|v| quote(v)).collect::<Vec<_>>().join(",") + "\n")).collect();
        tracing::warn!("{} unreadable file(s) skipped (on_error = \"skip\"); listed in {}", data.skipped.len(), out.join("skipped.csv").display());
        write_atomic(&out.join("skipped.csv"), csv.as_bytes())
    }
}
