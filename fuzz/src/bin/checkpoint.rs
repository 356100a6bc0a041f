//! The files that cross between processes or come with checkpoints: a peft adapter folder
//! (adapter_config.json + adapter_model.safetensors, what the LoRA exchange carries) and a
//! Hugging Face checkpoint's config.json + model.safetensors. The first byte chooses which
//! file gets the input; the other is a valid one.
type B = burn::backend::Flex;

// Valid files from the repository's fixtures (peft's own adapter, a tiny BERT checkpoint).
const ADAPTER_CONFIG: &[u8] = include_bytes!("../../../crates/vlm-backbone/tests/fixtures/peft/ours/adapter_config.json");
const ADAPTER: &[u8] = include_bytes!("../../../crates/vlm-backbone/tests/fixtures/peft/ours/adapter_model.safetensors");
const CONFIG: &[u8] = include_bytes!("../../../crates/vlm-backbone/tests/fixtures/hf/bert/config.json");
const MODEL: &[u8] = include_bytes!("../../../crates/vlm-backbone/tests/fixtures/hf/bert/model.safetensors");

fn main() {
    let dir = fairvlm_fuzz::scratch().join("ckpt");
    let _ = std::fs::create_dir_all(&dir);
    afl::fuzz!(|data: &[u8]| {
        let (which, body) = data.split_first().map_or((0, &[][..]), |(w, b)| (*w, b));
        let (adapter_cfg, adapter_st, cfg, st): (&[u8], &[u8], &[u8], &[u8]) = match which % 4 {
            0 => (body, ADAPTER, CONFIG, MODEL),
            1 => (ADAPTER_CONFIG, body, CONFIG, MODEL),
            2 => (ADAPTER_CONFIG, ADAPTER, body, MODEL),
            _ => (ADAPTER_CONFIG, ADAPTER, CONFIG, body),
        };
        let _ = std::fs::write(dir.join("adapter_config.json"), adapter_cfg);
        let _ = std::fs::write(dir.join("adapter_model.safetensors"), adapter_st);
        let _ = std::fs::write(dir.join("config.json"), cfg);
        let _ = std::fs::write(dir.join("model.safetensors"), st);
        let _ = trainer::lora::load_adapter_values::<B>(&dir);
        let _ = lora_fair::load_adapters::<B>(&dir, &Default::default());
        if let Ok(ckpt) = vlm_backbone::Checkpoint::open(&dir) {
            let _ = ckpt.model_type();
            let _ = ckpt.text_model::<B>(&Default::default());
        }
    });
}
