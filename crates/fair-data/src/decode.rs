//! Reading one image file as the pipeline's workers do: Harvard-FairVLMed's and FairVision's
//! npz (only the arrays needed), and the generic format's PNG, JPEG and `.npy` files; then
//! CLIP's preprocessing to the bytes a [`crate::stream::Item`] holds.

use std::io::Read;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fairvlmed::GrayImage;
use crate::npy::parse_npy;
use crate::stream::{ImageSource, Item};

/// An image as read: 1 (grey) or 3 (RGB) planes of `height x width` values on a 0-255 scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// 1 or 3.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `channels * height * width` values, plane after plane.
    pub planes: Vec<f32>,
    /// Whether the values are the bytes of an 8-bit image (PNG, JPEG, uint8 `.npy`), which
    /// are resized in Pillow's 8-bit fixed point; otherwise in floating point.
    pub eight_bit: bool,
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Npz { path: path.to_owned(), message: message.into() }
}

/// The named arrays of an npz, read without touching the others (an npz is a zip of `.npy`
/// files; a FairVision OCT volume is 8 MB that an index pass need not read).
pub fn read_npz_arrays(path: &Path, keys: &[&str]) -> Result<Vec<crate::NpyArray>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| bad(path, format!("not a readable npz (zip) archive: {e}")))?;
    keys.iter()
        .map(|key| {
            let mut entry = zip.by_name(&format!("{key}.npy")).map_err(|_| bad(path, format!("missing key '{key}'")))?;
            let (declared, compressed) = (entry.size(), entry.compressed_size());
            let bytes = crate::limits::read_entry(&mut entry, declared, compressed, path, key)?;
            parse_npy(&bytes, path, key)
        })
        .collect()
}

/// The shape of one array of an npz, from its header alone.
pub(crate) fn npz_array_shape(path: &Path, key: &str) -> Result<Vec<usize>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| bad(path, format!("not a readable npz (zip) archive: {e}")))?;
    let entry = zip.by_name(&format!("{key}.npy")).map_err(|_| bad(path, format!("missing key '{key}'")))?;
    let mut head = Vec::with_capacity(512);
    entry.take(512).read_to_end(&mut head).map_err(|e| bad(path, format!("array '{key}': {e}")))?;
    Ok(crate::npy::parse_header(&head, path, key)?.1)
}

/// The keys of an npz, without reading any array.
pub(crate) fn npz_keys(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| bad(path, format!("not a readable npz (zip) archive: {e}")))?;
    Ok(zip.file_names().filter_map(|n| n.ok()).map(|n| n.strip_suffix(".npy").unwrap_or(&n).to_owned()).collect())
}

/// Every pixel a number: a NaN would otherwise become 0 without a word.
fn finite(pixels: &[f32], path: &Path, key: &str) -> Result<()> {
    match pixels.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(i) => Err(bad(path, format!("key '{key}': pixel {i} is {}: expected numbers", pixels[i]))),
    }
}

/// A 2-d array as a grey image.
fn grey_array(a: &crate::NpyArray, path: &Path, key: &str) -> Result<GrayImage> {
    match a.shape.as_slice() {
        [h, w] if *h > 0 && *w > 0 && a.len() == h * w => {
            crate::Limits::current().check_image(path, *w, *h)?;
            let pixels = a.to_f32().ok_or_else(|| bad(path, format!("key '{key}': expected numbers")))?;
            finite(&pixels, path, key)?;
            Ok(GrayImage { height: *h, width: *w, pixels })
        }
        s => Err(bad(path, format!("key '{key}': expected a 2-d image, got shape {s:?}"))),
    }
}

/// The `slo_fundus` image of a FairVLMed or FairVision npz.
pub fn read_npz_fundus(path: &Path) -> Result<GrayImage> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| bad(path, format!("not a readable npz (zip) archive: {e}")))?;
    let key = "slo_fundus";
    let mut entry = zip.by_name("slo_fundus.npy").map_err(|_| bad(path, format!("missing key '{key}'")))?;
    let (declared, compressed) = (entry.size(), entry.compressed_size());
    let bytes = crate::limits::read_entry(&mut entry, declared, compressed, path, key)?;
    let (shape, pixels) = crate::npy::npy_f32(&bytes, path, key)?;
    finite(&pixels, path, key)?;
    match shape.as_slice() {
        [h, w] if *h > 0 && *w > 0 && pixels.len() == h * w => {
            crate::Limits::current().check_image(path, *w, *h)?;
            Ok(GrayImage { height: *h, width: *w, pixels })
        }
        s => Err(bad(path, format!("key '{key}': expected a 2-d image, got shape {s:?}"))),
    }
}

