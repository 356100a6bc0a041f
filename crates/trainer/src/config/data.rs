//! `[data]`: where the data comes from and how it is read.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where the data comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataSource {
    /// The built-in synthetic benchmark, generated in memory from `[data.synthetic]`.
    Synthetic,
    /// A folder in Harvard-FairVLMed's format (`root`): the real download or `fairvlm synth`'s.
    Fairvlmed,
    /// A folder in Harvard-FairVision's format (`root`: `train/`, `val/`, `test/`) for the
    /// multimodal methods' OCT pairing.
    Fairvision,
    /// Your own data in the generic format (`root`): a `metadata.csv` or `.jsonl` beside PNG,
    /// JPEG or `.npy` images, its columns named in `[data.folder]` (docs/datasets.md).
    Folder,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// `synthetic`, `fairvlmed`, `fairvision` or `folder`.
    pub source: DataSource,
    /// The dataset folder (every source but `synthetic`); relative paths are relative to the
    /// config file.
    pub root: Option<PathBuf>,
    /// A summary CSV whose text replaces the npz notes (FairCLIP trains on the GPT-4 summaries:
    /// `gpt-4_summarized_notes.csv`).
    pub summary_csv: Option<PathBuf>,
    /// Drop samples with an unknown (-1) attribute; unset does what FairCLIP does (drop them
    /// from validation and test only).
    pub filter_unknown: Option<bool>,
    /// Unreadable files: `fail` (default) or `skip` (counted and reported).
    pub on_error: OnErrorConfig,
    /// Vocabulary of a tokenizer trained here (without `model.text.tokenizer`).
    pub vocab_size: usize,
    /// Tokens per text (CLIP: 77).
    pub context_length: usize,
    /// FairCLIP truncates notes to this many characters before tokenising.
    pub note_chars: usize,
    /// The synthetic benchmark (source `synthetic`): [`fair_data::SynthConfig`]'s fields, with
    /// `[[data.synthetic.effects]]` entries for [`fair_data::GroupEffect`]; unset fields are the
    /// default benchmark's.
    pub synthetic: fair_data::SynthConfig,
    /// The synthetic OCT volumes (`multimodal.pairing = "oct"` with source `synthetic`).
    pub oct: fair_data::OctSynth,
    /// The columns of a generic dataset (source `folder`): label, classes, text, split,
    /// attributes, value order, missing-value tokens.
    pub folder: fair_data::FolderSpec,
    /// The streaming input pipeline: decoding threads, batches read ahead, cache size.
    pub pipeline: fair_data::Pipeline,
    /// Caps on what a data file may make the readers allocate (image pixels, array bytes,
    /// compression ratio).
    pub limits: fair_data::Limits,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: DataSource::Synthetic,
            root: None,
            summary_csv: None,
            filter_unknown: None,
            on_error: OnErrorConfig::Fail,
            vocab_size: 1000,
            context_length: 77,
            note_chars: 180,
            synthetic: fair_data::SynthConfig::default(),
            oct: fair_data::OctSynth::default(),
            folder: fair_data::FolderSpec::default(),
            pipeline: fair_data::Pipeline::default(),
            limits: fair_data::Limits::default(),
        }
    }
}

impl From<OnErrorConfig> for fair_data::OnError {
    fn from(c: OnErrorConfig) -> Self {
        match c {
            OnErrorConfig::Fail => fair_data::OnError::Fail,
            OnErrorConfig::Skip => fair_data::OnError::Skip,
        }
    }
}

/// `[data] on_error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnErrorConfig {
    /// Stop at the first unreadable file, naming it.
    Fail,
    /// Skip unreadable files and count them.
    Skip,
}
