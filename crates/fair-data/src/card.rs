//! The dataset card `fairvlm data check` prints: counts per split, label prevalence per group
//! of every attribute and of every pair of attributes, unknown values, the smallest test
//! groups, files that fail to read and image sizes.

use serde::Serialize;

use crate::batch::Prepared;
use crate::error::Result;

/// The fewest positives, and the fewest negatives, a test group needs for its AUC to be worth
/// comparing: with 10 of each and an AUC of 0.8, Hanley and McNeil's standard error is 0.10,
/// already wider than the differences between methods the papers report (a few points).
pub const SMALL_GROUP: usize = 10;

/// Hanley and McNeil's (1982) standard error of an AUC of `auc` with `pos` positives and
/// `neg` negatives.
pub fn auc_standard_error(auc: f64, pos: usize, neg: usize) -> Option<f64> {
    if pos == 0 || neg == 0 {
        return None;
    }
    let (q1, q2) = (auc / (2.0 - auc), 2.0 * auc * auc / (1.0 + auc));
    let (p, n) = (pos as f64, neg as f64);
    Some(((auc * (1.0 - auc) + (p - 1.0) * (q1 - auc * auc) + (n - 1.0) * (q2 - auc * auc)) / (p * n)).sqrt())
}

/// One group's counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupCard {
    /// The value (for an intersection, `a=x & b=y`).
    pub group: String,
    /// Rows.
    pub rows: usize,
    /// Positive rows.
    pub positives: usize,
    /// positives / rows.
    pub prevalence: f64,
    /// Hanley-McNeil standard error of an AUC of 0.8 with these counts (`None` without both
    /// classes): how precisely this group's AUC can be known.
    pub auc_se_at_0_8: Option<f64>,
}

/// One attribute's (or pair's) groups.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttributeCard {
    /// The attribute, or `a & b`.
    pub attribute: String,
    /// Rows whose value is unknown.
    pub unknown: usize,
    /// Known groups, in the attribute's order.
    pub groups: Vec<GroupCard>,
}

/// Image sizes of a split (as stored, before preprocessing).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageStats {
    /// Images read.
    pub read: usize,
    /// Smallest and largest width.
    pub width: [usize; 2],
    /// Smallest and largest height.
    pub height: [usize; 2],
    /// Mean width and height.
    pub mean: [f64; 2],
    /// Distinct (width, height) pairs.
    pub distinct_sizes: usize,
    /// Grey images and colour images.
    pub grey_rgb: [usize; 2],
}

/// One split's card.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SplitCard {
    /// `train`, `validation` or `test`.
    pub split: String,
    /// Rows kept.
    pub rows: usize,
    /// Positive rows.
    pub positives: usize,
    /// Rows dropped for an unknown attribute (evaluation splits, by default).
    pub filtered_unknown: usize,
    /// Per attribute.
    pub attributes: Vec<AttributeCard>,
    /// Per pair of attributes.
    pub intersections: Vec<AttributeCard>,
    /// Image sizes.
    pub images: Option<ImageStats>,
}

/// A file that failed to read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// The split.
    pub split: String,
    /// The file.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// A dataset's card.
///
/// ```
/// use fair_data::{DatasetCard, SynthConfig, TextTokenizer, Prepared};
/// let cfg = SynthConfig { sizes: [40, 20, 20], image_size: 16, ..SynthConfig::default() };
/// let [tr, va, te] = cfg.generate()?;
/// let tok = TextTokenizer::train(&["a note".to_string()], 300, 8)?;
/// let prep = |s: &[fair_data::Sample]| Prepared::new(s, 16, &tok, 180);
/// let (tr, va, te) = (prep(&tr)?, prep(&va)?, prep(&te)?);
/// let card = DatasetCard::compute("synthetic", &[("train", &tr, 0), ("validation", &va, 0), ("test", &te, 0)], &[], 1);
/// assert_eq!(card.splits[2].rows, 20);
/// assert!(card.markdown().contains("| race |"));
/// # Ok::<(), fair_data::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DatasetCard {
    /// What was checked (the data root).
    pub dataset: String,
    /// Training, validation and test.
    pub splits: Vec<SplitCard>,
    /// Files that failed to read: while indexing (skipped with `on_error = "skip"`) or when
    /// decoded here.
    pub failures: Vec<Failure>,
    /// What deserves attention.
    pub warnings: Vec<String>,
}

fn group(name: String, labels: impl Iterator<Item = u8>) -> GroupCard {
    let (mut rows, mut positives) = (0, 0);
    for l in labels {
        rows += 1;
        positives += (l == 1) as usize;
    }
    GroupCard {
        group: name,
        rows,
        positives,
        prevalence: if rows > 0 { positives as f64 / rows as f64 } else { 0.0 },
        auc_se_at_0_8: auc_standard_error(0.8, positives, rows - positives),
    }
}

