//! Harvard-FairVision (glaucoma subset) as distributed: `train/`, `val/`, `test/` folders of
//! `data_XXXXX.npz` with an OCT volume (`oct_bscans`), an SLO fundus image (`slo_fundus`),
//! the label (`glaucoma`) and the attributes `race`, `male`, `hispanic`, `language`,
//! `maritalstatus`. MultiFair's fundus + OCT pairing reads it; [`oct_slices`] is its volume
//! preprocessing.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fairvlmed::{npz_files, GrayImage, NpzFields, OnError, Split};

/// FairVision's attribute keys, in the order reports list them.
pub const VISION_ATTRIBUTES: [&str; 4] = ["race", "male", "hispanic", "language"];

/// An OCT volume: `depth` B-scans of `height x width`, row-major per scan.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// Number of B-scans (axis 0 of `oct_bscans`).
    pub depth: usize,
    /// Rows of a B-scan.
    pub height: usize,
    /// Columns of a B-scan.
    pub width: usize,
    /// `depth * height * width` values.
    pub voxels: Vec<f32>,
}

/// One FairVision subject.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionSample {
    /// The file name.
    pub file: String,
    /// The SLO fundus image.
    pub fundus: GrayImage,
    /// The OCT volume.
    pub oct: Volume,
    /// 1 = glaucoma.
    pub glaucoma: u8,
    /// 0 Asian, 1 Black, 2 White.
    pub race: i64,
    /// 0 female, 1 male.
    pub male: i64,
    /// 0 non-Hispanic, 1 Hispanic (-1 unknown).
    pub hispanic: i64,
    /// 0 English, 1 Spanish, 2 other (-1 unknown).
    pub language: i64,
    /// Marital status code (-1 unknown or absent).
    pub maritalstatus: i64,
}

impl VisionSample {
    /// The value of one of [`VISION_ATTRIBUTES`] (`gender` and `ethnicity` are accepted as
    /// FairVLMed's names of `male` and `hispanic`).
    pub fn attribute(&self, name: &str) -> Option<i64> {
        match name {
            "race" => Some(self.race),
            "male" | "gender" => Some(self.male),
            "hispanic" | "ethnicity" => Some(self.hispanic),
            "language" => Some(self.language),
            "maritalstatus" => Some(self.maritalstatus),
            _ => None,
        }
    }
}

/// A loaded FairVision split.
#[derive(Debug, Clone, Default)]
pub struct LoadedVision {
    /// The samples, in file-name order.
    pub samples: Vec<VisionSample>,
    /// Files skipped with [`OnError::Skip`], with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// The split's folder (a sample's file is `dir.join(&sample.file)`).
    pub dir: PathBuf,
}

fn folder(split: Split) -> &'static str {
    match split {
        Split::Training => "train",
        Split::Validation => "val",
        Split::Test => "test",
    }
}

/// Loads one split of a FairVision-format folder (`root/train`, `root/val`, `root/test`).
/// Unknown attributes are kept, as MultiFair does.
pub fn load_fairvision_split(root: &Path, split: Split, on_error: OnError) -> Result<LoadedVision> {
    load_with(root, split, on_error, read_fairvision_sample)
}

/// [`load_fairvision_split`] without the images' and volumes' values (their sizes only): the
/// streaming pipeline reads them when a batch needs them.
/// With [`OnError::Skip`] every file is read in full once, so that a corrupt one is skipped
/// now rather than found in the middle of training.
pub fn index_fairvision_split(root: &Path, split: Split, on_error: OnError) -> Result<LoadedVision> {
    match on_error {
        OnError::Fail => load_with(root, split, on_error, read_fairvision_index),
        OnError::Skip => load_with(root, split, on_error, |p| {
            let mut s = read_fairvision_sample(p)?;
            s.fundus.pixels = vec![];
            s.oct = Volume { depth: 0, height: 0, width: 0, voxels: vec![] };
            Ok(s)
        }),
    }
}

