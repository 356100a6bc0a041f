//! Labelled image sets for fairness-aware LoRA, where each party holds its own file: the model
//! developer images with task labels, the fairness auditor images with sensitive labels. Also
//! Fashion-MNIST's IDX files and a tinted variant of it with an injected sensitive attribute,
//! and the synthetic fundus benchmark as an image set.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::fairvlmed::Sample;
use crate::npy::{read_npz, write_npz, NpyArray, NpyData};
use crate::preprocess::clip_grey;

/// Square RGB images (`[n, 3, size, size]`, 0-255) with named integer labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelledImages {
    /// Side of the images.
    pub size: usize,
    /// Pixels, image after image, channel-major.
    pub images: Vec<u8>,
    /// Labels by name, one per image.
    pub labels: BTreeMap<String, Vec<i64>>,
}

impl LabelledImages {
    /// Number of images.
    pub fn len(&self) -> usize {
        if self.size == 0 {
            0
        } else {
            self.images.len() / (3 * self.size * self.size)
        }
    }

    /// Whether there are no images.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// One label column, or an error naming the labels there are.
    pub fn label(&self, name: &str) -> Result<&[i64]> {
        self.labels
            .get(name)
            .map(Vec::as_slice)
            .ok_or_else(|| Error::Invalid(format!("no label '{name}' in this image set (labels: {})", self.labels.keys().cloned().collect::<Vec<_>>().join(", "))))
    }

    /// The images at `idx`, with all labels.
    pub fn subset(&self, idx: &[usize]) -> Self {
        let px = 3 * self.size * self.size;
        let mut images = Vec::with_capacity(idx.len() * px);
        for &i in idx {
            images.extend_from_slice(&self.images[i * px..(i + 1) * px]);
        }
        let labels = self.labels.iter().map(|(k, v)| (k.clone(), idx.iter().map(|&i| v[i]).collect())).collect();
        LabelledImages { size: self.size, images, labels }
    }

    /// The same images with only the `keep` labels, renamed `(from, to)`: what one party may
    /// hold (the developer's file has no sensitive label, the auditor's no task label).
    ///
    /// ```
    /// use fair_data::LabelledImages;
    /// let set = LabelledImages { size: 1, images: vec![0; 6], labels: [("class".to_string(), vec![3, 4]), ("tint".to_string(), vec![0, 1])].into() };
    /// let developer = set.with_labels(&[("class", "task")])?;
    /// assert_eq!(developer.labels.keys().collect::<Vec<_>>(), ["task"]);
    /// # Ok::<(), fair_data::Error>(())
    /// ```
    pub fn with_labels(&self, keep: &[(&str, &str)]) -> Result<Self> {
        let mut labels = BTreeMap::new();
        for (from, to) in keep {
            labels.insert(to.to_string(), self.label(from)?.to_vec());
        }
        Ok(LabelledImages { size: self.size, images: self.images.clone(), labels })
    }

    /// Writes the set as an npz: `images` (uint8 `[n, 3, size, size]`) and one int64 array per
    /// label, `label_<name>`.
    pub fn write(&self, path: &Path) -> Result<()> {
        let n = self.len();
        let mut arrays = vec![("images".to_string(), NpyArray::from_u8(vec![n, 3, self.size, self.size], &self.images))];
        for (k, v) in &self.labels {
            arrays.push((format!("label_{k}"), NpyArray::from_i64(vec![v.len()], v.clone())));
        }
        let refs: Vec<(&str, NpyArray)> = arrays.iter().map(|(k, a)| (k.as_str(), a.clone())).collect();
        write_npz(path, &refs)
    }

    /// Reads a set written by [`LabelledImages::write`]; the error names the file and array.
    pub fn read(path: &Path) -> Result<Self> {
        let bad = |message: String| Error::Npz { path: path.to_owned(), message };
        let arrays = read_npz(path)?;
        let img = arrays.get("images").ok_or_else(|| bad("no 'images' array".into()))?;
        let (n, size) = match img.shape.as_slice() {
            [n, 3, h, w] if h == w => (*n, *h),
            s => return Err(bad(format!("'images' has shape {s:?}: expected [n, 3, size, size]"))),
        };
        let images = match &img.data {
            NpyData::Int(v) if img.descr == "|u1" => v.iter().map(|&x| x as u8).collect(),
            _ => return Err(bad(format!("'images' is {}: expected uint8", img.descr))),
        };
        let mut labels = BTreeMap::new();
        for (k, a) in &arrays {
            let Some(name) = k.strip_prefix("label_") else { continue };
            match &a.data {
                NpyData::Int(v) if a.shape == [n] => {
                    labels.insert(name.to_string(), v.clone());
                }
                _ => return Err(bad(format!("'{k}' has shape {:?} ({}): expected {n} integers", a.shape, a.descr))),
            }
        }
        Ok(LabelledImages { size, images, labels })
    }
}

