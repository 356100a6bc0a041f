//! Harvard-FairVLMed as distributed: `Training/`, `Validation/` and `Test/` (or `Testing/`)
//! folders of `data_XXXXX.npz`, plus `data_summary.csv` and the GPT-4 summary CSV.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::npy::{read_npz, NpyArray, NpyData};

/// The attributes FairCLIP evaluates, in its order (`groups_in_attrs = [3, 2, 2, 3]`).
pub const ATTRIBUTES: [&str; 4] = ["race", "gender", "ethnicity", "language"];

/// The names of each attribute's codes 0, 1, ... (FairCLIP's `groups_in_attrs` order), in
/// the order of [`ATTRIBUTES`].
pub const ATTRIBUTE_VALUES: [&[&str]; 4] = [&["Asian", "Black", "White"], &["Female", "Male"], &["Non-Hispanic", "Hispanic"], &["English", "Spanish", "Other"]];

/// A dataset split and its folder name(s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `Training/`.
    Training,
    /// `Validation/`.
    Validation,
    /// `Test/` (FairCLIP's README, `evaluate_CLIP.py`) or `Testing/` (`finetune_FairCLIP.py`).
    Test,
}

impl Split {
    /// The folder names accepted for the split, in the order they are tried.
    pub fn folders(self) -> &'static [&'static str] {
        match self {
            Split::Training => &["Training"],
            Split::Validation => &["Validation"],
            Split::Test => &["Test", "Testing"],
        }
    }
}

/// A single-channel image as stored (`slo_fundus`), row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `height * width` values (0-255 for the SLO fundus images).
    pub pixels: Vec<f32>,
}

/// One subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The file name, e.g. `data_00001.npz`.
    pub file: String,
    /// The SLO fundus image.
    pub image: GrayImage,
    /// 1 = glaucoma.
    pub glaucoma: u8,
    /// 0 Asian, 1 Black, 2 White.
    pub race: i64,
    /// 0 Female, 1 Male.
    pub gender: i64,
    /// 0 non-Hispanic, 1 Hispanic, -1 unknown.
    pub ethnicity: i64,
    /// 0 English, 1 Spanish, 2 other, -1 unknown.
    pub language: i64,
    /// 0 married/partnered, 1 single, 2 divorced, 3 widowed, 4 legally separated, -1 unknown.
    pub maritalstatus: i64,
    /// Age in years.
    pub age: f64,
    /// The clinical text used for training (the GPT-4 summary when one is loaded, else `note`).
    pub note: String,
}

impl Sample {
    /// The value of one of [`ATTRIBUTES`] (or `maritalstatus`).
    pub fn attribute(&self, name: &str) -> Option<i64> {
        match name {
            "race" => Some(self.race),
            "gender" => Some(self.gender),
            "ethnicity" => Some(self.ethnicity),
            "language" => Some(self.language),
            "maritalstatus" => Some(self.maritalstatus),
            _ => None,
        }
    }
}

/// What to do with a file that cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnError {
    /// Stop with an error naming the file. The default.
    #[default]
    Fail,
    /// Skip it and count it in [`Loaded::skipped`].
    Skip,
}

/// Options of [`load_split`].
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// A summary CSV (column 0 file name, column 2 summary) whose text replaces the npz note;
    /// `None` uses the npz `note`.
    pub summary_csv: Option<PathBuf>,
    /// Drop samples whose race, gender, ethnicity or language is -1. `None` does what FairCLIP
    /// does: drop them in validation and test, keep them in training.
    pub filter_unknown: Option<bool>,
    /// Unreadable files.
    pub on_error: OnError,
    /// Keep everything but the images' pixels (their sizes only): the streaming pipeline
    /// decodes them when a batch needs them. With [`OnError::Fail`] only the images' headers
    /// are read; with [`OnError::Skip`] every file is read in full once, so that a corrupt
    /// one is skipped now rather than found in the middle of training.
    pub index_only: bool,
}

