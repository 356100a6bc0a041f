//! A split prepared for training: notes tokenised once, labels and attributes in memory, and
//! images from a [`crate::ImageSource`] through the streaming pipeline ([`crate::Pipeline`]):
//! decoded when a batch needs them, or already in memory for the synthetic benchmark.

use std::path::PathBuf;
use std::sync::Arc;

use burn::prelude::*;

use crate::attributes::{Attributes, Column};
use crate::error::{Error, Result};
use crate::fairvision::{LoadedVision, VisionSample};
use crate::fairvlmed::{Loaded, Sample, ATTRIBUTES, ATTRIBUTE_VALUES};
use crate::preprocess::clip_grey;
use crate::stream::{Cache, ImageSource, InMemory, Loader, Pipeline, Pixels, Stream};
use crate::text::TextTokenizer;

/// The samples of one split: token ids, labels and attributes in memory, images from their
/// source through the pipeline. Cloning is cheap (the source, cache and tokens are shared).
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Side of the square model input.
    pub image_size: usize,
    /// Tokens per text.
    pub context_length: usize,
    loader: Loader,
    pipeline: Pipeline,
    tokens: Arc<[i64]>,
    /// Class labels (0 or 1).
    pub labels: Vec<u8>,
    /// The label's name (`glaucoma` for FairVLMed and FairVision, the label column of a
    /// generic dataset).
    pub label_name: String,
    /// The sensitive attributes, named by the data, with their value names.
    pub attributes: Attributes,
    /// OCT slices per sample and their side (FairVision data).
    oct: Option<(usize, usize)>,
}

/// One batch on a device.
#[derive(Debug, Clone)]
pub struct ClipBatch<B: Backend> {
    /// Normalised RGB images [batch, 3, size, size].
    pub images: Tensor<B, 4>,
    /// Token ids [batch, context] (one padding token per row for FairVision data).
    pub tokens: Tensor<B, 2, Int>,
    /// OCT slices [batch, slices, size, size], z-scored per slice (FairVision data).
    pub oct: Option<Tensor<B, 4>>,
    /// Labels of the rows.
    pub labels: Vec<u8>,
    /// Attributes of the rows.
    pub attributes: Attributes,
}

impl Prepared {
    /// A split whose images come from `source`, with one row of `context_length` token ids,
    /// one label and one row of attributes per sample.
    pub fn from_source(source: Arc<dyn ImageSource>, image_size: usize, tokens: Vec<i64>, context_length: usize, labels: Vec<u8>, attributes: Attributes) -> Result<Self> {
        let n = source.len();
        let rows_of = |what: &str, k: usize| if k == n { Ok(()) } else { Err(Error::Invalid(format!("{k} {what} for {n} images"))) };
        rows_of("labels", labels.len())?;
        rows_of("token rows", tokens.len() / context_length.max(1))?;
        if let Some(c) = attributes.columns().first() {
            rows_of("attribute values", c.codes.len())?;
        }
        let pipeline = Pipeline::default();
        Ok(Self {
            image_size,
            context_length,
            loader: Loader { source, cache: Arc::new(Cache::new(pipeline.cache_mib << 20)), size: image_size },
            pipeline,
            tokens: tokens.into(),
            labels,
            label_name: "glaucoma".into(),
            attributes,
            oct: None,
        })
    }

    /// The same split run by `pipeline` (a new, empty cache of its size).
    pub fn with_pipeline(mut self, pipeline: Pipeline) -> Self {
        self.loader.cache = Arc::new(Cache::new(pipeline.cache_mib << 20));
        self.pipeline = pipeline;
        self
    }

    /// The same split with `slices` OCT slices of `size` px per sample (from its source).
    fn with_oct(mut self, slices: usize, size: usize) -> Self {
        self.oct = Some((slices, size));
        self
    }