impl DatasetCard {
    /// The card of `splits` (name, split, rows dropped for unknown attributes), with the
    /// files already known to fail (`skipped`: split, file, reason). Reads every image once
    /// on `threads` threads.
    pub fn compute(dataset: &str, splits: &[(&str, &Prepared, usize)], skipped: &[(String, String, String)], threads: usize) -> Self {
        let mut failures: Vec<Failure> = skipped.iter().map(|(s, f, r)| Failure { split: s.clone(), file: f.clone(), reason: r.clone() }).collect();
        let mut warnings = Vec::new();
        let mut cards = Vec::new();
        for &(name, split, filtered_unknown) in splits {
            let (stats, failed) = read_all(split, threads.max(1));
            failures.extend(failed.into_iter().map(|(file, reason)| Failure { split: name.into(), file, reason }));
            let columns = split.attributes.columns();
            let mut attributes = Vec::new();
            for c in columns {
                let groups = (0..c.values.len()).map(|k| group(c.values[k].clone(), c.codes.iter().zip(&split.labels).filter(|(&v, _)| v == k as i64).map(|(_, &l)| l))).collect();
                attributes.push(AttributeCard { attribute: c.name.clone(), unknown: c.codes.iter().filter(|&&v| v < 0).count(), groups });
            }
            let mut intersections = Vec::new();
            for (i, a) in columns.iter().enumerate() {
                for b in &columns[i + 1..] {
                    let mut groups = Vec::new();
                    for (ka, va) in a.values.iter().enumerate() {
                        for (kb, vb) in b.values.iter().enumerate() {
                            let rows = (0..split.len()).filter(|&r| a.codes[r] == ka as i64 && b.codes[r] == kb as i64);
                            groups.push(group(format!("{}={va} & {}={vb}", a.name, b.name), rows.map(|r| split.labels[r])));
                        }
                    }
                    let unknown = (0..split.len()).filter(|&r| a.codes[r] < 0 || b.codes[r] < 0).count();
                    intersections.push(AttributeCard { attribute: format!("{} & {}", a.name, b.name), unknown, groups });
                }
            }
            let positives = split.labels.iter().filter(|&&l| l == 1).count();
            if positives == 0 || positives == split.len() {
                warnings.push(format!("{name}: only one class ({positives} positives of {}): no AUC can be computed", split.len()));
            }
            if name == "test" {
                for a in attributes.iter().chain(&intersections) {
                    for g in &a.groups {
                        let neg = g.rows - g.positives;
                        if g.rows > 0 && (g.positives < SMALL_GROUP || neg < SMALL_GROUP) {
                            warnings.push(format!(
                                "test group {} = {}: {} positives and {neg} negatives (fewer than {SMALL_GROUP} of either): its AUC is unstable (standard error {} at AUC 0.8)",
                                a.attribute,
                                g.group,
                                g.positives,
                                g.auc_se_at_0_8.map_or("undefined".into(), |s| format!("{s:.2}"))
                            ));
                        }
                    }
                }
            }
            cards.push(SplitCard { split: name.into(), rows: split.len(), positives, filtered_unknown, attributes, intersections, images: stats });
        }
        Self { dataset: dataset.into(), splits: cards, failures, warnings }
    }

    /// The smallest known groups of the test split (attributes and pairs), fewest rows first.
    pub fn smallest_test_groups(&self, k: usize) -> Vec<(String, &GroupCard)> {
        let mut all: Vec<(String, &GroupCard)> = self
            .splits
            .iter()
            .filter(|s| s.split == "test")
            .flat_map(|s| s.attributes.iter().chain(&s.intersections))
            .flat_map(|a| a.groups.iter().map(move |g| (a.attribute.clone(), g)))
            .collect();
        all.sort_by_key(|(_, g)| g.rows);
        all.truncate(k);
        all
    }

