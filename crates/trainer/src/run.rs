//! The one run loop of every method: the run folder, the shuffled batches (and FairCLIP's
//! group batches), the learning-rate schedule, progress bars, per-epoch evaluation through
//! fair-metrics, model selection, atomic checkpoints, exact resume, the JSONL log and the
//! final reports. What differs between methods is the [`Recipe`].

use std::path::{Path, PathBuf};

use burn::tensor::backend::AutodiffBackend;
use fair_data::{Batches, EpochShuffle, GroupSampler, Prepared};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{ckpt_err, io_err, remove_older_states, write_atomic};
use crate::config::{Experiment, SelectOn};
use crate::data::ExperimentData;
use crate::epochs::{epochs, Epochs, Plan};
use crate::error::{Error, Result};
use crate::evaluate::{auc, collapsed, report, EpochMetrics};
use crate::log::{EpochLog, MultimodalLog, Sums};
use crate::optim::Schedule;
use crate::parallel::{launch, Nodes, Replica};
use crate::recipes::{self, Recipe, StepInput, StepStats, WithRecipe};
use crate::report::FinalReport;

/// Options of one run that are not part of the experiment.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The run folder.
    pub out: PathBuf,
    /// Continue a run in `out` after its last completed epoch.
    pub resume: bool,
    /// Show progress bars (on a terminal).
    pub progress: bool,
    /// Stop after this many epochs of this invocation (tests of `--resume` use it to simulate a
    /// kill between epochs); `None` runs to the end.
    pub stop_after: Option<usize>,
    /// This process's place in a run over several processes ([`Nodes`]); `None` for one.
    pub nodes: Option<Nodes>,
}

impl RunOptions {
    /// A run in `out`, from the start, with progress bars.
    pub fn new(out: impl Into<PathBuf>) -> Self {
        Self { out: out.into(), resume: false, progress: true, stop_after: None, nodes: None }
    }
}

/// The outcome of a finished run.
#[derive(Debug, Clone)]
pub struct TrainOutcome {
    /// Per-epoch log.
    pub history: Vec<EpochLog>,
    /// The selected epoch.
    pub best_epoch: usize,
    /// The final report of the selected model on the test split (None if stopped early).
    pub report: Option<FinalReport>,
}

/// What survives between invocations (`state.json`); the recipe's records are in
/// `state-<epoch>-*.bin`.
/// Runs of the multimodal methods started before the one loop wrote their step count inside
/// `modulation` (now `recipe`) and no group positions; both still resume.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    epochs_done: usize,
    #[serde(default)]
    steps: usize,
    best_epoch: usize,
    best_auc: f64,
    #[serde(default)]
    group_cursors: Vec<usize>,
    #[serde(default, alias = "modulation")]
    recipe: serde_json::Value,
    history: Vec<EpochLog>,
}

impl State {
    /// The state of a run folder, from either layout.
    fn parse(text: &str, path: &Path) -> Result<Self> {
        let mut st: State = serde_json::from_str(text).map_err(|e| ckpt_err(path, e))?;
        if st.steps == 0 && st.epochs_done > 0 {
            st.steps = st.recipe.get("steps").and_then(serde_json::Value::as_u64).ok_or_else(|| ckpt_err(path, "no step count"))? as usize;
        }
        Ok(st)
    }
}

/// Trains `exp` in `opts.out` with its method's recipe, evaluating after every epoch, and
/// writes the final reports.
pub fn train<B: AutodiffBackend>(exp: &Experiment, opts: &RunOptions, device: &B::Device) -> Result<TrainOutcome> {
    train_on::<B>(exp, opts, std::slice::from_ref(device))
}

/// [`train`] data-parallel over `devices` (and over the processes of `opts.nodes`): one
/// replica per device, each computing its shard of every batch, their gradients averaged by
/// burn-collective's all-reduce ([`Replica`]); the first replica evaluates and writes the run
/// folder. The steps are those of one device with the same batch size.
///
/// ```no_run
/// use burn::backend::{Autodiff, Flex};
/// type B = Autodiff<Flex>;
/// let exp = trainer::Experiment::from_file("configs/benchmark-clip.toml".as_ref())?;
/// let outcome = trainer::train_on::<B>(&exp, &trainer::RunOptions::new("runs/clip-2"), &trainer::devices::<B>(2))?;
/// # Ok::<(), trainer::Error>(())
/// ```
pub fn train_on<B: AutodiffBackend>(exp: &Experiment, opts: &RunOptions, devices: &[B::Device]) -> Result<TrainOutcome> {
    struct Train<'a, B: AutodiffBackend>(&'a Experiment, &'a RunOptions, &'a [B::Device]);
    impl<B: AutodiffBackend> WithRecipe<B> for Train<'_, B> {
        type Output = Result<TrainOutcome>;
        fn with<R: Recipe<B>>(self) -> Self::Output {
            run_on::<B, R>(self.0, self.1, self.2)
        }
    }
    recipes::dispatch::<B, _>(exp.method, Train(exp, opts, devices))
}

