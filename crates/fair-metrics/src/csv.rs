//! A fast CSV reader for prediction files: a header line, then one row per prediction.
//!
//! Only the columns that are asked for are parsed. Quoted fields (RFC 4180, `""` for a quote)
//! are supported; a file without any quote character is parsed in parallel chunks. Every
//! problem is reported with the file, the line and the column.

use std::borrow::Cow;
use std::io::Read;
use std::path::Path;

use rayon::prelude::*;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::input::{Attribute, Predictions};

/// Which columns hold what.
///
/// ```
/// use fair_metrics::{parse_csv, CsvSpec};
/// let data = b"y,p,race\n1,0.9,Black\n0,0.2,White\n";
/// let spec = CsvSpec::new("y", "p").with_attr("race");
/// let table = parse_csv("preds.csv", data, &spec)?;
/// assert_eq!(table.predictions.len(), 2);
/// assert_eq!(table.attributes[0].levels(), ["Black", "White"]);
/// # Ok::<(), fair_metrics::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CsvSpec {
    /// The label column: 0/1, or the value named by `pos_label` for the positive class.
    pub label: String,
    /// The score column (finite numbers; higher = more positive).
    pub score: String,
    /// Optional hard predictions, coded like the label.
    pub pred: Option<String>,
    /// Optional sample weights (finite, >= 0).
    pub weight: Option<String>,
    /// Sensitive attribute columns.
    pub attrs: Vec<String>,
    /// The label value of the positive class; then any other (single) value is negative.
    pub pos_label: Option<String>,
}

impl CsvSpec {
    /// Label and score columns.
    pub fn new(label: impl Into<String>, score: impl Into<String>) -> Self {
        Self { label: label.into(), score: score.into(), ..Default::default() }
    }
    /// Adds a sensitive attribute column.
    pub fn with_attr(mut self, a: impl Into<String>) -> Self {
        self.attrs.push(a.into());
        self
    }
    /// Sets the hard-prediction column.
    pub fn with_pred(mut self, c: impl Into<String>) -> Self {
        self.pred = Some(c.into());
        self
    }
    /// Sets the weight column.
    pub fn with_weight(mut self, c: impl Into<String>) -> Self {
        self.weight = Some(c.into());
        self
    }
    /// Sets the positive label value.
    pub fn with_pos_label(mut self, v: impl Into<String>) -> Self {
        self.pos_label = Some(v.into());
        self
    }
}

/// What a CSV file holds: the predictions and one [`Attribute`] per attribute column.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Labels, scores, optional predictions and weights.
    pub predictions: Predictions,
    /// The attributes, in the order of [`CsvSpec::attrs`].
    pub attributes: Vec<Attribute>,
}