    /// The card as Markdown.
    pub fn markdown(&self) -> String {
        let mut s = format!("# Dataset card: {}\n\n## Splits\n\n| split | rows | positives | prevalence | dropped (unknown attribute) |\n|---|---|---|---|---|\n", self.dataset);
        for c in &self.splits {
            s += &format!("| {} | {} | {} | {:.3} | {} |\n", c.split, c.rows, c.positives, c.positives as f64 / c.rows.max(1) as f64, c.filtered_unknown);
        }
        s += "\n## Label prevalence per group\n";
        for c in &self.splits {
            s += &format!("\n### {}\n\n| attribute | group | rows | positives | prevalence | AUC s.e. at 0.8 |\n|---|---|---|---|---|---|\n", c.split);
            for a in c.attributes.iter().chain(&c.intersections) {
                for g in &a.groups {
                    let se = g.auc_se_at_0_8.map_or("-".into(), |v| format!("{v:.3}"));
                    s += &format!("| {} | {} | {} | {} | {:.3} | {se} |\n", a.attribute, g.group, g.rows, g.positives, g.prevalence);
                }
                if a.unknown > 0 {
                    s += &format!("| {} | (unknown) | {} | | | |\n", a.attribute, a.unknown);
                }
            }
        }
        s += "\n## Smallest test groups\n\n| attribute | group | rows | positives |\n|---|---|---|---|\n";
        for (a, g) in self.smallest_test_groups(5) {
            s += &format!("| {a} | {} | {} | {} |\n", g.group, g.rows, g.positives);
        }
        s += "\n## Images\n\n| split | read | width | height | mean size | distinct sizes | grey / RGB |\n|---|---|---|---|---|---|---|\n";
        for c in &self.splits {
            if let Some(i) = &c.images {
                s += &format!(
                    "| {} | {} | {}-{} | {}-{} | {:.0} x {:.0} | {} | {} / {} |\n",
                    c.split, i.read, i.width[0], i.width[1], i.height[0], i.height[1], i.mean[0], i.mean[1], i.distinct_sizes, i.grey_rgb[0], i.grey_rgb[1]
                );
            }
        }
        s += &format!("\n## Files that fail to read ({})\n\n", self.failures.len());
        for f in &self.failures {
            s += &format!("- {} ({}): {}\n", f.file, f.split, f.reason);
        }
        s += &format!("\n## Warnings ({})\n\nA test group is flagged when it has fewer than {SMALL_GROUP} positives or {SMALL_GROUP} negatives: its AUC's standard error is then about 0.10 or more.\n\n", self.warnings.len());
        for w in &self.warnings {
            s += &format!("- {w}\n");
        }
        s
    }

    /// The card as JSON.
    pub fn json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| crate::Error::Invalid(e.to_string()))
    }
}

/// One image's (width, height, channels), or its file and why it failed.
type Inspected = std::result::Result<(usize, usize, usize), (String, String)>;

/// Reads every image of a split once: their size statistics and the files that failed.
fn read_all(split: &Prepared, threads: usize) -> (Option<ImageStats>, Vec<(String, String)>) {
    let source = split.source();
    let n = source.len();
    let chunk = n.div_ceil(threads).max(1);
    let name = |i: usize| source.file(i).map(|p| p.display().to_string()).unwrap_or_else(|| format!("sample {i}"));
    let results: Vec<Inspected> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .collect::<Vec<_>>()
            .chunks(chunk)
            .map(|part| {
                let part = part.to_vec();
                let rows = part.clone();
                (rows, s.spawn(move || part.into_iter().map(|i| source.inspect(i).map_err(|e| (name(i), e.to_string()))).collect::<Vec<_>>()))
            })
            .collect();
        handles.into_iter().flat_map(|(rows, h)| h.join().unwrap_or_else(|_| rows.into_iter().map(|i| Err((name(i), "reading it panicked".to_string()))).collect())).collect()
    });
    let (ok, failed): (Vec<_>, Vec<_>) = results.into_iter().partition(|r| r.is_ok());
    let ok: Vec<(usize, usize, usize)> = ok.into_iter().flatten().collect();
    let failed = failed.into_iter().filter_map(|r| r.err()).collect();
    if ok.is_empty() {
        return (None, failed);
    }
    let k = ok.len() as f64;
    let mut sizes: Vec<(usize, usize)> = ok.iter().map(|&(w, h, _)| (w, h)).collect();
    sizes.sort_unstable();
    sizes.dedup();
    let stats = ImageStats {
        read: ok.len(),
        width: [ok.iter().map(|o| o.0).min().unwrap_or(0), ok.iter().map(|o| o.0).max().unwrap_or(0)],
        height: [ok.iter().map(|o| o.1).min().unwrap_or(0), ok.iter().map(|o| o.1).max().unwrap_or(0)],
        mean: [ok.iter().map(|o| o.0 as f64).sum::<f64>() / k, ok.iter().map(|o| o.1 as f64).sum::<f64>() / k],
        distinct_sizes: sizes.len(),
        grey_rgb: [ok.iter().filter(|o| o.2 == 1).count(), ok.iter().filter(|o| o.2 == 3).count()],
    };
    (Some(stats), failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hanley_mcneil_matches_the_worked_value() {
        // 10 positives and 10 negatives at AUC 0.8: 0.102 (computed by hand from the formula).
        let se = auc_standard_error(0.8, 10, 10).unwrap();
        assert!((se - 0.1020).abs() < 1e-3, "{se}");
        assert!(auc_standard_error(0.8, 0, 10).is_none());
        assert!(auc_standard_error(0.8, 100, 100).unwrap() < 0.04);
    }
}