/// Opens a run folder: a new run writes its config and tokenizer; an existing one is refused
/// without `--resume`, refused with another config, and otherwise yields its `state.json` and
/// its own tokenizer (so token ids cannot change under the model). Then loads the data.
fn open_run(exp: &Experiment, opts: &RunOptions) -> Result<(Option<State>, ExperimentData, crate::lock::RunLock)> {
    let out = &opts.out;
    let lock = crate::lock::RunLock::acquire(out)?;
    let has_run = out.join("state.json").is_file();
    if has_run && !opts.resume {
        return Err(ckpt_err(out, "already holds a run; continue it with --resume or choose another --out"));
    }
    let state: Option<State> = if has_run {
        let saved = out.join("config.toml");
        let text = std::fs::read_to_string(&saved).map_err(io_err(&saved))?;
        if Experiment::from_toml_str(&text, &saved.display().to_string())? != *exp {
            return Err(ckpt_err(&saved, "the run was started with a different config; resume with the same one or use a new --out"));
        }
        let path = out.join("state.json");
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        Some(State::parse(&text, &path)?)
    } else {
        None
    };
    crate::lock::clean_leftovers(out, state.as_ref().map_or(0, |s| s.epochs_done))?;
    let tokenizer = match &state {
        Some(_) => Some(fair_data::TextTokenizer::from_file(&out.join("tokenizer.json"), exp.data.context_length)?),
        None => None,
    };
    let data = ExperimentData::load(exp, tokenizer)?;
    data.report_skipped(out)?;
    if state.is_none() {
        write_atomic(&out.join("config.toml"), exp.to_toml().as_bytes())?;
        data.tokenizer.save(&out.join("tokenizer.json"))?;
    }
    Ok((state, data, lock))
}

/// A recipe with the training data, the group sampler and the schedule: what one training
/// step needs. The run loop drives it, and so do the benches, so they time the same step.
pub struct Trainer<B: AutodiffBackend, R: Recipe<B>> {
    /// The method.
    pub recipe: R,
    data: ExperimentData,
    groups: Option<GroupSampler>,
    schedule: Schedule,
    steps: usize,
    device: B::Device,
    replica: Replica,
    /// This epoch's batches, decoded ahead by the pipeline.
    stream: Option<Batches>,
}

impl<B: AutodiffBackend, R: Recipe<B>> Trainer<B, R> {
    /// The recipe of `exp` on `data`, with FairCLIP's group sampler where it asks for one.
    pub fn new(exp: &Experiment, data: ExperimentData, device: &B::Device) -> Result<Self> {
        let recipe = R::new(exp, &data, device)?;
        let groups = match recipe.group_batches() {
            Some((attribute, batch)) => Some(group_sampler(&data.train, attribute, batch, exp.seed)?),
            None => None,
        };
        Ok(Self { recipe, data, groups, schedule: Schedule::of(&exp.optim), steps: 0, device: device.clone(), replica: Replica::single(), stream: None })
    }

    /// The names of the groups whose batches each step receives (the values of the recipe's
    /// group attribute, in [`StepInput::groups`]' order); empty without group batches.
    fn group_names(&self) -> Vec<String> {
        let (Some(sampler), Some((attribute, _))) = (&self.groups, self.recipe.group_batches()) else { return Vec::new() };
        let column = self.data.train.attributes.column(attribute).ok();
        sampler.codes().into_iter().map(|c| column.map_or(c.to_string(), |col| col.label(c).to_string())).collect()
    }

    /// The same trainer as `replica` of a data-parallel run: it decodes and computes only its
    /// shard of every batch.
    pub fn with_replica(mut self, replica: Replica) -> Self {
        self.replica = replica;
        self
    }

