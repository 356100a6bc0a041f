//! Caps on what a file may make the readers allocate, checked against the file's declared
//! sizes before allocating: a zip entry declaring a terabyte, a deflate bomb or an image of a
//! billion pixels is an error naming the file, not an abort.

use std::io::Read;
use std::path::Path;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The caps (`[data.limits]` in an experiment). The defaults are far above any real dataset
/// of the field (a FairVLMed image is 0.34 megapixels, an OCT volume 8 MB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest image accepted, width x height, in pixels.
    pub max_pixels: u64,
    /// Largest array (npz entry or `.npy` file) accepted, in bytes after decompression.
    pub max_array_bytes: u64,
    /// Largest decompressed-to-compressed ratio of an npz entry (deflate's own maximum is
    /// about 1,032).
    pub max_ratio: u64,
}

impl Default for Limits {
    /// 100 megapixels, 4 GiB, ratio 1,100.
    fn default() -> Self {
        Self { max_pixels: 100_000_000, max_array_bytes: 4 << 30, max_ratio: 1100 }
    }
}

static CURRENT: RwLock<Limits> = RwLock::new(Limits { max_pixels: 100_000_000, max_array_bytes: 4 << 30, max_ratio: 1100 });

impl Limits {
    /// The limits every reader of the process checks.
    pub fn current() -> Self {
        CURRENT.read().map(|l| *l).unwrap_or_default()
    }

    /// Makes these the limits every reader of the process checks.
    ///
    /// ```
    /// use fair_data::Limits;
    /// Limits { max_pixels: 1 << 30, ..Limits::default() }.install();
    /// assert_eq!(Limits::current().max_pixels, 1 << 30);
    /// Limits::default().install();
    /// ```
    pub fn install(self) {
        if let Ok(mut l) = CURRENT.write() {
            *l = self;
        }
    }

    /// Checks that an image of `width x height` is within `max_pixels`.
    pub fn check_image(&self, path: &Path, width: usize, height: usize) -> Result<()> {
        if width == 0 || height == 0 {
            return Err(Error::Npz { path: path.to_owned(), message: format!("an image of {width} x {height} pixels: expected both sides above 0") });
        }
        let pixels = (width as u64).saturating_mul(height as u64);
        if pixels > self.max_pixels {
            return Err(Error::Npz {
                path: path.to_owned(),
                message: format!("an image of {width} x {height} = {pixels} pixels: above data.limits.max_pixels = {}", self.max_pixels),
            });
        }
        Ok(())
    }
}

/// Reads a zip entry whose declared size is `declared` (compressed: `compressed`), refusing
/// one above the limits before allocating, and stopping a stream that inflates past them.
pub(crate) fn read_entry(entry: &mut impl Read, declared: u64, compressed: u64, path: &Path, key: &str) -> Result<Vec<u8>> {
    let l = Limits::current();
    let cap = l.max_array_bytes.min(compressed.max(1).saturating_mul(l.max_ratio));
    let bad = |message: String| Error::Npz { path: path.to_owned(), message: format!("array '{key}': {message}") };
    if declared > cap {
        return Err(bad(format!("declares {declared} bytes from {compressed} compressed: above data.limits (max_array_bytes {}, max_ratio {})", l.max_array_bytes, l.max_ratio)));
    }
    let mut bytes = Vec::with_capacity(declared as usize);
    entry.take(cap + 1).read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > cap {
        return Err(bad(format!("inflates past {cap} bytes: above data.limits (max_array_bytes {}, max_ratio {})", l.max_array_bytes, l.max_ratio)));
    }
    if bytes.len() as u64 != declared {
        return Err(bad(format!("{} bytes where the archive declares {declared}", bytes.len())));
    }
    Ok(bytes)
}
