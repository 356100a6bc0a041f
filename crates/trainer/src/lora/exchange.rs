//! Two processes sharing a folder: the developer's [`FileLink`] and the auditor's
//! [`serve_files`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
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
/// backend `B`). The folder's layout:
/// - `session`: the auditor's session id, written after it cleared an earlier session's files;
///   every other file carries it, and a file of another session is never used;
/// - `auditor.alive`, `developer.alive`: each party's heartbeat (pid, host, session), rewritten
///   every 200 ms; a party whose heartbeat stops, or whose process is gone, is declared dead
///   within [`STALE`], not after the whole timeout;
/// - `sensitive/` (peft folder of the auditor's sensitive adapter, `ready` holding the session);
/// - `rounds/<session>/<n>/adapter/` (the developer's adapters at round n) and
///   `rounds/<session>/<n>/gradient.safetensors` (the auditor's answer);
/// - `done`: the developer finished (holding the session).
pub struct FileLink<B: Backend> {
    dir: PathBuf,
    exp: LoraExperiment,
    timeout: Duration,
    session: Option<(String, Heartbeat)>,
    _backend: std::marker::PhantomData<B>,
}

impl<B: Backend> FileLink<B> {
    /// A link through `dir`; each wait gives up after `timeout`.
    pub fn new(dir: &Path, exp: &LoraExperiment, timeout: Duration) -> Self {
        FileLink { dir: dir.to_owned(), exp: exp.clone(), timeout, session: None, _backend: std::marker::PhantomData }
    }

    /// Joins the auditor's session: waits for a `session` file that the auditor's live
    /// heartbeat confirms, then starts the developer's heartbeat.
    fn connect(&mut self) -> Result<String> {
        if let Some((id, _)) = &self.session {
            return Ok(id.clone());
        }
        let start = Instant::now();
        let id = loop {
            if let (Ok(id), Some(beat)) = (std::fs::read_to_string(self.dir.join("session")), read_beat(&self.dir, AUDITOR)) {
                if beat.session == id.trim() && beat.state == "alive" && beat.age < STALE && beat.pid_alive() {
                    break id.trim().to_string();
                }
            }
            if start.elapsed() > self.timeout {
                return Err(ckpt_err(&self.dir, format!("no live auditor session in {:.0} s (start `fairvlm lora auditor` on this folder)", self.timeout.as_secs_f64())));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let beat = Heartbeat::start(&self.dir, DEVELOPER, &id)?;
        self.session = Some((id.clone(), beat));
        Ok(id)
    }
}

/// A party's heartbeat is stale after this long: the party is declared dead.
pub const STALE: Duration = Duration::from_secs(3);
const AUDITOR: &str = "auditor";
const DEVELOPER: &str = "developer";

/// A party's heartbeat file, rewritten by a thread until dropped (then marked finished).
struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    path: PathBuf,
    line: String,
}

impl Heartbeat {
    fn start(dir: &Path, role: &str, session: &str) -> Result<Self> {
        let path = dir.join(format!("{role}.alive"));
        let host = crate::lock::host_name();
        let line = format!("pid={} host={host} session={session}", std::process::id());
        write_beat(&path, &line, "alive")?;
        let stop = Arc::new(AtomicBool::new(false));
        let (p, l, s) = (path.clone(), line.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(200));
                if !s.load(Ordering::SeqCst) {
                    let _ = write_beat(&p, &l, "alive");
                }
            }
        });
        Ok(Self { stop, thread: Some(thread), path, line })
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = write_beat(&self.path, &self.line, "finished");
    }
}

fn write_beat(path: &Path, line: &str, state: &str) -> Result<()> {
    publish(path, |tmp| std::fs::write(tmp, format!("{line} state={state}\n")).map_err(io_err(tmp)))
}

/// A heartbeat as read: who, which session, alive or finished, and how old.
struct Beat {
    pid: u32,
    host: String,
    session: String,
    state: String,
    age: Duration,
}

