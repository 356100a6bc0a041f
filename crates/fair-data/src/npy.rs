//! numpy's `.npy` format (version 1.0 to 3.0) and `.npz` archives (zip of `.npy`, stored or
//! deflated), for the dtypes datasets use: bool, uint8, int8/16/32/64, uint16/32/64, float32/64
//! and fixed-width unicode strings (`<U`), little-endian, C order.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// The values of an array, converted to a few Rust types.
#[derive(Debug, Clone, PartialEq)]
pub enum NpyData {
    /// bool, uint8 and the integer types (exact in i64; uint64 above i64::MAX is rejected).
    Int(Vec<i64>),
    /// float32 and float64.
    Float(Vec<f64>),
    /// Unicode strings (`<U`), trailing NULs removed.
    Str(Vec<String>),
}

/// One array: its dtype string as numpy wrote it, its shape and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct NpyArray {
    /// numpy's dtype descriptor, e.g. `<f4`, `|u1`, `<U180`.
    pub descr: String,
    /// The shape; empty for a 0-d array (a scalar).
    pub shape: Vec<usize>,
    /// The values in C order.
    pub data: NpyData,
}

impl NpyArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A 0-d or one-element integer array as an integer.
    pub fn as_int(&self) -> Option<i64> {
        match &self.data {
            NpyData::Int(v) if v.len() == 1 => Some(v[0]),
            NpyData::Float(v) if v.len() == 1 && v[0].fract() == 0.0 => Some(v[0] as i64),
            _ => None,
        }
    }

    /// A one-element numeric array as a float.
    pub fn as_float(&self) -> Option<f64> {
        match &self.data {
            NpyData::Int(v) if v.len() == 1 => Some(v[0] as f64),
            NpyData::Float(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        }
    }

    /// A one-element string array as a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.data {
            NpyData::Str(v) if v.len() == 1 => Some(&v[0]),
            _ => None,
        }
    }

    /// Numeric values as f32 (images).
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        match &self.data {
            NpyData::Int(v) => Some(v.iter().map(|&x| x as f32).collect()),
            NpyData::Float(v) => Some(v.iter().map(|&x| x as f32).collect()),
            NpyData::Str(_) => None,
        }
    }

    /// A uint8 array.
    pub fn from_u8(shape: Vec<usize>, values: &[u8]) -> Self {
        Self { descr: "|u1".into(), shape, data: NpyData::Int(values.iter().map(|&x| x as i64).collect()) }
    }

    /// An int64 array (`shape = []` for a scalar).
    pub fn from_i64(shape: Vec<usize>, values: Vec<i64>) -> Self {
        Self { descr: "<i8".into(), shape, data: NpyData::Int(values) }
    }

    /// A float64 array.
    pub fn from_f64(shape: Vec<usize>, values: Vec<f64>) -> Self {
        Self { descr: "<f8".into(), shape, data: NpyData::Float(values) }
    }

    /// A 0-d unicode string, as `numpy.array("text")`.
    pub fn unicode(text: &str) -> Self {
        let width = text.chars().count().max(1);
        Self { descr: format!("<U{width}"), shape: vec![], data: NpyData::Str(vec![text.to_owned()]) }
    }
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::Npz { path: path.to_owned(), message: message.into() }
}

/// The dtype and shape in an `.npy` header, and where the data begins.
pub(crate) fn parse_header(bytes: &[u8], path: &Path, key: &str) -> Result<(String, Vec<usize>)> {
    header_of(bytes, path, key).map(|(d, s, _)| (d, s))
}

fn header_of(bytes: &[u8], path: &Path, key: &str) -> Result<(String, Vec<usize>, usize)> {
    let e = |m: String| bad(path, format!("array '{key}': {m}"));
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(e("not an .npy array (bad magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        v => return Err(e(format!("unsupported .npy version {v}"))),
    };
    let header = bytes.get(start..start + header_len).ok_or_else(|| e("truncated header".into()))?;
    let header = String::from_utf8_lossy(header);
    let field = |name: &str| -> Option<String> {
        let at = header.find(&format!("'{name}'"))?;
        let rest = header[at + name.len() + 2..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest.to_owned())
    };
    let descr =
        field("descr").and_then(|r| r.strip_prefix('\'').and_then(|r| r.split('\'').next()).map(str::to_owned)).ok_or_else(|| e(format!("no dtype in header {header:?}")))?;
    if field("fortran_order").is_some_and(|r| r.starts_with("True")) {
        return Err(e("Fortran-ordered arrays are not supported".into()));
    }
    let shape_text = field("shape").ok_or_else(|| e("no shape in header".into()))?;
    let inner = shape_text.strip_prefix('(').and_then(|r| r.split(')').next()).ok_or_else(|| e("bad shape".into()))?;
    let shape =
        inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| s.parse::<usize>().map_err(|_| e(format!("bad shape entry '{s}'")))).collect::<Result<Vec<_>>>()?;
    Ok((descr, shape, start + header_len))
}