/// Reads an IDX file (the MNIST format: magic `0x0000 08 <dims>`, big-endian sizes, uint8
/// values), gzip-compressed or not; returns the shape and the values.
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let raw = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let bad = |message: String| Error::Npz { path: path.to_owned(), message };
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(|e| bad(format!("gzip: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad("not an IDX file of unsigned bytes (magic 00 00 08 ..)".into()));
    }
    let dims = bytes[3] as usize;
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(bad(format!("truncated header ({} bytes)", bytes.len())));
    }
    let shape: Vec<usize> = (0..dims).map(|d| u32::from_be_bytes([bytes[4 + 4 * d], bytes[5 + 4 * d], bytes[6 + 4 * d], bytes[7 + 4 * d]]) as usize).collect();
    let n: usize = shape.iter().product();
    if bytes.len() != header + n {
        return Err(bad(format!("shape {shape:?} needs {n} values, the file has {}", bytes.len() - header)));
    }
    Ok((shape, bytes[header..].to_vec()))
}

/// How a sensitive attribute is injected into Fashion-MNIST: a binary task between two sets of
/// classes, and a background tint (warm for `s = 1`, cool for `s = 0`) that agrees with the
/// task label with probability `correlation`, so that the tint is a shortcut a classifier can
/// take.
#[derive(Debug, Clone, PartialEq)]
pub struct TintConfig {
    /// Classes of task label 1 (Fashion-MNIST codes: 0 T-shirt/top, 1 trouser, 2 pullover,
    /// 3 dress, 4 coat, 5 sandal, 6 shirt, 7 sneaker, 8 bag, 9 ankle boot).
    pub positive: Vec<i64>,
    /// Classes of task label 0.
    pub negative: Vec<i64>,
    /// P(s = task label) in the training split (the developer's and the auditor's pools).
    pub correlation: f64,
    /// P(s = task label) in the audit split ([`crate::prepare_fashion_mnist`]); 0.5, the
    /// default, makes the tint independent of the label there, so that a classifier can be
    /// both accurate and fair at audit time (with the training split's 0.8, demographic parity
    /// is out of reach of a perfect classifier: its DP ratio would be 0.2 / 0.8 = 0.25).
    pub audit_correlation: f64,
    /// Strength of the tint (0-255 added to one colour channel of the background).
    pub tint: f64,
    /// Output side (the 28 x 28 images are centred on this canvas, at least 28).
    pub size: usize,
    /// Seed of the sensitive draw.
    pub seed: u64,
}

impl Default for TintConfig {
    /// Shirt vs T-shirt/top (Fashion-MNIST's most confused pair), tint agreeing with the label
    /// 80% of the time in training and independent of it at audit, strength 60, 32 px.
    fn default() -> Self {
        TintConfig { positive: vec![6], negative: vec![0], correlation: 0.8, audit_correlation: 0.5, tint: 60.0, size: 32, seed: 0 }
    }
}

/// Fashion-MNIST (images `[n, 28, 28]`, class labels) as a tinted binary task: labels `task`,
/// `sensitive` (the tint) and `class` (the original class); images of other classes are left
/// out.
///
/// ```
/// use fair_data::{tinted_fashion_mnist, TintConfig};
/// let images = vec![0u8; 3 * 28 * 28];
/// let set = tinted_fashion_mnist(&images, &[6, 0, 9], &TintConfig::default())?;
/// assert_eq!((set.len(), set.label("task")?), (2, &[1, 0][..]));
/// # Ok::<(), fair_data::Error>(())
/// ```
pub fn tinted_fashion_mnist(images: &[u8], classes: &[u8], cfg: &TintConfig) -> Result<LabelledImages> {
    if images.len() != classes.len() * 784 {
        return Err(Error::Invalid(format!("{} pixels for {} labels: expected 784 per image", images.len(), classes.len())));
    }
    if cfg.size < 28 || !(0.0..=1.0).contains(&cfg.correlation) || !(0.0..=255.0).contains(&cfg.tint) {
        return Err(Error::Invalid(format!(
            "tint size {}, correlation {}, tint {}: expected size >= 28, correlation in [0, 1], tint in [0, 255]",
            cfg.size, cfg.correlation, cfg.tint
        )));
    }
    let (s, off) = (cfg.size, (cfg.size - 28) / 2);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut out = LabelledImages { size: s, ..Default::default() };
    let (mut task, mut sensitive, mut class) = (Vec::new(), Vec::new(), Vec::new());
    for (i, &c) in classes.iter().enumerate() {
        let c = c as i64;
        let y = if cfg.positive.contains(&c) {
            1
        } else if cfg.negative.contains(&c) {
            0
        } else {
            continue;
        };
        let agree = rng.random_bool(cfg.correlation);
        let a = if agree { y } else { 1 - y };
        let src = &images[i * 784..(i + 1) * 784];
        // The garment stays grey; the background (dark pixels) takes the tint, fading where the
        // garment begins, so the tint says nothing about the shape.
        let channel = if a == 1 { 0 } else { 2 };
        for ch in 0..3 {
            for yy in 0..s {
                for xx in 0..s {
                    let v = if (off..off + 28).contains(&yy) && (off..off + 28).contains(&xx) { src[(yy - off) * 28 + (xx - off)] as f64 } else { 0.0 };
                    let bg = 1.0 - v / 255.0;
                    let t = if ch == channel { cfg.tint * bg } else { 0.0 };
                    out.images.push((v + t).round().clamp(0.0, 255.0) as u8);
                }
            }
        }
        task.push(y);
        sensitive.push(a);
        class.push(c);
    }
    out.labels.insert("task".into(), task);
    out.labels.insert("sensitive".into(), sensitive);
    out.labels.insert("class".into(), class);
    Ok(out)
}

