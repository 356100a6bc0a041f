//! Data-parallel training through burn's collective operations (`fairvlm train --devices N`,
//! and `--nodes` across processes): every device holds a replica of the model and computes
//! its shard of every batch; the replicas' gradients are averaged with burn-collective's
//! all-reduce before each optimiser step, so every replica takes the same step.
//!
//! The methods' losses are not all means over independent samples: CLIP's InfoNCE compares
//! every image with every text of the batch, FairCLIP's Sinkhorn term compares the batch's
//! similarities with each group batch's, OGM-GE and MultiFair read statistics of the whole
//! batch. So a replica does not compute the loss of its shard: it [gathers](Replica::gather)
//! the per-sample outputs of every replica (the embeddings, the logits) and computes the loss
//! of the whole batch, as one device would. The gradient flows back only into its own rows,
//! scaled by the number of replicas, so that the all-reduce's mean is the whole batch's
//! gradient (as `torch.distributed.nn.all_gather` with DDP's averaging, open_clip's
//! `gather_with_grad`). N replicas with batch B/N each therefore take the steps of one device
//! with batch B (tested to 1e-5 after 5 steps, `tests/parallel.rs`).
//!
//! Where the equivalence stops: dropout draws its masks per replica, and the token-level MoE's
//! expert capacity is per replica (per device, as GShard and Switch count it).

use std::ops::Range;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

use crate::error::{Error, Result};

/// Several processes (nodes) of one data-parallel run, through burn-collective's global mode:
/// an orchestrator (`fairvlm collective-orchestrator --port P`) that every node reaches, and a
/// data port on each node for the tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nodes {
    /// How many nodes take part.
    pub count: usize,
    /// This node's 0-based rank; rank 0 writes the run folder.
    pub rank: usize,
    /// The orchestrator's address, `ws://host:port`.
    pub orchestrator: String,
    /// This node's address as the others reach it, `ws://host:port` (the port is the data port).
    pub address: String,
}

impl Nodes {
    /// The data port of [`Nodes::address`].
    #[cfg(feature = "collective")]
    fn data_port(&self) -> Result<u16> {
        self.address
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse().ok())
            .ok_or_else(|| Error::Invalid(format!("--node-address {}: expected ws://host:port", self.address)))
    }
}

/// One replica's place in a data-parallel run: its 0-based index among all replicas (of all
/// nodes) and their number. A single device is `Replica::single()`, for which everything here
/// is the identity.
///
/// ```
/// let r = trainer::Replica::new(1, 2);
/// assert_eq!(r.shard(32), 16..32); // the second half of a batch of 32
/// assert_eq!(trainer::Replica::single().shard(32), 0..32);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    index: usize,
    count: usize,
}

impl Replica {
    /// The only replica of a single-device run.
    pub fn single() -> Self {
        Self { index: 0, count: 1 }
    }

    /// Replica `index` of `count` (`index < count`).
    pub fn new(index: usize, count: usize) -> Self {
        Self { index: index.min(count.saturating_sub(1)), count: count.max(1) }
    }

    /// The 0-based index.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many replicas take part.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Whether this is the replica that evaluates, logs and writes the run folder.
    pub fn is_first(&self) -> bool {
        self.index == 0
    }

    /// The rows of a batch of `n` that this replica computes: contiguous, in replica order,
    /// their sizes differing by at most one.
    pub fn shard(&self, n: usize) -> Range<usize> {
        self.index * n / self.count..(self.index + 1) * n / self.count
    }

