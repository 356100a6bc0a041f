//! CLIP's image preprocessing as FairCLIP applies it to a fundus array:
//! `PIL.Image.fromarray(slo_fundus.astype(float32))` (mode "F"), torchvision `Resize(size)`
//! (bicubic, shorter side), `CenterCrop(size)`, `convert("RGB")`, `ToTensor`, `Normalize`
//! with CLIP's mean and standard deviation.

use crate::fairvlmed::GrayImage;

/// CLIP's normalisation mean per RGB channel.
pub const CLIP_MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
/// CLIP's normalisation standard deviation per RGB channel.
#[allow(clippy::excessive_precision)] // OpenAI's published digits; the f32 values are the same
pub const CLIP_STD: [f32; 3] = [0.268_629_54, 0.261_302_58, 0.275_777_11];

/// Pillow's bicubic kernel (a = -0.5).
fn bicubic(x: f64) -> f64 {
    let a = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * a
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs`: for each output index, the first input index and the
/// normalised weights (the kernel is widened by the scale when shrinking: antialiasing).
fn coefficients(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // C casts truncate toward zero.
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(xmin as i64) as usize;
            let mut w: Vec<f64> = (xmin..xmax).map(|x| bicubic((x as f64 - center + 0.5) / filterscale)).collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                w.iter_mut().for_each(|v| *v /= total);
            }
            (xmin, w)
        })
        .collect()
}

/// Bicubic resize of a float image exactly as Pillow does it for mode "F": a horizontal pass,
/// then a vertical pass, each accumulating in f64 and storing f32.
pub fn resize_bicubic(img: &GrayImage, width: usize, height: usize) -> GrayImage {
    let mut pixels = img.pixels.clone();
    let mut w = img.width;
    if width != img.width {
        let coeffs = coefficients(img.width, width);
        let mut out = vec![0f32; width * img.height];
        for y in 0..img.height {
            let row = &pixels[y * w..(y + 1) * w];
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                let s: f64 = k.iter().enumerate().map(|(i, &c)| row[xmin + i] as f64 * c).sum();
                out[y * width + xx] = s as f32;
            }
        }
        pixels = out;
        w = width;
    }
    if height != img.height {
        let coeffs = coefficients(img.height, height);
        let mut out = vec![0f32; w * height];
        for (yy, (ymin, k)) in coeffs.iter().enumerate() {
            for x in 0..w {
                let s: f64 = k.iter().enumerate().map(|(i, &c)| pixels[(ymin + i) * w + x] as f64 * c).sum();
                out[yy * w + x] = s as f32;
            }
        }
        pixels = out;
    }
    GrayImage { height, width: w, pixels }
}

/// torchvision `Resize(size)` with an int: the shorter side becomes `size`, the longer
/// `int(size * long / short)`. Returns (width, height).
pub fn resized_size(width: usize, height: usize, size: usize) -> (usize, usize) {
    let (short, long) = if width <= height { (width, height) } else { (height, width) };
    let new_long = (size as f64 * long as f64 / short as f64) as usize;
    if width <= height {
        (size, new_long)
    } else {
        (new_long, size)
    }
}

/// CLIP's preprocessing of a single-channel image to a normalised RGB tensor laid out
/// `[3, size, size]` (channels first). The three channels are the same grey values, as
/// Pillow's `convert("RGB")` makes them (clamped to 0-255 and truncated), each normalised with
/// its own CLIP mean and std.
///
/// ```
/// use fair_data::{clip_preprocess, GrayImage};
/// let img = GrayImage { height: 20, width: 30, pixels: vec![128.0; 600] };
/// let x = clip_preprocess(&img, 16);
/// assert_eq!(x.len(), 3 * 16 * 16);
/// assert!((x[0] - (128.0 / 255.0 - 0.481_454_66) / 0.268_629_54).abs() < 1e-5);
/// ```
pub fn clip_preprocess(img: &GrayImage, size: usize) -> Vec<f32> {
    normalize(&clip_grey(img, size))
}

/// The grey levels CLIP's preprocessing produces before normalisation: resize of the shorter
/// side to `size` (bicubic), centre crop, then Pillow's `convert("RGB")` of a float image
/// (clamped to 0-255 and truncated). `size * size` bytes, row-major.
pub fn clip_grey(img: &GrayImage, size: usize) -> Vec<u8> {
    let (w, h) = resized_size(img.width, img.height, size);
    let resized = resize_bicubic(img, w, h);
    // torchvision center_crop: int(round((dim - crop) / 2.0)), Python's round half to even.
    let top = ((h.saturating_sub(size)) as f64 / 2.0).round_ties_even() as usize;
    let left = ((w.saturating_sub(size)) as f64 / 2.0).round_ties_even() as usize;
    let mut out = vec![0u8; size * size];
    for y in 0..size.min(h) {
        for x in 0..size.min(w) {
            out[y * size + x] = resized.pixels[(top + y) * w + left + x] as u8;
        }
    }
    out
}

/// `ToTensor` and `Normalize` of grey bytes into the three CLIP channels, `[3, n]`.
pub fn normalize(grey: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * grey.len());
    for c in 0..3 {
        out.extend(grey.iter().map(|&b| (b as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]));
    }
    out
}
