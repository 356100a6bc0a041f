//! Data parallelism through burn-collective: two replicas with batch 16 each take the steps of
//! one device with batch 32 (parameters within 1e-5 after 5 steps), between two threads of
//! one process and between two processes through the collective's global mode on localhost.
//!
//! The experiments are trainer::parity's (dropout 0, OGM-GE without its noise, Adam's ε = 1:
//! Adam's normalisation turns the last-bit differences of near-zero gradients into steps of
//! the full learning rate, ε = 1 keeps the step proportional to the gradient, so the
//! comparison measures the gradients).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{quiet, scratch, B};
use trainer::Experiment;

const STEPS: usize = 5;

/// `method`'s parity experiment with 5 steps of 32 in its one epoch.
fn five_steps(method: &str) -> Experiment {
    let mut exp = trainer::parity::experiment(method).expect("parity experiment");
    exp.optim.batch_size = 32;
    exp.data.synthetic.sizes = [32 * STEPS, 16, 16];
    exp
}

/// The largest absolute difference between the tensors of two safetensors files, with the
/// name of the tensor where it is.
fn max_difference(a: &Path, b: &Path) -> (f32, String) {
    let (ba, bb) = (std::fs::read(a).expect("first weights"), std::fs::read(b).expect("second weights"));
    let (ta, tb) = (safetensors::SafeTensors::deserialize(&ba).expect("safetensors"), safetensors::SafeTensors::deserialize(&bb).expect("safetensors"));
    let mut worst = (0.0f32, String::new());
    let mut names = ta.names();
    names.sort();
    assert!(!names.is_empty(), "no tensors in {}", a.display());
    for name in names {
        let (x, y) = (ta.tensor(name).expect("tensor"), tb.tensor(name).unwrap_or_else(|_| panic!("{name} missing from {}", b.display())));
        let floats = |d: &[u8]| d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>();
        for (p, q) in floats(x.data()).into_iter().zip(floats(y.data())) {
            let d = (p - q).abs();
            if d > worst.0 || d.is_nan() {
                worst = (d, name.to_string());
            }
        }
    }
    worst
}

/// The collective's state is global to the process: one data-parallel run at a time.
fn collective_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// One device with batch 32 against two replicas with 16 each, after 5 steps.
fn two_replicas_match_one_device(method: &str) {
    let _lock = collective_lock();
    let exp = five_steps(method);
    let (one, two) = (scratch(&format!("dp1-{method}")), scratch(&format!("dp2-{method}")));
    let single = trainer::train::<B>(&exp, &quiet(one.clone()), &Default::default()).expect("one device");
    let double = trainer::train_on::<B>(&exp, &quiet(two.clone()), &trainer::devices::<B>(2)).expect("two replicas");
    assert_eq!(single.history[0].steps, STEPS);
    assert_eq!(double.history[0].steps, STEPS);
    let (d, name) = max_difference(&one.join("last.safetensors"), &two.join("last.safetensors"));
    let (l1, l2) = (single.history[0].loss, double.history[0].loss);
    println!("{method}: largest parameter difference {d:.2e} ({name}); mean loss {l1} vs {l2}");
    assert!(d <= 1e-5, "{method}: parameters differ by {d} at {name}");
    assert!((l1 - l2).abs() <= 1e-5 * l1.abs().max(1.0), "{method}: loss {l1} vs {l2}");
    if let (Some(a), Some(b)) = (&single.history[0].multimodal, &double.history[0].multimodal) {
        println!("{method}: encoder factors {:?} vs {:?}, trigger {} vs {}", a.encoder_factors, b.encoder_factors, a.triggered, b.triggered);
        assert!(a.encoder_factors.iter().zip(&b.encoder_factors).all(|(x, y)| (x - y).abs() <= 1e-6), "{method}: modulation differs");
        assert_eq!(a.triggered, b.triggered, "{method}: MultiFair's trigger differs");
    }
    for dir in [one, two] {
        std::fs::remove_dir_all(dir).ok();
    }
}

