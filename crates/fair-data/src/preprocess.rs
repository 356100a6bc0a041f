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
    coefficients_of(in_size, out_size, 0..out_size)
}

/// [`coefficients`] of the output indices `range` only: an extreme aspect ratio resizes one
/// side to millions of pixels, of which the crop keeps a few hundred.
fn coefficients_of(in_size: usize, out_size: usize, range: std::ops::Range<usize>) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    range
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
    if short == 0 {
        return (size, size);
    }
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
    let mut out = vec![0u8; size * size];
    resize_crop(&img.pixels, img.width, img.height, size, |i, v| out[i] = v as u8);
    out
}

/// torchvision's `Resize(size)` (Pillow's bicubic) then `CenterCrop(size)` of one plane,
/// computing only the pixels the crop keeps, as Pillow computes only the rows its second pass
/// reads: each kept value is the same as [`resize_bicubic`]'s. `put(i, v)` receives the value
/// of crop pixel `i` (row-major); pixels outside a smaller image are not visited.
pub(crate) fn resize_crop(pixels: &[f32], width: usize, height: usize, size: usize, mut put: impl FnMut(usize, f32)) {
    let (w, h) = resized_size(width, height, size);
    // torchvision center_crop: int(round((dim - crop) / 2.0)), Python's round half to even.
    let top = ((h.saturating_sub(size)) as f64 / 2.0).round_ties_even() as usize;
    let left = ((w.saturating_sub(size)) as f64 / 2.0).round_ties_even() as usize;
    let (cols, rows) = (size.min(w), size.min(h));
    // Output columns [left, left + cols) of the horizontal pass (identity when the width stays).
    if width == 0 || height == 0 || pixels.len() < width * height {
        return;
    }
    let hcoef: Option<Vec<(usize, Vec<f64>)>> = (w != width).then(|| coefficients_of(width, w, left..left + cols));
    let vcoef: Option<Vec<(usize, Vec<f64>)>> = (h != height).then(|| coefficients_of(height, h, top..top + rows));
    // The input rows the vertical pass reads.
    let (y_lo, y_hi) = match &vcoef {
        Some(v) => (v.iter().map(|(m, _)| *m).min().unwrap_or(0), v.iter().map(|(m, k)| m + k.len()).max().unwrap_or(0)),
        None => (top, top + rows),
    };
    let mut tmp = vec![0f32; (y_hi - y_lo) * cols];
    for y in y_lo..y_hi {
        let row = &pixels[y * width..(y + 1) * width];
        let dst = &mut tmp[(y - y_lo) * cols..(y - y_lo + 1) * cols];
        match &hcoef {
            Some(hc) => {
                for (d, (xmin, k)) in dst.iter_mut().zip(hc) {
                    let s: f64 = k.iter().zip(&row[*xmin..]).map(|(&c, &v)| v as f64 * c).sum();
                    *d = s as f32;
                }
            }
            None => dst.copy_from_slice(&row[left..left + cols]),
        }
    }
    match &vcoef {
        Some(vc) => {
            let mut acc = vec![0f64; cols];
            for (yy, (ymin, k)) in vc.iter().enumerate() {
                acc.iter_mut().for_each(|a| *a = 0.0);
                for (i, &c) in k.iter().enumerate() {
                    let src = &tmp[(ymin + i - y_lo) * cols..(ymin + i - y_lo + 1) * cols];
                    for (a, &v) in acc.iter_mut().zip(src) {
                        *a += v as f64 * c;
                    }
                }
                for (x, &a) in acc.iter().enumerate() {
                    put(yy * size + x, a as f32);
                }
            }
        }
        None => {
            for yy in 0..rows {
                for x in 0..cols {
                    put(yy * size + x, tmp[yy * cols + x]);
                }
            }
        }
    }
}

/// Pillow's fixed-point precision for 8-bit resampling (`Resample.c`: 32 - 8 - 2 bits).
const PRECISION_BITS: u32 = 22;