/// Reads a CSV file, or standard input when `path` is `-`.
pub fn read_csv(path: &Path, spec: &CsvSpec) -> Result<Table> {
    let mut bytes = Vec::new();
    let io = |source| Error::Io { path: path.to_owned(), source };
    if path.as_os_str() == "-" {
        std::io::stdin().lock().read_to_end(&mut bytes).map_err(io)?;
    } else {
        bytes = std::fs::read(path).map_err(io)?;
    }
    parse_csv(&path.display().to_string(), &bytes, spec)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Role {
    Label,
    Score,
    Pred,
    Weight,
    Attr(usize),
}

/// Files smaller than this are parsed on one thread.
const PARALLEL_MIN_BYTES: usize = 1 << 20;

/// Parses CSV bytes; `file` names them in errors.
pub fn parse_csv(file: &str, bytes: &[u8], spec: &CsvSpec) -> Result<Table> {
    let structure = |line: u64, message: String| Error::CsvStructure { file: file.to_owned(), line, message };
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut fields = Vec::new();
    let header_end = match next_record(bytes, 0, &mut fields) {
        Ok(Some((end, _))) if !(fields.len() == 1 && fields[0].is_empty()) => end,
        Ok(_) => return Err(structure(1, "empty file: expected a header line naming the columns".into())),
        Err(Unterminated) => return Err(structure(1, "unterminated quoted field in the header".into())),
    };
    let header: Vec<String> = fields.iter().map(|f| String::from_utf8_lossy(&f.text(bytes)).into_owned()).collect();
    let header_lines = 1 + memchr::memchr_iter(b'\n', &bytes[..header_end]).count() as u64 - u64::from(header_end > 0 && bytes[header_end - 1] == b'\n');

    let mut roles: Vec<(usize, Role)> = Vec::new();
    let mut find = |name: &str, role: Role| -> Result<()> {
        let mut at = header.iter().enumerate().filter(|(_, h)| *h == name).map(|(i, _)| i);
        match (at.next(), at.next()) {
            (Some(i), None) => {
                roles.push((i, role));
                Ok(())
            }
            // Which of the two was meant cannot be known; unrequested duplicates are harmless.
            (Some(i), Some(j)) => Err(Error::Csv {
                file: file.to_owned(),
                line: 1,
                column: name.to_owned(),
                message: format!("the header names this column more than once (fields {} and {}); rename one", i + 1, j + 1),
            }),
            (None, _) => Err(structure(1, format!("no column '{name}' in the header (columns: {})", header.join(", ")))),
        }
    };
    find(&spec.label, Role::Label)?;
    find(&spec.score, Role::Score)?;
    if let Some(p) = &spec.pred {
        find(p, Role::Pred)?;
    }
    if let Some(w) = &spec.weight {
        find(w, Role::Weight)?;
    }
    for (k, a) in spec.attrs.iter().enumerate() {
        find(a, Role::Attr(k))?;
    }

    let body = &bytes[header_end..];
    let parallel = body.len() >= PARALLEL_MIN_BYTES && memchr::memchr(b'"', body).is_none();
    let chunks = if parallel { split_lines(body, rayon::current_num_threads().max(1) * 4) } else { vec![body] };
    let lines: Vec<usize> = chunks.par_iter().map(|c| line_count(c)).collect();
    let total: usize = lines.iter().sum();

    let mut out = Columns::new(total, spec);
    let ctx = Ctx { header: &header, roles: &roles, spec, n_fields: header.len() };
    let results: Vec<ChunkResult> = {
        let mut parts = out.split(&lines);
        chunks.par_iter().zip(parts.par_iter_mut()).map(|(chunk, part)| parse_chunk(chunk, part, &ctx)).collect()
    };

    // First error in file order, with lines counted from the start of the file.
    let mut first_line = header_lines + 1;
    for (r, &l) in results.iter().zip(&lines) {
        if let Some(e) = &r.error {
            let line = first_line + e.line;
            return Err(match &e.column {
                Some(column) => Error::Csv { file: file.to_owned(), line, column: column.clone(), message: e.message.clone() },
                None => Error::CsvStructure { file: file.to_owned(), line, message: e.message.clone() },
            });
        }
        first_line += l as u64;
    }
    merge(file, out, &results, &lines, spec, header_lines)
}

/// The output columns, preallocated for every line so chunks can write in place.
struct Columns {
    labels: Vec<bool>,
    scores: Vec<f64>,
    preds: Option<Vec<bool>>,
    weights: Option<Vec<f64>>,
    codes: Vec<Vec<u32>>,
}

struct Part<'a> {
    labels: &'a mut [bool],
    scores: &'a mut [f64],
    preds: Option<&'a mut [bool]>,
    weights: Option<&'a mut [f64]>,
    codes: Vec<&'a mut [u32]>,
}

impl Columns {
    fn new(n: usize, spec: &CsvSpec) -> Self {
        Self {
            labels: vec![false; n],
            scores: vec![0.0; n],
            preds: spec.pred.as_ref().map(|_| vec![false; n]),
            weights: spec.weight.as_ref().map(|_| vec![0.0; n]),
            codes: spec.attrs.iter().map(|_| vec![0; n]).collect(),
        }
    }

