//! Benchmark v2's knobs of the synthetic generator: the spurious shortcut, a group's own disease
//! sign, the oversampled test split and the oracle's scores.

use fair_data::{GroupEffect, Oversample, Sample, Shortcut, ShortcutModality, Sign, SynthConfig};

const PHRASE: &str = "portable camera";

/// The AUC of `scores` against `labels` (ties count one half).
fn auc(scores: &[f64], labels: &[bool]) -> f64 {
    let pos: Vec<f64> = scores.iter().zip(labels).filter(|(_, &l)| l).map(|(&s, _)| s).collect();
    let neg: Vec<f64> = scores.iter().zip(labels).filter(|(_, &l)| !l).map(|(&s, _)| s).collect();
    let wins: f64 = pos
        .iter()
        .map(|p| {
            neg.iter()
                .map(|n| {
                    if p > n {
                        1.0
                    } else if p == n {
                        0.5
                    } else {
                        0.0
                    }
                })
                .sum::<f64>()
        })
        .sum();
    wins / (pos.len() * neg.len()) as f64
}

fn mean_pixel(s: &Sample) -> f64 {
    s.image.pixels.iter().map(|&p| p as f64).sum::<f64>() / s.image.pixels.len() as f64
}

fn small(sizes: [usize; 3]) -> SynthConfig {
    SynthConfig { sizes, image_size: 32, ..SynthConfig::default() }
}

#[test]
fn the_shortcut_agrees_with_the_diagnosis_in_training_only_and_only_in_its_group() {
    let shortcut = Shortcut { attribute: "race".into(), value: 2, agreement: 0.9, modality: ShortcutModality::Both };
    let cfg = SynthConfig { shortcut: Some(shortcut), ..small([1500, 0, 1500]) };
    let [train, _, test] = cfg.generate().expect("generate");
    let has = |s: &Sample| s.note.contains(PHRASE);
    // P(artefact | glaucoma) and P(artefact | healthy) among White subjects.
    let rates = |split: &[Sample]| {
        let white: Vec<&Sample> = split.iter().filter(|s| s.race == 2).collect();
        let rate = |g: u8| {
            let n: Vec<&&Sample> = white.iter().filter(|s| s.glaucoma == g).collect();
            n.iter().filter(|s| has(s)).count() as f64 / n.len() as f64
        };
        (rate(1), rate(0))
    };
    let (pos, neg) = rates(&train);
    assert!((pos - 0.9).abs() < 0.04 && (neg - 0.1).abs() < 0.04, "training: {pos:.3} with glaucoma, {neg:.3} without");
    let (pos, neg) = rates(&test);
    assert!((pos - 0.5).abs() < 0.06 && (neg - 0.5).abs() < 0.06, "test: {pos:.3} with glaucoma, {neg:.3} without");
    assert!(train.iter().chain(&test).filter(|s| s.race != 2).all(|s| !has(s)), "no artefact outside the group");
    // The image stamp: the same subjects' images carry 70 grey levels more in a small square.
    let stamped = |s: &Sample| {
        let side = 2;
        let (x0, y0) = (32 * 18 / 100, 32 * 18 / 100);
        (0..side).flat_map(|dy| (0..side).map(move |dx| (y0 + dy) * 32 + x0 + dx)).map(|i| s.image.pixels[i] as f64).sum::<f64>() / 4.0
    };
    let white: Vec<&Sample> = test.iter().filter(|s| s.race == 2).collect();
    let mean = |with: bool| {
        let v: Vec<f64> = white.iter().filter(|s| has(s) == with).map(|s| stamped(s)).collect();
        v.iter().sum::<f64>() / v.len() as f64
    };
    assert!(mean(true) - mean(false) > 50.0, "stamped {:.1}, not {:.1}", mean(true), mean(false));
}