/// A loaded split.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// The samples, in file-name order.
    pub samples: Vec<Sample>,
    /// Files skipped with [`OnError::Skip`], with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Samples dropped by the unknown-attribute filter.
    pub filtered_unknown: usize,
    /// The split's folder (a sample's file is `dir.join(&sample.file)`).
    pub dir: PathBuf,
}

/// The folder of a split under `root`.
pub fn split_dir(root: &Path, split: Split) -> Result<PathBuf> {
    split.folders().iter().map(|f| root.join(f)).find(|p| p.is_dir()).ok_or_else(|| Error::Invalid(format!("{}: no {} folder", root.display(), split.folders().join(" or "))))
}

/// Loads one split of a FairVLMed-format folder.
pub fn load_split(root: &Path, split: Split, opts: &LoadOptions) -> Result<Loaded> {
    let dir = split_dir(root, split)?;
    let summaries = match &opts.summary_csv {
        Some(p) => Some(read_summary_csv(p)?),
        None => None,
    };
    let files = npz_files(&dir)?;
    let filter = opts.filter_unknown.unwrap_or(split != Split::Training);
    let mut out = Loaded { dir: dir.clone(), ..Loaded::default() };
    // Skipping unreadable files needs them read in full now: a corrupt image found later
    // could not be skipped without changing the epoch's batches.
    let read = match (opts.index_only, opts.on_error) {
        (true, OnError::Fail) => read_sample_index,
        (true, OnError::Skip) => read_sample_checked,
        (false, _) => read_sample,
    };
    for path in files {
        let sample = read(&path).and_then(|mut s| {
            if let Some(map) = &summaries {
                s.note = map.get(&s.file).cloned().ok_or_else(|| {
                    Error::Invalid(format!("{}: no summary for {} in {}", path.display(), s.file, opts.summary_csv.as_deref().unwrap_or(Path::new("")).display()))
                })?;
            }
            Ok(s)
        });
        match (sample, opts.on_error) {
            (Ok(s), _) => {
                if filter && ATTRIBUTES.iter().any(|a| s.attribute(a) == Some(-1)) {
                    out.filtered_unknown += 1;
                } else {
                    out.samples.push(s);
                }
            }
            (Err(e), OnError::Skip) => out.skipped.push((path, e.to_string())),
            (Err(e), OnError::Fail) => return Err(e),
        }
    }
    Ok(out)
}

/// Reads one `data_XXXXX.npz`.
pub fn read_sample(path: &Path) -> Result<Sample> {
    let f = NpzFields::read(path)?;
    let image = f.image("slo_fundus")?;
    sample_from(&f, image)
}

/// Reads one `data_XXXXX.npz` without its image's pixels (the image's size only, from its
/// header): what the streaming pipeline indexes, decoding the image when a batch needs it.
pub fn read_sample_index(path: &Path) -> Result<Sample> {
    let f = NpzFields::read_except(path, &["slo_fundus", "oct_bscans"])?;
    let (height, width) = f.image_shape("slo_fundus")?;
    sample_from(&f, GrayImage { height, width, pixels: vec![] })
}

/// [`read_sample`] without keeping the pixels: the whole file is read and checked.
fn read_sample_checked(path: &Path) -> Result<Sample> {
    let mut s = read_sample(path)?;
    s.image.pixels = vec![];
    Ok(s)
}

fn sample_from(f: &NpzFields<'_>, image: GrayImage) -> Result<Sample> {
    let note = match f.get("note")?.data {
        NpyData::Str(ref v) if v.len() == 1 => v[0].clone(),
        _ => return Err(f.wrong("note", "one unicode string")),
    };
    Ok(Sample {
        file: f.file_name(),
        image,
        glaucoma: f.label("glaucoma")?,
        race: f.code("race", ATTRIBUTE_VALUES[0])?,
        gender: f.code("gender", ATTRIBUTE_VALUES[1])?,
        ethnicity: f.code("ethnicity", ATTRIBUTE_VALUES[2])?,
        language: f.code("language", ATTRIBUTE_VALUES[3])?,
        maritalstatus: f.int_or("maritalstatus", -1),
        age: f.get("age")?.as_float().ok_or_else(|| f.wrong("age", "one number"))?,
        note,
    })
}