    fn split(&mut self, lens: &[usize]) -> Vec<Part<'_>> {
        fn cut<'a, T>(mut s: &'a mut [T], lens: &[usize]) -> Vec<&'a mut [T]> {
            let mut v = Vec::with_capacity(lens.len());
            for &l in lens {
                let (a, b) = std::mem::take(&mut s).split_at_mut(l);
                v.push(a);
                s = b;
            }
            v
        }
        let mut labels = cut(&mut self.labels, lens).into_iter();
        let mut scores = cut(&mut self.scores, lens).into_iter();
        let mut preds = self.preds.as_mut().map(|p| cut(p, lens).into_iter());
        let mut weights = self.weights.as_mut().map(|w| cut(w, lens).into_iter());
        let mut codes: Vec<_> = self.codes.iter_mut().map(|c| cut(c, lens).into_iter()).collect();
        (0..lens.len())
            .map(|_| Part {
                labels: labels.next().unwrap_or_default(),
                scores: scores.next().unwrap_or_default(),
                preds: preds.as_mut().and_then(Iterator::next),
                weights: weights.as_mut().and_then(Iterator::next),
                codes: codes.iter_mut().map(|c| c.next().unwrap_or_default()).collect(),
            })
            .collect()
    }
}

struct Ctx<'a> {
    header: &'a [String],
    roles: &'a [(usize, Role)],
    spec: &'a CsvSpec,
    n_fields: usize,
}

/// A problem inside a chunk; `line` counts from the chunk's first line (0-based).
struct LocalError {
    line: u64,
    column: Option<String>,
    message: String,
}

/// Distinct values seen in a two-valued column with an explicit positive label, with the line
/// of their first occurrence (at most three are kept: the third is already an error).
#[derive(Default)]
struct Distinct(Vec<(Vec<u8>, u64)>);

impl Distinct {
    fn see(&mut self, v: &[u8], line: u64) {
        if self.0.len() < 3 && !self.0.iter().any(|(x, _)| x == v) {
            self.0.push((v.to_vec(), line));
        }
    }
}

struct ChunkResult<'a> {
    rows: usize,
    levels: Vec<Vec<Cow<'a, [u8]>>>,
    label_values: Distinct,
    pred_values: Distinct,
    error: Option<LocalError>,
}

fn parse_chunk<'a>(chunk: &'a [u8], out: &mut Part<'_>, ctx: &Ctx<'_>) -> ChunkResult<'a> {
    let mut res = ChunkResult { rows: 0, levels: vec![Vec::new(); ctx.spec.attrs.len()], label_values: Distinct::default(), pred_values: Distinct::default(), error: None };
    let mut interners: Vec<FxHashMap<Cow<'a, [u8]>, u32>> = vec![FxHashMap::default(); ctx.spec.attrs.len()];
    let mut fields: Vec<Field> = Vec::with_capacity(ctx.n_fields);
    let mut pos = 0;
    let mut line: u64 = 0;
    let pos_label = ctx.spec.pos_label.as_deref().map(str::as_bytes);
    loop {
        let (next, newlines) = match next_record(chunk, pos, &mut fields) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(Unterminated) => {
                res.error = Some(LocalError { line, column: None, message: "unterminated quoted field (a '\"' is never closed)".into() });
                return res;
            }
        };
        let record_line = line;
        line += newlines;
        pos = next;
        if fields.len() == 1 && fields[0].is_empty() {
            continue; // blank line, skipped as pandas does
        }
        if fields.len() != ctx.n_fields {
            res.error = Some(LocalError { line: record_line, column: None, message: format!("row has {} fields, the header has {}", fields.len(), ctx.n_fields) });
            return res;
        }
        let row = res.rows;
        for &(col, role) in ctx.roles {
            let text = fields[col].text(chunk);
            let fail = |message: String| LocalError { line: record_line, column: Some(ctx.header[col].clone()), message };
            let outcome = match role {
                Role::Label => parse_binary(&text, pos_label, &mut res.label_values, record_line).map(|v| out.labels[row] = v),
                Role::Pred => parse_binary(&text, pos_label, &mut res.pred_values, record_line).map(|v| {
                    if let Some(p) = out.preds.as_deref_mut() {
                        p[row] = v
                    }
                }),
                Role::Score => parse_number(&text).map(|x| {
                    out.scores[row] = x;
                }),
                Role::Weight => parse_number(&text).and_then(|x| {
                    if x < 0.0 {
                        return Err(format!("weight {x} is negative, expected a number >= 0"));
                    }
                    if let Some(w) = out.weights.as_deref_mut() {
                        w[row] = x;
                    }
                    Ok(())
                }),
                Role::Attr(k) => {
                    if text.is_empty() {
                        Err("empty value; every row needs a group (filter unknown rows first, or give them an explicit value such as -1)".to_owned())
                    } else {
                        let map = &mut interners[k];
                        let levels = &res.levels[k];
                        // Sensitive attributes have few values: a scan beats hashing them.
                        let known = if levels.len() <= SCAN_LEVELS { levels.iter().position(|l| short_eq(l, &text)).map(|i| i as u32) } else { map.get(text.as_ref()).copied() };
                        let code = match known {
                            Some(c) => c,
                            None => {
                                let c = res.levels[k].len() as u32;
                                map.insert(text.clone(), c);
                                res.levels[k].push(text.clone());
                                c
                            }
                        };
                        out.codes[k][row] = code;
                        Ok(())
                    }
                }
            };
            if let Err(m) = outcome {
                res.error = Some(fail(m));
                return res;
            }
        }
        res.rows += 1;
    }
    res
}

