//! Your own data: the methods train on the shipped example of the generic format
//! (datasets/example, attributes `site` and `sex` that FairVLMed does not have), the reports
//! name those attributes and their values, the dataset card reads every file, and LoRA's
//! parties come from the same folder.

mod common;

use std::path::PathBuf;

use common::{scratch, B};
use trainer::lora::{self, Auditor, LocalAuditor, LoraExperiment};
use trainer::{Experiment, ExperimentData, RunOptions};

fn example_config() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../configs/example-clip.toml")
}

#[test]
fn clip_fairclip_fair_moe_and_multifair_train_on_the_example_and_name_its_attributes() {
    let device = Default::default();
    for method in ["clip", "fairclip", "fair-moe", "multifair"] {
        let exp = Experiment::from_file_with(&example_config(), &[format!("method=\"{method}\""), "optim.epochs=1".into()]).unwrap();
        let out = scratch(&format!("own-{method}"));
        let opts = RunOptions { progress: false, ..RunOptions::new(&out) };
        let report = trainer::train::<B>(&exp, &opts, &device).unwrap().report.expect("a finished run");
        let md = report.markdown();
        for needle in ["| site |", "| sex |", "north", "south", "east", "west", "F ", "M "] {
            assert!(md.contains(needle), "{method}: no '{needle}' in\n{md}");
        }
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
        let names: Vec<&String> = json["test"]["attributes"].as_object().unwrap().keys().collect();
        assert_eq!(names, ["site", "sex"], "{method}");
        // fair-metrics lists groups sorted, as fairlearn's MetricFrame does.
        assert_eq!(json["test"]["attributes"]["site"]["groups"].as_object().unwrap().keys().collect::<Vec<_>>(), ["east", "north", "south", "west"], "{method}");
        let predictions = std::fs::read_to_string(out.join("predictions.csv")).unwrap();
        assert_eq!(predictions.lines().next(), Some("diagnosis,prob,site,sex"), "{method}");
        std::fs::remove_dir_all(&out).ok();
    }
}

#[test]
fn the_dataset_card_counts_groups_and_reads_every_file() {
    let exp = Experiment::from_file(&example_config()).unwrap();
    let data = ExperimentData::load(&exp, None).unwrap();
    let card = data.card("example", 2);
    assert_eq!(card.splits.iter().map(|s| s.rows).collect::<Vec<_>>(), vec![36, 12, 12]);
    assert!(card.failures.is_empty(), "{:?}", card.failures);
    let train = &card.splits[0];
    let site = train.attributes.iter().find(|a| a.attribute == "site").unwrap();
    assert_eq!(site.groups.iter().map(|g| g.group.as_str()).collect::<Vec<_>>(), ["north", "south", "east", "west"], "the configured order");
    assert_eq!(site.unknown, 3, "two empty cells and one 'unknown'");
    let images = train.images.as_ref().unwrap();
    assert_eq!((images.read, images.width, images.height), (36, [64, 64], [48, 48]));
    assert!(images.grey_rgb[0] > 0 && images.grey_rgb[1] > 0, "grey and colour files: {images:?}");
    assert!(train.intersections.iter().any(|a| a.attribute == "site & sex"));
    // 12 test rows: every group is far below 10 positives and 10 negatives.
    assert!(card.warnings.iter().any(|w| w.contains("test group site = north")), "{:?}", card.warnings);
    let md = card.markdown();
    assert!(md.contains("## Smallest test groups") && md.contains("| site | north |"), "{md}");
}