/// Reads a PNG or JPEG (8- or 16-bit, grey or RGB; alpha dropped, as Pillow's
/// `convert("RGB")` does) or a `.npy` array (`[h, w]` grey or `[h, w, 3]` RGB), on a 0-255
/// scale: 16-bit values are divided by 257 (65535 becomes 255).
pub fn read_image(path: &Path) -> Result<Decoded> {
    let is_npy = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy"));
    if is_npy {
        let size = std::fs::metadata(path).map_err(|source| Error::Io { path: path.to_owned(), source })?.len();
        let l = crate::Limits::current();
        if size > l.max_array_bytes {
            return Err(bad(path, format!("{size} bytes: above data.limits.max_array_bytes = {}", l.max_array_bytes)));
        }
        let bytes = std::fs::read(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let a = parse_npy(&bytes, path, "npy")?;
        if let [h, w, ..] = a.shape.as_slice() {
            l.check_image(path, *w, *h)?;
        }
        let scale = if a.descr.ends_with("u2") { 1.0 / 257.0 } else { 1.0 };
        let eight_bit = a.descr == "|u1";
        let values = a.to_f32().ok_or_else(|| bad(path, "expected numbers"))?;
        finite(&values, path, "npy")?;
        return match a.shape.as_slice() {
            [h, w] if *h > 0 && *w > 0 => Ok(Decoded { channels: 1, height: *h, width: *w, planes: values.iter().map(|v| v * scale).collect(), eight_bit }),
            [h, w, 3] if *h > 0 && *w > 0 => {
                let n = h * w;
                let mut planes = vec![0f32; 3 * n];
                for (p, px) in values.chunks_exact(3).enumerate() {
                    for c in 0..3 {
                        planes[c * n + p] = px[c] * scale;
                    }
                }
                Ok(Decoded { channels: 3, height: *h, width: *w, planes, eight_bit })
            }
            s => Err(bad(path, format!("shape {s:?}: expected [height, width] or [height, width, 3]"))),
        };
    }
    // A few bytes can declare millions of pixels (found by fuzzing: 1.3 KB of JPEG declaring
    // 63,839 x 304): the pixels may not exceed the file's bytes times max_ratio, checked from
    // the header before decoding.
    let (w, h) = image_dimensions(path)?;
    let file_len = std::fs::metadata(path).map_err(|source| Error::Io { path: path.to_owned(), source })?.len();
    let l = crate::Limits::current();
    if (w as u64).saturating_mul(h as u64) > file_len.saturating_mul(l.max_ratio) {
        return Err(bad(path, format!("{w} x {h} pixels from {file_len} bytes: above data.limits.max_ratio = {} pixels per byte", l.max_ratio)));
    }
    let mut reader = image::ImageReader::open(path)
        .map_err(|source| Error::Io { path: path.to_owned(), source })?
        .with_guessed_format()
        .map_err(|source| Error::Io { path: path.to_owned(), source })?;
    // The decoder refuses to allocate past the pixel cap (8 bytes: 16-bit RGBA).
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(l.max_pixels.saturating_mul(8));
    reader.limits(limits);
    let img = reader.decode().map_err(|e| bad(path, format!("cannot decode the image: {e}")))?;
    let (width, height) = (img.width() as usize, img.height() as usize);
    l.check_image(path, width, height)?;
    let planar = |channels: usize, values: Vec<f32>, eight_bit: bool| {
        let n = width * height;
        let mut planes = vec![0f32; channels * n];
        for (p, px) in values.chunks_exact(channels).enumerate() {
            for c in 0..channels {
                planes[c * n + p] = px[c];
            }
        }
        Decoded { channels, height, width, planes, eight_bit }
    };
    use image::DynamicImage as D;
    Ok(match img {
        D::ImageLuma8(g) => planar(1, g.into_raw().into_iter().map(f32::from).collect(), true),
        D::ImageLumaA8(_) => planar(1, img.to_luma8().into_raw().into_iter().map(f32::from).collect(), true),
        D::ImageLuma16(_) | D::ImageLumaA16(_) => planar(1, img.to_luma16().into_raw().into_iter().map(|v| v as f32 / 257.0).collect(), false),
        D::ImageRgb16(_) | D::ImageRgba16(_) => planar(3, img.to_rgb16().into_raw().into_iter().map(|v| v as f32 / 257.0).collect(), false),
        other => planar(3, other.to_rgb8().into_raw().into_iter().map(f32::from).collect(), true),
    })
}

/// The width and height of an image file from its header alone (a `.npy`'s shape), without
/// decoding it: what the index pass and the dataset card check.
pub fn image_dimensions(path: &Path) -> Result<(usize, usize)> {
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        let mut head = vec![0u8; 512];
        let mut f = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        let n = f.read(&mut head).map_err(|source| Error::Io { path: path.to_owned(), source })?;
        head.truncate(n);
        let (_, shape) = crate::npy::parse_header(&head, path, "npy")?;
        return match shape.as_slice() {
            [h, w] | [h, w, 3] if *h > 0 && *w > 0 => crate::Limits::current().check_image(path, *w, *h).map(|()| (*w, *h)),
            s => Err(bad(path, format!("shape {s:?}: expected [height, width] or [height, width, 3]"))),
        };
    }
    let (w, h) = image::ImageReader::open(path)
        .map_err(|source| Error::Io { path: path.to_owned(), source })?
        .with_guessed_format()
        .map_err(|source| Error::Io { path: path.to_owned(), source })?
        .into_dimensions()
        .map_err(|e| bad(path, format!("cannot read the image header: {e}")))?;
    crate::Limits::current().check_image(path, w as usize, h as usize)?;
    Ok((w as usize, h as usize))
}

