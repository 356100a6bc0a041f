//! A run folder is owned by one process: `run.lock` holds an advisory lock (`flock`) for the
//! owner's lifetime, with the owner's pid and host written in it. The kernel releases the
//! lock when its process dies, however it dies, so a stale lock needs no detection of its own:
//! the next process takes it and says whose it was.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::checkpoint::{ckpt_err, io_err};
use crate::error::Result;

/// The lock of a run folder, released when dropped.
#[derive(Debug)]
pub struct RunLock {
    _file: File,
    path: PathBuf,
}

/// This machine's name (empty where the kernel does not say).
pub(crate) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default()
}

/// This process, as a lock file names it.
fn owner() -> String {
    let host = Some(host_name()).filter(|h| !h.is_empty()).unwrap_or_else(|| "unknown host".into());
    format!("pid {} on {host}", std::process::id())
}

impl RunLock {
    /// Takes the lock of `dir` (created if needed), or fails with an error naming the process
    /// that holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let path = dir.join("run.lock");
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io_err(&path))?;
        let mut previous = String::new();
        let _ = file.read_to_string(&mut previous);
        if !try_lock(&file) {
            let holder = holder_of(&path).unwrap_or_else(|| "another process (starting)".to_string());
            return Err(ckpt_err(dir, format!("is in use by {holder}; wait for it to finish or choose another --out")));
        }
        if !previous.trim().is_empty() {
            tracing::info!("{}: took over the lock of {} (no longer running)", dir.display(), previous.trim());
        }
        let me = owner();
        file.set_len(0).map_err(io_err(&path))?;
        file.rewind().map_err(io_err(&path))?;
        file.write_all(me.as_bytes()).and_then(|()| file.flush()).map_err(io_err(&path))?;
        Ok(Self { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Who holds the lock at `path`: its owner writes its name just after taking the lock, so a
/// process that lost the race may read the file before that; it waits up to a second for it.
fn holder_of(path: &Path) -> Option<String> {
    for _ in 0..20 {
        match std::fs::read_to_string(path) {
            Ok(name) if !name.trim().is_empty() => return Some(name.trim().to_string()),
            _ => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    }
    None
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // The file stays (another process may already have it open); only the lock goes,
        // with the descriptor. Emptying it says nobody holds it.
        let _ = self._file.set_len(0);
    }
}

#[cfg(unix)]
fn try_lock(file: &File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a descriptor this process owns; no memory is passed.
    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
}

#[cfg(not(unix))]
fn try_lock(_file: &File) -> bool {
    true
}

/// Removes what an interrupted run left behind: temporary files of atomic writes and record
/// files of epochs after `epochs_done` (written before a kill, never committed by
/// `state.json`).
pub(crate) fn clean_leftovers(dir: &Path, epochs_done: usize) -> Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let orphan = crate::checkpoint::state_epoch(&name).is_some_and(|e| e > epochs_done);
        if name.ends_with(".tmp") || orphan {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(io_err(&p))?;
            tracing::info!("removed {} (left by an interrupted run)", p.display());
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_released_on_drop() {
        let dir = std::env::temp_dir().join(format!("run-lock-{}", std::process::id()));
        let first = RunLock::acquire(&dir).unwrap();
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert!(text.starts_with(&format!("pid {}", std::process::id())), "{text}");
        // flock locks belong to the open file description: a second open in this process
        // conflicts too.
        let e = RunLock::acquire(&dir).unwrap_err().to_string();
        assert!(e.contains("is in use by pid") && e.contains("choose another --out"), "{e}");
        drop(first);
        let again = RunLock::acquire(&dir).unwrap();
        drop(again);
        std::fs::write(dir.join("config.toml.tmp"), b"x").unwrap();
        std::fs::write(dir.join("state-3-model.bin"), b"x").unwrap();
        std::fs::write(dir.join("state-2-model.bin"), b"x").unwrap();
        assert_eq!(clean_leftovers(&dir, 2).unwrap(), 2);
        assert!(dir.join("state-2-model.bin").exists() && !dir.join("state-3-model.bin").exists());
        std::fs::remove_dir_all(&dir).ok();
    }
}
