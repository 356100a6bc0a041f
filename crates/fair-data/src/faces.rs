//! Face-attribute datasets for fairness-aware LoRA: UTKFace (labels in the file names) and
//! CelebA (attribute and partition lists), indexed without decoding the images, which are read
//! and resized when a split is prepared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
use crate::fairvlmed::Split;

/// One face image and its labels.
#[derive(Debug, Clone, PartialEq)]
pub struct FaceRecord {
    /// The image file.
    pub path: PathBuf,
    /// The official split when the dataset has one (CelebA), else `None`.
    pub split: Option<Split>,
    /// Labels by name: UTKFace `age`, `gender` (0 male, 1 female), `race` (0 White, 1 Black,
    /// 2 Asian, 3 Indian, 4 Other); CelebA its 40 attributes as 0/1.
    pub labels: BTreeMap<String, i64>,
}

impl FaceRecord {
    /// A label, or an error naming the file and the label names it has.
    pub fn label(&self, name: &str) -> Result<i64> {
        self.labels
            .get(name)
            .copied()
            .ok_or_else(|| Error::Invalid(format!("{}: no label '{name}' (labels: {})", self.path.display(), self.labels.keys().cloned().collect::<Vec<_>>().join(", "))))
    }
}

/// An indexed face dataset.
#[derive(Debug, Clone, Default)]
pub struct FaceIndex {
    /// The usable images, sorted by file name.
    pub records: Vec<FaceRecord>,
    /// Files that were skipped, with the reason (malformed UTKFace names).
    pub skipped: Vec<(PathBuf, String)>,
}

/// Indexes a UTKFace folder (`age_gender_race_date.jpg`, e.g. `25_1_3_20170119171424.jpg`).
/// A name that does not parse, or whose gender or race code is out of range, is reported in
/// [`FaceIndex::skipped`] (the public release has a few such names).
pub fn load_utkface(dir: &Path) -> Result<FaceIndex> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| Error::Io { path: dir.to_owned(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("jpg") || x.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    let mut out = FaceIndex::default();
    for path in files {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match parse_utkface_name(&name) {
            Ok((age, gender, race)) => {
                let labels = [("age", age), ("gender", gender), ("race", race)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
                out.records.push(FaceRecord { path, split: None, labels });
            }
            Err(why) => out.skipped.push((path, why)),
        }
    }
    if out.records.is_empty() {
        return Err(Error::Invalid(format!("{}: no UTKFace image (age_gender_race_date.jpg)", dir.display())));
    }
    Ok(out)
}

/// `(age, gender, race)` from a UTKFace file name.
///
/// ```
/// assert_eq!(fair_data::parse_utkface_name("25_1_3_20170119171424.jpg.chip.jpg"), Ok((25, 1, 3)));
/// assert!(fair_data::parse_utkface_name("39_1_20170116174525125.jpg.chip.jpg").is_err());
/// ```
pub fn parse_utkface_name(name: &str) -> std::result::Result<(i64, i64, i64), String> {
    let parts: Vec<&str> = name.split('_').collect();
    if parts.len() < 4 {
        return Err(format!("'{name}': expected age_gender_race_date.jpg"));
    }
    let num = |s: &str, what: &str| s.parse::<i64>().map_err(|_| format!("'{name}': {what} '{s}' is not a number"));
    let (age, gender, race) = (num(parts[0], "age")?, num(parts[1], "gender")?, num(parts[2], "race")?);
    if !(0..=120).contains(&age) || !(0..=1).contains(&gender) || !(0..=4).contains(&race) {
        return Err(format!("'{name}': age {age}, gender {gender}, race {race} out of range (age 0-120, gender 0-1, race 0-4)"));
    }
    Ok((age, gender, race))
}

/// Indexes CelebA under `root`: `list_attr_celeba.txt` (a count line, the attribute names,
/// then `file ±1 ...`), `list_eval_partition.txt` (`file 0|1|2`) and `img_align_celeba/`.
/// Attributes become 0/1. A malformed line is an error naming the file and the line.
pub fn load_celeba(root: &Path) -> Result<FaceIndex> {
    let read = |name: &str| -> Result<(PathBuf, String)> {
        let p = root.join(name);
        let text = std::fs::read_to_string(&p).map_err(|source| Error::Io { path: p.clone(), source })?;
        Ok((p, text))
    };
    let (attr_path, attrs) = read("list_attr_celeba.txt")?;
    let (part_path, parts) = read("list_eval_partition.txt")?;
    let bad = |path: &Path, line: usize, message: String| Error::Csv { path: path.to_owned(), line, message };
    let mut split_of = BTreeMap::new();
    for (i, line) in parts.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let split = match f.as_slice() {
            [_, "0"] => Split::Training,
            [_, "1"] => Split::Validation,
            [_, "2"] => Split::Test,
            _ => return Err(bad(&part_path, i + 1, format!("expected 'file 0|1|2', got '{line}'"))),
        };
        split_of.insert(f[0].to_string(), split);
    }
    let mut lines = attrs.lines().enumerate();
    let _count = lines.next();
    let names: Vec<String> = match lines.next() {
        Some((_, l)) => l.split_whitespace().map(str::to_string).collect(),
        None => return Err(bad(&attr_path, 2, "missing the line of attribute names".into())),
    };
    let images = root.join("img_align_celeba");
    let mut out = FaceIndex::default();
    for (i, line) in lines.filter(|(_, l)| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != names.len() + 1 {
            return Err(bad(&attr_path, i + 1, format!("{} values for {} attributes", f.len().saturating_sub(1), names.len())));
        }
        let mut labels = BTreeMap::new();
        for (n, v) in names.iter().zip(&f[1..]) {
            let v = match *v {
                "1" => 1,
                "-1" | "0" => 0,
                other => return Err(bad(&attr_path, i + 1, format!("{n} = '{other}': expected 1 or -1"))),
            };
            labels.insert(n.clone(), v);
        }
        let split = split_of.get(f[0]).copied().ok_or_else(|| bad(&part_path, 0, format!("{} is not in the partition list", f[0])))?;
        out.records.push(FaceRecord { path: images.join(f[0]), split: Some(split), labels });
    }
    out.records.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Reads a face image as RGB bytes resized to `size x size` (bilinear, as torchvision's
/// `Resize((size, size))` without antialiasing differences that matter at these sizes).
/// Returns `3 * size * size` values, channel-last.
pub fn load_face_image(path: &Path, size: usize) -> Result<Vec<u8>> {
    let img = image::open(path).map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    let rgb = img.to_rgb8();
    let resized = image::imageops::resize(&rgb, size as u32, size as u32, image::imageops::FilterType::Triangle);
    Ok(resized.into_raw())
}

/// Splits record indices into disjoint developer and auditor pools, `auditor_fraction` of
/// them to the auditor, shuffled by `seed`: the developer never sees the auditor's images
/// (or their sensitive labels).
///
/// ```
/// let (dev, aud) = fair_data::disjoint_pools(10, 0.3, 7);
/// assert_eq!((dev.len(), aud.len()), (7, 3));
/// assert!(dev.iter().all(|i| !aud.contains(i)));
/// ```
pub fn disjoint_pools(n: usize, auditor_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut idx: Vec<usize> = (0..n).collect();
    idx.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let k = ((n as f64) * auditor_fraction.clamp(0.0, 1.0)).round() as usize;
    let auditor = idx.split_off(n - k);
    let (mut dev, mut aud) = (idx, auditor);
    dev.sort_unstable();
    aud.sort_unstable();
    (dev, aud)
}