    /// This replica's rows of the batch `rows`.
    fn shard<'r>(&self, rows: &'r [usize]) -> &'r [usize] {
        &rows[self.replica.shard(rows.len())]
    }

    /// The batch of `rows`, decoded for this replica: its shard's tensors, the whole batch's
    /// labels and attributes (see [`StepInput::batch`]).
    fn replica_batch(&self, rows: &[usize], decoded: Option<fair_data::Result<fair_data::ClipBatch<B>>>) -> Result<fair_data::ClipBatch<B>> {
        let mut batch = match decoded {
            Some(b) => b?,
            None => self.data.train.batch::<B>(self.shard(rows), &self.device)?,
        };
        if self.replica.count() > 1 {
            batch.labels = rows.iter().map(|&r| self.data.train.labels[r]).collect();
            batch.attributes = self.data.train.attributes.select(rows);
        }
        Ok(batch)
    }

    /// The data.
    pub fn data(&self) -> &ExperimentData {
        &self.data
    }

    /// Starts decoding `batches` (training rows, in the order the steps will ask for them)
    /// in the background; [`Trainer::step`] takes them from there.
    pub fn prefetch(&mut self, batches: Vec<Vec<usize>>) {
        let shards = batches.iter().map(|rows| self.shard(rows).to_vec()).collect();
        self.stream = Some(self.data.train.stream(shards));
    }

    /// One training step on the training rows `rows` in (1-based) `epoch`: the batch (from
    /// the prefetched ones when they are these rows, else decoded now), a batch of every
    /// group where the recipe asks for them, and the recipe's step.
    pub fn step(&mut self, rows: &[usize], epoch: usize) -> Result<StepStats> {
        let shard = self.shard(rows).to_vec();
        let prefetched = match &mut self.stream {
            Some(s) if s.peek_rows() == Some(&shard) => s.next_batch::<B>(&self.device),
            _ => None,
        };
        let batch = self.replica_batch(rows, prefetched)?;
        let groups = match &mut self.groups {
            Some(g) => g.next_all(),
            None => vec![],
        };
        let groups = groups.iter().map(|rows| self.replica_batch(rows, None)).collect::<Result<Vec<_>>>()?;
        let device = &self.device;
        let stats = self.recipe.step(StepInput { batch, groups, replica: self.replica, epoch, step: self.steps, schedule: &self.schedule, device })?;
        self.steps += 1;
        Ok(stats)
    }
}

/// A method's run on the loop: steps through the [`Trainer`], then per epoch the evaluation,
/// the log, model selection and the checkpoint.
struct MethodRun<'a, B: AutodiffBackend, R: Recipe<B>> {
    t: &'a mut Trainer<B, R>,
    st: &'a mut State,
    exp: &'a Experiment,
    out: &'a Path,
}

impl<B: AutodiffBackend, R: Recipe<B>> Epochs for MethodRun<'_, B, R> {
    type Stats = StepStats;

    fn loss(stats: &StepStats) -> f64 {
        stats.loss
    }

    fn begin_epoch(&mut self, epoch: usize, batches: &[Vec<usize>]) {
        self.t.recipe.begin_epoch(epoch, &self.t.device);
        self.t.prefetch(batches.to_vec());
    }

    fn step(&mut self, rows: &[usize], epoch: usize) -> Result<StepStats> {
        self.t.step(rows, epoch)
    }

    fn end_epoch(&mut self, epoch: usize, stats: Vec<StepStats>, train_seconds: f64) -> Result<()> {
        let (t, st, exp, out) = (&mut *self.t, &mut *self.st, self.exp, self.out);
        t.stream = None;
        let device = &t.device;
        st.steps = t.steps;
        let mut sums = Sums::default();
        let group_names = t.group_names();
        for s in &stats {
            sums.add(s, &group_names);
        }
        let mut mechanism = sums.mechanism();
        mechanism.extend(t.recipe.end_epoch());
        let n = t.data.train.len();
        let (validation, vu, collapsed) = evaluate(&t.recipe, exp, &t.data.validation, device)?;
        let (test, tu, _) = evaluate(&t.recipe, exp, &t.data.test, device)?;
        if collapsed {
            tracing::warn!(
                "epoch {epoch}: every validation sample has the same score (AUC 0.5): the model collapsed. The settings of this run that can cause it: {}",
                crate::recipes::likely_causes(exp).join("; ")
            );
        }
        let k = stats.len() as f64;
        let log = EpochLog {
            epoch,
            loss: sums.loss / k,
            clip_loss: sums.task / k,
            fair_loss: sums.fair.map(|s| s / k),
            fol_loss: sums.fol.map(|s| s / k),
            steps: st.steps,
            validation,
            test,
            train_seconds,
            samples_per_second: n as f64 / train_seconds,
            multimodal: sums.modulation.map(|(factors, triggered)| MultimodalLog {
                encoder_factors: factors.map(|f| f / k),
                triggered: triggered as f64 / k,
                validation_unimodal_auc: vu.unwrap_or([None; 2]),
                test_unimodal_auc: tu.unwrap_or([None; 2]),
            }),
            mechanism,
            collapsed,
        };
        tracing::info!("{}", log.one_line(t.recipe.name(), exp.optim.epochs));
        let selected = match exp.eval.select_on {
            SelectOn::Validation => log.validation.auc,
            SelectOn::Test => log.test.auc,
        }
        .unwrap_or(f64::NEG_INFINITY);

        // Commit order: the recipe's records under a new name, the weights, then state.json,
        // which is what a resume trusts; older records are removed only after.
        st.recipe = t.recipe.save_state(out, epoch)?;
        t.recipe.save_weights(out, "last")?;
        if selected > st.best_auc || st.best_epoch == 0 {
            st.best_auc = selected;
            st.best_epoch = epoch;
            t.recipe.save_weights(out, "best")?;
        }
        st.epochs_done = epoch;
        st.group_cursors = cursors(&t.groups);
        st.history.push(log);
        write_atomic(&out.join("state.json"), serde_json::to_string_pretty(&*st).unwrap_or_default().as_bytes())?;
        let jsonl: String = st.history.iter().map(|l| serde_json::to_string(l).unwrap_or_default() + "\n").collect();
        write_atomic(&out.join("log.jsonl"), jsonl.as_bytes())?;
        remove_older_states(out, epoch)
    }
}

