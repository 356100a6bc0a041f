//! The loop every training of the crate runs: epochs of batches over a driver ([`Epochs`]),
//! with the progress bar. The methods' runs (`run`), LoRA's developer, its base pretraining and
//! the auditor's sensitive adapter (`lora`) all drive it.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::Result;

/// What a training does per batch and per epoch: [`epochs`] drives it.
pub(crate) trait Epochs {
    /// What a step reports.
    type Stats;
    /// The loss in a step's report (the progress bar shows it).
    fn loss(stats: &Self::Stats) -> f64;
    /// Before the first step of (1-based) `epoch`, with the rows of its batches in order.
    fn begin_epoch(&mut self, _epoch: usize, _batches: &[Vec<usize>]) {}
    /// One step on the training rows `rows` of (1-based) `epoch`.
    fn step(&mut self, rows: &[usize], epoch: usize) -> Result<Self::Stats>;
    /// After the last step of `epoch`, with its steps' reports and its seconds of training.
    fn end_epoch(&mut self, epoch: usize, stats: Vec<Self::Stats>, seconds: f64) -> Result<()>;
}

/// The shape of a training: its name (for the progress bar), its rows, batches and epochs.
pub(crate) struct Plan<'a> {
    pub(crate) name: &'a str,
    pub(crate) rows: usize,
    pub(crate) batch_size: usize,
    pub(crate) epochs: usize,
    pub(crate) progress: bool,
    /// Batches with fewer rows are left out (a data-parallel run needs a row per replica).
    pub(crate) min_batch: usize,
}

/// The loop every training of the crate runs (the methods' runs, LoRA's developer, its base
/// pretraining and the auditor's sensitive adapter): from epoch `done + 1` to the plan's last,
/// at most `stop_after` of them, each epoch's rows in the order `order(rows, epoch)` gives,
/// in batches; returns the epochs done.
pub(crate) fn epochs<E: Epochs>(driver: &mut E, plan: &Plan<'_>, done: usize, stop_after: Option<usize>, mut order: impl FnMut(usize, usize) -> Vec<usize>) -> Result<usize> {
    let steps_per_epoch = plan.rows.div_ceil(plan.batch_size.max(1));
    let (mut done, mut ran) = (done, 0);
    while done < plan.epochs && stop_after.is_none_or(|k| ran < k) {
        let epoch = done + 1;
        let mut batches: Vec<Vec<usize>> = order(plan.rows, epoch).chunks(plan.batch_size.max(1)).map(<[usize]>::to_vec).collect();
        if batches.last().is_some_and(|b| b.len() < plan.min_batch) {
            tracing::warn!("epoch {epoch}: the last batch has fewer rows than there are replicas ({}); it is left out", plan.min_batch);
            batches.pop();
        }
        driver.begin_epoch(epoch, &batches);
        let bar = progress_bar(plan.progress, steps_per_epoch as u64, &format!("{} epoch {epoch}/{}", plan.name, plan.epochs));
        let start = Instant::now();
        let mut stats = Vec::with_capacity(steps_per_epoch);
        for rows in &batches {
            let s = driver.step(rows, epoch)?;
            bar.inc(1);
            bar.set_message(format!("loss {:.4}", E::loss(&s)));
            stats.push(s);
        }
        bar.finish_and_clear();
        driver.end_epoch(epoch, stats, start.elapsed().as_secs_f64())?;
        done = epoch;
        ran += 1;
    }
    Ok(done)
}

fn progress_bar(enabled: bool, len: u64, prefix: &str) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(prefix.to_owned());
    bar
}