    /// Preprocesses every sample in memory now (CLIP's resize and crop) and tokenises its note,
    /// cut to `note_chars` characters first (FairCLIP: 180): for samples already in memory.
    pub fn new(samples: &[Sample], image_size: usize, tokenizer: &TextTokenizer, note_chars: usize) -> Result<Self> {
        if let Some(s) = samples.iter().find(|s| s.image.pixels.len() != s.image.height * s.image.width) {
            return Err(Error::Invalid(format!(
                "{}: the image holds {} values for {} x {} (an index-only sample: use Prepared::from_fairvlmed_files)",
                s.file,
                s.image.pixels.len(),
                s.image.height,
                s.image.width
            )));
        }
        let mut grey = Vec::with_capacity(samples.len() * image_size * image_size);
        for s in samples {
            grey.extend(clip_grey(&s.image, image_size));
        }
        let notes: Vec<String> = samples.iter().map(|s| crate::fairvlmed::truncate_note(&s.note, note_chars)).collect();
        let source = Arc::new(InMemory::new(image_size, 1, grey, None));
        let attributes = fairvlmed_attributes(|a| samples.iter().map(|s| s.attribute(a).unwrap_or(-1)).collect());
        Self::from_source(source, image_size, tokenizer.encode_batch(&notes)?, tokenizer.context_length(), samples.iter().map(|s| s.glaucoma).collect(), attributes)
    }

    /// A FairVLMed split read by [`crate::load_split`] with `index_only`: the notes tokenised
    /// now, the images decoded from their npz files when a batch needs them.
    pub fn from_fairvlmed_files(loaded: &Loaded, image_size: usize, tokenizer: &TextTokenizer, note_chars: usize) -> Result<Self> {
        let samples = &loaded.samples;
        let notes: Vec<String> = samples.iter().map(|s| crate::fairvlmed::truncate_note(&s.note, note_chars)).collect();
        let paths: Vec<PathBuf> = samples.iter().map(|s| loaded.dir.join(&s.file)).collect();
        let source = Arc::new(crate::decode::Files::new(crate::decode::FileKind::FairVlmed, paths));
        let attributes = fairvlmed_attributes(|a| samples.iter().map(|s| s.attribute(a).unwrap_or(-1)).collect());
        Self::from_source(source, image_size, tokenizer.encode_batch(&notes)?, tokenizer.context_length(), samples.iter().map(|s| s.glaucoma).collect(), attributes)
    }

    /// A split of a generic dataset ([`crate::load_folder`]): the texts tokenised now (cut to
    /// `note_chars` characters as FairVLMed's notes are), the images decoded from their files
    /// when a batch needs them.
    pub fn from_folder(split: &crate::FolderSplit, image_size: usize, tokenizer: &TextTokenizer, note_chars: usize) -> Result<Self> {
        let texts: Vec<String> = split.texts.iter().map(|t| crate::fairvlmed::truncate_note(t, note_chars)).collect();
        let source = Arc::new(split.files());
        let mut p = Self::from_source(source, image_size, tokenizer.encode_batch(&texts)?, tokenizer.context_length(), split.labels.clone(), split.attributes.clone())?;
        p.label_name.clone_from(&split.label_name);
        Ok(p)
    }

    /// Preprocesses FairVision samples in memory now: the fundus as [`Prepared::new`] does, and
    /// MultiFair's OCT slices ([`crate::oct_slices`]: `slices` B-scans at `oct_size` px). The
    /// attributes are mapped to [`ATTRIBUTES`] (`male` as gender, `hispanic` as ethnicity);
    /// there is no text.
    pub fn from_vision(samples: &[VisionSample], image_size: usize, slices: usize, oct_size: usize) -> Self {
        let mut grey = Vec::with_capacity(samples.len() * image_size * image_size);
        let mut oct = Vec::with_capacity(samples.len() * slices * oct_size * oct_size);
        for s in samples {
            grey.extend(clip_grey(&s.fundus, image_size));
            oct.extend(crate::fairvision::oct_slices(&s.oct, slices, oct_size));
        }
        let source = Arc::new(InMemory::new(image_size, 1, grey, Some((slices * oct_size * oct_size, oct))));
        Self::vision(source, samples, image_size).with_oct(slices, oct_size)
    }

