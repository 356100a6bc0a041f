//! Mixed precision (`optim.precision`): the towers' products in bf16 or f16 with f32 weights,
//! on the CPU backend (which computes half products through f32, so this checks the
//! arithmetic, not the speed): a few steps train to nearly the f32 run's loss and the saved
//! weights stay f32.

mod common;

use common::{quiet, scratch, B};
use vlm_backbone::Precision;

fn run(method: &str, precision: Precision) -> (f64, std::path::PathBuf) {
    let mut exp = trainer::parity::experiment(method).expect("experiment");
    exp.optim.precision = precision;
    exp.optim.epochs = 2;
    let out = scratch(&format!("precision-{method}-{precision:?}"));
    let outcome = trainer::train::<B>(&exp, &quiet(out.clone()), &Default::default()).expect("train");
    (outcome.history.last().map_or(f64::NAN, |l| l.loss), out)
}

/// The largest difference between two runs' final weights.
fn weight_difference(a: &std::path::Path, b: &std::path::Path) -> f32 {
    let (ba, bb) = (std::fs::read(a.join("last.safetensors")).expect("weights"), std::fs::read(b.join("last.safetensors")).expect("weights"));
    let (ta, tb) = (safetensors::SafeTensors::deserialize(&ba).expect("safetensors"), safetensors::SafeTensors::deserialize(&bb).expect("safetensors"));
    let floats = |d: &[u8]| d.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect::<Vec<_>>();
    ta.names()
        .iter()
        .map(|n| floats(ta.tensor(n).expect("tensor").data()).into_iter().zip(floats(tb.tensor(n).expect("tensor").data())).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max))
        .fold(0.0, f32::max)
}

fn close_to_f32(method: &str) {
    let (f32_loss, f32_out) = run(method, Precision::F32);
    for p in [Precision::Bf16, Precision::F16] {
        let (loss, out) = run(method, p);
        println!("{method}: second-epoch loss f32 {f32_loss}, {p:?} {loss}");
        // bf16 keeps 8 bits of mantissa: the products differ by about 0.4 %.
        assert!((loss - f32_loss).abs() <= 2e-2 * f32_loss.abs(), "{method} {p:?}: loss {loss} against f32's {f32_loss}");
        let bytes = std::fs::read(out.join("last.safetensors")).expect("weights");
        let st = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
        assert!(st.tensors().iter().all(|(_, t)| t.dtype() == safetensors::Dtype::F32), "{method} {p:?}: weights not f32");
        // The half products changed the steps a little: the run did compute in half.
        let d = weight_difference(&f32_out, &out);
        println!("{method}: largest weight difference f32 vs {p:?}: {d:.2e}");
        assert!(d > 0.0 && d < 1e-2, "{method} {p:?}: weights differ from f32's by {d}");
        std::fs::remove_dir_all(out).ok();
    }
    std::fs::remove_dir_all(f32_out).ok();
}

#[test]
fn clip_in_half_precision_trains_like_f32() {
    close_to_f32("clip");
}

#[test]
fn multifair_in_half_precision_trains_like_f32() {
    close_to_f32("multifair");
}

#[test]
fn precision_is_a_config_key() {
    let mut exp = trainer::parity::experiment("clip").unwrap();
    exp.optim.precision = Precision::Bf16;
    assert!(exp.to_toml().contains("precision = \"bf16\""));
    let e = trainer::Experiment::from_toml_str("[optim]\nprecision = \"fp8\"\n", "inline").unwrap_err().to_string();
    assert!(e.contains("precision"), "{e}");
}