/// [`resize_crop`] of an 8-bit plane exactly as Pillow resizes 8-bit images (modes "L" and
/// "RGB", what `Image.open(png).convert("RGB")` gives): coefficients rounded to 22-bit fixed
/// point, each pass accumulated in integers from a half and clamped to 0-255, the
/// intermediate stored as bytes.
pub(crate) fn resize_crop_u8(pixels: &[u8], width: usize, height: usize, size: usize, mut put: impl FnMut(usize, u8)) {
    let fixed = |coeffs: Vec<(usize, Vec<f64>)>| -> Vec<(usize, Vec<i32>)> {
        let one = (1u32 << PRECISION_BITS) as f64;
        coeffs.into_iter().map(|(m, k)| (m, k.into_iter().map(|c| if c < 0.0 { (-0.5 + c * one) as i32 } else { (0.5 + c * one) as i32 }).collect())).collect()
    };
    let clip8 = |ss: i32| (ss >> PRECISION_BITS).clamp(0, 255) as u8;
    let (w, h) = resized_size(width, height, size);
    let top = ((h.saturating_sub(size)) as f64 / 2.0).round_ties_even() as usize;
    let left = ((w.saturating_sub(size)) as f64 / 2.0).round_ties_even() as usize;
    let (cols, rows) = (size.min(w), size.min(h));
    if width == 0 || height == 0 || pixels.len() < width * height {
        return;
    }
    let hcoef = (w != width).then(|| fixed(coefficients_of(width, w, left..left + cols)));
    let vcoef = (h != height).then(|| fixed(coefficients_of(height, h, top..top + rows)));
    let (y_lo, y_hi) = match &vcoef {
        Some(v) => (v.iter().map(|(m, _)| *m).min().unwrap_or(0), v.iter().map(|(m, k)| m + k.len()).max().unwrap_or(0)),
        None => (top, top + rows),
    };
    let half = 1i32 << (PRECISION_BITS - 1);
    let mut tmp = vec![0u8; (y_hi - y_lo) * cols];
    for y in y_lo..y_hi {
        let row = &pixels[y * width..(y + 1) * width];
        let dst = &mut tmp[(y - y_lo) * cols..(y - y_lo + 1) * cols];
        match &hcoef {
            Some(hc) => {
                for (d, (xmin, k)) in dst.iter_mut().zip(hc) {
                    let ss = k.iter().zip(&row[*xmin..]).fold(half, |ss, (&c, &v)| ss.wrapping_add(v as i32 * c));
                    *d = clip8(ss);
                }
            }
            None => dst.copy_from_slice(&row[left..left + cols]),
        }
    }
    match &vcoef {
        Some(vc) => {
            for (yy, (ymin, k)) in vc.iter().enumerate() {
                for x in 0..cols {
                    let ss = k.iter().enumerate().fold(half, |ss, (i, &c)| ss.wrapping_add(tmp[(ymin + i - y_lo) * cols + x] as i32 * c));
                    put(yy * size + x, clip8(ss));
                }
            }
        }
        None => {
            for yy in 0..rows {
                for x in 0..cols {
                    put(yy * size + x, tmp[yy * cols + x]);
                }
            }
        }
    }
}

/// `ToTensor` and `Normalize` of grey bytes into the three CLIP channels, `[3, n]`.
pub fn normalize(grey: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(3 * grey.len());
    for c in 0..3 {
        normalize_into(grey, c, &mut out);
    }
    out
}

/// `ToTensor` and `Normalize` of one plane's bytes as CLIP channel `c`, appended to `out`.
pub(crate) fn normalize_into(plane: &[u8], c: usize, out: &mut Vec<f32>) {
    out.extend(plane.iter().map(|&b| (b as f32 / 255.0 - CLIP_MEAN[c]) / CLIP_STD[c]));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cropped resize computes exactly the pixels of the full resize that the crop keeps,
    /// shrinking, enlarging, or with one axis unchanged.
    #[test]
    fn resize_crop_equals_resize_then_crop() {
        for (w, h, size) in [(512, 664, 224), (40, 30, 24), (24, 50, 24), (10, 7, 16), (30, 30, 30), (33, 20, 20)] {
            let img = GrayImage { width: w, height: h, pixels: (0..w * h).map(|i| ((i * 7919) % 256) as f32 + 0.3).collect() };
            let (rw, rh) = resized_size(w, h, size);
            let full = resize_bicubic(&img, rw, rh);
            let top = ((rh.saturating_sub(size)) as f64 / 2.0).round_ties_even() as usize;
            let left = ((rw.saturating_sub(size)) as f64 / 2.0).round_ties_even() as usize;
            let mut got = vec![f32::NAN; size * size];
            resize_crop(&img.pixels, w, h, size, |i, v| got[i] = v);
            for y in 0..size.min(rh) {
                for x in 0..size.min(rw) {
                    assert_eq!(got[y * size + x].to_bits(), full.pixels[(top + y) * rw + left + x].to_bits(), "{w}x{h} -> {size}: ({x}, {y})");
                }
            }
        }
    }
}