/// Up to this many distinct values, a column's values are found by a linear scan.
const SCAN_LEVELS: usize = 8;

fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

fn parse_number(text: &[u8]) -> std::result::Result<f64, String> {
    let s = std::str::from_utf8(text).map_err(|_| "not valid UTF-8, expected a number".to_owned())?;
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        Ok(x) => Err(format!("'{s}' is {x}, expected a finite number")),
        Err(_) if s.trim().is_empty() => Err("empty cell, expected a number".to_owned()),
        Err(_) => Err(format!("'{}' is not a number", shorten(s))),
    }
}

fn parse_binary(text: &[u8], pos_label: Option<&[u8]>, seen: &mut Distinct, line: u64) -> std::result::Result<bool, String> {
    if let Some(pos) = pos_label {
        seen.see(text, line);
        return Ok(text == pos);
    }
    match text {
        b"1" => Ok(true),
        b"0" => Ok(false),
        _ => {
            let s = String::from_utf8_lossy(text);
            match s.trim().parse::<f64>() {
                Ok(1.0) => Ok(true),
                Ok(0.0) => Ok(false),
                _ => Err(format!("'{}' is not 0 or 1 (name the positive value with --pos-label for other codings)", shorten(&s))),
            }
        }
    }
}

fn shorten(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(40).collect::<String>())
    } else {
        s.to_owned()
    }
}

