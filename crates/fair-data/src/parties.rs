//! The files of a fairness-aware LoRA study, one per party (trainer's `fairvlm lora
//! prepare`): the pretraining set, the developer's pool with task labels only, the
//! auditor's pool with sensitive labels only (disjoint pools of one training split), and the
//! audit set with both.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::LabelledImages;

/// The files a study hands out: `pretrain.npz` (the stand-in for ImageNet, label `class`),
/// `developer.npz` (label `task` only), `auditor.npz` (label `sensitive` only), disjoint pools
/// of one training split, and `audit.npz` (`task` and `sensitive`, the auditor's test set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedSizes {
    /// Images of each file, in the order above.
    pub pretrain: usize,
    /// Developer's pool.
    pub developer: usize,
    /// Auditor's pool.
    pub auditor: usize,
    /// Audit set.
    pub audit: usize,
}

fn write_parties(out: &Path, pretrain: &LabelledImages, train: &LabelledImages, audit: &LabelledImages, auditor_fraction: f64, seed: u64) -> Result<PreparedSizes> {
    std::fs::create_dir_all(out).map_err(|source| Error::Io { path: out.to_owned(), source })?;
    let (dev_idx, aud_idx) = crate::disjoint_pools(train.len(), auditor_fraction, seed);
    let developer = train.subset(&dev_idx).with_labels(&[("task", "task")])?;
    let auditor = train.subset(&aud_idx).with_labels(&[("sensitive", "sensitive")])?;
    let audit = audit.with_labels(&[("task", "task"), ("sensitive", "sensitive")])?;
    pretrain.write(&out.join("pretrain.npz"))?;
    developer.write(&out.join("developer.npz"))?;
    auditor.write(&out.join("auditor.npz"))?;
    audit.write(&out.join("audit.npz"))?;
    Ok(PreparedSizes { pretrain: pretrain.len(), developer: developer.len(), auditor: auditor.len(), audit: audit.len() })
}

/// Fashion-MNIST (the IDX files in `root`, e.g. Debian's `/usr/share/datasets/fashion-mnist`)
/// with an injected sensitive attribute: pretraining on the classes outside the task, the
/// tinted task on the training split for the parties (tint agreeing with the label at
/// `tint.correlation`) and on the test split for the audit (at `tint.audit_correlation`).
pub fn prepare_fashion_mnist(root: &Path, out: &Path, tint: &crate::TintConfig, auditor_fraction: f64, max_pretrain: Option<usize>) -> Result<PreparedSizes> {
    let read = |name: &str| -> Result<(Vec<usize>, Vec<u8>)> {
        let gz = root.join(format!("{name}.gz"));
        let path = if gz.is_file() { gz } else { root.join(name) };
        crate::read_idx(&path)
    };
    let (_, train_x) = read("train-images-idx3-ubyte")?;
    let (_, train_y) = read("train-labels-idx1-ubyte")?;
    let (_, test_x) = read("t10k-images-idx3-ubyte")?;
    let (_, test_y) = read("t10k-labels-idx1-ubyte")?;
    let task_classes: Vec<i64> = tint.positive.iter().chain(&tint.negative).copied().collect();
    let others: Vec<i64> = (0..10).filter(|c| !task_classes.contains(c)).collect();
    let plain = crate::TintConfig { positive: others.clone(), negative: vec![], tint: 0.0, correlation: 1.0, ..tint.clone() };
    let mut pretrain = crate::tinted_fashion_mnist(&train_x, &train_y, &plain)?;
    // Classes renumbered 0.. for the pretraining head.
    let class: Vec<i64> = pretrain.label("class")?.iter().map(|c| others.iter().position(|o| o == c).unwrap_or(0) as i64).collect();
    pretrain.labels = [("class".to_string(), class)].into();
    if let Some(m) = max_pretrain.filter(|&m| m < pretrain.len()) {
        let idx: Vec<usize> = (0..m).collect();
        pretrain = pretrain.subset(&idx);
    }
    let train = crate::tinted_fashion_mnist(&train_x, &train_y, tint)?;
    let audit = crate::tinted_fashion_mnist(&test_x, &test_y, &crate::TintConfig { seed: tint.seed ^ 0x7e57, correlation: tint.audit_correlation, ..tint.clone() })?;
    let sizes = write_parties(out, &pretrain, &train, &audit, auditor_fraction, tint.seed)?;
    let labels =
        PartyLabels { task: "class".into(), classes: vec!["negative".into(), "positive".into()], sensitive: "tint".into(), values: vec!["untinted".into(), "tinted".into()] };
    write_labels(out, &labels)?;
    Ok(sizes)
}

