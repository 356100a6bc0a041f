//! Datasets for fairness studies.
//!
//! - [`load_split`]: Harvard-FairVLMed as distributed (npz files with numpy unicode notes,
//!   `Test` or `Testing`, GPT-4 summaries, FairCLIP's filter of unknown attributes).
//! - [`load_fairvision_split`]: Harvard-FairVision (OCT volume + SLO fundus), with
//!   MultiFair's OCT preprocessing [`oct_slices`].
//! - [`load_utkface`], [`load_celeba`]: face-attribute datasets (labels from UTKFace's file
//!   names, CelebA's attribute and partition lists), and [`disjoint_pools`] for the developer
//!   and the auditor.
//! - [`SynthConfig`]: a synthetic benchmark with FairVLMed's structure and documented bias
//!   knobs, written by [`write_fairvlmed`] in the same format so that one loader reads both.
//! - [`load_folder`]: the generic format (a `metadata.csv` or `.jsonl` beside PNG, JPEG or
//!   `.npy` images, named label, text and attribute columns), and [`DatasetCard`], what
//!   `fairvlm data check` prints of it.
//! - [`Prepared`]: a split for training, its images decoded on demand by the streaming
//!   pipeline ([`Pipeline`]: worker threads, bounded prefetch, an optional cache).
//! - [`read_npz`], [`write_npz`]: numpy's npz/npy format.
//! - [`EpochShuffle`], [`StreamShuffle`], [`GroupSampler`]: the order of a training run's
//!   batches, and FairCLIP's group-balanced batches.
//!
//! ```
//! use fair_data::{load_split, write_fairvlmed, LoadOptions, Split, SynthConfig};
//! let dir = std::env::temp_dir().join(format!("fair-data-doc-{}", std::process::id()));
//! let cfg = SynthConfig { sizes: [20, 5, 5], image_size: 32, ..SynthConfig::default() };
//! write_fairvlmed(&dir, &cfg.generate()?)?;
//! let train = load_split(&dir, Split::Training, &LoadOptions::default())?;
//! assert_eq!(train.samples.len(), 20);
//! assert_eq!(train.samples[0].image.height, 32);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok::<(), fair_data::Error>(())
//! ```

#![warn(missing_docs)]

mod attributes;
mod batch;
mod card;
mod decode;
mod error;
mod faces;
mod fairvision;
mod fairvlmed;
mod folder;
mod images;
mod limits;
mod npy;
mod parties;
mod preprocess;
mod sampler;
mod stream;
mod synth;
mod text;

pub use attributes::{Attributes, Column, UNKNOWN};
pub use batch::{Batches, ClipBatch, Prepared};
pub use card::{DatasetCard, SMALL_GROUP};
pub use decode::{clip_planes, image_dimensions, read_image, read_npz_arrays, read_npz_fundus, Decoded, FileKind, Files};
pub use error::{Error, Result};
pub use faces::{disjoint_pools, load_celeba, load_face_image, load_utkface, parse_utkface_name, FaceIndex, FaceRecord};
pub use fairvision::{index_fairvision_split, load_fairvision_split, oct_slices, read_fairvision_sample, resize_bilinear, LoadedVision, VisionSample, Volume, VISION_ATTRIBUTES};
pub use fairvlmed::{
    load_split, read_sample, read_sample_index, read_summary_csv, split_dir, truncate_note, GrayImage, LoadOptions, Loaded, OnError, Sample, Split, ATTRIBUTES, ATTRIBUTE_VALUES,
};
pub use folder::{load_folder, FolderDataset, FolderSpec, FolderSplit};
pub use images::{fundus_images, read_idx, tinted_fashion_mnist, LabelledImages, TintConfig};
pub use limits::Limits;
pub use npy::{parse_npy, read_npz, read_npz_from, write_npy, write_npz, NpyArray, NpyData};
pub use parties::{prepare_faces, prepare_fashion_mnist, prepare_folder, prepare_fundus, PartyLabels, PreparedSizes};
pub use preprocess::{clip_grey, clip_preprocess, normalize, resize_bicubic, resized_size, CLIP_MEAN, CLIP_STD};
pub use sampler::{EpochShuffle, GroupSampler, StreamShuffle};
pub use stream::{ImageSource, InMemory, Item, Pipeline};
pub use synth::{oracle_score, write_fairvision, write_fairvlmed, GroupEffect, OctSynth, Oversample, Shortcut, ShortcutModality, Sign, SynthConfig, WithOracle};
pub use text::{TextTokenizer, END, PAD, START};
