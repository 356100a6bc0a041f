//! The generic dataset format, after Hugging Face's `imagefolder`: a `metadata.csv` (or
//! `metadata.jsonl`) beside the images with a `file_name` column (a path relative to the
//! metadata file's folder), a label column, an optional text column, a split column (or one
//! metadata file per split folder), and any number of sensitive-attribute columns whose values
//! are kept as the strings in the file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::attributes::{Attributes, Column};
use crate::error::{Error, Result};
use crate::fairvlmed::{csv_records, LoadOptions, OnError, Split};

/// Which columns of the metadata mean what: `[data.folder]` in an experiment.
///
/// ```
/// use fair_data::{load_folder, FolderSpec, LoadOptions};
/// let dir = std::env::temp_dir().join(format!("folder-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let mut csv = String::from("file_name,split,dx,site\n");
/// for (i, split) in ["train", "train", "validation", "validation", "test", "test"].iter().enumerate() {
///     image::GrayImage::new(8, 6).save(dir.join(format!("{i}.png")))?;
///     csv += &format!("{i}.png,{split},{},{}\n", if i % 2 == 0 { "normal" } else { "glaucoma" }, ["A", "B"][i % 2]);
/// }
/// std::fs::write(dir.join("metadata.csv"), csv)?;
/// let spec = FolderSpec { label: "dx".into(), classes: vec!["normal".into(), "glaucoma".into()], attributes: vec!["site".into()], ..FolderSpec::default() };
/// let data = load_folder(&dir, &spec, &LoadOptions::default())?;
/// assert_eq!(data.splits[0].labels, vec![0, 1]);
/// assert_eq!(data.splits[2].attributes.column("site")?.labels(), vec!["A", "B"]);
/// # std::fs::remove_dir_all(&dir).ok();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FolderSpec {
    /// The metadata file, relative to the root. Unset: `metadata.csv` or `metadata.jsonl` in
    /// the root (with a split column), else one in each split folder (`train/`,
    /// `validation/`, `test/`).
    pub metadata: Option<PathBuf>,
    /// The column of image paths, relative to the metadata file's folder.
    pub file_column: String,
    /// The label column.
    pub label: String,
    /// The label values: the negative class, then the positive one.
    pub classes: Vec<String>,
    /// The text column (clinical note, caption); unset: no text.
    pub text: Option<String>,
    /// The split column (values `train`/`training`, `validation`/`val`/`valid`,
    /// `test`/`testing`), read when the metadata is one file.
    pub split_column: String,
    /// The sensitive-attribute columns.
    pub attributes: Vec<String>,
    /// An attribute's values in the order reports list them (`[data.folder.order]`); any
    /// other value is an error. Unset: the values in sorted order.
    pub order: BTreeMap<String, Vec<String>>,
    /// Attribute cells that mean "unknown" (compared after trimming, ignoring case).
    pub missing: Vec<String>,
}

impl Default for FolderSpec {
    fn default() -> Self {
        Self {
            metadata: None,
            file_column: "file_name".into(),
            label: "label".into(),
            classes: vec!["0".into(), "1".into()],
            text: None,
            split_column: "split".into(),
            attributes: vec![],
            order: BTreeMap::new(),
            missing: vec!["".into(), "-1".into(), "unknown".into(), "NA".into()],
        }
    }
}

impl FolderSpec {
    /// Checks what needs no file: two distinct classes, distinct columns.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("data.folder.{m}")));
        if self.classes.len() != 2 {
            return bad(format!("classes = {:?}: expected two values, the negative class then the positive one (multi-class training is not supported yet)", self.classes));
        }
        if self.classes[0] == self.classes[1] {
            return bad(format!("classes = {:?}: the two classes must differ", self.classes));
        }
        for (i, a) in self.attributes.iter().enumerate() {
            if self.attributes[..i].contains(a) {
                return bad(format!("attributes: '{a}' appears twice"));
            }
            if *a == self.label || *a == self.file_column || Some(a) == self.text.as_ref() {
                return bad(format!("attributes: '{a}' is also the label, file or text column"));
            }
        }
        if let Some(k) = self.order.keys().find(|k| !self.attributes.contains(k)) {
            return bad(format!("order.{k}: '{k}' is not one of data.folder.attributes ({})", self.attributes.join(", ")));
        }
        Ok(())
    }

    fn is_missing(&self, cell: &str) -> bool {
        let cell = cell.trim();
        self.missing.iter().any(|m| m.trim().eq_ignore_ascii_case(cell))
    }
}

