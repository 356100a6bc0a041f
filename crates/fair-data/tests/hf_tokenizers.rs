//! Hugging Face tokenizers loaded from `tokenizer.json` give transformers' ids: a CLIP BPE
//! tokenizer (built from OpenAI's merges) and a BERT WordPiece one, on edge cases (empty text,
//! case, accents, punctuation, runs of whitespace, a text cut at the context length). The
//! reference ids come from transformers 5.24 (vlm-backbone's tests/fixtures/hf/make_hf.py).

use std::path::{Path, PathBuf};

use fair_data::TextTokenizer;
use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vlm-backbone/tests/fixtures/hf")
}

fn ids(v: &Value) -> Vec<Vec<i64>> {
    serde_json::from_value(v.clone()).expect("ids")
}

/// Ours against transformers' for every text: the unpadded part equal, then our padding.
fn check(model: &str) {
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("tokens.json")).expect("tokens.json")).expect("json");
    let r = &reference[model];
    let context = r["context_length"].as_u64().expect("context") as usize;
    let tok = TextTokenizer::from_file(&fixtures().join(model).join("tokenizer.json"), context).expect("load");
    let texts: Vec<String> = serde_json::from_value(r["texts"].clone()).expect("texts");
    let (expected, masks) = (ids(&r["input_ids"]), ids(&r["attention_mask"]));
    let ours = tok.encode_batch(&texts).expect("encode");
    for (i, text) in texts.iter().enumerate() {
        let row = &ours[i * context..(i + 1) * context];
        let n = masks[i].iter().sum::<i64>() as usize;
        assert_eq!(&row[..n], &expected[i][..n], "{model}: {text:?}");
        assert!(row[n..].iter().all(|&id| id == tok.pad_id() as i64), "{model}: {text:?} padding");
    }
    assert!(masks.iter().any(|m| m.iter().all(|&x| x == 1)), "{model}: one text is cut at the context length");
}

#[test]
fn clip_bpe_matches_transformers() {
    check("clip");
}

#[test]
fn bert_wordpiece_matches_transformers() {
    check("bert");
    // BERT pads with [PAD] (id 0) exactly as transformers does.
    let tok = TextTokenizer::from_file(&fixtures().join("bert/tokenizer.json"), 8).expect("load");
    assert_eq!((tok.start_id(), tok.end_id(), tok.pad_id()), (2, 3, 0));
}
