//! Two processes sharing a folder: the developer's [`FileLink`] and the auditor's
//! [`serve_files`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use safetensors::tensor::{Dtype, TensorView};

use super::auditor::{AdapterGrads, Auditor, AuditorLink};
use super::config::LoraExperiment;
use super::model::{load_adapter_values, save_adapter_values, Adapters};
use crate::checkpoint::{ckpt_err, io_err};
use crate::error::Result;

/// The developer's side of the exchange folder (adapter files are written and read through
/// backend `B`). The folder's layout: `sensitive/` (peft folder of the auditor's sensitive
/// adapter), `rounds/<n>/adapter/` (the developer's adapters at round n),
/// `rounds/<n>/gradient.safetensors` (the auditor's answer), `done` (the developer finished).
pub struct FileLink<B: Backend> {
    dir: PathBuf,
    exp: LoraExperiment,
    timeout: Duration,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> FileLink<B> {
    /// A link through `dir`; each wait gives up after `timeout`.
    pub fn new(dir: &Path, exp: &LoraExperiment, timeout: Duration) -> Self {
        FileLink { dir: dir.to_owned(), exp: exp.clone(), timeout, _backend: std::marker::PhantomData }
    }
}

fn wait_for(path: &Path, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            return Err(ckpt_err(path, format!("the other party wrote nothing in {:.0} s", timeout.as_secs_f64())));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Writes a file's content under a temporary name and renames it, so the reader never sees it
/// half-written.
fn publish(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension("partial");
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn round_dir(dir: &Path, round: usize) -> PathBuf {
    dir.join("rounds").join(format!("{round:06}"))
}

fn write_grads(path: &Path, grads: &AdapterGrads, adapters: &Adapters) -> Result<()> {
    let mut buffers: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (p, (ga, gb)) in grads {
        let Some((_, ad, _, bd)) = adapters.get(p) else { continue };
        let bytes = |v: &Vec<f32>| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        buffers.push((format!("base_model.model.{p}.lora_A.weight"), ad.to_vec(), bytes(ga)));
        buffers.push((format!("base_model.model.{p}.lora_B.weight"), bd.to_vec(), bytes(gb)));
    }
    let views = buffers
        .iter()
        .map(|(k, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (k.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ckpt_err(path, e))?;
    safetensors::serialize_to_file(views, None, path).map_err(|e| ckpt_err(path, e))
}

fn read_grads(path: &Path) -> Result<AdapterGrads> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| ckpt_err(path, e))?;
    let mut out = AdapterGrads::new();
    for name in st.names() {
        let Some(p) = name.strip_prefix("base_model.model.").and_then(|n| n.strip_suffix(".lora_A.weight")) else { continue };
        let f = |key: &str| -> Result<Vec<f32>> {
            let v = st.tensor(key).map_err(|e| ckpt_err(path, format!("{key}: {e}")))?;
            Ok(v.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
        };
        out.insert(p.to_string(), (f(name)?, f(&format!("base_model.model.{p}.lora_B.weight"))?));
    }
    Ok(out)
}

impl<B: Backend> AuditorLink for FileLink<B> {
    fn sensitive_adapter(&mut self) -> Result<Adapters> {
        let dir = self.dir.join("sensitive");
        wait_for(&dir.join("ready"), self.timeout)?;
        load_adapter_values::<B>(&dir)
    }

    fn gradient(&mut self, round: usize, adapters: &Adapters) -> Result<AdapterGrads> {
        let rd = round_dir(&self.dir, round);
        std::fs::create_dir_all(&rd).map_err(io_err(&rd))?;
        let exp = self.exp.clone();
        publish(&rd.join("adapter"), |tmp| save_adapter_values::<B>(tmp, adapters, &exp))?;
        let g = rd.join("gradient.safetensors");
        wait_for(&g, self.timeout)?;
        let grads = read_grads(&g)?;
        // Nothing of a finished round is needed again.
        std::fs::remove_dir_all(&rd).map_err(io_err(&rd))?;
        Ok(grads)
    }

    fn finish(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(io_err(&self.dir))?;
        std::fs::write(self.dir.join("done"), b"").map_err(io_err(&self.dir))
    }
}

/// The auditor's side of [`FileLink`]: publishes the sensitive adapter when the method needs
/// it, then answers gradient rounds until the developer writes `done`.
pub fn serve_files<B: AutodiffBackend>(auditor: &mut Auditor<B>, dir: &Path, timeout: Duration) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let exp = auditor.exp.clone();
    if exp.needs_sensitive_model() {
        let values = auditor.sensitive_adapter()?;
        if exp.needs_sensitive_adapter() {
            let s = dir.join("sensitive");
            save_adapter_values::<B>(&s, &values, &exp)?;
            std::fs::write(s.join("ready"), b"").map_err(io_err(&s))?;
        }
    }
    // Everything the auditor reads is in memory now: the developer may start.
    std::fs::write(dir.join("auditor-ready"), b"").map_err(io_err(dir))?;
    let mut rounds = 0;
    if !exp.needs_gradients() {
        return Ok(rounds);
    }
    let mut last = Instant::now();
    loop {
        let rd = round_dir(dir, rounds);
        let adapter = rd.join("adapter");
        if adapter.exists() {
            let values = load_adapter_values::<B>(&adapter)?;
            let grads = auditor.gradient(&values)?;
            publish(&rd.join("gradient.safetensors"), |tmp| write_grads(tmp, &grads, &values))?;
            rounds += 1;
            last = Instant::now();
        } else if dir.join("done").exists() {
            return Ok(rounds);
        } else if last.elapsed() > timeout {
            return Err(ckpt_err(&adapter, format!("the developer wrote nothing in {:.0} s", timeout.as_secs_f64())));
        } else {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