/// Trains `exp` with recipe `R` (whatever `exp.method` says): public so that a recipe
/// defined outside this crate runs on the loop too.
pub fn run<B: AutodiffBackend, R: Recipe<B>>(exp: &Experiment, opts: &RunOptions, device: &B::Device) -> Result<TrainOutcome> {
    run_on::<B, R>(exp, opts, std::slice::from_ref(device))
}

/// [`run`] with a replica on each of `devices` (and on the processes of `opts.nodes`).
pub fn run_on<B: AutodiffBackend, R: Recipe<B>>(exp: &Experiment, opts: &RunOptions, devices: &[B::Device]) -> Result<TrainOutcome> {
    if devices.is_empty() {
        return Err(Error::Invalid("no device to train on".into()));
    }
    launch::<B, _>(
        devices,
        opts.nodes.as_ref(),
        |replica, device| {
            if replica.is_first() {
                lead::<B, R>(exp, opts, device, replica)
            } else {
                follow::<B, R>(exp, opts, device, replica)
            }
        },
    )
}

/// A replica other than the first: the same steps on its shards, nothing written. On a
/// resume it reads the first replica's run folder (shared by every node of the run).
fn follow<B: AutodiffBackend, R: Recipe<B>>(exp: &Experiment, opts: &RunOptions, device: &B::Device, replica: Replica) -> Result<TrainOutcome> {
    let _precision = vlm_backbone::autocast(exp.optim.precision);
    let out = &opts.out;
    let state = if opts.resume && out.join("state.json").is_file() {
        let path = out.join("state.json");
        Some(State::parse(&std::fs::read_to_string(&path).map_err(io_err(&path))?, &path)?)
    } else {
        None
    };
    let tokenizer = match &state {
        Some(_) => Some(fair_data::TextTokenizer::from_file(&out.join("tokenizer.json"), exp.data.context_length)?),
        None => None,
    };
    let data = ExperimentData::load(exp, tokenizer)?;
    let mut t = Trainer::<B, R>::new(exp, data, device)?.with_replica(replica);
    let done = match &state {
        Some(st) => {
            t.restore(out, st)?;
            st.epochs_done
        }
        None => 0,
    };
    let plan = Plan { name: t.recipe.name(), rows: t.data.train.len(), batch_size: exp.optim.batch_size, epochs: exp.optim.epochs, progress: false, min_batch: replica.count() };
    let shuffle = EpochShuffle::new(exp.seed);
    epochs(&mut Follow { t: &mut t }, &plan, done, opts.stop_after, |n, epoch| shuffle.order(n, epoch))?;
    Ok(TrainOutcome { history: vec![], best_epoch: 0, report: None })
}

/// A following replica's epochs: steps only.
struct Follow<'a, B: AutodiffBackend, R: Recipe<B>> {
    t: &'a mut Trainer<B, R>,
}

impl<B: AutodiffBackend, R: Recipe<B>> Epochs for Follow<'_, B, R> {
    type Stats = StepStats;
    fn loss(stats: &StepStats) -> f64 {
        stats.loss
    }
    fn begin_epoch(&mut self, epoch: usize, batches: &[Vec<usize>]) {
        self.t.recipe.begin_epoch(epoch, &self.t.device);
        self.t.prefetch(batches.to_vec());
    }
    fn step(&mut self, rows: &[usize], epoch: usize) -> Result<StepStats> {
        self.t.step(rows, epoch)
    }
    fn end_epoch(&mut self, _epoch: usize, _stats: Vec<StepStats>, _seconds: f64) -> Result<()> {
        self.t.stream = None;
        Ok(())
    }
}