/// CLIP's preprocessing of each plane (shorter side resized to `size`, bicubic as Pillow,
/// centre crop), to bytes. An 8-bit image is resized as Pillow resizes 8-bit images (fixed
/// point, bit for bit). Otherwise in floating point, as Pillow resizes a mode "F" image:
/// `truncate` then converts as `convert("RGB")` of a float image does (FairCLIP's fundus
/// path), else values are rounded.
pub fn clip_planes(img: &Decoded, size: usize, truncate: bool) -> Vec<u8> {
    let n = img.height * img.width;
    let mut out = vec![0u8; img.channels * size * size];
    for c in 0..img.channels {
        let dst = &mut out[c * size * size..(c + 1) * size * size];
        if img.eight_bit && !truncate {
            let bytes: Vec<u8> = img.planes[c * n..(c + 1) * n].iter().map(|&v| v as u8).collect();
            crate::preprocess::resize_crop_u8(&bytes, img.width, img.height, size, |i, v| dst[i] = v);
            continue;
        }
        crate::preprocess::resize_crop(&img.planes[c * n..(c + 1) * n], img.width, img.height, size, |i, v| {
            dst[i] = if truncate { v as u8 } else { v.round().clamp(0.0, 255.0) as u8 };
        });
    }
    out
}

/// What a file source reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A FairVLMed npz's `slo_fundus`, preprocessed exactly as FairCLIP does.
    FairVlmed,
    /// A FairVision npz's `slo_fundus` and MultiFair's OCT slices (`slices` at `oct_size` px).
    FairVision {
        /// B-scans kept.
        slices: usize,
        /// Their side.
        oct_size: usize,
    },
    /// A PNG, JPEG or `.npy` image of the generic format.
    Image,
}

/// A split's images as files, decoded when a batch needs them.
#[derive(Debug, Clone)]
pub struct Files {
    /// What the files are.
    pub kind: FileKind,
    /// One file per sample.
    pub paths: Vec<PathBuf>,
    /// Where each sample's file is named (`metadata.csv:12, column 'file_name'`), for errors;
    /// empty when the file is the sample (npz).
    pub origins: Vec<String>,
}

impl Files {
    /// Files that are the samples themselves (npz): errors name the file.
    pub fn new(kind: FileKind, paths: Vec<PathBuf>) -> Self {
        Self { kind, paths, origins: vec![] }
    }

    /// `e` with the place sample `i`'s file is named, where there is one.
    fn locate(&self, i: usize, e: Error) -> Error {
        match self.origins.get(i) {
            Some(o) => Error::Invalid(format!("{o}: {e}")),
            None => e,
        }
    }
}

impl ImageSource for Files {
    fn len(&self) -> usize {
        self.paths.len()
    }

    fn file(&self, i: usize) -> Option<PathBuf> {
        self.paths.get(i).cloned()
    }

    fn inspect(&self, i: usize) -> Result<(usize, usize, usize)> {
        self.inspect_file(i).map_err(|e| self.locate(i, e))
    }

    fn load(&self, i: usize, size: usize) -> Result<Item> {
        self.load_file(i, size).map_err(|e| self.locate(i, e))
    }
}

