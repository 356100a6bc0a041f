//! The TOML experiment files: the trainer's and LoRA's.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = trainer::Experiment::from_toml_str(text, "fuzz.toml");
            let _ = trainer::lora::LoraExperiment::from_toml_str_with(text, "fuzz.toml", &[]);
        }
    });
}