/// Joins the chunks: removes the slots of skipped lines, merges the group interners and checks
/// the two-valued columns.
fn merge<'a>(file: &str, mut out: Columns, results: &'a [ChunkResult<'_>], lines: &[usize], spec: &CsvSpec, header_lines: u64) -> Result<Table> {
    let rows: usize = results.iter().map(|r| r.rows).sum();
    if rows == 0 {
        return Err(Error::CsvStructure { file: file.to_owned(), line: header_lines + 1, message: "no data rows after the header".into() });
    }
    for (which, name) in [("label", &spec.label), ("prediction", spec.pred.as_ref().unwrap_or(&spec.label))] {
        let pick = |r: &'a ChunkResult<'_>| if which == "label" { &r.label_values } else { &r.pred_values };
        let mut all: Vec<&[u8]> = Vec::new();
        let mut first_line = header_lines + 1;
        for (r, &l) in results.iter().zip(lines) {
            for (v, line) in &pick(r).0 {
                if !all.contains(&v.as_slice()) {
                    all.push(v);
                    if all.len() > 2 {
                        return Err(Error::Csv {
                            file: file.to_owned(),
                            line: first_line + line,
                            column: name.clone(),
                            message: format!("third distinct {which} value '{}'; a binary column has at most two", String::from_utf8_lossy(v)),
                        });
                    }
                }
            }
            first_line += l as u64;
        }
        // A positive label that never occurs is a typo (or the wrong column), not a column
        // without positives: with the two values listed, the user sees which was meant.
        if let (Some(pos), "label") = (spec.pos_label.as_deref(), which) {
            if !all.contains(&pos.as_bytes()) {
                let values = all.iter().map(|v| format!("'{}'", shorten(&String::from_utf8_lossy(v)))).collect::<Vec<_>>().join(", ");
                return Err(Error::Csv {
                    file: file.to_owned(),
                    line: 1,
                    column: name.clone(),
                    message: format!("positive label '{}' (--pos-label) occurs in no row; the column's values are {values}", shorten(pos)),
                });
            }
        }
    }

    // Global levels in first-seen order, and each chunk's code map into them.
    let mut levels: Vec<Vec<String>> = vec![Vec::new(); spec.attrs.len()];
    let mut remaps: Vec<Vec<Vec<u32>>> = Vec::with_capacity(results.len());
    let mut index: Vec<FxHashMap<&[u8], u32>> = vec![FxHashMap::default(); spec.attrs.len()];
    for r in results {
        let mut chunk_maps = Vec::with_capacity(spec.attrs.len());
        for (k, local) in r.levels.iter().enumerate() {
            let map: Vec<u32> = local
                .iter()
                .map(|v| {
                    let next = levels[k].len() as u32;
                    *index[k].entry(v.as_ref()).or_insert_with(|| {
                        levels[k].push(String::from_utf8_lossy(v).into_owned());
                        next
                    })
                })
                .collect();
            chunk_maps.push(map);
        }
        remaps.push(chunk_maps);
    }
    for (k, lv) in levels.iter().enumerate() {
        let mut seen = rustc_hash::FxHashSet::default();
        if let Some(dup) = lv.iter().find(|l| !seen.insert(l.as_str())) {
            // Two byte strings that are the same text after lossy UTF-8 decoding.
            return Err(Error::Csv {
                file: file.to_owned(),
                line: header_lines + 1,
                column: spec.attrs[k].clone(),
                message: format!("value '{dup}' occurs with different invalid UTF-8 bytes"),
            });
        }
    }
    // Remap in place, chunk by chunk, then close the gaps left by skipped lines.
    for (k, codes) in out.codes.iter_mut().enumerate() {
        let mut start = 0;
        let mut slices = Vec::with_capacity(lines.len());
        let mut rest: &mut [u32] = codes;
        for (&l, r) in lines.iter().zip(results) {
            let (a, b) = std::mem::take(&mut rest).split_at_mut(l);
            slices.push((&mut a[..r.rows], start));
            start += l;
            rest = b;
        }
        slices.par_iter_mut().enumerate().for_each(|(ci, (s, _))| {
            let map = &remaps[ci][k];
            s.iter_mut().for_each(|c| *c = map[*c as usize]);
        });
    }
    compact(&mut out.labels, lines, results, rows);
    compact(&mut out.scores, lines, results, rows);
    if let Some(p) = out.preds.as_mut() {
        compact(p, lines, results, rows);
    }
    if let Some(w) = out.weights.as_mut() {
        compact(w, lines, results, rows);
    }
    for c in out.codes.iter_mut() {
        compact(c, lines, results, rows);
    }

    let mut predictions = Predictions::new(out.labels, out.scores)?;
    if let Some(p) = out.preds {
        predictions = predictions.with_preds(p)?;
    }
    if let Some(w) = out.weights {
        predictions = predictions.with_weights(w)?;
    }
    let attributes = spec.attrs.iter().zip(out.codes).zip(levels).map(|((name, codes), levels)| Attribute::from_codes(name.clone(), codes, levels)).collect::<Result<Vec<_>>>()?;
    Ok(Table { predictions, attributes })
}

