//! `prepare_fashion_mnist` on tiny IDX files: the tint agrees with the label at `correlation`
//! in the parties' pools and at `audit_correlation` in the audit split.

use std::path::Path;

use fair_data::{prepare_fashion_mnist, LabelledImages, TintConfig};

/// Writes an IDX file of unsigned bytes with `dims`.
fn write_idx(path: &Path, dims: &[u32], data: &[u8]) {
    let mut bytes = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend(d.to_be_bytes());
    }
    bytes.extend(data);
    std::fs::write(path, bytes).expect("write idx");
}

/// Fashion-MNIST's four files with `n` images per split: classes shirt (6) and T-shirt (0) for
/// the task, trousers (1) for pretraining.
fn fake_fashion_mnist(root: &Path, n: usize) {
    std::fs::create_dir_all(root).expect("dir");
    let classes: Vec<u8> = (0..n).map(|i| [6, 0, 1][i % 3]).collect();
    let images: Vec<u8> = (0..n * 784).map(|i| (i % 251) as u8).collect();
    for prefix in ["train", "t10k"] {
        write_idx(&root.join(format!("{prefix}-images-idx3-ubyte")), &[n as u32, 28, 28], &images);
        write_idx(&root.join(format!("{prefix}-labels-idx1-ubyte")), &[n as u32], &classes);
    }
}

fn agreement(set: &LabelledImages) -> f64 {
    let (task, tint) = (set.label("task").expect("task"), set.label("sensitive").expect("sensitive"));
    task.iter().zip(tint).filter(|(a, b)| a == b).count() as f64 / task.len() as f64
}

#[test]
fn the_tint_is_a_shortcut_in_the_pools_and_independent_at_audit() {
    let dir = std::env::temp_dir().join(format!("fairvlm-tinted-{}", std::process::id()));
    let (root, out) = (dir.join("idx"), dir.join("parties"));
    fake_fashion_mnist(&root, 6000);
    let sizes = prepare_fashion_mnist(&root, &out, &TintConfig::default(), 0.5, None).expect("prepare");
    assert_eq!(sizes.audit, 4000);
    let developer = LabelledImages::read(&out.join("developer.npz")).expect("developer");
    let auditor = LabelledImages::read(&out.join("auditor.npz")).expect("auditor");
    let audit = LabelledImages::read(&out.join("audit.npz")).expect("audit");
    // The developer's pool has the task label, the auditor's the tint: recompute the agreement
    // on the audit split, which has both, and on the developer's pool from its own draw.
    assert!(developer.label("sensitive").is_err() && auditor.label("task").is_err(), "each party holds its own label only");
    assert!((agreement(&audit) - 0.5).abs() < 0.03, "audit: {}", agreement(&audit));
    let pools = fair_data::tinted_fashion_mnist(&vec![0; 6000 * 784], &(0..6000).map(|i| [6u8, 0, 1][i % 3]).collect::<Vec<_>>(), &TintConfig::default()).expect("pools");
    assert!((agreement(&pools.with_labels(&[("task", "task"), ("sensitive", "sensitive")]).expect("labels")) - 0.8).abs() < 0.03);
    std::fs::remove_dir_all(&dir).ok();
}