/// `parties.json` ([`PartyLabels`]) beside the parties' files.
fn write_labels(out: &Path, labels: &PartyLabels) -> Result<()> {
    let path = out.join("parties.json");
    std::fs::write(&path, serde_json::to_string_pretty(labels).unwrap_or_default()).map_err(|source| Error::Io { path, source })
}

/// The synthetic fundus benchmark (docs/datasets.md) as LoRA parties: pretraining on glaucoma
/// from an independent draw without group effects, the task glaucoma and the sensitive
/// attribute `sensitive` on the default benchmark's training split (parties) and test split
/// (audit).
pub fn prepare_fundus(out: &Path, synth: &crate::SynthConfig, sensitive: &str, size: usize, auditor_fraction: f64) -> Result<PreparedSizes> {
    // Pretraining sees glaucoma without any bias: no group effects, shortcut or oversampling.
    let clean = crate::SynthConfig { seed: synth.seed ^ 0x9e37, effects: vec![], shortcut: None, test_oversample: None, ..synth.clone() };
    let [p0, p1, p2] = clean.generate()?;
    let pre: Vec<_> = p0.into_iter().chain(p1).chain(p2).collect();
    let mut pretrain = crate::fundus_images(&pre, size);
    pretrain = pretrain.with_labels(&[("glaucoma", "class")])?;
    let [train, _, test] = synth.generate()?;
    let as_parties = |s: &[crate::Sample]| -> Result<LabelledImages> { crate::fundus_images(s, size).with_labels(&[("glaucoma", "task"), (sensitive, "sensitive")]) };
    let sizes = write_parties(out, &pretrain, &as_parties(&train)?, &as_parties(&test)?, auditor_fraction, synth.seed)?;
    // The groups' names, so that audits and predictions say "Black" rather than "1".
    if let Some(k) = crate::fairvlmed::ATTRIBUTES.iter().position(|a| *a == sensitive) {
        let values = crate::fairvlmed::ATTRIBUTE_VALUES[k].iter().map(|v| v.to_string()).collect();
        write_labels(out, &PartyLabels { task: "glaucoma".into(), classes: vec!["no".into(), "yes".into()], sensitive: sensitive.to_string(), values })?;
    }
    Ok(sizes)
}

/// UTKFace or CelebA (an index from [`crate::load_utkface`] / [`crate::load_celeba`]) as
/// LoRA parties: images resized to `size`, `task` and `sensitive` label names; CelebA's
/// official split decides train and test where it exists, else the last `test_fraction` of
/// the images (sorted by name) is the audit set. There is no separate pretraining set: the
/// base comes from elsewhere (`pretrain.npz` holds the parties' training images with the task
/// label, for a from-scratch base).
#[allow(clippy::too_many_arguments)] // one per flag of `fairvlm lora prepare`
pub fn prepare_faces(
    index: &crate::FaceIndex,
    out: &Path,
    task: &str,
    sensitive: &str,
    size: usize,
    test_fraction: f64,
    auditor_fraction: f64,
    seed: u64,
) -> Result<PreparedSizes> {
    let mut train = LabelledImages { size, ..Default::default() };
    let mut test = LabelledImages { size, ..Default::default() };
    let n = index.records.len();
    let cut = n - ((n as f64 * test_fraction).round() as usize).min(n);
    for (i, r) in index.records.iter().enumerate() {
        let is_test = match r.split {
            Some(s) => s == crate::Split::Test,
            None => i >= cut,
        };
        let dst = if is_test { &mut test } else { &mut train };
        // Channel-last from the decoder, channel-major here.
        let hwc = crate::load_face_image(&r.path, size)?;
        for c in 0..3 {
            dst.images.extend(hwc.iter().skip(c).step_by(3));
        }
        dst.labels.entry("task".into()).or_default().push(r.label(task)?);
        dst.labels.entry("sensitive".into()).or_default().push(r.label(sensitive)?);
    }
    let pretrain = train.with_labels(&[("task", "class")])?;
    write_parties(out, &pretrain, &train, &test, auditor_fraction, seed)
}