/// The `.npz` files of a folder, sorted by name.
pub(crate) fn npz_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io { path: dir.to_owned(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "npz"))
        .collect();
    files.sort();
    Ok(files)
}

/// The arrays of one subject's npz, read with errors that name the file and the key.
pub(crate) struct NpzFields<'a> {
    path: &'a Path,
    arrays: std::collections::BTreeMap<String, NpyArray>,
    shapes: std::collections::BTreeMap<String, Vec<usize>>,
}

impl<'a> NpzFields<'a> {
    pub(crate) fn read(path: &'a Path) -> Result<Self> {
        Ok(NpzFields { path, arrays: read_npz(path)?, shapes: Default::default() })
    }

    /// Every array but `skip`, whose shapes alone are read.
    pub(crate) fn read_except(path: &'a Path, skip: &[&str]) -> Result<Self> {
        let keys = crate::decode::npz_keys(path)?;
        let (skipped, kept): (Vec<&String>, Vec<&String>) = keys.iter().partition(|k| skip.contains(&k.as_str()));
        let kept: Vec<&str> = kept.into_iter().map(String::as_str).collect();
        let arrays = crate::decode::read_npz_arrays(path, &kept)?.into_iter().zip(&kept).map(|(a, k)| (k.to_string(), a)).collect();
        let shapes = skipped.into_iter().map(|k| Ok((k.clone(), crate::decode::npz_array_shape(path, k)?))).collect::<Result<_>>()?;
        Ok(NpzFields { path, arrays, shapes })
    }

    /// The shape of a non-empty 3-d volume array, read or skipped.
    pub(crate) fn volume_shape(&self, key: &str) -> Result<[usize; 3]> {
        let shape = match self.shapes.get(key) {
            Some(s) => s.clone(),
            None => self.get(key)?.shape.clone(),
        };
        match shape.as_slice() {
            [d, h, w] if *d > 0 && *h > 0 && *w > 0 => Ok([*d, *h, *w]),
            _ => Err(self.wrong(key, &format!("a non-empty 3-d volume [scans, height, width], got shape {shape:?}"))),
        }
    }

    /// The (height, width) of a 2-d image array, read or skipped.
    pub(crate) fn image_shape(&self, key: &str) -> Result<(usize, usize)> {
        let shape = match self.shapes.get(key) {
            Some(s) => s.clone(),
            None => self.get(key)?.shape.clone(),
        };
        match shape.as_slice() {
            [h, w] if *h > 0 && *w > 0 => crate::Limits::current().check_image(self.path, *w, *h).map(|()| (*h, *w)),
            _ => Err(self.wrong(key, &format!("a 2-d image, got shape {shape:?}"))),
        }
    }

    pub(crate) fn file_name(&self) -> String {
        self.path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default()
    }

    pub(crate) fn wrong(&self, key: &str, what: &str) -> Error {
        Error::Npz { path: self.path.to_owned(), message: format!("key '{key}': expected {what}") }
    }

    pub(crate) fn get(&self, key: &str) -> Result<&NpyArray> {
        self.arrays.get(key).ok_or_else(|| Error::Npz {
            path: self.path.to_owned(),
            message: format!("missing key '{key}' (keys: {})", self.arrays.keys().cloned().collect::<Vec<_>>().join(", ")),
        })
    }

    pub(crate) fn int(&self, key: &str) -> Result<i64> {
        self.get(key)?.as_int().ok_or_else(|| self.wrong(key, "one integer"))
    }

    /// An attribute's code: one of `values`' positions, or -1 (unknown). Any other code would
    /// otherwise be reported as an "Unknown" group without a word.
    pub(crate) fn code(&self, key: &str, values: &[&str]) -> Result<i64> {
        let v = self.int(key)?;
        if v == -1 || (0..values.len() as i64).contains(&v) {
            Ok(v)
        } else {
            let known: Vec<String> = values.iter().enumerate().map(|(i, n)| format!("{i} ({n})")).collect();
            Err(self.wrong(key, &format!("{}, or -1 for unknown; got {v}", known.join(", "))))
        }
    }

