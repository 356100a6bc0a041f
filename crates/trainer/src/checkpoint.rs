//! Files of a run: atomic writes, safetensors weights (Hugging Face key names), burn's binary
//! records of models and optimisers, and the seeded creation of models.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::record::{BinFileRecorder, FullPrecisionSettings, Record, Recorder};
use burn::store::{ModuleSnapshot, SafetensorsStore};

use crate::error::{Error, Result};

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_owned(), source }
}

pub(crate) fn ckpt_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Checkpoint { path: path.to_owned(), message: e.to_string() }
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a kill never leaves a
/// half-written file.
/// A temporary name beside `path`, unique to this process: two writers never share one.
pub(crate) fn tmp_name(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_name(path);
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Saves the model as safetensors (Hugging Face key names), atomically.
pub fn save_safetensors<B: Backend, M: Module<B>>(model: &M, path: &Path) -> Result<()> {
    let tmp = tmp_name(path);
    model.save_into(&mut SafetensorsStore::from_file(&tmp).overwrite(true)).map_err(|e| ckpt_err(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Loads safetensors weights into `model` (every tensor must be present with its shape).
pub fn load_safetensors<B: Backend, M: Module<B>>(mut model: M, path: &Path) -> Result<M> {
    if !path.is_file() {
        return Err(ckpt_err(path, "no such checkpoint"));
    }
    let res = model.load_from(&mut SafetensorsStore::from_file(path)).map_err(|e| ckpt_err(path, e))?;
    if !res.errors.is_empty() || !res.missing.is_empty() {
        return Err(ckpt_err(path, res));
    }
    Ok(model)
}

/// The record file of one part (`model`, `optim`, `heads`, ...) of the resumable state after
/// `epoch`; burn's recorder appends `.bin`.
pub(crate) fn state_file(out: &Path, epoch: usize, part: &str) -> PathBuf {
    out.join(format!("state-{epoch}-{part}"))
}

/// Writes a burn record (a model's or an optimiser's) as a full-precision binary file.
pub(crate) fn save_record<B: Backend, R: Record<B>>(record: R, path: &Path) -> Result<()> {
    Recorder::<B>::record(&BinFileRecorder::<FullPrecisionSettings>::new(), record, path.to_owned()).map_err(|e| ckpt_err(path, e))
}

/// Reads what [`save_record`] wrote.
pub(crate) fn load_record<B: Backend, R: Record<B>>(path: &Path, device: &B::Device) -> Result<R> {
    Recorder::<B>::load(&BinFileRecorder::<FullPrecisionSettings>::new(), path.to_owned(), device).map_err(|e| ckpt_err(path, e))
}

/// The epoch of a record file's name (`state-<epoch>-<part>`).
pub(crate) fn state_epoch(name: &str) -> Option<usize> {
    name.strip_prefix("state-").and_then(|rest| rest.split_once('-')).and_then(|(e, _)| e.parse().ok())
}

/// Removes the record files of every epoch before `epoch` (after `state.json` moved on).
pub(crate) fn remove_older_states(out: &Path, epoch: usize) -> Result<()> {
    let entries = std::fs::read_dir(out).map_err(io_err(out))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let old = state_epoch(&name).is_some_and(|e| e < epoch);
        if old && (name.ends_with(".bin") || name.ends_with(".json")) {
            let p = entry.path();
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    Ok(())
}

/// `module` with every parameter drawn now (burn draws lazily).
pub(crate) fn materialized<B: Backend, M: Module<B>>(module: M) -> M {
    module.visit(&mut Materialize);
    module
}

/// Touches every parameter, so that burn's lazy initialisation happens now.
pub(crate) struct Materialize;

impl<B: Backend> ModuleVisitor<B> for Materialize {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let _ = param.val();
    }
}

/// The lock under which a model is seeded, created and materialised (burn's generator is
/// global to the process).
pub(crate) fn init_lock() -> std::sync::MutexGuard<'static, ()> {
    static INIT: Mutex<()> = Mutex::new(());
    INIT.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The backend every initial parameter is drawn on: the CPU's, whatever the run's backend, so
/// one seed gives the same initial weights on every backend.
pub(crate) type DrawBackend = burn::backend::Flex;

/// Seeds the CPU backend's generator with `seed` and creates the model(s) under [`init_lock`]
/// (two runs in one process, tests or a sweep, cannot interleave their draws); both builders
/// materialise what they create (parameters are drawn lazily).
///
/// `build` creates the model on the run's backend, `on_cpu` the same model on
/// [`DrawBackend`]. On the CPU backend (with or without autodiff) `build` alone runs. On any
/// other, `on_cpu` draws the parameters and they are copied into what `build` created: the
/// backends' own generators differ, and a GPU run must start where a CPU run with the same
/// seed starts. The run's backend is then seeded too, for its later draws (dropout).
pub(crate) fn seeded<B: Backend, T: Module<B>, C: Module<DrawBackend>>(
    device: &B::Device,
    seed: u64,
    build: impl FnOnce(&B::Device) -> Result<T>,
    on_cpu: impl FnOnce(&burn::tensor::Device<DrawBackend>) -> Result<C>,
) -> Result<T> {
    use std::any::TypeId;
    let _guard = init_lock();
    let b = TypeId::of::<B>();
    if b == TypeId::of::<DrawBackend>() || b == TypeId::of::<burn::backend::Autodiff<DrawBackend>>() {
        B::seed(device, seed);
        return build(device);
    }
    let cpu_device = Default::default();
    DrawBackend::seed(&cpu_device, seed);
    let drawn = on_cpu(&cpu_device)?;
    let model = build(device)?;
    B::seed(device, seed);
    take_values(model, &drawn)
}

/// `target` with every tensor of `source` (a module of the same structure on any backend).
pub(crate) fn take_values<B: Backend, S: Backend, T: Module<B>, M: Module<S>>(mut target: T, source: &M) -> Result<T> {
    let result = target.apply(source.collect(None, None, false), None, None, false);
    if !result.errors.is_empty() || !result.missing.is_empty() || !result.unused.is_empty() {
        return Err(Error::Invalid(format!("copying the CPU-drawn initial weights to the device: {result}")));
    }
    Ok(target)
}

/// Seeds burn's generator with `seed` under [`init_lock`] (draws during training, such as
/// dropout, then follow the seed).
pub(crate) fn reseed<B: Backend>(device: &B::Device, seed: u64) {
    let _guard = init_lock();
    B::seed(device, seed);
}