impl Files {
    fn inspect_file(&self, i: usize) -> Result<(usize, usize, usize)> {
        let path = self.paths.get(i).ok_or_else(|| Error::Invalid(format!("sample {i} of {}", self.paths.len())))?;
        match self.kind {
            FileKind::FairVlmed => read_npz_fundus(path).map(|g| (g.width, g.height, 1)),
            FileKind::FairVision { .. } => {
                let [vol, fundus] = <[_; 2]>::try_from(read_npz_arrays(path, &["oct_bscans", "slo_fundus"])?).map_err(|_| bad(path, "oct_bscans"))?;
                crate::fairvision::volume(&vol, path)?;
                grey_array(&fundus, path, "slo_fundus").map(|g| (g.width, g.height, 1))
            }
            FileKind::Image => read_image(path).map(|d| (d.width, d.height, d.channels)),
        }
    }

    fn load_file(&self, i: usize, size: usize) -> Result<Item> {
        let path = self.paths.get(i).ok_or_else(|| Error::Invalid(format!("sample {i} of {}", self.paths.len())))?;
        match self.kind {
            FileKind::FairVlmed => Ok(Item { channels: 1, pixels: crate::preprocess::clip_grey(&read_npz_fundus(path)?, size), oct: vec![] }),
            FileKind::FairVision { slices, oct_size } => {
                let [vol, fundus] = <[_; 2]>::try_from(read_npz_arrays(path, &["oct_bscans", "slo_fundus"])?).map_err(|_| bad(path, "oct_bscans"))?;
                let vol = crate::fairvision::volume(&vol, path)?;
                Ok(Item { channels: 1, pixels: crate::preprocess::clip_grey(&grey_array(&fundus, path, "slo_fundus")?, size), oct: crate::oct_slices(&vol, slices, oct_size) })
            }
            FileKind::Image => {
                let img = read_image(path)?;
                Ok(Item { channels: img.channels, pixels: clip_planes(&img, size, false), oct: vec![] })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_planes_match_the_fundus_path() {
        let img = GrayImage { height: 30, width: 20, pixels: (0..600).map(|v| (v % 251) as f32 + 0.5).collect() };
        let dec = Decoded { channels: 1, height: 30, width: 20, planes: img.pixels.clone(), eight_bit: false };
        assert_eq!(clip_planes(&dec, 16, true), crate::preprocess::clip_grey(&img, 16));
    }

    #[test]
    fn png_jpeg_and_npy_read_back() {
        let dir = std::env::temp_dir().join(format!("decode-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let grey = image::GrayImage::from_fn(6, 4, |x, y| image::Luma([(x * 40 + y) as u8]));
        grey.save(dir.join("g.png")).unwrap();
        let d = read_image(&dir.join("g.png")).unwrap();
        assert_eq!((d.channels, d.width, d.height, d.planes[5]), (1, 6, 4, 200.0));
        let deep: image::ImageBuffer<image::Luma<u16>, Vec<u16>> = image::ImageBuffer::from_fn(2, 2, |x, _| image::Luma([if x == 0 { 0 } else { 65535 }]));
        deep.save(dir.join("d.png")).unwrap();
        assert_eq!(read_image(&dir.join("d.png")).unwrap().planes, vec![0.0, 255.0, 0.0, 255.0]);
        let rgb = image::RgbImage::from_fn(3, 2, |x, _| image::Rgb([x as u8, 100, 200]));
        rgb.save(dir.join("c.png")).unwrap();
        let d = read_image(&dir.join("c.png")).unwrap();
        assert_eq!((d.channels, &d.planes[..3], d.planes[6], d.planes[12]), (3, &[0.0, 1.0, 2.0][..], 100.0, 200.0));
        std::fs::write(dir.join("a.npy"), crate::write_npy(&crate::NpyArray::from_u8(vec![2, 2, 3], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]))).unwrap();
        let d = read_image(&dir.join("a.npy")).unwrap();
        assert_eq!((d.channels, d.planes.clone()), (3, vec![1.0, 4.0, 7.0, 10.0, 2.0, 5.0, 8.0, 11.0, 3.0, 6.0, 9.0, 12.0]));
        assert_eq!(image_dimensions(&dir.join("a.npy")).unwrap(), (2, 2));
        assert_eq!(image_dimensions(&dir.join("g.png")).unwrap(), (6, 4));
        std::fs::write(dir.join("bad.png"), b"not a png").unwrap();
        let e = read_image(&dir.join("bad.png")).unwrap_err().to_string();
        assert!(e.contains("bad.png"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
