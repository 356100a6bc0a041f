//! The streaming input pipeline: images are decoded and preprocessed on demand by a pool of
//! worker threads, a bounded number of batches ahead of training, in the order the sampler
//! decided; an optional cache keeps preprocessed images up to a size in bytes.
//!
//! A batch's content depends only on its rows, never on which worker decoded it or when, so
//! the same order gives the same batches whatever the number of workers.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::error::{Error, Result};

/// One sample's preprocessed pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// 1 (grey, CLIP's three channels are the same) or 3 (RGB planes).
    pub channels: usize,
    /// `channels * size * size` bytes, channel-major.
    pub pixels: Vec<u8>,
    /// OCT slices (FairVision data), empty otherwise.
    pub oct: Vec<f32>,
}

impl Item {
    /// Bytes held (for the cache's budget).
    fn bytes(&self) -> usize {
        self.pixels.len() + 4 * self.oct.len()
    }
}

/// Where a split's images come from: files decoded on demand, or pixels already in memory.
pub trait ImageSource: Send + Sync + fmt::Debug {
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The file of sample `i` (for errors and the dataset card), if it comes from one.
    fn file(&self, i: usize) -> Option<PathBuf>;
    /// Sample `i`, decoded and preprocessed to `size x size`.
    fn load(&self, i: usize, size: usize) -> Result<Item>;
    /// Reads sample `i` in full and returns its stored (width, height, channels): what
    /// `fairvlm data check` does to every file.
    fn inspect(&self, i: usize) -> Result<(usize, usize, usize)>;
    /// Whether loading costs nothing worth a worker (pixels already in memory).
    fn in_memory(&self) -> bool {
        false
    }
}

/// Pixels already preprocessed in memory (the synthetic benchmark, generated in memory).
#[derive(Debug, Clone)]
pub struct InMemory {
    size: usize,
    channels: usize,
    pixels: Vec<u8>,
    oct: Option<(usize, Vec<f32>)>,
}

impl InMemory {
    /// `channels * size * size` bytes per sample, and optionally `per` OCT values per sample.
    pub fn new(size: usize, channels: usize, pixels: Vec<u8>, oct: Option<(usize, Vec<f32>)>) -> Self {
        Self { size, channels, pixels, oct }
    }
}

impl ImageSource for InMemory {
    fn len(&self) -> usize {
        self.pixels.len() / (self.channels * self.size * self.size).max(1)
    }
    fn file(&self, _i: usize) -> Option<PathBuf> {
        None
    }
    fn load(&self, i: usize, size: usize) -> Result<Item> {
        if size != self.size {
            return Err(Error::Invalid(format!("images were prepared at {} px, not {size}", self.size)));
        }
        let n = self.channels * size * size;
        let oct = self.oct.as_ref().map(|(per, v)| v[i * per..(i + 1) * per].to_vec()).unwrap_or_default();
        Ok(Item { channels: self.channels, pixels: self.pixels[i * n..(i + 1) * n].to_vec(), oct })
    }
    fn inspect(&self, _i: usize) -> Result<(usize, usize, usize)> {
        Ok((self.size, self.size, self.channels))
    }
    fn in_memory(&self) -> bool {
        true
    }
}

/// How the pipeline runs: `[data.pipeline]` in an experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pipeline {
    /// Decoding threads (0: one per core, at most 8).
    pub workers: usize,
    /// Batches decoded ahead of the one training uses (at least one per worker: each worker
    /// decodes a whole batch).
    pub prefetch: usize,
    /// Preprocessed images kept in memory, in MiB (0: no cache, every epoch decodes again).
    pub cache_mib: usize,
}

impl Default for Pipeline {
    /// Two batches ahead, one worker per core, a 512 MiB cache.
    fn default() -> Self {
        Self { workers: 0, prefetch: 2, cache_mib: 512 }
    }
}

impl Pipeline {
    /// The number of decoding threads.
    pub fn threads(&self) -> usize {
        if self.workers > 0 {
            self.workers
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get()).min(8)
        }
    }
}

/// Preprocessed images kept up to a budget: the first images loaded stay (no eviction), which
/// is all a dataset that fits needs and keeps memory flat for one that does not.
#[derive(Debug, Default)]
pub(crate) struct Cache {
    budget: usize,
    held: Mutex<(usize, HashMap<usize, Arc<Item>>)>,
}

impl Cache {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        Self { budget: budget_bytes, held: Mutex::new((0, HashMap::new())) }
    }

    fn get(&self, i: usize) -> Option<Arc<Item>> {
        if self.budget == 0 {
            return None;
        }
        self.held.lock().ok()?.1.get(&i).cloned()
    }

    fn offer(&self, i: usize, item: &Arc<Item>) {
        if self.budget == 0 {
            return;
        }
        if let Ok(mut held) = self.held.lock() {
            let (used, map) = &mut *held;
            if *used + item.bytes() <= self.budget && !map.contains_key(&i) {
                *used += item.bytes();
                map.insert(i, item.clone());
            }
        }
    }
}

/// A source with its cache and output size: what a worker needs.
#[derive(Debug, Clone)]
pub(crate) struct Loader {
    pub(crate) source: Arc<dyn ImageSource>,
    pub(crate) cache: Arc<Cache>,
    pub(crate) size: usize,
}

impl Loader {
    fn item(&self, i: usize) -> Result<Arc<Item>> {
        if let Some(item) = self.cache.get(i) {
            return Ok(item);
        }
        let item = Arc::new(self.source.load(i, self.size)?);
        self.cache.offer(i, &item);
        Ok(item)
    }