    /// Every replica's rows of a tensor whose first dimension holds `rows_per_sample` rows per
    /// sample of this replica's shard of a batch of `whole` samples, in batch order, without
    /// gradient (an all-reduce of the zero-padded shards).
    pub fn gather_values<B: Backend, const D: usize>(&self, local: Tensor<B, D>, whole: usize) -> Result<Tensor<B, D>> {
        if self.count == 1 {
            return Ok(local);
        }
        let (range, k) = self.rows(&local, whole)?;
        let device = local.device();
        let mut dims = local.dims();
        let mut parts = Vec::with_capacity(3);
        if range.start > 0 {
            dims[0] = range.start * k;
            parts.push(Tensor::<B, D>::zeros(dims, &device));
        }
        parts.push(local);
        if range.end < whole {
            dims[0] = (whole - range.end) * k;
            parts.push(Tensor::<B, D>::zeros(dims, &device));
        }
        let padded = Tensor::cat(parts, 0);
        Ok(Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(collective::all_reduce_sum::<B>(self, padded.into_primitive().tensor())?)))
    }

    /// Every replica's rows of `local` (as [`Replica::gather_values`]), with this replica's own
    /// rows carrying the gradient, multiplied by the number of replicas: the all-reduce's mean
    /// of the replicas' gradients is then the whole batch's.
    pub fn gather<B: AutodiffBackend, const D: usize>(&self, local: Tensor<B, D>, whole: usize) -> Result<Tensor<B, D>> {
        if self.count == 1 {
            return Ok(local);
        }
        let (range, k) = self.rows(&local, whole)?;
        let all = self.gather_values(local.clone().inner(), whole)?;
        // Value `local` exactly (the difference is zero), gradient `count` times.
        let own = local.clone() + (local.clone() - local.detach()).mul_scalar((self.count - 1) as f64);
        let mut parts = Vec::with_capacity(3);
        if range.start > 0 {
            parts.push(Tensor::from_inner(all.clone().narrow(0, 0, range.start * k)));
        }
        parts.push(own);
        if range.end < whole {
            parts.push(Tensor::from_inner(all.narrow(0, range.end * k, (whole - range.end) * k)));
        }
        Ok(Tensor::cat(parts, 0))
    }

    /// This replica's shard and the rows per sample of `local`.
    fn rows<B: Backend, const D: usize>(&self, local: &Tensor<B, D>, whole: usize) -> Result<(Range<usize>, usize)> {
        let range = self.shard(whole);
        let rows = local.dims()[0];
        if range.is_empty() || rows % range.len() != 0 {
            return Err(Error::Invalid(format!("replica {} of {}: {rows} rows for a shard of {} samples of {whole}", self.index, self.count, range.len())));
        }
        Ok((range.clone(), rows / range.len()))
    }

    /// `grads` of `module` averaged over the replicas (burn-collective's all-reduce, one
    /// parameter after another in the module's order, which every replica shares).
    pub fn mean<B: AutodiffBackend, M: AutodiffModule<B>>(&self, grads: GradientsParams, module: &M) -> Result<GradientsParams> {
        if self.count == 1 {
            return Ok(grads);
        }
        let mut visitor = Mean::<B> { replica: *self, grads, error: None, backend: std::marker::PhantomData };
        module.visit(&mut visitor);
        match visitor.error {
            Some(e) => Err(e),
            None => Ok(visitor.grads),
        }
    }
}

struct Mean<B> {
    replica: Replica,
    grads: GradientsParams,
    error: Option<Error>,
    backend: std::marker::PhantomData<B>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Mean<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.error.is_some() {
            return;
        }
        let Some(g) = self.grads.remove::<B::InnerBackend, D>(param.id) else { return };
        match collective::all_reduce_mean::<B::InnerBackend>(&self.replica, g.into_primitive().tensor()) {
            Ok(t) => self.grads.register::<B::InnerBackend, D>(param.id, Tensor::from_primitive(burn::tensor::TensorPrimitive::Float(t))),
            Err(e) => self.error = Some(e),
        }
    }
}

/// The devices of a `--devices n` run: the default device's kind, indices 0 to n - 1 (CUDA's
/// GPUs 0..n; the CPU backend has one device, which its replicas share).
pub fn devices<B: Backend>(n: usize) -> Vec<B::Device> {
    use burn::tensor::backend::{Device, DeviceId, DeviceOps};
    let first = B::Device::default().id();
    (0..n.max(1)).map(|i| <B::Device as Device>::from_id(DeviceId { type_id: first.type_id, index_id: i as u16 })).collect()
}

/// Runs `body(replica, device)` for every device of this node, each on its own thread (the
/// first on the calling thread), after registering it with burn-collective; returns the
/// first replica's result. A replica that fails resets the collective, so that the others
/// stop waiting for it.
pub(crate) fn launch<B: AutodiffBackend, T: Send>(devices: &[B::Device], nodes: Option<&Nodes>, body: impl Fn(Replica, &B::Device) -> Result<T> + Sync) -> Result<T> {
    let node = nodes.map_or(0, |n| n.rank);
    let count = devices.len() * nodes.map_or(1, |n| n.count);
    if let Some(n) = nodes {
        if n.count == 0 || n.rank >= n.count {
            return Err(Error::Invalid(format!("--node-rank {} with --nodes {}: expected a rank below the node count", n.rank, n.count)));
        }
    }
    let replicas: Vec<Replica> = (0..devices.len()).map(|i| Replica::new(node * devices.len() + i, count)).collect();
    if count == 1 {
        return body(replicas[0], &devices[0]);
    }
    collective::check(devices.len(), nodes)?;
    let run = |replica: Replica, device: &B::Device| -> Result<T> {
        let result = collective::register::<B::InnerBackend>(&replica, devices.len(), nodes, device).and_then(|()| body(replica, device));
        match &result {
            Ok(_) => collective::finish::<B::InnerBackend>(&replica),
            Err(e) => {
                tracing::error!("replica {} of {count} failed: {e}", replica.index());
                collective::abort::<B::InnerBackend>();
            }
        }
        result
    };
    std::thread::scope(|s| {
        let others: Vec<_> = replicas.iter().zip(devices).skip(1).map(|(&r, d)| s.spawn(move || run(r, d))).collect();
        let first = run(replicas[0], &devices[0]);
        let mut failed = None;
        for h in others {
            match h.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => failed = failed.or(Some(e)),
                Err(_) => failed = failed.or(Some(Error::Invalid("a replica's thread panicked".into()))),
            }
        }
        match (first, failed) {
            (Ok(t), None) => Ok(t),
            (Err(e), _) | (Ok(_), Some(e)) => Err(e),
        }
    })
}