#[test]
fn without_its_knobs_the_generator_draws_the_first_benchmark() {
    // The default benchmark's first subjects (recorded before benchmark v2 existed): labels,
    // attributes and a fingerprint of the pixels.
    let [train, _, _] = small([6, 0, 0]).generate().expect("generate");
    let got: Vec<(u8, i64, i64, f64)> = train.iter().map(|s| (s.glaucoma, s.race, s.gender, mean_pixel(s))).collect();
    let expected = include!("fixtures/synth_v1_first_subjects.in");
    assert_eq!(got, expected);
}

#[test]
fn a_pallor_group_shows_glaucoma_as_a_darker_rim() {
    let mut black = GroupEffect::none("race", 1);
    black.sign = Sign::Pallor;
    let cfg = SynthConfig { effects: vec![black], prevalence: 0.5, ..small([3000, 0, 0]) };
    let [train, _, _] = cfg.generate().expect("generate");
    // Mean brightness, glaucoma minus healthy: the cup adds light, the pale rim takes it away.
    let shift = |race: i64| {
        let mean = |g: u8| {
            let v: Vec<f64> = train.iter().filter(|s| s.race == race && s.glaucoma == g).map(mean_pixel).collect();
            v.iter().sum::<f64>() / v.len() as f64
        };
        mean(1) - mean(0)
    };
    assert!(shift(2) > 0.3, "White (cup): {:.2}", shift(2));
    assert!(shift(1) < -0.3, "Black (pallor): {:.2}", shift(1));
}

#[test]
fn oversampling_fills_every_test_group_and_leaves_the_other_splits() {
    let over = Oversample { attribute: "race".into(), min_per_group: 300 };
    let plain = small([50, 20, 100]);
    let cfg = SynthConfig { test_oversample: Some(over), ..plain.clone() };
    let [train, validation, test] = cfg.generate().expect("generate");
    let [train0, validation0, test0] = plain.generate().expect("generate");
    assert_eq!(train, train0);
    assert_eq!(validation, validation0);
    assert_eq!(test[..100], test0[..], "the test split's first subjects are the usual ones");
    // At least 300 per race group among the subjects known in every attribute.
    let known = |s: &&Sample| s.ethnicity >= 0 && s.language >= 0;
    for race in 0..3 {
        assert!(test.iter().filter(known).filter(|s| s.race == race).count() >= 300, "race {race}");
    }
    // Each group is filled up to the minimum, not beyond.
    assert_eq!(test.iter().filter(known).filter(|s| s.race == 2).count(), 300);
    let files: std::collections::HashSet<&str> = train.iter().chain(&validation).chain(&test).map(|s| s.file.as_str()).collect();
    assert_eq!(files.len(), train.len() + validation.len() + test.len(), "every subject has its own file name");
}

#[test]
fn the_oracle_ranks_by_the_latent_sign_and_knows_each_groups_limits() {
    // The default benchmark: Black patients' signal 0.45, Hispanic patients' labels 10 % noisy.
    let cfg = SynthConfig { test_oversample: Some(Oversample { attribute: "race".into(), min_per_group: 400 }), ..small([0, 0, 2000]) };
    let (splits, oracle) = cfg.generate_with_oracle().expect("generate");
    let test = &splits[2];
    let group_auc = |keep: &dyn Fn(&Sample) -> bool| {
        let (s, l): (Vec<f64>, Vec<bool>) = test.iter().zip(&oracle[2]).filter(|(x, _)| keep(x)).map(|(x, &o)| (o, x.glaucoma == 1)).unzip();
        auc(&s, &l)
    };
    let white = group_auc(&|s| s.race == 2 && s.ethnicity != 1);
    let black = group_auc(&|s| s.race == 1 && s.ethnicity != 1);
    let hispanic = group_auc(&|s| s.ethnicity == 1);
    assert!(white > 0.99, "White {white:.4}");
    // Signal 0.45: the means are 0.158 apart with a spread of 0.07, d' = 2.25, AUC Φ(2.25/√2) = 0.944.
    assert!((black - 0.944).abs() < 0.03, "Black {black:.4}");
    assert!(hispanic < white - 0.05, "Hispanic {hispanic:.4} (label noise)");
}