/// Moves each chunk's rows down over the unused slots of the chunks before it.
fn compact<T: Copy>(v: &mut Vec<T>, lines: &[usize], results: &[ChunkResult<'_>], rows: usize) {
    let mut write = 0;
    let mut start = 0;
    for (&l, r) in lines.iter().zip(results) {
        if write != start {
            v.copy_within(start..start + r.rows, write);
        }
        write += r.rows;
        start += l;
    }
    v.truncate(rows);
    v.shrink_to_fit();
}

/// A field of the current record: a byte range, and whether it was quoted (then `""` inside
/// stands for one quote).
#[derive(Debug, Clone, Copy)]
struct Field {
    start: usize,
    end: usize,
    quoted: bool,
}

impl Field {
    fn is_empty(&self) -> bool {
        self.start == self.end && !self.quoted
    }

    fn text<'a>(&self, bytes: &'a [u8]) -> Cow<'a, [u8]> {
        let raw = &bytes[self.start..self.end];
        if self.quoted && memchr::memchr(b'"', raw).is_some() {
            let mut v = Vec::with_capacity(raw.len());
            let mut i = 0;
            while i < raw.len() {
                v.push(raw[i]);
                i += if raw[i] == b'"' && raw.get(i + 1) == Some(&b'"') { 2 } else { 1 };
            }
            Cow::Owned(v)
        } else {
            Cow::Borrowed(raw)
        }
    }
}

struct Unterminated;

/// Parses the record starting at `pos` into `fields`. Returns the position after it and the
/// number of line breaks it spans, or `None` at the end of the input.
fn next_record(b: &[u8], mut pos: usize, fields: &mut Vec<Field>) -> std::result::Result<Option<(usize, u64)>, Unterminated> {
    fields.clear();
    if pos >= b.len() {
        return Ok(None);
    }
    let mut newlines = 0u64;
    loop {
        if b.get(pos) == Some(&b'"') {
            // Quoted field: up to the closing quote; "" is an escaped quote.
            let start = pos + 1;
            let mut i = start;
            loop {
                match memchr::memchr(b'"', &b[i..]) {
                    None => return Err(Unterminated),
                    Some(off) => {
                        let q = i + off;
                        newlines += memchr::memchr_iter(b'\n', &b[i..q]).count() as u64;
                        if b.get(q + 1) == Some(&b'"') {
                            i = q + 2;
                        } else {
                            i = q;
                            break;
                        }
                    }
                }
            }
            let end = i;
            // Anything between the closing quote and the delimiter is ignored.
            let mut j = end + 1;
            while j < b.len() && b[j] != b',' && b[j] != b'\n' {
                j += 1;
            }
            fields.push(Field { start, end, quoted: true });
            pos = j;
        } else {
            let start = pos;
            let mut j = pos;
            while j < b.len() && b[j] != b',' && b[j] != b'\n' {
                j += 1;
            }
            let mut end = j;
            if (j == b.len() || b[j] == b'\n') && end > start && b[end - 1] == b'\r' {
                end -= 1;
            }
            fields.push(Field { start, end, quoted: false });
            pos = j;
        }
        match b.get(pos) {
            Some(b',') => pos += 1,
            Some(_) => return Ok(Some((pos + 1, newlines + 1))),
            None => return Ok(Some((pos, newlines + 1))),
        }
    }
}

/// Splits at line breaks into about `parts` pieces.
fn split_lines(b: &[u8], parts: usize) -> Vec<&[u8]> {
    let mut out = Vec::with_capacity(parts);
    let mut start = 0;
    let step = b.len().div_ceil(parts.max(1)).max(1);
    while start < b.len() {
        let target = (start + step).min(b.len());
        let end = match memchr::memchr(b'\n', &b[target.saturating_sub(1).max(start)..]) {
            Some(off) => target.saturating_sub(1).max(start) + off + 1,
            None => b.len(),
        };
        out.push(&b[start..end]);
        start = end;
    }
    if out.is_empty() {
        out.push(b);
    }
    out
}