#[cfg(feature = "collective")]
mod collective {
    use burn::tensor::backend::Backend;
    use burn_collective::{AllReduceStrategy, CollectiveConfig, PeerId, ReduceOperation};

    use super::{Nodes, Replica};
    use crate::error::{Error, Result};

    fn err(what: &str) -> impl Fn(burn_collective::CollectiveError) -> Error + '_ {
        move |e| Error::Invalid(format!("{what} (burn-collective): {e:?}"))
    }

    fn config(devices: usize, nodes: Option<&Nodes>) -> Result<CollectiveConfig> {
        // Centralised: the reduced sums are then the same on every replica to the last bit,
        // whatever the number of replicas (a tree or ring adds in another order per peer).
        let mut c = CollectiveConfig::default().with_num_devices(devices).with_local_all_reduce_strategy(AllReduceStrategy::Centralized);
        if let Some(n) = nodes {
            let global = n.orchestrator.parse().map_err(|e: String| Error::Invalid(format!("--orchestrator {}: {e}", n.orchestrator)))?;
            let node = n.address.parse().map_err(|e: String| Error::Invalid(format!("--node-address {}: {e}", n.address)))?;
            c = c.with_num_nodes(n.count as u32).with_global_address(global).with_node_address(node).with_data_service_port(n.data_port()?);
        }
        Ok(c)
    }

    /// Checks the settings before any replica starts.
    pub(super) fn check(devices: usize, nodes: Option<&Nodes>) -> Result<()> {
        config(devices, nodes).map(|_| ())
    }

    pub(super) fn register<B: Backend>(r: &Replica, devices: usize, nodes: Option<&Nodes>, device: &B::Device) -> Result<()> {
        burn_collective::register::<B>(PeerId::from(r.index()), device.clone(), config(devices, nodes)?).map_err(err("registering a replica"))
    }

    pub(super) fn finish<B: Backend>(r: &Replica) {
        if let Err(e) = burn_collective::finish_collective::<B>(PeerId::from(r.index())) {
            tracing::warn!("replica {}: leaving the collective: {e:?}", r.index());
        }
    }

    pub(super) fn abort<B: Backend>() {
        burn_collective::reset_collective::<B>();
    }

    pub(super) fn all_reduce_sum<B: Backend>(r: &Replica, t: B::FloatTensorPrimitive) -> Result<B::FloatTensorPrimitive> {
        use burn::tensor::TensorMetadata;
        tracing::debug!("replica {}: gathering {:?}", r.index(), t.shape());
        burn_collective::all_reduce::<B>(PeerId::from(r.index()), t, ReduceOperation::Sum).map_err(err("gathering the replicas' outputs"))
    }

    pub(super) fn all_reduce_mean<B: Backend>(r: &Replica, t: B::FloatTensorPrimitive) -> Result<B::FloatTensorPrimitive> {
        use burn::tensor::TensorMetadata;
        tracing::debug!("replica {}: averaging {:?}", r.index(), t.shape());
        burn_collective::all_reduce::<B>(PeerId::from(r.index()), t, ReduceOperation::Mean).map_err(err("averaging the replicas' gradients"))
    }

    /// Serves burn-collective's global orchestrator on `port` until the process is stopped.
    pub(crate) fn serve_orchestrator(port: u16) -> Result<()> {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| Error::Invalid(format!("starting the orchestrator's runtime: {e}")))?;
        rt.block_on(burn_collective::start_global_orchestrator(port));
        Ok(())
    }
}

#[cfg(not(feature = "collective"))]
mod collective {
    use burn::tensor::backend::Backend;

    use super::{Nodes, Replica};
    use crate::error::{Error, Result};

    fn off() -> Error {
        Error::Invalid("several devices need the trainer's `collective` feature (on by default); this build left it out".into())
    }

    pub(super) fn check(_: usize, _: Option<&Nodes>) -> Result<()> {
        Err(off())
    }
    pub(super) fn register<B: Backend>(_: &Replica, _: usize, _: Option<&Nodes>, _: &B::Device) -> Result<()> {
        Err(off())
    }
    pub(super) fn finish<B: Backend>(_: &Replica) {}
    pub(super) fn abort<B: Backend>() {}
    pub(super) fn all_reduce_sum<B: Backend>(_: &Replica, _: B::FloatTensorPrimitive) -> Result<B::FloatTensorPrimitive> {
        Err(off())
    }
    pub(super) fn all_reduce_mean<B: Backend>(_: &Replica, _: B::FloatTensorPrimitive) -> Result<B::FloatTensorPrimitive> {
        Err(off())
    }
    pub(crate) fn serve_orchestrator(_: u16) -> Result<()> {
        Err(off())
    }
}

/// Serves burn-collective's global orchestrator on `port` until the process is stopped: what
/// the nodes of a multi-process run (`--nodes`) reach at `--orchestrator ws://host:port`.
pub fn serve_orchestrator(port: u16) -> Result<()> {
    collective::serve_orchestrator(port)
}