/// The shape and values of a numeric `.npy` as f32, without the general parser's detour
/// through i64 for the dtypes images come in (uint8, float32).
pub(crate) fn npy_f32(bytes: &[u8], path: &Path, key: &str) -> Result<(Vec<usize>, Vec<f32>)> {
    let (descr, shape, start) = header_of(bytes, path, key)?;
    let n: usize = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| bad(path, format!("array '{key}': shape overflows")))?;
    let body = &bytes[start..];
    let short = || bad(path, format!("array '{key}': truncated data ({} bytes for {n} values of '{descr}')", body.len()));
    match descr.as_str() {
        "|u1" => Ok((shape, body.get(..n).ok_or_else(short)?.iter().map(|&b| b as f32).collect())),
        "<f4" => Ok((shape, body.get(..n.checked_mul(4).ok_or_else(short)?).ok_or_else(short)?.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())),
        _ => {
            let a = parse_npy(bytes, path, key)?;
            let v = a.to_f32().ok_or_else(|| bad(path, format!("array '{key}': expected numbers, got '{}'", a.descr)))?;
            Ok((a.shape, v))
        }
    }
}

/// Parses one `.npy` file's bytes; `path` and `key` name it in errors.
pub fn parse_npy(bytes: &[u8], path: &Path, key: &str) -> Result<NpyArray> {
    let e = |m: String| bad(path, format!("array '{key}': {m}"));
    let (descr, shape, data_start) = header_of(bytes, path, key)?;
    let n: usize = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(|| e("shape overflows".into()))?;
    let body = &bytes[data_start..];
    let (order, kind, size) = {
        let b = descr.as_bytes();
        if b.len() < 3 {
            return Err(e(format!("unsupported dtype '{descr}'")));
        }
        (b[0], b[1], descr.get(2..).and_then(|w| w.parse::<usize>().ok()).ok_or_else(|| e(format!("unsupported dtype '{descr}'")))?)
    };
    if order == b'>' && size > 1 {
        return Err(e(format!("big-endian dtype '{descr}' is not supported")));
    }
    let item = if kind == b'U' { size * 4 } else { size };
    let need = n.checked_mul(item).ok_or_else(|| e("size overflows".into()))?;
    if body.len() < need {
        return Err(e(format!("truncated data: {} bytes for {n} elements of '{descr}' ({need} needed)", body.len())));
    }
    let chunks = body[..need].chunks_exact(item.max(1));
    let data = match (kind, size) {
        (b'b', 1) => NpyData::Int(chunks.map(|c| (c[0] != 0) as i64).collect()),
        (b'u', 1) => NpyData::Int(chunks.map(|c| c[0] as i64).collect()),
        (b'i', 1) => NpyData::Int(chunks.map(|c| c[0] as i8 as i64).collect()),
        (b'i', 2) => NpyData::Int(chunks.map(|c| i16::from_le_bytes([c[0], c[1]]) as i64).collect()),
        (b'u', 2) => NpyData::Int(chunks.map(|c| u16::from_le_bytes([c[0], c[1]]) as i64).collect()),
        (b'i', 4) => NpyData::Int(chunks.map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
        (b'u', 4) => NpyData::Int(chunks.map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()),
        (b'i', 8) => NpyData::Int(chunks.map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
        (b'u', 8) => NpyData::Int(
            chunks.map(|c| i64::try_from(u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).map_err(|_| e("uint64 value above i64::MAX".into()))).collect::<Result<Vec<_>>>()?,
        ),
        (b'f', 4) => NpyData::Float(chunks.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect()),
        (b'f', 8) => NpyData::Float(chunks.map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()),
        (b'U', _) => NpyData::Str(
            chunks
                .map(|c| {
                    c.chunks_exact(4)
                        .map(|u| u32::from_le_bytes([u[0], u[1], u[2], u[3]]))
                        .take_while(|&u| u != 0)
                        .map(|u| char::from_u32(u).ok_or_else(|| e(format!("invalid character U+{u:X}"))))
                        .collect::<Result<String>>()
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        _ => return Err(e(format!("unsupported dtype '{descr}' (object arrays need pickle; save strings as numpy unicode)"))),
    };
    Ok(NpyArray { descr, shape, data })
}

/// Serialises an array as `.npy` version 1.0 in its own dtype.
pub fn write_npy(a: &NpyArray) -> Vec<u8> {
    let shape = match a.shape.len() {
        0 => "()".to_owned(),
        1 => format!("({},)", a.shape[0]),
        _ => format!("({})", a.shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
    };
    let mut header = format!("{{'descr': '{}', 'fortran_order': False, 'shape': {shape}, }}", a.descr);
    // Pad with spaces so that the data starts on a 64-byte boundary, newline-terminated.
    let total = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + a.len() * 8);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    let width: usize = a.descr.get(2..).and_then(|w| w.parse().ok()).unwrap_or(1);
    match &a.data {
        NpyData::Int(v) => {
            for &x in v {
                match width {
                    1 => out.push(x as u8),
                    2 => out.extend_from_slice(&(x as i16).to_le_bytes()),
                    4 => out.extend_from_slice(&(x as i32).to_le_bytes()),
                    _ => out.extend_from_slice(&x.to_le_bytes()),
                }
            }
        }
        NpyData::Float(v) => {
            for &x in v {
                if width == 4 {
                    out.extend_from_slice(&(x as f32).to_le_bytes());
                } else {
                    out.extend_from_slice(&x.to_le_bytes());
                }
            }
        }
        NpyData::Str(v) => {
            for s in v {
                let mut n = 0;
                for c in s.chars().take(width) {
                    out.extend_from_slice(&(c as u32).to_le_bytes());
                    n += 1;
                }
                out.extend(std::iter::repeat_n(0u8, (width - n) * 4));
            }
        }
    }
    out
}

/// Reads every array of an `.npz` file.
pub fn read_npz(path: &Path) -> Result<BTreeMap<String, NpyArray>> {
    let file = std::fs::File::open(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    read_npz_from(std::io::BufReader::new(file), path)
}

/// Reads every array of an `.npz` archive from a reader; `path` names it in errors.
pub fn read_npz_from<R: Read + Seek>(reader: R, path: &Path) -> Result<BTreeMap<String, NpyArray>> {
    let mut zip = zip::ZipArchive::new(reader).map_err(|e| bad(path, format!("not a readable npz (zip) archive: {e}")))?;
    let mut out = BTreeMap::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(|e| bad(path, format!("entry {i}: {e}")))?;
        let name = entry.name().map_err(|e| bad(path, format!("entry {i}: {e}")))?.into_owned();
        let key = name.strip_suffix(".npy").unwrap_or(&name).to_owned();
        let (declared, compressed) = (entry.size(), entry.compressed_size());
        let bytes = crate::limits::read_entry(&mut entry, declared, compressed, path, &key)?;
        out.insert(key.clone(), parse_npy(&bytes, path, &key)?);
    }
    Ok(out)
}

/// Writes arrays as an uncompressed `.npz` (as `numpy.savez`), atomically (temporary file,
/// then rename).
pub fn write_npz(path: &Path, arrays: &[(&str, NpyArray)]) -> Result<()> {
    let io = |source| Error::Io { path: path.to_owned(), source };
    let tmp = path.with_extension("npz.tmp");
    {
        let file = std::fs::File::create(&tmp).map_err(io)?;
        let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(file));
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        for (key, a) in arrays {
            zip.start_file(format!("{key}.npy"), opts).map_err(|e| bad(path, format!("array '{key}': {e}")))?;
            zip.write_all(&write_npy(a)).map_err(io)?;
        }
        zip.finish().map_err(|e| bad(path, e.to_string()))?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_all_kinds() {
        let arrays = [
            NpyArray::from_u8(vec![2, 3], &[0, 1, 2, 253, 254, 255]),
            NpyArray::from_i64(vec![], vec![-1]),
            NpyArray::from_f64(vec![3], vec![1.5, -0.25, 1e300]),
            NpyArray::unicode("Patient with élevated IOP"),
        ];
        for a in &arrays {
            let back = parse_npy(&write_npy(a), Path::new("x.npy"), "k").unwrap();
            assert_eq!(&back, a);
        }
    }

    #[test]
    fn corrupt_inputs_are_errors() {
        let good = write_npy(&NpyArray::from_f64(vec![4], vec![1.0, 2.0, 3.0, 4.0]));
        for cut in [0, 5, 9, 20, good.len() - 1] {
            let e = parse_npy(&good[..cut], Path::new("d.npz"), "md").unwrap_err().to_string();
            assert!(e.starts_with("d.npz: array 'md':"), "{e}");
        }
        let mut weird = good.clone();
        let at = weird.windows(3).position(|w| w == b"<f8").unwrap();
        weird[at..at + 3].copy_from_slice(b"|O8");
        let e = parse_npy(&weird, Path::new("d.npz"), "note").unwrap_err().to_string();
        assert!(e.contains("object arrays"), "{e}");
    }
}