/// Synthetic (or real) FairVLMed subjects as an image set: the fundus resized and centre-cropped
/// to `size` as CLIP does, grey in three channels; labels `glaucoma`, `race`, `gender`,
/// `ethnicity`, `language`.
pub fn fundus_images(samples: &[Sample], size: usize) -> LabelledImages {
    let mut out = LabelledImages { size, ..Default::default() };
    let mut cols: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for s in samples {
        let grey = clip_grey(&s.image, size);
        for _ in 0..3 {
            out.images.extend_from_slice(&grey);
        }
        for (k, v) in [("glaucoma", s.glaucoma as i64), ("race", s.race), ("gender", s.gender), ("ethnicity", s.ethnicity), ("language", s.language)] {
            cols.entry(k.to_string()).or_default().push(v);
        }
    }
    out.labels = cols;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_round_trip() {
        let set = LabelledImages { size: 2, images: (0..24).collect(), labels: [("task".to_string(), vec![0, 1])].into() };
        let path = std::env::temp_dir().join(format!("labelled-{}.npz", std::process::id()));
        set.write(&path).unwrap();
        assert_eq!(LabelledImages::read(&path).unwrap(), set);
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn bad_files_and_settings_are_named_errors() {
        let path = std::env::temp_dir().join(format!("labelled-bad-{}.npz", std::process::id()));
        write_npz(&path, &[("label_task", NpyArray::from_i64(vec![2], vec![0, 1]))]).unwrap();
        let e = LabelledImages::read(&path).unwrap_err().to_string();
        assert!(e.contains("labelled-bad") && e.contains("no 'images' array"), "{e}");
        std::fs::remove_file(&path).ok();
        let e = tinted_fashion_mnist(&[0; 784], &[6], &TintConfig { correlation: 1.5, ..Default::default() }).unwrap_err().to_string();
        assert!(e.contains("correlation 1.5"), "{e}");
        let e = tinted_fashion_mnist(&[0; 700], &[6], &TintConfig::default()).unwrap_err().to_string();
        assert!(e.contains("784 per image"), "{e}");
        let set = LabelledImages { size: 1, images: vec![0; 3], labels: BTreeMap::new() };
        assert!(set.label("sensitive").unwrap_err().to_string().contains("no label 'sensitive'"));
    }

    #[test]
    fn idx_plain_and_gzip() {
        let mut bytes = vec![0, 0, 8, 2, 0, 0, 0, 2, 0, 0, 0, 3];
        bytes.extend(1..=6u8);
        let dir = std::env::temp_dir().join(format!("idx-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("a.idx"), &bytes).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, &bytes).unwrap();
        std::fs::write(dir.join("a.idx.gz"), gz.finish().unwrap()).unwrap();
        for f in ["a.idx", "a.idx.gz"] {
            assert_eq!(read_idx(&dir.join(f)).unwrap(), (vec![2, 3], (1..=6).collect::<Vec<u8>>()));
        }
        std::fs::write(dir.join("bad.idx"), &bytes[..10]).unwrap();
        let e = read_idx(&dir.join("bad.idx")).unwrap_err().to_string();
        assert!(e.contains("bad.idx") && e.contains("truncated"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn tint_agrees_with_the_label_at_the_set_rate_and_leaves_the_garment_grey() {
        let n = 4000;
        let classes: Vec<u8> = (0..n).map(|i| if i % 2 == 0 { 6 } else { 0 }).collect();
        // A bright square garment on a black background.
        let mut img = vec![0u8; 784];
        for y in 10..18 {
            for x in 10..18 {
                img[y * 28 + x] = 255;
            }
        }
        let images: Vec<u8> = (0..n).flat_map(|_| img.clone()).collect();
        let set = tinted_fashion_mnist(&images, &classes, &TintConfig::default()).unwrap();
        let (t, s) = (set.label("task").unwrap(), set.label("sensitive").unwrap());
        let agree = t.iter().zip(s).filter(|(a, b)| a == b).count() as f64 / n as f64;
        assert!((agree - 0.8).abs() < 0.03, "{agree}");
        let px = 3 * 32 * 32;
        let warm = s.iter().position(|&v| v == 1).unwrap();
        let im = &set.images[warm * px..(warm + 1) * px];
        // Background corner: red channel tinted, blue not; garment centre: white in all three.
        assert_eq!((im[0], im[2 * 1024]), (60, 0));
        let centre = 16 * 32 + 16;
        assert_eq!((im[centre], im[1024 + centre], im[2 * 1024 + centre]), (255, 255, 255));
    }
}