    /// A FairVision split read by [`crate::index_fairvision_split`]: fundus and OCT slices
    /// decoded from the npz files when a batch needs them.
    pub fn from_fairvision_files(loaded: &LoadedVision, image_size: usize, slices: usize, oct_size: usize) -> Self {
        let paths: Vec<PathBuf> = loaded.samples.iter().map(|s| loaded.dir.join(&s.file)).collect();
        let source = Arc::new(crate::decode::Files::new(crate::decode::FileKind::FairVision { slices, oct_size }, paths));
        Self::vision(source, &loaded.samples, image_size).with_oct(slices, oct_size)
    }

    fn vision(source: Arc<dyn ImageSource>, samples: &[VisionSample], image_size: usize) -> Self {
        let attributes = fairvlmed_attributes(|a| samples.iter().map(|s| s.attribute(a).unwrap_or(-1)).collect());
        let labels = samples.iter().map(|s| s.glaucoma).collect();
        // One padding token per sample, labels and attributes of one length by construction.
        Self::from_source(source, image_size, vec![0; samples.len()], 1, labels, attributes).unwrap_or_else(|_| unreachable!("rows agree by construction"))
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The image source (files, or pixels in memory).
    pub fn source(&self) -> &Arc<dyn ImageSource> {
        &self.loader.source
    }

    /// The pipeline settings.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The rows `indices` as tensors on `device`, decoded now by the pipeline's workers.
    pub fn batch<B: Backend>(&self, indices: &[usize], device: &B::Device) -> Result<ClipBatch<B>> {
        let pixels = self.loader.pixels_parallel(indices, self.pipeline.threads())?;
        Ok(self.assemble(indices, pixels, device))
    }

    /// The batches `batches` (rows of this split), decoded in the background a few ahead of
    /// the one taken ([`Batches::next_batch`]), in this order.
    pub fn stream(&self, batches: Vec<Vec<usize>>) -> Batches {
        Batches { stream: Stream::start(&self.loader, batches, &self.pipeline), split: self.clone() }
    }

    /// Every row in order, in batches of `batch_size` (evaluation).
    pub fn in_order(&self, batch_size: usize) -> Batches {
        let rows: Vec<usize> = (0..self.len()).collect();
        self.stream(rows.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect())
    }

    fn assemble<B: Backend>(&self, indices: &[usize], pixels: Pixels, device: &B::Device) -> ClipBatch<B> {
        let n = indices.len();
        let mut tokens = Vec::with_capacity(n * self.context_length);
        for &i in indices {
            tokens.extend_from_slice(&self.tokens[i * self.context_length..(i + 1) * self.context_length]);
        }
        let oct = self.oct.map(|(slices, size)| Tensor::from_data(TensorData::new(pixels.oct, [n, slices, size, size]), device));
        ClipBatch {
            oct,
            images: Tensor::from_data(TensorData::new(pixels.images, [n, 3, self.image_size, self.image_size]), device),
            tokens: Tensor::from_data(TensorData::new(tokens, [n, self.context_length]), device),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            attributes: self.attributes.select(indices),
        }
    }
}

/// A split's batches decoded in the background ([`Prepared::stream`]).
#[derive(Debug)]
pub struct Batches {
    stream: Stream,
    split: Prepared,
}

impl Batches {
    /// The rows of the batch [`Batches::next_batch`] returns next.
    pub fn peek_rows(&self) -> Option<&[usize]> {
        self.stream.peek_rows()
    }

    /// The next batch on `device`; `None` after the last. An image that cannot be read is an
    /// error naming its file.
    pub fn next_batch<B: Backend>(&mut self, device: &B::Device) -> Option<Result<ClipBatch<B>>> {
        let (rows, pixels) = self.stream.next_pixels()?;
        Some(pixels.map(|p| self.split.assemble(&rows, p, device)))
    }
}

/// FairVLMed's four attributes, with FairCLIP's value names, from a function giving each
/// attribute's codes.
fn fairvlmed_attributes(codes: impl Fn(&str) -> Vec<i64>) -> Attributes {
    let columns = ATTRIBUTES
        .iter()
        .zip(ATTRIBUTE_VALUES)
        .map(|(name, values)| Column { name: name.to_string(), values: values.iter().map(|v| v.to_string()).collect(), codes: codes(name) })
        .collect();
    // Four distinct names and columns of one length by construction.
    Attributes::new(columns).unwrap_or_default()
}