/// Lines in a chunk: line breaks, plus one for a last line without a break.
fn line_count(c: &[u8]) -> usize {
    let n = memchr::memchr_iter(b'\n', c).count();
    n + usize::from(!c.is_empty() && c[c.len() - 1] != b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> CsvSpec {
        CsvSpec::new("y", "s").with_attr("g")
    }

    fn err(data: &str, spec: &CsvSpec) -> String {
        parse_csv("f.csv", data.as_bytes(), spec).unwrap_err().to_string()
    }

    #[test]
    fn reads_quotes_crlf_and_blank_lines() {
        let data = "y,s,g,note\r\n1,0.5,\"a,b\",\"he said \"\"hi\"\"\nok\"\r\n\r\n0,0.25,c,x\r\n";
        let t = parse_csv("f.csv", data.as_bytes(), &spec()).unwrap();
        assert_eq!(t.predictions.labels(), [true, false]);
        assert_eq!(t.predictions.scores(), [0.5, 0.25]);
        assert_eq!(t.attributes[0].levels(), ["a,b", "c"]);
    }

    #[test]
    fn errors_name_file_line_and_column() {
        assert_eq!(err("", &spec()), "f.csv:1: empty file: expected a header line naming the columns");
        assert!(err("y,s\n1,0.5\n", &spec()).contains("f.csv:1: no column 'g'"));
        assert_eq!(err("y,s,g\n1,0.5,a\n1,abc,a\n", &spec()), "f.csv:3: column 's': 'abc' is not a number");
        assert!(err("y,s,g\n1,NaN,a\n", &spec()).starts_with("f.csv:2: column 's': 'NaN' is NaN"));
        assert!(err("y,s,g\n1,inf,a\n", &spec()).contains("expected a finite number"));
        assert!(err("y,s,g\n2,0.5,a\n", &spec()).starts_with("f.csv:2: column 'y': '2' is not 0 or 1"));
        assert_eq!(err("y,s,g\n1,0.5\n", &spec()), "f.csv:2: row has 2 fields, the header has 3");
        assert!(err("y,s,g\n1,0.5,\n", &spec()).starts_with("f.csv:2: column 'g': empty value"));
        assert!(err("y,s,g\n", &spec()).contains("f.csv:2: no data rows"));
        assert!(err("y,s,g\n1,0.5,\"a\n", &spec()).contains("unterminated"));
    }

    #[test]
    fn line_numbers_count_quoted_line_breaks() {
        let data = "y,s,g\n1,0.5,\"multi\nline\"\n1,x,a\n";
        assert_eq!(err(data, &spec()), "f.csv:4: column 's': 'x' is not a number");
    }

    #[test]
    fn pos_label_allows_two_values() {
        let s = spec().with_pos_label("yes");
        let t = parse_csv("f.csv", b"y,s,g\nyes,0.5,a\nno,0.1,a\n", &s).unwrap();
        assert_eq!(t.predictions.labels(), [true, false]);
        let e = err("y,s,g\nyes,0.5,a\nno,0.1,a\nmaybe,0.1,a\n", &s);
        assert!(e.starts_with("f.csv:4: column 'y': third distinct label value 'maybe'"), "{e}");
    }

    /// A --pos-label typo gave a report with no positives.
    #[test]
    fn pos_label_that_never_occurs_is_an_error() {
        let s = spec().with_pos_label("Yes");
        let e = err("y,s,g\nyes,0.5,a\nno,0.1,a\n", &s);
        assert_eq!(e, "f.csv:1: column 'y': positive label 'Yes' (--pos-label) occurs in no row; the column's values are 'yes', 'no'");
        // A label column of negatives only, or a prediction column without the label, is fine.
        let s = spec().with_pos_label("no").with_pred("p");
        let t = parse_csv("f.csv", b"y,s,g,p\nno,0.5,a,x\n", &s).unwrap();
        assert_eq!(t.predictions.labels(), [true]);
        assert_eq!(t.predictions.preds(), Some(&[false][..]));
        let t = parse_csv("f.csv", b"y,s,g\nno,0.5,a\nyes,0.5,a\n", &spec().with_pos_label("yes")).unwrap();
        assert_eq!(t.predictions.labels(), [false, true]);
    }

    /// `y,p,g,g` used the first `g` without a word.
    #[test]
    fn requested_duplicate_column_is_an_error() {
        assert_eq!(err("y,s,g,g\n1,0.5,a,b\n", &spec()), "f.csv:1: column 'g': the header names this column more than once (fields 3 and 4); rename one");
        assert!(err("y,s,y,g\n1,0.5,1,b\n", &spec()).starts_with("f.csv:1: column 'y': the header names this column more than once"));
        // A duplicate that is not asked for is harmless.
        let t = parse_csv("f.csv", b"y,s,g,x,x\n1,0.5,a,1,2\n", &spec()).unwrap();
        assert_eq!(t.attributes[0].levels(), ["a"]);
    }

    #[test]
    fn non_finite_numbers_name_file_line_and_column() {
        let s = spec().with_weight("w");
        for (cell, what) in [("NaN", "NaN"), ("inf", "inf"), ("-Infinity", "-inf"), ("1e999", "inf")] {
            let e = err(&format!("y,s,g,w\n1,0.5,a,1\n0,{cell},a,1\n"), &s);
            assert_eq!(e, format!("f.csv:3: column 's': '{cell}' is {what}, expected a finite number"));
            let e = err(&format!("y,s,g,w\n1,0.5,a,1\n0,0.5,a,{cell}\n"), &s);
            assert!(e.starts_with(&format!("f.csv:3: column 'w': '{cell}' is")), "{e}");
        }
    }

    #[test]
    fn accepts_float_coded_labels_and_weights() {
        let s = spec().with_weight("w").with_pred("p");
        let t = parse_csv("f.csv", b"y,s,g,w,p\n1.0,0.5,a,2,0\n0.0,0.1,a,0.5,1\n", &s).unwrap();
        assert_eq!(t.predictions.weights(), Some(&[2.0, 0.5][..]));
        assert_eq!(t.predictions.preds(), Some(&[false, true][..]));
        assert!(err("y,s,g,w,p\n1,0.5,a,-1,0\n", &s).contains("negative"));
    }

    #[test]
    fn parallel_path_matches_sequential() {
        let data = |bad_row: Option<u64>| {
            let mut data = String::from("y,s,g\n");
            for i in 0..120_000u64 {
                let s = (i * 2_654_435_761 % 1000) as f64 / 1000.0;
                let s = if bad_row == Some(i) { "oops".to_owned() } else { s.to_string() };
                data.push_str(&format!("{},{s},{}\n", i % 2, ["x", "y", "z"][(i % 7 % 3) as usize]));
                if i == 70_000 {
                    data.push('\n');
                }
            }
            data
        };
        let good = data(None);
        assert!(good.len() > PARALLEL_MIN_BYTES);
        let par = parse_csv("f.csv", good.as_bytes(), &spec()).unwrap();
        // A quote anywhere forces the sequential path.
        let seq_data = good.replacen("y,s,g\n", "y,s,\"g\"\n", 1);
        let seq = parse_csv("f.csv", seq_data.as_bytes(), &spec()).unwrap();
        assert_eq!(par, seq);
        assert_eq!(par.predictions.len(), 120_000);
        // Row i is on line i + 2, plus the blank line after row 70,000.
        assert_eq!(err(&data(Some(100_000)), &spec()), "f.csv:100003: column 's': 'oops' is not a number");
        assert_eq!(err(&data(Some(5)), &spec()), "f.csv:7: column 's': 'oops' is not a number");
    }
}