impl Beat {
    /// False only when the party runs on this host and its process is gone.
    fn pid_alive(&self) -> bool {
        let here = crate::lock::host_name();
        self.host != here || Path::new(&format!("/proc/{}", self.pid)).exists() || !Path::new("/proc/self").exists()
    }
}

fn read_beat(dir: &Path, role: &str) -> Option<Beat> {
    let path = dir.join(format!("{role}.alive"));
    let text = std::fs::read_to_string(&path).ok()?;
    let age = std::fs::metadata(&path).ok()?.modified().ok()?.elapsed().unwrap_or_default();
    let field = |k: &str| text.split_whitespace().find_map(|kv| kv.strip_prefix(k).and_then(|v| v.strip_prefix('='))).map(str::to_owned);
    Some(Beat { pid: field("pid")?.parse().ok()?, host: field("host")?, session: field("session")?, state: field("state")?, age })
}

/// `Ok` while the other party of `session` may still answer; an error naming it when its
/// heartbeat stopped, its process is gone or it finished. A party that has not joined yet
/// (no heartbeat of this session) is left to the timeout.
fn check_peer(dir: &Path, role: &str, session: &str) -> Result<()> {
    let Some(beat) = read_beat(dir, role) else { return Ok(()) };
    if beat.session != session {
        return Ok(());
    }
    let who = format!("the {role} (pid {} on {})", beat.pid, beat.host);
    if beat.state == "finished" {
        return Err(ckpt_err(dir, format!("{who} finished without answering")));
    }
    if !beat.pid_alive() {
        return Err(ckpt_err(dir, format!("{who} is no longer running")));
    }
    if beat.age > STALE {
        return Err(ckpt_err(dir, format!("{who} stopped: no heartbeat for {:.1} s", beat.age.as_secs_f64())));
    }
    Ok(())
}