#[test]
fn lora_parties_come_from_the_folder_and_the_audit_names_the_groups() {
    let device = Default::default();
    let exp = Experiment::from_file(&example_config()).unwrap();
    let d = &exp.data;
    let opts = fair_data::LoadOptions { filter_unknown: Some(false), ..Default::default() };
    let data = fair_data::load_folder(d.root.as_deref().unwrap(), &d.folder, &opts).unwrap();
    let out = scratch("own-lora");
    let sizes = fair_data::prepare_folder(&data, &d.folder, &out, "site", 16, 0.5, 0).unwrap();
    assert_eq!((sizes.developer + sizes.auditor, sizes.audit), (48 - 3, 12), "the three training rows of unknown site are left out");
    let read = |f: &str| fair_data::LabelledImages::read(&out.join(f)).unwrap();
    let (pre, dev, aud, test) = (read("pretrain.npz"), read("developer.npz"), read("auditor.npz"), read("audit.npz"));
    assert!(dev.label("sensitive").is_err() && aud.label("task").is_err(), "each party holds its own labels only");
    let labels: fair_data::PartyLabels = serde_json::from_str(&std::fs::read_to_string(out.join("parties.json")).unwrap()).unwrap();
    assert_eq!(labels.values, ["north", "south", "east", "west"]);
    let text = "seed = 1\nmethod = \"adv\"\n[model]\npatch_size = 4\nwidth = 16\nlayers = 2\nheads = 2\n[lora]\nr = 4\nalpha = 8.0\n[optim]\nlr = 5e-3\nbatch_size = 8\nepochs = 1\n[fair]\nsensitive_epochs = 1\nauditor_batch = 8\n";
    let lexp = LoraExperiment::from_toml_str_with(text, "test", &[]).unwrap();
    let base = lora::pretrain::<B>(&lexp, &pre, "class", 1, &device).unwrap();
    let mut auditor = Auditor::new(&lexp, base.clone(), aud, "sensitive", &device).unwrap();
    let (model, log, _) = lora::train_developer::<B>(&lexp, &base, &dev, "task", &mut LocalAuditor(&mut auditor), &device).unwrap();
    assert!(log.task_loss.iter().all(|l| l.is_finite()));
    let valid = burn::module::AutodiffModule::valid(&model);
    let audit = lora::audit(&lora::scores(&valid, &test, &device), test.label("task").unwrap(), test.label("sensitive").unwrap()).unwrap().named(&labels);
    assert_eq!(audit.groups.keys().cloned().collect::<Vec<_>>(), ["east", "north", "south", "west"]);
    let md = lora::audit_markdown(&[("adv".into(), audit)]);
    assert!(md.contains("groups of site") && md.contains("| north |"), "{md}");
    std::fs::remove_dir_all(&out).ok();
}

#[test]
fn folder_settings_are_checked_against_the_data() {
    let config = example_config();
    let e = Experiment::from_file_with(&config, &["method=fairclip".into(), "fairclip.attribute=race".into()]).unwrap_err().to_string();
    assert!(e.contains("fairclip.attribute = 'race': expected one of site, sex"), "{e}");
    let e = Experiment::from_file_with(&config, &["method=multifair".into(), "multimodal.attribute=age".into()]).unwrap_err().to_string();
    assert!(e.contains("multimodal.attribute = 'age'"), "{e}");
    let e = Experiment::from_file_with(&config, &["data.folder.classes=[\"a\", \"b\", \"c\"]".into()]).unwrap_err().to_string();
    assert!(e.contains("data.folder.classes") && e.contains("multi-class"), "{e}");
    // Columns are checked when the data is read, naming the metadata file and the key.
    let exp = Experiment::from_file_with(&config, &["data.folder.attributes=[\"site\", \"insurance\"]".into()]).unwrap();
    let e = ExperimentData::load(&exp, None).unwrap_err().to_string();
    assert!(e.contains("metadata.csv") && e.contains("no column 'insurance' (data.folder.attributes)"), "{e}");
    let exp = Experiment::from_file_with(&config, &["data.folder.classes=[\"healthy\", \"glaucoma\"]".into()]).unwrap();
    let e = ExperimentData::load(&exp, None).unwrap_err().to_string();
    assert!(e.contains("metadata.csv:") && e.contains("column 'diagnosis': value 'normal'"), "{e}");
}

/// Issue 16, defect 2: files skipped with `on_error = "skip"` are listed (skipped.csv, the
/// report), not dropped silently.
#[test]
fn skipped_files_are_listed_in_the_run_folder_and_the_report() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/example");
    let data = scratch("own-skip-data");
    std::fs::create_dir_all(data.join("images")).unwrap();
    std::fs::copy(src.join("metadata.csv"), data.join("metadata.csv")).unwrap();
    for e in std::fs::read_dir(src.join("images")).unwrap().flatten() {
        std::fs::copy(e.path(), data.join("images").join(e.file_name())).unwrap();
    }
    std::fs::write(data.join("images/0002.png"), b"not a png").unwrap();
    let exp = Experiment::from_file_with(&example_config(), &[format!("data.root=\"{}\"", data.display()), "data.on_error=skip".into(), "optim.epochs=1".into()]).unwrap();
    let out = scratch("own-skip-run");
    let report = trainer::train::<B>(&exp, &RunOptions { progress: false, ..RunOptions::new(&out) }, &Default::default()).unwrap().report.unwrap();
    assert_eq!(report.samples[0], 35);
    assert_eq!(report.skipped.len(), 1);
    let csv = std::fs::read_to_string(out.join("skipped.csv")).unwrap();
    assert!(csv.starts_with("split,file,reason\n\"train\",") && csv.contains("0002.png"), "{csv}");
    assert!(report.markdown().contains("1 unreadable file(s) were skipped"));
    // A collapsed epoch (constant validation scores, flagged by the loop) is a warning too.
    assert!(!report.markdown().contains("collapsed"));
    let mut flagged = report.clone();
    flagged.history[0].collapsed = true;
    assert!(flagged.markdown().contains("collapsed to a constant score in epoch(s) 1"));
    std::fs::remove_dir_all(&data).ok();
    std::fs::remove_dir_all(&out).ok();
}