    /// The normalised images (`[rows, 3, size, size]`) and OCT slices of `rows`.
    pub(crate) fn pixels(&self, rows: &[usize]) -> Result<Pixels> {
        let s2 = self.size * self.size;
        let mut images = Vec::with_capacity(rows.len() * 3 * s2);
        let mut oct = Vec::new();
        for &i in rows {
            let item = self.item(i)?;
            for c in 0..3 {
                let plane = if item.channels == 1 { &item.pixels[..s2] } else { &item.pixels[c * s2..(c + 1) * s2] };
                crate::preprocess::normalize_into(plane, c, &mut images);
            }
            oct.extend_from_slice(&item.oct);
        }
        Ok(Pixels { images, oct })
    }

    /// [`Loader::pixels`] split over `threads` scoped threads (in-memory sources run inline).
    pub(crate) fn pixels_parallel(&self, rows: &[usize], threads: usize) -> Result<Pixels> {
        if threads <= 1 || rows.len() < 2 || self.source.in_memory() {
            return self.pixels(rows);
        }
        let chunk = rows.len().div_ceil(threads);
        let parts: Vec<Result<Pixels>> = std::thread::scope(|s| {
            // A panic in a part becomes its error.
            let handles: Vec<_> = rows.chunks(chunk).map(|part| s.spawn(move || self.pixels(part))).collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err(Error::Invalid("an image worker panicked".into())))).collect()
        });
        let mut out = Pixels { images: Vec::with_capacity(rows.len() * 3 * self.size * self.size), oct: Vec::new() };
        for p in parts {
            let p = p?;
            out.images.extend(p.images);
            out.oct.extend(p.oct);
        }
        Ok(out)
    }
}

/// The pixels of a batch's rows, normalised, on the host.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pixels {
    pub(crate) images: Vec<f32>,
    pub(crate) oct: Vec<f32>,
}

/// Batches decoded in the background, handed out in order: at most `prefetch` batches wait
/// decoded at any time, so memory does not grow with the dataset.
pub struct Stream {
    batches: Vec<Vec<usize>>,
    rx: Option<Receiver<(usize, Result<Pixels>)>>,
    ready: BTreeMap<usize, Result<Pixels>>,
    next: usize,
    gate: Arc<(Mutex<usize>, Condvar)>,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").field("batches", &self.batches.len()).field("next", &self.next).finish()
    }
}

impl Stream {
    pub(crate) fn start(loader: &Loader, batches: Vec<Vec<usize>>, pipeline: &Pipeline) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let gate = Arc::new((Mutex::new(0usize), Condvar::new()));
        let threads = if loader.source.in_memory() { 1 } else { pipeline.threads() };
        let depth = pipeline.prefetch.max(threads).max(1);
        let (tx, rx) = sync_channel(depth + threads);
        let jobs = Arc::new(AtomicUsize::new(0));
        let shared = Arc::new(batches.clone());
        let workers = (0..threads.min(batches.len()).max(1))
            .map(|_| {
                let (loader, jobs, shared, gate, stop, tx) = (loader.clone(), jobs.clone(), shared.clone(), gate.clone(), stop.clone(), tx.clone());
                std::thread::spawn(move || loop {
                    let j = jobs.fetch_add(1, Ordering::SeqCst);
                    if j >= shared.len() {
                        return;
                    }
                    // Wait until batch j is within `depth` of the one training takes next.
                    {
                        let (lock, cv) = &*gate;
                        let Ok(mut taken) = lock.lock() else { return };
                        while j >= *taken + depth && !stop.load(Ordering::SeqCst) {
                            let Ok(t) = cv.wait(taken) else { return };
                            taken = t;
                        }
                    }
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    // A panic becomes this batch's error: the consumer waits for batch j.
                    let pixels = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| loader.pixels(&shared[j])))
                        .unwrap_or_else(|_| Err(Error::Invalid(format!("decoding batch {j} (rows {:?}) panicked", shared[j]))));
                    if tx.send((j, pixels)).is_err() {
                        return;
                    }
                })
            })
            .collect();
        Self { batches, rx: Some(rx), ready: BTreeMap::new(), next: 0, gate, stop, workers }
    }

    /// The rows of the batch [`Stream::next_pixels`] returns next.
    pub fn peek_rows(&self) -> Option<&[usize]> {
        self.batches.get(self.next).map(Vec::as_slice)
    }

    /// The next batch's rows and pixels, in the order given.
    pub(crate) fn next_pixels(&mut self) -> Option<(Vec<usize>, Result<Pixels>)> {
        if self.next >= self.batches.len() {
            return None;
        }
        let j = self.next;
        while !self.ready.contains_key(&j) {
            match self.rx.as_ref().map(Receiver::recv) {
                Some(Ok((k, p))) => {
                    self.ready.insert(k, p);
                }
                _ => return Some((self.batches[j].clone(), Err(Error::Invalid("the image workers stopped".into())))),
            }
        }
        let pixels = self.ready.remove(&j)?;
        self.next += 1;
        let (lock, cv) = &*self.gate;
        if let Ok(mut taken) = lock.lock() {
            *taken = self.next;
        }
        cv.notify_all();
        Some((std::mem::take(&mut self.batches[j]), pixels))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        // Under the gate's lock, so that no worker checks `stop` and then misses the wake-up.
        {
            let _held = self.gate.0.lock();
            self.stop.store(true, Ordering::SeqCst);
        }
        self.gate.1.notify_all();
        // Dropping the receiver fails a worker's pending send, so none blocks.
        self.rx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}