/// One split of a generic dataset, indexed: the images are read when a batch needs them.
#[derive(Debug, Clone)]
pub struct FolderSplit {
    /// Which split.
    pub split: Split,
    /// The metadata file its rows come from.
    pub metadata: PathBuf,
    /// Each row's image file.
    pub files: Vec<PathBuf>,
    /// Each row's line in the metadata file (1-based; a CSV header is line 1).
    pub lines: Vec<usize>,
    /// Each row's class (0 negative, 1 positive).
    pub labels: Vec<u8>,
    /// The label column's name.
    pub label_name: String,
    /// The file column's name.
    pub file_column: String,
    /// Each row's text (empty without a text column).
    pub texts: Vec<String>,
    /// The attributes, with the value names of the file.
    pub attributes: Attributes,
    /// Each image's (width, height), from its header.
    pub sizes: Vec<(usize, usize)>,
    /// Rows whose image could not be read, with the reason (`on_error = "skip"`).
    pub skipped: Vec<(PathBuf, String)>,
    /// Rows dropped for an unknown attribute value.
    pub filtered_unknown: usize,
}

impl FolderSplit {
    /// The split's images as a source for [`crate::Prepared`]: errors name the metadata
    /// line and column of the file.
    pub fn files(&self) -> crate::decode::Files {
        let origins = self.lines.iter().map(|l| format!("{}:{l}, column '{}'", self.metadata.display(), self.file_column)).collect();
        crate::decode::Files { kind: crate::decode::FileKind::Image, paths: self.files.clone(), origins }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A generic dataset's three splits and what deserves a warning (training goes on).
#[derive(Debug, Clone)]
pub struct FolderDataset {
    /// Training, validation, test.
    pub splits: [FolderSplit; 3],
    /// Things a user should know, each naming the file and column.
    pub warnings: Vec<String>,
}

/// One metadata row: its line and its cells by column name.
struct Row {
    line: usize,
    cells: BTreeMap<String, String>,
}

/// A metadata file: its split (`None`: read from the split column), path, columns and rows.
type Source = (Option<Split>, PathBuf, Vec<String>, Vec<Row>);

/// A metadata file's rows and its columns (in file order).
fn read_metadata(path: &Path) -> Result<(Vec<String>, Vec<Row>)> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_owned(), source })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl")) {
        let mut columns: Vec<String> = Vec::new();
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let bad = |message: String| Error::Csv { path: path.to_owned(), line: i + 1, message };
            let value: serde_json::Value = serde_json::from_str(line).map_err(|e| bad(format!("not a JSON object: {e}")))?;
            let obj = value.as_object().ok_or_else(|| bad("expected a JSON object per line".into()))?;
            let mut cells = BTreeMap::new();
            for (k, v) in obj {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
                let cell = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                cells.insert(k.clone(), cell);
            }
            rows.push(Row { line: i + 1, cells });
        }
        // A key a line leaves out is an empty cell (missing, for an attribute).
        for r in &mut rows {
            for c in &columns {
                r.cells.entry(c.clone()).or_default();
            }
        }
        return Ok((columns, rows));
    }
    let mut records = csv_records(text, path)?.into_iter();
    let Some((_, header)) = records.next() else {
        return Err(Error::Csv { path: path.to_owned(), line: 1, message: "empty metadata file: expected a header line".into() });
    };
    let columns: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    if let Some((i, c)) = columns.iter().enumerate().find(|(i, c)| columns[..*i].contains(c)) {
        return Err(Error::Csv {
            path: path.to_owned(),
            line: 1,
            message: format!("column '{c}' appears twice (fields {} and {})", columns.iter().position(|d| d == c).unwrap_or(0) + 1, i + 1),
        });
    }
    let mut rows = Vec::new();
    for (line, record) in records {
        if record.len() != columns.len() {
            return Err(Error::Csv { path: path.to_owned(), line, message: format!("{} fields, the header has {}", record.len(), columns.len()) });
        }
        rows.push(Row { line, cells: columns.iter().cloned().zip(record).collect() });
    }
    Ok((columns, rows))
}