fn load_with(root: &Path, split: Split, on_error: OnError, read: fn(&Path) -> Result<VisionSample>) -> Result<LoadedVision> {
    let dir = root.join(folder(split));
    if !dir.is_dir() {
        return Err(Error::Invalid(format!("{}: no {} folder (FairVision layout: train, val, test)", root.display(), folder(split))));
    }
    let files = npz_files(&dir)?;
    let mut out = LoadedVision { dir: dir.clone(), ..LoadedVision::default() };
    for path in files {
        match (read(&path), on_error) {
            (Ok(s), _) => out.samples.push(s),
            (Err(e), OnError::Skip) => out.skipped.push((path, e.to_string())),
            (Err(e), OnError::Fail) => return Err(e),
        }
    }
    Ok(out)
}

/// Reads one FairVision `data_XXXXX.npz`.
pub fn read_fairvision_sample(path: &Path) -> Result<VisionSample> {
    let f = NpzFields::read(path)?;
    vision_sample(&f, f.image("slo_fundus")?, volume(f.get("oct_bscans")?, path)?)
}

/// Reads one FairVision npz without the fundus's and the volume's values.
fn read_fairvision_index(path: &Path) -> Result<VisionSample> {
    let f = NpzFields::read_except(path, &["slo_fundus", "oct_bscans"])?;
    let (height, width) = f.image_shape("slo_fundus")?;
    f.volume_shape("oct_bscans")?;
    vision_sample(&f, GrayImage { height, width, pixels: vec![] }, Volume { depth: 0, height: 0, width: 0, voxels: vec![] })
}

fn vision_sample(f: &NpzFields<'_>, fundus: GrayImage, oct: Volume) -> Result<VisionSample> {
    Ok(VisionSample {
        file: f.file_name(),
        fundus,
        oct,
        glaucoma: f.label("glaucoma")?,
        race: f.code("race", crate::ATTRIBUTE_VALUES[0])?,
        male: f.code("male", crate::ATTRIBUTE_VALUES[1])?,
        hispanic: f.code("hispanic", crate::ATTRIBUTE_VALUES[2])?,
        language: f.code("language", crate::ATTRIBUTE_VALUES[3])?,
        maritalstatus: f.int_or("maritalstatus", -1),
    })
}

/// An `oct_bscans` array as a volume.
pub(crate) fn volume(vol: &crate::NpyArray, path: &Path) -> Result<Volume> {
    let wrong = |what: String| Error::Npz { path: path.to_owned(), message: format!("key 'oct_bscans': expected {what}") };
    let (depth, height, width) = match vol.shape.as_slice() {
        [d, h, w] if *d > 0 && *h > 0 && *w > 0 => (*d, *h, *w),
        _ => return Err(wrong(format!("a non-empty 3-d volume [scans, height, width], got shape {:?}", vol.shape))),
    };
    let voxels = vol.to_f32().ok_or_else(|| wrong("numbers".into()))?;
    Ok(Volume { depth, height, width, voxels })
}

