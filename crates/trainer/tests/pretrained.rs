//! `[model.vision]` / `[model.text]` checkpoints in an experiment: the towers start from the
//! checkpoint's weights, the text tower's tokenizer comes with them, training runs, and
//! conflicting or missing settings are errors naming the key.

use std::path::PathBuf;

use burn::prelude::*;
use trainer::recipes::{late_fusion::LateFusion, Multimodal, Recipe};
use trainer::{init_clip, train, Experiment, ExperimentData};

mod common;
use common::{quiet, scratch, tiny, B};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../vlm-backbone/tests/fixtures/hf").join(name)
}

fn values<const D: usize>(t: Tensor<burn::backend::Flex, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().expect("f32")
}

/// The tiny experiment with the tiny BERT (WordPiece, 64 positions) as its text tower.
fn with_bert(epochs: usize) -> Experiment {
    let mut exp = tiny("clip", epochs);
    exp.model.text.weights = Some(fixture("bert"));
    exp
}

#[test]
fn the_text_tower_starts_from_the_checkpoint_and_trains() {
    let exp = with_bert(2);
    let data = ExperimentData::load(&exp, None).expect("data");
    // The checkpoint's WordPiece tokenizer, not one trained on the notes.
    assert_eq!((data.tokenizer.vocab_size(), data.tokenizer.start_id(), data.tokenizer.pad_id()), (84, 2, 0));
    let device = Default::default();
    let model = init_clip::<burn::backend::Flex>(&exp, &data, false, &device).expect("model");
    let (reference, _) = vlm_backbone::Checkpoint::open(&fixture("bert")).expect("open").text_model::<burn::backend::Flex>(&device).expect("load");
    let ours = &model.text_model;
    assert_eq!(values(ours.embeddings.token_embedding.weight.val()), values(reference.embeddings.token_embedding.weight.val()));
    assert_eq!(values(ours.encoder.layers[1].mlp.fc2.weight.val()), values(reference.encoder.layers[1].mlp.fc2.weight.val()));
    // `pretrained = false`: the same architecture, its own random weights.
    let mut control = exp.clone();
    control.model.text.pretrained = false;
    let random = init_clip::<burn::backend::Flex>(&control, &data, false, &device).expect("model");
    assert_eq!(random.text_model.embeddings.token_embedding.weight.dims(), [84, 32]);
    assert_ne!(values(random.text_model.embeddings.token_embedding.weight.val()), values(reference.embeddings.token_embedding.weight.val()));

    let out = scratch("pretrained-bert");
    let outcome = train::<B>(&exp, &quiet(out.clone()), &Default::default()).expect("train");
    assert!(outcome.history.iter().all(|h| h.loss.is_finite()));
    // Resuming rebuilds the same architecture from the saved config and tokenizer.
    let again = trainer::evaluate_run::<B>(&out, &out.join("best.safetensors"), "test", &Default::default()).expect("eval");
    assert_eq!(again.overall.auc, outcome.report.expect("report").test.overall.auc);
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn a_whole_clip_checkpoint_brings_projections_and_logit_scale() {
    let mut exp = tiny("clip", 1);
    // The `small` preset's joint space is 128 wide; the checkpoint's (16) wins.
    exp.model.preset = Some(trainer::Preset::Small);
    exp.model.vision.weights = Some(fixture("clip"));
    exp.model.text.weights = Some(fixture("clip"));
    exp.data.synthetic.image_size = 32;
    let data = ExperimentData::load(&exp, None).expect("data");
    assert_eq!(data.tokenizer.vocab_size(), 2014);
    let device = Default::default();
    let model = init_clip::<burn::backend::Flex>(&exp, &data, false, &device).expect("model");
    let (reference, _) = vlm_backbone::Checkpoint::open(&fixture("clip")).expect("open").clip_model::<burn::backend::Flex>(&device).expect("load");
    assert_eq!(values(model.logit_scale.val()), vec![2.0]);
    assert_eq!(values(model.visual_projection.weight.val()), values(reference.visual_projection.weight.val()));
    assert_eq!(values(model.vision_model.embeddings.class_embedding.val()), values(reference.vision_model.embeddings.class_embedding.val()));
    // The tokenizer's padding (id 0, OpenAI's) and end token rule the tower, not config.json's.
    assert_eq!((model.text_model.pad_token_id, model.text_model.eos_token_id), (0, Some(2013)));
    let mut both = exp.clone();
    both.model.projection_dim = Some(16);
    let err = Experiment::from_toml_str(&both.to_toml(), "inline").expect_err("projection_dim");
    assert!(err.to_string().contains("model.projection_dim"), "{err}");
}

#[test]
fn a_wordpiece_tokenizer_on_the_preset_tower_pools_at_its_end_token() {
    let mut exp = tiny("clip", 1);
    exp.model.text.tokenizer = Some(fixture("bert").join("tokenizer.json"));
    let data = ExperimentData::load(&exp, None).expect("data");
    let model = init_clip::<burn::backend::Flex>(&exp, &data, false, &Default::default()).expect("model");
    // [SEP] is 3, not the largest id: pooling must look for it, not take argmax(ids).
    assert_eq!((model.text_model.eos_token_id, model.text_model.pad_token_id), (Some(3), 0));
}

#[test]
fn conflicting_or_missing_settings_name_the_key() {
    let mut exp = with_bert(1);
    exp.model.text_width = Some(64);
    let err = Experiment::from_toml_str(&exp.to_toml(), "inline").expect_err("width and weights");
    assert!(err.to_string().contains("model.text_width"), "{err}");

    let mut exp = with_bert(1);
    exp.data.context_length = 65;
    let err = ExperimentData::load(&exp, None).and_then(|d| init_clip::<burn::backend::Flex>(&exp, &d, false, &Default::default()).map(|_| ())).expect_err("context");
    assert!(err.to_string().contains("data.context_length = 65"), "{err}");

    let mut exp = tiny("clip", 1);
    exp.model.vision.weights = Some(fixture("vit"));
    exp.model.text.weights = Some(fixture("vit"));
    let err = ExperimentData::load(&exp, None).expect_err("no tokenizer");
    assert!(err.to_string().contains("model.text.weights") && err.to_string().contains("tokenizer.json"), "{err}");

    let mut exp = tiny("clip", 1);
    exp.model.text.pretrained = false;
    let err = Experiment::from_toml_str(&exp.to_toml(), "inline").expect_err("pretrained without weights");
    assert!(err.to_string().contains("model.text.pretrained"), "{err}");

    let toml = "[model.text]\nweights = \"x\"\ntokeniser = \"y\"\n";
    let err = Experiment::from_toml_str(toml, "inline").expect_err("unknown key");
    assert!(err.to_string().contains("tokeniser"), "{err}");
}

#[test]
fn multifair_starts_from_a_vit_and_a_bert() {
    let _rng = common::rng_lock();
    let mut exp = tiny("late-fusion", 1);
    exp.multimodal.proj_dim = 16;
    exp.multimodal.fusion_heads = 2;
    exp.multimodal.fusion_layers = 1;
    exp.model.vision.weights = Some(fixture("vit"));
    exp.model.text.weights = Some(fixture("bert"));
    let exp = Experiment::from_toml_str(&exp.to_toml(), "inline").expect("valid");
    let data = ExperimentData::load(&exp, None).expect("data");
    let device = Default::default();
    let trainer = Multimodal::<B, LateFusion>::new(&exp, &data, &device).expect("model");
    let model = trainer.model();
    let (vit, _) = vlm_backbone::Checkpoint::open(&fixture("vit")).expect("open").vision_model::<burn::backend::Flex>(&device).expect("vit");
    let (bert, _) = vlm_backbone::Checkpoint::open(&fixture("bert")).expect("open").text_model::<burn::backend::Flex>(&device).expect("bert");
    assert_eq!(values(model.fundus_encoder.embeddings.class_embedding.val().inner()), values(vit.embeddings.class_embedding.val()));
    let text = model.text_encoder.as_ref().expect("text pairing");
    assert_eq!(values(text.encoder.layers[0].self_attn.q_proj.weight.val().inner()), values(bert.encoder.layers[0].self_attn.q_proj.weight.val()));
}

#[test]
fn text_lr_moves_the_text_tower_at_its_own_rate() {
    let mut exp = with_bert(1);
    // Practically zero for the text tower; the image tower keeps optim.lr.
    exp.optim.text_lr = Some(1e-30);
    let exp = Experiment::from_toml_str(&exp.to_toml(), "inline").expect("valid");
    let out = scratch("text-lr");
    train::<B>(&exp, &quiet(out.clone()), &Default::default()).expect("train");
    let device = Default::default();
    let data = ExperimentData::load(&exp, None).expect("data");
    let start = init_clip::<burn::backend::Flex>(&exp, &data, false, &device).expect("start");
    let trained = trainer::load_safetensors(init_clip::<burn::backend::Flex>(&exp, &data, false, &device).expect("model"), &out.join("last.safetensors")).expect("trained");
    let text = |m: &vlm_backbone::Clip<burn::backend::Flex>| values(m.text_model.encoder.layers[0].self_attn.q_proj.weight.val());
    let vision = |m: &vlm_backbone::Clip<burn::backend::Flex>| values(m.vision_model.encoder.layers[0].self_attn.q_proj.weight.val());
    assert_eq!(text(&trained), text(&start), "the text tower stays put");
    assert_ne!(vision(&trained), vision(&start), "the image tower trains");
    // Export: a CLIPModel cannot hold the BERT tower, so the run is exported one tower at a
    // time, each in its own layout, and reads back as trained.
    let err = trainer::export_clip_run(&out, &out.join("last.safetensors"), &out.join("hf"), trainer::Tower::Both).expect_err("a BERT tower in a CLIPModel");
    assert!(err.to_string().contains("--tower text"), "{err}");
    for (tower, class) in [(trainer::Tower::Text, "BertModel"), (trainer::Tower::Vision, "CLIPVisionModel")] {
        let folder = out.join(format!("hf-{class}"));
        trainer::export_clip_run(&out, &out.join("last.safetensors"), &folder, tower).expect("export");
        assert!(std::fs::read_to_string(folder.join("config.json")).expect("config").contains(class), "{class}");
        let ckpt = vlm_backbone::Checkpoint::open(&folder).expect("open");
        if tower == trainer::Tower::Text {
            let (bert, report) = ckpt.text_model::<burn::backend::Flex>(&device).expect("BertModel");
            assert!(report.unused.is_empty(), "{:?}", report.unused);
            assert_eq!(values(bert.encoder.layers[0].self_attn.q_proj.weight.val()), text(&trained));
            assert!(folder.join("tokenizer.json").is_file());
        } else {
            let (vit, _) = ckpt.vision_model::<burn::backend::Flex>(&device).expect("CLIPVisionModel");
            assert_eq!(values(vit.encoder.layers[0].self_attn.q_proj.weight.val()), vision(&trained));
        }
    }
    std::fs::remove_dir_all(&out).ok();
}