#[test]
fn clip_on_two_replicas() {
    two_replicas_match_one_device("clip");
}

#[test]
fn fairclip_on_two_replicas_with_sharded_group_batches() {
    two_replicas_match_one_device("fairclip");
}

#[test]
fn ogm_ge_on_two_replicas_modulates_with_the_whole_batch() {
    two_replicas_match_one_device("ogm-ge");
}

#[test]
fn multifair_on_two_replicas_modulates_with_the_whole_batch() {
    two_replicas_match_one_device("multifair");
}

/// A free port on localhost (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// Kills a child process when dropped (a failing test leaves none behind).
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Two `fairvlm train` processes, each one node with one replica, through an orchestrator on
/// localhost, against one device in this process.
///
/// Ignored: burn-collective 0.21's global mode cannot complete a second operation. Every
/// global all-reduce ends with `SyncService::sync` (src/global/node/sync.rs), a barrier that
/// records each node's arrival in a shared `Vec<NodeId>` and returns when the list equals the
/// node ids; on success it clears a *copy* of the list (`lock().unwrap().to_vec()`), never the
/// list itself, so at the second barrier the list holds every id twice and no node ever leaves
/// it. Seen here: with each global strategy (centralised, tree, ring) both processes finish the
/// first gather, transfer the second one's tensors, open its barrier connection and wait forever.
/// burn is pinned to 0.21.0; run this with `cargo test -p trainer --test parallel -- --ignored`
/// on a burn whose barrier is fixed.
#[test]
#[ignore = "burn-collective 0.21's global mode hangs on the second all-reduce (see the comment)"]
fn two_processes_match_one_device() {
    let exe = env!("CARGO_BIN_EXE_fairvlm");
    let exp = five_steps("fairclip");
    let dir = scratch("dp-nodes");
    std::fs::create_dir_all(&dir).expect("scratch");
    let config = dir.join("fairclip.toml");
    std::fs::write(&config, exp.to_toml()).expect("config");
    let port = free_port();
    let _orchestrator = Reaped(Command::new(exe).args(["collective-orchestrator", "--port", &port.to_string()]).stderr(Stdio::null()).spawn().expect("orchestrator"));
    let (nodes_out, one) = (dir.join("nodes"), dir.join("one"));
    let mut nodes: Vec<Reaped> = (0..2)
        .map(|rank| {
            let args = [
                "-q".to_string(),
                "train".into(),
                "--config".into(),
                config.display().to_string(),
                "--device".into(),
                "cpu".into(),
                "--run".into(),
                nodes_out.display().to_string(),
                "--nodes".into(),
                "2".into(),
                "--node-rank".into(),
                rank.to_string(),
                "--orchestrator".into(),
                format!("ws://127.0.0.1:{port}"),
                "--node-address".into(),
                format!("ws://127.0.0.1:{}", free_port()),
            ];
            Reaped(Command::new(exe).args(&args).stdout(Stdio::null()).spawn().expect("node"))
        })
        .collect();
    let single = {
        let _lock = collective_lock();
        trainer::train::<B>(&exp, &quiet(one.clone()), &Default::default()).expect("one device")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    for (rank, node) in nodes.iter_mut().enumerate() {
        let status = loop {
            if let Some(s) = node.0.try_wait().expect("wait") {
                break s;
            }
            assert!(std::time::Instant::now() < deadline, "node {rank} still running after 10 minutes");
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert!(status.success(), "node {rank} failed: {status}");
    }
    let (d, name) = max_difference(&one.join("last.safetensors"), &nodes_out.join("last.safetensors"));
    println!("two processes: largest parameter difference {d:.2e} ({name}) after {} steps", single.history[0].steps);
    assert!(d <= 1e-5, "parameters differ by {d} at {name}");
    std::fs::remove_dir_all(dir).ok();
}