    pub(crate) fn int_or(&self, key: &str, default: i64) -> i64 {
        self.arrays.get(key).and_then(NpyArray::as_int).unwrap_or(default)
    }

    /// A 0/1 label.
    pub(crate) fn label(&self, key: &str) -> Result<u8> {
        match self.int(key)? {
            v @ 0..=1 => Ok(v as u8),
            v => Err(self.wrong(key, &format!("0 or 1, got {v}"))),
        }
    }

    /// A 2-d image.
    pub(crate) fn image(&self, key: &str) -> Result<GrayImage> {
        let img = self.get(key)?;
        let (height, width) = match img.shape.as_slice() {
            [h, w] if *h > 0 && *w > 0 => (*h, *w),
            _ => return Err(self.wrong(key, &format!("a 2-d image with both sides above 0, got shape {:?}", img.shape))),
        };
        crate::Limits::current().check_image(self.path, width, height)?;
        let pixels = img.to_f32().ok_or_else(|| self.wrong(key, "numbers"))?;
        if let Some(v) = pixels.iter().find(|v| !v.is_finite()) {
            return Err(self.wrong(key, &format!("numbers, got {v}")));
        }
        Ok(GrayImage { height, width, pixels })
    }
}

/// Reads a summary CSV (header line; column 0 the npz file name, column 2 the summary), as
/// FairCLIP's `fair_vl_med_dataset` does (both stripped of surrounding whitespace).
pub fn read_summary_csv(path: &Path) -> Result<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let mut out = HashMap::new();
    for (line, record) in csv_records(&text, path)?.into_iter().skip(1) {
        if record.len() < 3 {
            return Err(Error::Csv { path: path.to_owned(), line, message: format!("{} fields, expected at least 3", record.len()) });
        }
        out.insert(record[0].trim().to_owned(), record[2].trim().to_owned());
    }
    Ok(out)
}

/// RFC 4180 records with the line each starts on; blank lines skipped.
pub(crate) fn csv_records(text: &str, path: &Path) -> Result<Vec<(usize, Vec<String>)>> {
    let mut records = Vec::new();
    let mut field = String::new();
    let mut record = Vec::new();
    let (mut line, mut start_line) = (1usize, 1usize);
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\n') => {
                record.push(std::mem::take(&mut field));
                if !(record.len() == 1 && record[0].trim_end_matches('\r').is_empty()) {
                    if let Some(last) = record.last_mut() {
                        if last.ends_with('\r') {
                            last.pop();
                        }
                    }
                    records.push((start_line, std::mem::take(&mut record)));
                }
                record.clear();
                line += 1;
                start_line = line;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(Error::Csv { path: path.to_owned(), line: start_line, message: "unterminated quoted field".into() });
    }
    if !field.is_empty() || !record.is_empty() {
        record.push(field);
        records.push((start_line, record));
    }
    Ok(records)
}

/// FairCLIP's `truncate_note`: longer than `max_chars` characters, cut to `max_chars` and back
/// to the last space.
pub fn truncate_note(note: &str, max_chars: usize) -> String {
    if note.chars().count() <= max_chars {
        return note.to_owned();
    }
    let cut: String = note.chars().take(max_chars).collect();
    match cut.rfind(' ') {
        Some(i) => cut[..i].to_owned(),
        // Python's note[:note.rfind(' ')] with rfind = -1 drops the last character.
        None => cut.chars().take(max_chars.saturating_sub(1)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_matches_fairclip() {
        assert_eq!(truncate_note("short note", 180), "short note");
        assert_eq!(truncate_note("abc def ghi", 9), "abc def");
        assert_eq!(truncate_note("abcdefghij", 5), "abcd");
    }

    #[test]
    fn csv_records_handle_quotes() {
        let r = csv_records("a,b,c\n\"x.npz\",1,\"summary, with \"\"quotes\"\"\nand a line\"\n\ny,2,z\n", Path::new("s.csv")).unwrap();
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].1[2], "summary, with \"quotes\"\nand a line");
        assert_eq!(r[2].0, 5);
        assert!(csv_records("a\n\"open", Path::new("s.csv")).is_err());
    }
}