impl<B: AutodiffBackend, R: Recipe<B>> Trainer<B, R> {
    /// Restores the recipe, the group loaders and the step count of a run folder's state.
    fn restore(&mut self, out: &Path, st: &State) -> Result<()> {
        self.recipe.restore_state(out, st.epochs_done, &st.recipe, &self.device)?;
        if let Some(g) = &mut self.groups {
            g.set_cursors(&st.group_cursors).map_err(|e| ckpt_err(&out.join("state.json"), e))?;
        }
        self.steps = st.steps;
        Ok(())
    }
}

/// The first replica (the only one on one device): the run folder, the steps, evaluation,
/// checkpoints and reports.
fn lead<B: AutodiffBackend, R: Recipe<B>>(exp: &Experiment, opts: &RunOptions, device: &B::Device, replica: Replica) -> Result<TrainOutcome> {
    // Mixed precision for everything this replica's thread computes (training and evaluation).
    let _precision = vlm_backbone::autocast(exp.optim.precision);
    let out = &opts.out;
    let (state, data, _lock) = open_run(exp, opts)?;
    let mut t = Trainer::<B, R>::new(exp, data, device)?.with_replica(replica);
    let mut st = match state {
        Some(st) => {
            t.restore(out, &st)?;
            st
        }
        None => State { epochs_done: 0, steps: 0, best_epoch: 0, best_auc: f64::NEG_INFINITY, group_cursors: cursors(&t.groups), recipe: serde_json::Value::Null, history: vec![] },
    };
    let name = t.recipe.name();
    let plan = Plan { name, rows: t.data.train.len(), batch_size: exp.optim.batch_size, epochs: exp.optim.epochs, progress: opts.progress, min_batch: replica.count() };
    let shuffle = EpochShuffle::new(exp.seed);
    let done = st.epochs_done;
    let mut recipe_run = MethodRun { t: &mut t, st: &mut st, exp, out };
    let done = epochs(&mut recipe_run, &plan, done, opts.stop_after, |n, epoch| shuffle.order(n, epoch))?;

    let report = if done == exp.optim.epochs {
        t.recipe.load_weights(&out.join("best.safetensors"), device)?;
        let scores = t.recipe.predict(&t.data.test, device)?;
        let r = FinalReport::from_scores(exp, name, &t.data, scores.positive, &st.history, st.best_epoch)?;
        write_reports(&r, out)?;
        Some(r)
    } else {
        None
    };
    Ok(TrainOutcome { history: st.history, best_epoch: st.best_epoch, report })
}

/// A split's epoch metrics, its unimodal AUCs where the recipe has auxiliary heads, and
/// whether every score is the same (a collapsed model).
type Evaluated = (EpochMetrics, Option<[Option<f64>; 2]>, bool);

fn evaluate<B: AutodiffBackend, R: Recipe<B>>(recipe: &R, exp: &Experiment, split: &Prepared, device: &B::Device) -> Result<Evaluated> {
    let scores = recipe.predict(split, device)?;
    let unimodal = scores.unimodal.as_ref().map(|[a, b]| [auc(&split.labels, a), auc(&split.labels, b)]);
    let constant = collapsed(&scores.positive);
    Ok((EpochMetrics::from_report(&report(exp, split, scores.positive, None)?), unimodal, constant))
}

/// FairCLIP's per-group loaders over the training split's values of `attribute`.
fn group_sampler(train: &Prepared, attribute: &str, batch: usize, seed: u64) -> Result<GroupSampler> {
    let codes = &train.attributes.column(attribute)?.codes;
    GroupSampler::new(codes, batch, seed).map_err(|e| Error::Invalid(format!("fairclip.attribute '{attribute}' in the training split: {e}")))
}

fn cursors(groups: &Option<GroupSampler>) -> Vec<usize> {
    groups.as_ref().map(GroupSampler::cursors).unwrap_or_default()
}

/// Writes `report.json`, `report.md`, `report.html` and `predictions.csv` into `dir`.
pub(crate) fn write_reports(r: &FinalReport, dir: &Path) -> Result<()> {
    write_atomic(&dir.join("report.json"), (serde_json::to_string_pretty(r).unwrap_or_default() + "\n").as_bytes())?;
    write_atomic(&dir.join("report.md"), r.markdown().as_bytes())?;
    write_atomic(&dir.join("report.html"), crate::html::render(r).as_bytes())?;
    write_atomic(&dir.join("predictions.csv"), r.predictions.as_bytes())
}