fn wait_for(path: &Path, timeout: Duration, peer: Option<(&Path, &str, &str)>) -> Result<()> {
    let start = Instant::now();
    let mut checked = Instant::now();
    while !path.exists() {
        if start.elapsed() > timeout {
            return Err(ckpt_err(path, format!("the other party wrote nothing in {:.0} s", timeout.as_secs_f64())));
        }
        if let Some((dir, role, session)) = peer {
            if checked.elapsed() > Duration::from_millis(100) {
                check_peer(dir, role, session)?;
                checked = Instant::now();
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// Writes a file's content under a temporary name and renames it, so the reader never sees it
/// half-written.
fn publish(path: &Path, write: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let tmp = path.with_extension(format!("partial{}", std::process::id()));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn round_dir(dir: &Path, session: &str, round: usize) -> PathBuf {
    dir.join("rounds").join(session).join(format!("{round:06}"))
}

/// Every value of a payload finite, or an error naming the file.
fn check_values(path: &Path, adapters: &Adapters) -> Result<()> {
    for (p, (a, ad, b, bd)) in adapters {
        if a.len() != ad[0] * ad[1] || b.len() != bd[0] * bd[1] {
            return Err(ckpt_err(path, format!("{p}: values do not match the shapes {ad:?} and {bd:?}")));
        }
        if let Some(v) = a.iter().chain(b).find(|v| !v.is_finite()) {
            return Err(ckpt_err(path, format!("{p}: a value is {v}")));
        }
    }
    Ok(())
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
        let session = self.connect()?;
        let dir = self.dir.join("sensitive");
        let ready = dir.join("ready");
        loop {
            wait_for(&ready, self.timeout, Some((&self.dir, AUDITOR, &session)))?;
            if std::fs::read_to_string(&ready).map(|s| s.trim() == session).unwrap_or(false) {
                break;
            }
            // An earlier session's file: the auditor clears it before publishing its own.
            std::thread::sleep(Duration::from_millis(20));
            check_peer(&self.dir, AUDITOR, &session)?;
        }
        let values = load_adapter_values::<B>(&dir)?;
        check_values(&dir, &values)?;
        Ok(values)
    }

    fn gradient(&mut self, round: usize, adapters: &Adapters) -> Result<AdapterGrads> {
        let session = self.connect()?;
        let rd = round_dir(&self.dir, &session, round);
        std::fs::create_dir_all(&rd).map_err(io_err(&rd))?;
        let exp = self.exp.clone();
        publish(&rd.join("adapter"), |tmp| save_adapter_values::<B>(tmp, adapters, &exp))?;
        let g = rd.join("gradient.safetensors");
        wait_for(&g, self.timeout, Some((&self.dir, AUDITOR, &session)))?;
        let grads = read_grads(&g)?;
        // Nothing of a finished round is needed again.
        std::fs::remove_dir_all(&rd).map_err(io_err(&rd))?;
        Ok(grads)
    }

    fn finish(&mut self) -> Result<()> {
        let session = self.connect()?;
        publish(&self.dir.join("done"), |tmp| std::fs::write(tmp, &session).map_err(io_err(tmp)))
    }
}

/// The auditor's side of [`FileLink`]: publishes the sensitive adapter when the method needs
/// it, then answers gradient rounds until the developer writes `done`.
pub fn serve_files<B: AutodiffBackend>(auditor: &mut Auditor<B>, dir: &Path, timeout: Duration) -> Result<usize> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // A new session: an earlier one's files go first, so that none is taken for this one's.
    for stale in ["done", "auditor-ready", "session"] {
        let p = dir.join(stale);
        if p.exists() {
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    for stale in ["rounds", "sensitive"] {
        let p = dir.join(stale);
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
        }
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let session = format!("{}-{nanos:x}", std::process::id());
    let _beat = Heartbeat::start(dir, AUDITOR, &session)?;
    publish(&dir.join("session"), |tmp| std::fs::write(tmp, &session).map_err(io_err(tmp)))?;
    let exp = auditor.exp.clone();
    if exp.needs_sensitive_model() {
        let values = auditor.sensitive_adapter()?;
        if exp.needs_sensitive_adapter() {
            let s = dir.join("sensitive");
            save_adapter_values::<B>(&s, &values, &exp)?;
            publish(&s.join("ready"), |tmp| std::fs::write(tmp, &session).map_err(io_err(tmp)))?;
        }
    }
    // Everything the auditor reads is in memory now: the developer may start.
    std::fs::write(dir.join("auditor-ready"), &session).map_err(io_err(dir))?;
    let mut rounds = 0;
    let finished = |dir: &Path| std::fs::read_to_string(dir.join("done")).map(|s| s.trim() == session).unwrap_or(false);
    if !exp.needs_gradients() {
        // Wait for the developer to take the sensitive adapter and finish, so that it does not
        // find this session's heartbeat marked finished while it reads.
        let start = Instant::now();
        while !finished(dir) {
            if start.elapsed() > timeout {
                return Err(ckpt_err(dir, format!("the developer did not finish in {:.0} s", timeout.as_secs_f64())));
            }
            check_peer(dir, DEVELOPER, &session)?;
            std::thread::sleep(Duration::from_millis(20));
        }
        return Ok(rounds);
    }
    let mut last = Instant::now();
    let mut checked = Instant::now();
    loop {
        let rd = round_dir(dir, &session, rounds);
        let adapter = rd.join("adapter");
        if adapter.exists() {
            let values = load_adapter_values::<B>(&adapter)?;
            check_values(&adapter, &values)?;
            let grads = auditor.gradient(&values)?;
            publish(&rd.join("gradient.safetensors"), |tmp| write_grads(tmp, &grads, &values))?;
            rounds += 1;
            last = Instant::now();
        } else if finished(dir) {
            return Ok(rounds);
        } else if last.elapsed() > timeout {
            return Err(ckpt_err(&adapter, format!("the developer wrote nothing in {:.0} s", timeout.as_secs_f64())));
        } else {
            if checked.elapsed() > Duration::from_millis(100) {
                check_peer(dir, DEVELOPER, &session)?;
                checked = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}
