//! A split prepared for training: every image preprocessed once, every note tokenised once,
//! and batches of them as burn tensors.

use burn::prelude::*;

use crate::attributes::{Attributes, Column};
use crate::error::Result;
use crate::fairvision::VisionSample;
use crate::fairvlmed::{Sample, ATTRIBUTES, ATTRIBUTE_VALUES};
use crate::preprocess::{clip_grey, normalize};
use crate::text::TextTokenizer;

/// Preprocessed samples of one split, held compactly: the cropped grey levels (one byte per
/// pixel, since CLIP's three channels are the same grey), the token ids, labels and attributes.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Side of the square model input.
    pub image_size: usize,
    /// Tokens per text.
    pub context_length: usize,
    grey: Vec<u8>,
    tokens: Vec<i64>,
    /// Glaucoma labels.
    pub labels: Vec<u8>,
    /// The sensitive attributes (FairVLMed's four, [`ATTRIBUTES`], with their value names).
    pub attributes: Attributes,
    /// OCT B-scans per sample (FairVision data), with their side.
    oct: Option<(usize, usize, Vec<f32>)>,
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
    /// Preprocesses every sample (CLIP's resize and crop) and tokenises its note, cut to
    /// `note_chars` characters first (FairCLIP: 180).
    pub fn new(samples: &[Sample], image_size: usize, tokenizer: &TextTokenizer, note_chars: usize) -> Result<Self> {
        let mut grey = Vec::with_capacity(samples.len() * image_size * image_size);
        for s in samples {
            grey.extend(clip_grey(&s.image, image_size));
        }
        let notes: Vec<String> = samples.iter().map(|s| crate::fairvlmed::truncate_note(&s.note, note_chars)).collect();
        Ok(Self {
            image_size,
            context_length: tokenizer.context_length(),
            grey,
            tokens: tokenizer.encode_batch(&notes)?,
            labels: samples.iter().map(|s| s.glaucoma).collect(),
            attributes: fairvlmed_attributes(|a| samples.iter().map(|s| s.attribute(a).unwrap_or(-1)).collect()),
            oct: None,
        })
    }

    /// Preprocesses FairVision samples: the fundus as [`Prepared::new`] does, and MultiFair's
    /// OCT slices ([`crate::oct_slices`]: `slices` B-scans at `oct_size` px). The attributes are
    /// mapped to [`ATTRIBUTES`] (`male` as gender, `hispanic` as ethnicity); there is no text.
    pub fn from_vision(samples: &[VisionSample], image_size: usize, slices: usize, oct_size: usize) -> Self {
        let mut grey = Vec::with_capacity(samples.len() * image_size * image_size);
        let mut oct = Vec::with_capacity(samples.len() * slices * oct_size * oct_size);
        for s in samples {
            grey.extend(clip_grey(&s.fundus, image_size));
            oct.extend(crate::fairvision::oct_slices(&s.oct, slices, oct_size));
        }
        Self {
            image_size,
            context_length: 1,
            grey,
            tokens: vec![0; samples.len()],
            labels: samples.iter().map(|s| s.glaucoma).collect(),
            attributes: fairvlmed_attributes(|a| samples.iter().map(|s| s.attribute(a).unwrap_or(-1)).collect()),
            oct: Some((slices, oct_size, oct)),
        }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows `indices` as tensors on `device`.
    pub fn batch<B: Backend>(&self, indices: &[usize], device: &B::Device) -> ClipBatch<B> {
        let s2 = self.image_size * self.image_size;
        let mut images = Vec::with_capacity(indices.len() * 3 * s2);
        let mut tokens = Vec::with_capacity(indices.len() * self.context_length);
        for &i in indices {
            images.extend(normalize(&self.grey[i * s2..(i + 1) * s2]));
            tokens.extend_from_slice(&self.tokens[i * self.context_length..(i + 1) * self.context_length]);
        }
        let n = indices.len();
        let oct = self.oct.as_ref().map(|(slices, size, v)| {
            let per = slices * size * size;
            let mut x = Vec::with_capacity(n * per);
            for &i in indices {
                x.extend_from_slice(&v[i * per..(i + 1) * per]);
            }
            Tensor::from_data(TensorData::new(x, [n, *slices, *size, *size]), device)
        });
        ClipBatch {
            oct,
            images: Tensor::from_data(TensorData::new(images, [n, 3, self.image_size, self.image_size]), device),
            tokens: Tensor::from_data(TensorData::new(tokens, [n, self.context_length]), device),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            attributes: self.attributes.select(indices),
        }
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
