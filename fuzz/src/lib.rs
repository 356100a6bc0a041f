//! What the targets share: a scratch folder of this process (on tmpfs where there is one),
//! where a target writes the input as the file a parser reads.

use std::path::PathBuf;

/// This process's scratch folder, created once.
pub fn scratch() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
    let dir = base.join(format!("fairvlm-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Writes `data` to `name` in the scratch folder and returns its path.
pub fn file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch().join(name);
    let _ = std::fs::write(&path, data);
    path
}