fn split_of(name: &str) -> Option<Split> {
    match name.trim().to_ascii_lowercase().as_str() {
        "train" | "training" => Some(Split::Training),
        "validation" | "val" | "valid" | "dev" => Some(Split::Validation),
        "test" | "testing" => Some(Split::Test),
        _ => None,
    }
}

const SPLIT_NAMES: [&str; 3] = ["train", "validation", "test"];

/// The metadata file in `dir`, if there is one.
fn metadata_in(dir: &Path) -> Option<PathBuf> {
    ["metadata.csv", "metadata.jsonl"].iter().map(|f| dir.join(f)).find(|p| p.is_file())
}

/// Reads a generic dataset's metadata and checks every row: the columns exist, labels are
/// classes, image files exist and their headers read (files that do not follow
/// `opts.on_error`). Rows with an unknown attribute are dropped from validation and test and
/// kept in training unless `opts.filter_unknown` says otherwise, as for FairVLMed.
pub fn load_folder(root: &Path, spec: &FolderSpec, opts: &LoadOptions) -> Result<FolderDataset> {
    spec.validate()?;
    // (split or None = read the split column, metadata file, its rows)
    let mut sources: Vec<Source> = Vec::new();
    let single = match &spec.metadata {
        Some(m) => Some(root.join(m)),
        None => metadata_in(root),
    };
    match single {
        Some(path) => {
            let (columns, rows) = read_metadata(&path)?;
            sources.push((None, path, columns, rows));
        }
        None => {
            for split in [Split::Training, Split::Validation, Split::Test] {
                let names: &[&str] = match split {
                    Split::Training => &["train", "training"],
                    Split::Validation => &["validation", "val", "valid"],
                    Split::Test => &["test", "testing"],
                };
                let path = names.iter().find_map(|n| metadata_in(&root.join(n))).ok_or_else(|| {
                    Error::Invalid(format!(
                        "{}: no metadata.csv or metadata.jsonl, neither in the folder (with a '{}' column) nor in a {} folder",
                        root.display(),
                        spec.split_column,
                        names.join(" or ")
                    ))
                })?;
                let (columns, rows) = read_metadata(&path)?;
                sources.push((Some(split), path, columns, rows));
            }
        }
    }

    // Every named column exists, in every metadata file.
    for (split, path, columns, _) in &sources {
        let mut needed: Vec<(&str, String)> = vec![(spec.file_column.as_str(), "data.folder.file_column".into()), (spec.label.as_str(), "data.folder.label".into())];
        if let Some(t) = &spec.text {
            needed.push((t, "data.folder.text".into()));
        }
        if split.is_none() {
            needed.push((&spec.split_column, "data.folder.split_column".into()));
        }
        needed.extend(spec.attributes.iter().map(|a| (a.as_str(), "data.folder.attributes".to_string())));
        for (col, key) in needed {
            if !columns.iter().any(|c| c == col) {
                return Err(Error::Invalid(format!("{}: no column '{col}' ({key}); the columns are: {}", path.display(), columns.join(", "))));
            }
        }
    }

    // The values of each attribute: the configured order, else all known values sorted. An
    // attribute with fewer than two known values compares no groups: a warning.
    let mut values: Vec<Vec<String>> = Vec::new();
    let mut warnings = Vec::new();
    for a in &spec.attributes {
        let seen: BTreeSet<&str> = sources.iter().flat_map(|(_, _, _, rows)| rows.iter().map(move |r| r.cells[a].trim())).filter(|v| !spec.is_missing(v)).collect();
        match spec.order.get(a) {
            Some(order) => {
                for (_, path, _, rows) in &sources {
                    if let Some(r) = rows.iter().find(|r| !spec.is_missing(&r.cells[a]) && !order.iter().any(|o| o == r.cells[a].trim())) {
                        return Err(Error::Csv {
                            path: path.clone(),
                            line: r.line,
                            message: format!("column '{a}': value '{}' is not in data.folder.order.{a} ({})", r.cells[a].trim(), order.join(", ")),
                        });
                    }
                }
                values.push(order.clone());
            }
            None => values.push(seen.iter().map(|v| v.to_string()).collect()),
        }
        if seen.len() < 2 {
            warnings.push(format!(
                "{}: column '{a}' has {} known value{} ({}): its fairness metrics compare no groups",
                sources.iter().map(|s| s.1.display().to_string()).collect::<Vec<_>>().join(", "),
                seen.len(),
                if seen.len() == 1 { "" } else { "s" },
                values.last().map(|v| v.join(", ")).unwrap_or_default()
            ));
        }
    }

    let mut splits = Vec::with_capacity(3);
    for split in [Split::Training, Split::Validation, Split::Test] {
        let filter = opts.filter_unknown.unwrap_or(split != Split::Training);
        let mut out = FolderSplit {
            split,
            metadata: PathBuf::new(),
            files: vec![],
            lines: vec![],
            labels: vec![],
            label_name: spec.label.clone(),
            file_column: spec.file_column.clone(),
            texts: vec![],
            attributes: Attributes::default(),
            sizes: vec![],
            skipped: vec![],
            filtered_unknown: 0,
        };
        let mut codes: Vec<Vec<i64>> = vec![Vec::new(); spec.attributes.len()];
        let mut split_values = BTreeSet::new();
        for (fixed, path, _, rows) in &sources {
            if fixed.is_some_and(|s| s != split) {
                continue;
            }
            out.metadata = path.clone();
            let base = path.parent().unwrap_or(Path::new("."));
            for r in rows {
                let at = |message: String| Error::Csv { path: path.clone(), line: r.line, message };
                if fixed.is_none() {
                    let name = r.cells[&spec.split_column].trim();
                    split_values.insert(name.to_owned());
                    match split_of(name) {
                        Some(s) if s == split => {}
                        Some(_) => continue,
                        None => return Err(at(format!("column '{}': split '{name}': expected one of {}", spec.split_column, SPLIT_NAMES.join(", ")))),
                    }
                }
                let label = r.cells[&spec.label].trim();
                let class = spec
                    .classes
                    .iter()
                    .position(|c| c == label)
                    .ok_or_else(|| at(format!("column '{}': value '{label}' is not one of the classes {:?} (data.folder.classes)", spec.label, spec.classes)))?;
                let row_codes: Vec<i64> = spec
                    .attributes
                    .iter()
                    .zip(&values)
                    .map(|(a, v)| {
                        let cell = r.cells[a].trim();
                        if spec.is_missing(cell) {
                            -1
                        } else {
                            v.iter().position(|x| x == cell).map_or(-1, |k| k as i64)
                        }
                    })
                    .collect();
                if filter && row_codes.iter().any(|&c| c < 0) {
                    out.filtered_unknown += 1;
                    continue;
                }
                let file_cell = r.cells[&spec.file_column].trim();
                if file_cell.is_empty() {
                    return Err(at(format!("column '{}': empty file name", spec.file_column)));
                }
                let file = base.join(file_cell);
                let size = if file.is_file() {
                    // Skipping needs the whole image read now (a corrupt one found later could not
                    // be skipped without changing the epoch's batches); failing can wait.
                    let read = match opts.on_error {
                        OnError::Fail => crate::decode::image_dimensions(&file),
                        OnError::Skip => crate::decode::read_image(&file).map(|d| (d.width, d.height)),
                    };
                    read.map_err(|e| at(format!("column '{}': {e}", spec.file_column)))
                } else {
                    Err(at(format!("column '{}': {} does not exist", spec.file_column, file.display())))
                };
                let size = match (size, opts.on_error) {
                    (Ok(s), _) => s,
                    (Err(e), OnError::Skip) => {
                        out.skipped.push((file, e.to_string()));
                        continue;
                    }
                    (Err(e), OnError::Fail) => return Err(e),
                };
                out.files.push(file);
                out.lines.push(r.line);
                out.labels.push(class as u8);
                out.texts.push(spec.text.as_ref().map(|t| r.cells[t].clone()).unwrap_or_default());
                out.sizes.push(size);
                for (c, v) in codes.iter_mut().zip(row_codes) {
                    c.push(v);
                }
            }
        }
        if out.is_empty() {
            let what = if split_values.is_empty() { String::new() } else { format!(" (split values found: {})", split_values.into_iter().collect::<Vec<_>>().join(", ")) };
            return Err(Error::Invalid(format!("{}: the {} split has no rows{what}", out.metadata.display(), SPLIT_NAMES[split as usize])));
        }
        let columns = spec.attributes.iter().zip(&values).zip(codes).map(|((name, v), codes)| Column { name: name.clone(), values: v.clone(), codes }).collect();
        out.attributes = Attributes::new(columns)?;
        splits.push(out);
    }
    let splits: [FolderSplit; 3] = splits.try_into().map_err(|_| Error::Invalid("three splits".into()))?;
    for w in &warnings {
        tracing::warn!("{w}");
    }
    Ok(FolderDataset { splits, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, csv: &str, images: &[&str]) {
        std::fs::create_dir_all(dir).unwrap();
        for f in images {
            image::GrayImage::new(4, 3).save(dir.join(f)).unwrap();
        }
        std::fs::write(dir.join("metadata.csv"), csv).unwrap();
    }

    fn spec() -> FolderSpec {
        FolderSpec { label: "y".into(), attributes: vec!["site".into()], ..FolderSpec::default() }
    }

    #[test]
    fn bad_input_names_file_line_and_column() {
        let dir = std::env::temp_dir().join(format!("folder-bad-{}", std::process::id()));
        let imgs = ["a.png", "b.png", "c.png"];
        let ok = "file_name,split,y,site\na.png,train,0,A\nb.png,validation,1,B\nc.png,test,0,A\n";
        write(&dir, ok, &imgs);
        let opts = LoadOptions::default();
        assert_eq!(load_folder(&dir, &spec(), &opts).unwrap().splits[0].len(), 1);

        let e = load_folder(&dir, &FolderSpec { attributes: vec!["sex".into()], ..spec() }, &opts).unwrap_err().to_string();
        assert!(e.contains("metadata.csv") && e.contains("no column 'sex'") && e.contains("file_name, split, y, site"), "{e}");

        write(&dir, &ok.replace("b.png,validation,1", "b.png,validation,2"), &[]);
        let e = load_folder(&dir, &spec(), &opts).unwrap_err().to_string();
        assert!(e.contains("metadata.csv:3") && e.contains("column 'y'") && e.contains("value '2'"), "{e}");

        write(&dir, &ok.replace("c.png,test", "missing.png,test"), &[]);
        let e = load_folder(&dir, &spec(), &opts).unwrap_err().to_string();
        assert!(e.contains("metadata.csv:4") && e.contains("missing.png") && e.contains("does not exist"), "{e}");
        let skip = LoadOptions { on_error: OnError::Skip, ..LoadOptions::default() };
        let e = load_folder(&dir, &spec(), &skip).unwrap_err().to_string();
        assert!(e.contains("test split has no rows"), "{e}");

        std::fs::write(dir.join("c.png"), b"not an image").unwrap();
        write(&dir, ok, &[]);
        let e = load_folder(&dir, &spec(), &opts).unwrap_err().to_string();
        assert!(e.contains("metadata.csv:4") && e.contains("c.png") && e.contains("column 'file_name'"), "{e}");

        image::GrayImage::new(4, 3).save(dir.join("c.png")).unwrap();
        write(&dir, &ok.replace(",B\n", ",A\n"), &[]);
        let data = load_folder(&dir, &spec(), &opts).unwrap();
        assert!(data.warnings.iter().any(|w| w.contains("column 'site' has 1 known value")), "{:?}", data.warnings);

        write(&dir, &ok.replace("test", "holdout"), &[]);
        let e = load_folder(&dir, &spec(), &opts).unwrap_err().to_string();
        assert!(e.contains("metadata.csv:4") && e.contains("split 'holdout'"), "{e}");

        write(&dir, &ok.replace("file_name,split,y,site", "file_name,split,y,y"), &[]);
        let e = load_folder(&dir, &FolderSpec { attributes: vec![], ..spec() }, &opts).unwrap_err().to_string();
        assert!(e.contains("metadata.csv:1") && e.contains("column 'y' appears twice"), "{e}");

        // A PNG whose header reads but whose pixels do not: skipped when indexing with
        // on_error = "skip"; with "fail", indexing reads headers only and the batch fails.
        let big = image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([(x * 4) as u8, (y * 4) as u8, ((x + y) * 2) as u8]));
        big.save(dir.join("a.png")).unwrap();
        let bytes = std::fs::read(dir.join("a.png")).unwrap();
        std::fs::write(dir.join("a.png"), &bytes[..bytes.len() / 2]).unwrap();
        write(&dir, &ok.replace("a.png,train,0,A\n", "a.png,train,0,A\nb.png,train,1,B\n"), &[]);
        let data = load_folder(&dir, &spec(), &skip).unwrap();
        assert_eq!((data.splits[0].len(), data.splits[0].skipped.len()), (1, 1), "{:?}", data.splits[0].skipped);
        assert!(data.splits[0].skipped[0].0.ends_with("a.png"));
        assert_eq!(load_folder(&dir, &spec(), &opts).unwrap().splits[0].len(), 2);
        image::GrayImage::new(4, 3).save(dir.join("a.png")).unwrap();

        // A file that breaks after indexing: the batch's error names the metadata line.
        write(&dir, ok, &[]);
        let data = load_folder(&dir, &spec(), &opts).unwrap();
        std::fs::write(dir.join("c.png"), b"broken").unwrap();
        let tok = crate::TextTokenizer::train(&["a b c".to_string()], 300, 8).unwrap();
        let test = crate::Prepared::from_folder(&data.splits[2], 8, &tok, 180).unwrap();
        let e = test.batch::<burn::backend::Flex>(&[0], &Default::default()).unwrap_err().to_string();
        assert!(e.contains("metadata.csv:4, column 'file_name'") && e.contains("c.png"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn per_split_folders_jsonl_order_and_unknowns() {
        let dir = std::env::temp_dir().join(format!("folder-splits-{}", std::process::id()));
        for (split, rows) in [
            ("train", "{\"file_name\": \"a.png\", \"y\": 1}\n{\"file_name\": \"b.png\", \"y\": 0, \"site\": \"B\"}\n"),
            ("val", "{\"file_name\": \"a.png\", \"y\": 1, \"site\": null}\n{\"file_name\": \"b.png\", \"y\": 0, \"site\": \"B\"}\n"),
            ("test", "{\"file_name\": \"a.png\", \"y\": 0, \"site\": \"A\"}\n"),
        ] {
            let d = dir.join(split);
            std::fs::create_dir_all(&d).unwrap();
            for f in ["a.png", "b.png"] {
                image::GrayImage::new(4, 3).save(d.join(f)).unwrap();
            }
            std::fs::write(d.join("metadata.jsonl"), rows).unwrap();
        }
        let spec = FolderSpec { order: [("site".to_string(), vec!["B".to_string(), "A".to_string()])].into(), ..spec() };
        let data = load_folder(&dir, &spec, &LoadOptions::default()).unwrap();
        let [train, val, test] = &data.splits;
        assert_eq!(train.attributes.column("site").unwrap().codes, vec![-1, 0], "unknown kept in training");
        assert_eq!((val.len(), val.filtered_unknown), (1, 1), "dropped from evaluation");
        assert_eq!(test.attributes.column("site").unwrap().labels(), vec!["A"]);
        assert_eq!(train.sizes[0], (4, 3));
        let keep = LoadOptions { filter_unknown: Some(false), ..LoadOptions::default() };
        assert_eq!(load_folder(&dir, &spec, &keep).unwrap().splits[1].len(), 2);
        let strict = FolderSpec { order: [("site".to_string(), vec!["B".to_string()])].into(), ..spec.clone() };
        let e = load_folder(&dir, &strict, &LoadOptions::default()).unwrap_err().to_string();
        assert!(e.contains("metadata.jsonl:1") && e.contains("value 'A'"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