/// What the parties' files of a generic dataset mean (`parties.json` beside them): the task
/// label's column and classes, the sensitive attribute's column and the names of its codes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartyLabels {
    /// The label column (`task` in the files).
    pub task: String,
    /// Its classes: code 0, then code 1.
    pub classes: Vec<String>,
    /// The sensitive attribute's column (`sensitive` in the files).
    pub sensitive: String,
    /// The names of its codes 0, 1, ...
    pub values: Vec<String>,
}

/// A generic dataset ([`crate::load_folder`]) as LoRA parties: the training and validation
/// splits' images (CLIP's resize and crop to `size`, grey as three equal channels) with the
/// label as `task` and the attribute `sensitive` as `sensitive`, split into disjoint developer
/// and auditor pools; the test split is the audit set. Rows whose sensitive value is unknown
/// are left out (the auditor cannot use them, and the audit cannot score them). Also writes
/// `parties.json` ([`PartyLabels`]) so that the audit names the groups.
pub fn prepare_folder(data: &crate::FolderDataset, spec: &crate::FolderSpec, out: &Path, sensitive: &str, size: usize, auditor_fraction: f64, seed: u64) -> Result<PreparedSizes> {
    use crate::stream::ImageSource;
    let mut train = LabelledImages { size, ..Default::default() };
    let mut test = LabelledImages { size, ..Default::default() };
    let mut values = Vec::new();
    for split in &data.splits {
        let column = split.attributes.column(sensitive)?;
        values.clone_from(&column.values);
        let dst = if split.split == crate::Split::Test { &mut test } else { &mut train };
        let files = split.files();
        for i in 0..split.len() {
            if column.codes[i] < 0 {
                continue;
            }
            let item = files.load(i, size)?;
            let s2 = size * size;
            for c in 0..3 {
                let plane = if item.channels == 1 { &item.pixels[..s2] } else { &item.pixels[c * s2..(c + 1) * s2] };
                dst.images.extend_from_slice(plane);
            }
            dst.labels.entry("task".into()).or_default().push(split.labels[i] as i64);
            dst.labels.entry("sensitive".into()).or_default().push(column.codes[i]);
        }
    }
    if train.is_empty() || test.is_empty() {
        return Err(Error::Invalid(format!("attribute '{sensitive}': no training or no test rows with a known value")));
    }
    let pretrain = train.with_labels(&[("task", "class")])?;
    let sizes = write_parties(out, &pretrain, &train, &test, auditor_fraction, seed)?;
    write_labels(out, &PartyLabels { task: spec.label.clone(), classes: spec.classes.clone(), sensitive: sensitive.to_string(), values })?;
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    #[test]
    fn fundus_parties_name_the_groups() {
        let out = std::env::temp_dir().join(format!("fundus-parties-{}", std::process::id()));
        let synth = crate::SynthConfig { sizes: [60, 10, 30], image_size: 16, ..Default::default() };
        super::prepare_fundus(&out, &synth, "race", 8, 0.5).expect("prepare");
        let labels: super::PartyLabels = serde_json::from_str(&std::fs::read_to_string(out.join("parties.json")).expect("parties.json")).expect("json");
        assert_eq!((labels.sensitive.as_str(), labels.values), ("race", vec!["Asian".to_string(), "Black".into(), "White".into()]));
        std::fs::remove_dir_all(&out).ok();
    }
}