/// Bilinear resize with half-pixel centres and no antialiasing (PyTorch's
/// `F.interpolate(mode="bilinear", align_corners=False)`).
pub fn resize_bilinear(pixels: &[f32], height: usize, width: usize, out_h: usize, out_w: usize) -> Vec<f32> {
    let axis = |n_in: usize, n_out: usize| -> Vec<(usize, usize, f32)> {
        let scale = n_in as f64 / n_out as f64;
        (0..n_out)
            .map(|o| {
                let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(n_in - 1);
                let i1 = (i0 + 1).min(n_in - 1);
                (i0, i1, (src - i0 as f64) as f32)
            })
            .collect()
    };
    let (ys, xs) = (axis(height, out_h), axis(width, out_w));
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, fy) in &ys {
        for &(x0, x1, fx) in &xs {
            let p = |y: usize, x: usize| pixels[y * width + x];
            let top = p(y0, x0) * (1.0 - fx) + p(y0, x1) * fx;
            let bottom = p(y1, x0) * (1.0 - fx) + p(y1, x1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// MultiFair's OCT preprocessing: `slices` B-scans at `floor(linspace(0, depth − 1, slices))`,
/// each resized bilinearly to `size x size` and z-scored over its pixels (population standard
/// deviation, + 1e-6). Returns `[slices, size, size]` row-major.
///
/// ```
/// use fair_data::{oct_slices, Volume};
/// let vol = Volume { depth: 20, height: 8, width: 8, voxels: (0..20 * 64).map(|v| (v % 13) as f32).collect() };
/// let x = oct_slices(&vol, 10, 4);
/// assert_eq!(x.len(), 10 * 4 * 4);
/// let mean: f32 = x[..16].iter().sum::<f32>() / 16.0;
/// assert!(mean.abs() < 1e-5);
/// ```
pub fn oct_slices(vol: &Volume, slices: usize, size: usize) -> Vec<f32> {
    let plane = vol.height * vol.width;
    let mut out = Vec::with_capacity(slices * size * size);
    for k in 0..slices {
        let z = if slices > 1 { (k as f64 * (vol.depth - 1) as f64 / (slices - 1) as f64).floor() as usize } else { 0 };
        let scan = &vol.voxels[z * plane..(z + 1) * plane];
        let resized = resize_bilinear(scan, vol.height, vol.width, size, size);
        let n = resized.len() as f64;
        let mean = resized.iter().map(|&v| v as f64).sum::<f64>() / n;
        let std = (resized.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
        out.extend(resized.iter().map(|&v| ((v as f64 - mean) / (std + 1e-6)) as f32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bilinear_matches_pytorch_on_a_hand_case() {
        // F.interpolate(torch.tensor([[[[0., 1.], [2., 3.]]]]), size=(4, 4), mode="bilinear",
        // align_corners=False)[0, 0, 0] == [0.0, 0.25, 0.75, 1.0].
        let out = resize_bilinear(&[0.0, 1.0, 2.0, 3.0], 2, 2, 4, 4);
        assert_eq!(&out[..4], &[0.0, 0.25, 0.75, 1.0]);
        assert_eq!(&out[12..], &[2.0, 2.25, 2.75, 3.0]);
        // Downsampling by 2 averages pairs (no antialiasing beyond that).
        let out = resize_bilinear(&[0.0, 2.0, 4.0, 6.0], 1, 4, 1, 2);
        assert_eq!(out, vec![1.0, 5.0]);
    }

    #[test]
    fn slices_follow_linspace_and_are_z_scored() {
        // Scan z is constant z except a bright pixel at position z % 16, which standardisation
        // keeps: the brightest position of each output slice tells which scan was picked.
        let (depth, h, w) = (200, 4, 4);
        let mut voxels = Vec::new();
        for z in 0..depth {
            for i in 0..h * w {
                voxels.push(z as f32 + if i == z % 16 { 10.0 } else { 0.0 });
            }
        }
        let vol = Volume { depth, height: h, width: w, voxels };
        let x = oct_slices(&vol, 10, 4); // same size: the resize is the identity
                                         // np.linspace(0, 199, 10).astype(int)
        let expected = [0usize, 22, 44, 66, 88, 110, 132, 154, 176, 199];
        for (k, z) in expected.iter().enumerate() {
            let s = &x[k * 16..(k + 1) * 16];
            let mean: f64 = s.iter().map(|&v| v as f64).sum::<f64>() / 16.0;
            let var: f64 = s.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / 16.0;
            assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "slice {k}: mean {mean}, var {var}");
            let brightest = (0..16).max_by(|&a, &b| s[a].total_cmp(&s[b])).unwrap_or(99);
            assert_eq!(brightest, z % 16, "slice {k} should be scan {z}");
        }
    }
}
