//! A synthetic benchmark with the structure of Harvard-FairVLMed and documented, adjustable
//! biases. Fundus-like images (field of view, optic disc and cup, vessels, noise) where
//! glaucoma enlarges the cup-to-disc ratio, short clinical notes from templates, and race,
//! gender, ethnicity, language, marital status and age drawn with FairVLMed's marginals.
//! Deterministic by seed. [`write_fairvlmed`] writes it in the real dataset's own format.

use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fairvision::{VisionSample, Volume};
use crate::fairvlmed::{GrayImage, Sample, Split};
use crate::npy::{write_npz, NpyArray};

/// How belonging to one group changes the data. Effects of several groups a subject belongs
/// to combine: signals, contrasts multiply; brightness, blur, label noise and prevalence shifts
/// add. In a config file, omitted knobs have no effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEffect {
    /// The attribute (`race`, `gender`, `ethnicity`, `language`).
    pub attribute: String,
    /// The group's code.
    pub value: i64,
    /// Multiplies the glaucoma signal in the image (the cup enlargement): below 1, the disease
    /// is harder to see in this group.
    #[serde(default = "one")]
    pub signal: f64,
    /// Added to the probability of glaucoma in this group.
    #[serde(default)]
    pub prevalence_shift: f64,
    /// Added to pixel intensities (0-255 scale).
    #[serde(default)]
    pub brightness: f64,
    /// Multiplies the contrast around the image mean.
    #[serde(default = "one")]
    pub contrast: f64,
    /// Passes of a 3x3 box blur.
    #[serde(default)]
    pub blur: usize,
    /// Probability that the recorded label is flipped.
    #[serde(default)]
    pub label_noise: f64,
    /// Multiplies the probability that this group's notes state the finding: below 1, the
    /// text is less informative for the group (a fast but group-biased modality).
    #[serde(default = "one")]
    pub note_signal: f64,
    /// How glaucoma shows in this group's images: the cup enlarges (every group by default) or
    /// the neuroretinal rim pales while the cup keeps its healthy size. A group whose sign
    /// differs is the setting that expert specialisation (Fair-MoE) is meant for.
    #[serde(default)]
    pub sign: Sign,
}

/// How glaucoma shows in a fundus image.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sign {
    /// The cup-to-disc ratio grows by `0.35 × signal`.
    #[default]
    Cup,
    /// The rim (the disc outside the cup) darkens by up to 40 grey levels (`signal` scales it,
    /// with the same spread as the cup's), the cup unchanged.
    Pallor,
}

impl GroupEffect {
    /// No effect on the given group.
    pub fn none(attribute: &str, value: i64) -> Self {
        Self {
            attribute: attribute.into(),
            value,
            signal: 1.0,
            prevalence_shift: 0.0,
            brightness: 0.0,
            contrast: 1.0,
            blur: 0,
            label_noise: 0.0,
            note_signal: 1.0,
            sign: Sign::Cup,
        }
    }
}

/// A spurious shortcut: an acquisition artefact that appears in one group only and, in the
/// training and validation splits, agrees with the diagnosis for `agreement` of that group's
/// subjects (present with glaucoma, absent without); in the test split it is present for half of
/// the group, whatever the diagnosis. A model that learns it gains on validation and loses on
/// that group at test: the setting where a fairness term can change what the model learns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Shortcut {
    /// The attribute (`race`, `gender`, `ethnicity`, `language`).
    pub attribute: String,
    /// The group's code.
    pub value: i64,
    /// Fraction of the group's training and validation subjects whose artefact agrees with
    /// their diagnosis (0.5: no shortcut, 1: a perfect one).
    pub agreement: f64,
    /// Where the artefact shows.
    #[serde(default)]
    pub modality: ShortcutModality,
}

/// Where a [`Shortcut`]'s artefact shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ShortcutModality {
    /// A bright square stamp near the top-left edge of the field of view (a site's camera).
    #[default]
    Image,
    /// A phrase in the note ("imaged with the portable camera").
    Note,
    /// Both.
    Both,
}

/// More test subjects of small groups: after the test split's `sizes[2]` subjects, further
/// subjects are drawn (from a stream of their own) and kept only while their group of
/// `attribute` has fewer than `min_per_group` subjects known in every attribute, until every
/// group has that many (so the minimum holds after FairCLIP's filter of unknown values). Only
/// the test split changes, so group metrics there are measured on enough subjects; its group
/// proportions then differ from the training split's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Oversample {
    /// The attribute whose groups are filled up (`race`, `gender`, `ethnicity`, `language`).
    pub attribute: String,
    /// Test subjects wanted in each known group.
    pub min_per_group: usize,
}

fn one() -> f64 {
    1.0
}

/// Settings of the benchmark. In a config file every field is optional (the default
/// benchmark's value) and unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SynthConfig {
    /// Seed of everything.
    pub seed: u64,
    /// Images are `image_size x image_size`.
    pub image_size: usize,
    /// Subjects per split: training, validation, test.
    pub sizes: [usize; 3],
    /// Probability of glaucoma before group shifts (FairVLMed: about one half).
    pub prevalence: f64,
    /// Probability that a note states the finding (else it is uninformative).
    pub text_signal: f64,
    /// Probability that a note mentions the patient's age, race and gender.
    pub demographic_leakage: f64,
    /// Group effects.
    pub effects: Vec<GroupEffect>,
    /// A spurious shortcut (none by default).
    pub shortcut: Option<Shortcut>,
    /// Extra test subjects for small groups (none by default).
    pub test_oversample: Option<Oversample>,
}

impl Default for SynthConfig {
    /// The default benchmark: Black patients' disease is harder to see (signal 0.45, lower
    /// contrast, slight blur), Asian patients' slightly (signal 0.8); Hispanic patients have
    /// noisier labels (10%); Spanish speakers brighter images. Sizes 2,000 / 400 / 800 at 64 px.
    fn default() -> Self {
        let mut black = GroupEffect::none("race", 1);
        black.signal = 0.45;
        black.contrast = 0.8;
        black.blur = 1;
        let mut asian = GroupEffect::none("race", 0);
        asian.signal = 0.8;
        let mut hispanic = GroupEffect::none("ethnicity", 1);
        hispanic.label_noise = 0.1;
        let mut spanish = GroupEffect::none("language", 1);
        spanish.brightness = 20.0;
        Self {
            seed: 0,
            image_size: 64,
            sizes: [2000, 400, 800],
            prevalence: 0.5,
            text_signal: 0.5,
            demographic_leakage: 0.3,
            effects: vec![black, asian, hispanic, spanish],
            shortcut: None,
            test_oversample: None,
        }
    }
}

impl SynthConfig {
    /// Benchmark v2: biases a fairness method can act on, fixed from the papers' descriptions
    /// before any method ran on it (docs/datasets.md, "Benchmark v2").
    /// - A spurious shortcut for Black patients (race 1): an acquisition artefact (a site's
    ///   camera stamp in the image) that agrees with the diagnosis for 85 % of them in training
    ///   and validation and is independent of it at test. FairCLIP's premise is that the
    ///   model's scores are distributed differently across groups; here that difference is one
    ///   a model learns and a fairness term can unlearn.
    /// - A group-specific sign for Asian patients (race 0): glaucoma pales the rim instead of
    ///   enlarging the cup (Fair-MoE's premise: groups' features differ, and experts can
    ///   specialise).
    /// - No information destroyed: every group's sign has the same strength and no label noise,
    ///   so the oracle's AUC is the same in every group.
    /// - The test split oversampled to at least 1,000 subjects per race group.
    ///
    /// ```
    /// let v2 = fair_data::SynthConfig::benchmark_v2();
    /// assert_eq!(v2.shortcut.as_ref().unwrap().value, 1);
    /// assert!(v2.validate().is_ok());
    /// ```
    pub fn benchmark_v2() -> Self {
        let mut asian = GroupEffect::none("race", 0);
        asian.sign = Sign::Pallor;
        Self {
            effects: vec![asian],
            shortcut: Some(Shortcut { attribute: "race".into(), value: 1, agreement: 0.85, modality: ShortcutModality::Image }),
            test_oversample: Some(Oversample { attribute: "race".into(), min_per_group: 1000 }),
            ..Self::default()
        }
    }
}

/// FairVLMed's marginals (papers.md 1.1); unknown codes (-1) where the dataset has them.
/// Marital status is not published; the proportions used are an assumption.
const RACE: [(i64, f64); 3] = [(0, 0.082), (1, 0.149), (2, 0.769)];
const GENDER: [(i64, f64); 2] = [(0, 0.563), (1, 0.437)];
const ETHNICITY: [(i64, f64); 3] = [(0, 0.906), (1, 0.040), (-1, 0.054)];
const LANGUAGE: [(i64, f64); 4] = [(0, 0.925), (1, 0.017), (2, 0.008), (-1, 0.050)];
const MARITAL: [(i64, f64); 6] = [(0, 0.52), (1, 0.22), (2, 0.11), (3, 0.10), (4, 0.02), (-1, 0.03)];

/// The three splits and, per split, each subject's oracle score
/// ([`SynthConfig::generate_with_oracle`]).
pub type WithOracle = ([Vec<Sample>; 3], [Vec<f64>; 3]);

/// The attributes group effects, shortcuts and oversampling name.
const ATTRIBUTES: [&str; 4] = ["race", "gender", "ethnicity", "language"];

/// A healthy eye's mean cup-to-disc ratio, glaucoma's lift of it (times the group's signal),
/// and the spread of the latent sign between subjects.
const HEALTHY_CDR: f64 = 0.3;
const LIFT: f64 = 0.35;
const SPREAD: f64 = 0.07;
/// The rim's darkening (grey levels) at a pallor sign of one lift.
const PALLOR_GREY: f64 = 40.0;

/// The marginal table of an attribute.
fn table(attribute: &str) -> &'static [(i64, f64)] {
    match attribute {
        "race" => &RACE,
        "gender" => &GENDER,
        "ethnicity" => &ETHNICITY,
        _ => &LANGUAGE,
    }
}

/// The demographic draws of one subject, in the order the generator has always drawn them.
#[derive(Debug, Clone, Copy)]
struct Demographics {
    race: i64,
    gender: i64,
    ethnicity: i64,
    language: i64,
    maritalstatus: i64,
    age: f64,
}

impl Demographics {
    fn draw(rng: &mut ChaCha8Rng) -> Self {
        let (race, gender, ethnicity, language) = (draw(rng, &RACE), draw(rng, &GENDER), draw(rng, &ETHNICITY), draw(rng, &LANGUAGE));
        let maritalstatus = draw(rng, &MARITAL);
        let age = normal(rng, 60.9, 16.2).clamp(18.0, 95.0).round();
        Self { race, gender, ethnicity, language, maritalstatus, age }
    }

    fn get(&self, attribute: &str) -> i64 {
        match attribute {
            "race" => self.race,
            "gender" => self.gender,
            "ethnicity" => self.ethnicity,
            _ => self.language,
        }
    }
}

/// What the generator knows of a subject and the data do not say.
#[derive(Debug, Clone, Copy)]
struct Latent {
    /// Glaucoma before label noise.
    truth: bool,
    /// The oracle's probability of the recorded diagnosis.
    oracle: f64,
}

/// The Bayes-optimal probability that the recorded diagnosis is glaucoma, given the latent sign
/// `z ~ N(healthy + lift · truth, spread²)`, the group's prevalence `p` and its label-noise rate
/// `noise`: `noise + (1 − 2 noise) · P(truth | z)`, with `P(truth | z)` from the two normal
/// likelihoods. Without a lift the sign says nothing and the score is the prevalence's.
///
/// ```
/// use fair_data::oracle_score;
/// // Halfway between the two means with a prevalence of one half: even odds.
/// assert!((oracle_score(0.475, 0.3, 0.35, 0.07, 0.5, 0.0) - 0.5).abs() < 1e-12);
/// // Far on the glaucoma side; a 10 % label noise caps the certainty at 0.9.
/// assert!((oracle_score(0.8, 0.3, 0.35, 0.07, 0.5, 0.1) - 0.9).abs() < 1e-6);
/// ```
pub fn oracle_score(z: f64, healthy: f64, lift: f64, spread: f64, p: f64, noise: f64) -> f64 {
    let posterior = if p <= 0.0 {
        0.0
    } else if p >= 1.0 {
        1.0
    } else {
        let (d0, d1) = (z - healthy, z - healthy - lift);
        let logit = (p / (1.0 - p)).ln() + (d0 * d0 - d1 * d1) / (2.0 * spread * spread);
        1.0 / (1.0 + (-logit).exp())
    };
    noise + (1.0 - 2.0 * noise) * posterior
}

/// A shortcut's image artefact: a bright square near the top-left edge of the field of view.
fn stamp(image: &mut GrayImage) {
    let side = (image.width / 16).max(2);
    let (x0, y0) = (image.width * 18 / 100, image.height * 18 / 100);
    for y in y0..(y0 + side).min(image.height) {
        for x in x0..(x0 + side).min(image.width) {
            let p = &mut image.pixels[y * image.width + x];
            *p = (*p + 70.0).min(255.0);
        }
    }
}

fn draw(rng: &mut ChaCha8Rng, table: &[(i64, f64)]) -> i64 {
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for &(v, p) in table {
        acc += p;
        if u < acc {
            return v;
        }
    }
    table.last().map_or(0, |t| t.0)
}

fn normal(rng: &mut ChaCha8Rng, mean: f64, std: f64) -> f64 {
    Normal::new(mean, std).map_or(mean, |n| n.sample(rng))
}

impl SynthConfig {
    /// Checks every knob; the message names the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(m));
        if self.image_size < 16 {
            return bad(format!("image_size = {}: expected at least 16", self.image_size));
        }
        for (name, p) in [("prevalence", self.prevalence), ("text_signal", self.text_signal), ("demographic_leakage", self.demographic_leakage)] {
            if !(0.0..=1.0).contains(&p) {
                return bad(format!("{name} = {p}: expected a probability in [0, 1]"));
            }
        }
        for (i, e) in self.effects.iter().enumerate() {
            if !ATTRIBUTES.contains(&e.attribute.as_str()) {
                return bad(format!("effects[{i}].attribute = '{}': expected race, gender, ethnicity or language", e.attribute));
            }
            if !(e.signal >= 0.0 && e.note_signal >= 0.0 && e.contrast > 0.0 && (0.0..=0.5).contains(&e.label_noise) && e.prevalence_shift.is_finite() && e.brightness.is_finite())
            {
                return bad(format!("effects[{i}] ({}={}): expected signal >= 0, note_signal >= 0, contrast > 0, label_noise in [0, 0.5]", e.attribute, e.value));
            }
        }
        if let Some(sc) = &self.shortcut {
            if !ATTRIBUTES.contains(&sc.attribute.as_str()) {
                return bad(format!("shortcut.attribute = '{}': expected race, gender, ethnicity or language", sc.attribute));
            }
            if !(0.0..=1.0).contains(&sc.agreement) {
                return bad(format!("shortcut.agreement = {}: expected a fraction in [0, 1]", sc.agreement));
            }
        }
        if let Some(o) = &self.test_oversample {
            if !ATTRIBUTES.contains(&o.attribute.as_str()) {
                return bad(format!("test_oversample.attribute = '{}': expected race, gender, ethnicity or language", o.attribute));
            }
            if o.min_per_group > 100_000 {
                return bad(format!("test_oversample.min_per_group = {}: expected at most 100000", o.min_per_group));
            }
        }
        Ok(())
    }

    /// Generates the three splits.
    pub fn generate(&self) -> Result<[Vec<Sample>; 3]> {
        Ok(self.generate_with_oracle()?.0)
    }

    /// Generates the three splits and, for every subject, the oracle's score: the probability
    /// of the recorded diagnosis given the latent sign in the image (the cup-to-disc ratio, or
    /// the rim's pallor) and the subject's groups, before pixel noise, blur, contrast and any
    /// shortcut. Its AUC within a group is the best any image model can reach there
    /// ([`oracle_score`] has the formula).
    ///
    /// ```
    /// let cfg = fair_data::SynthConfig { sizes: [4, 2, 30], image_size: 16, ..Default::default() };
    /// let (splits, oracle) = cfg.generate_with_oracle().unwrap();
    /// assert_eq!(oracle[2].len(), splits[2].len());
    /// assert!(oracle[2].iter().all(|p| (0.0..=1.0).contains(p)));
    /// ```
    pub fn generate_with_oracle(&self) -> Result<WithOracle> {
        self.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut id = 0usize;
        let mut split = |n: usize, test: bool| -> (Vec<Sample>, Vec<f64>) {
            (0..n)
                .map(|_| {
                    id += 1;
                    let (sample, latent) = self.subject(&mut rng, id, test);
                    (sample, latent.oracle)
                })
                .unzip()
        };
        let (train, train_oracle) = split(self.sizes[0], false);
        let (validation, validation_oracle) = split(self.sizes[1], false);
        let (mut test, mut test_oracle) = split(self.sizes[2], true);
        if let Some(o) = &self.test_oversample {
            self.oversample(o, &mut test, &mut test_oracle, id)?;
        }
        Ok(([train, validation, test], [train_oracle, validation_oracle, test_oracle]))
    }

    /// Fills the test split up to `o.min_per_group` subjects in each known group (see
    /// [`Oversample`]); ids continue after `last_id`.
    fn oversample(&self, o: &Oversample, test: &mut Vec<Sample>, oracle: &mut Vec<f64>, last_id: usize) -> Result<()> {
        let groups: Vec<i64> = table(&o.attribute).iter().map(|&(v, _)| v).filter(|&v| v >= 0).collect();
        // Only subjects known in every attribute count (and are added): FairCLIP's evaluation
        // drops the others from the test split.
        let complete = |s: &Sample| ATTRIBUTES.iter().all(|a| s.attribute(a).is_some_and(|v| v >= 0));
        let mut counts: Vec<usize> = groups.iter().map(|g| test.iter().filter(|s| complete(s) && s.attribute(&o.attribute) == Some(*g)).count()).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ 0x0E45_A3B1_5EED_7E57);
        let mut id = last_id;
        // Every known group has a probability of at least 0.8 %: a few million draws of the
        // demographics (no images) are always enough.
        for _ in 0..50_000_000usize {
            if counts.iter().all(|&c| c >= o.min_per_group) {
                return Ok(());
            }
            let demo = Demographics::draw(&mut rng);
            if ATTRIBUTES.iter().any(|a| demo.get(a) < 0) {
                continue;
            }
            if let Some(i) = groups.iter().position(|&g| g == demo.get(&o.attribute)) {
                if counts[i] < o.min_per_group {
                    id += 1;
                    counts[i] += 1;
                    let (sample, latent) = self.subject_of(&mut rng, id, demo, true);
                    test.push(sample);
                    oracle.push(latent.oracle);
                }
            }
        }
        Err(Error::Invalid(format!("test_oversample: could not draw {} test subjects per {} group", o.min_per_group, o.attribute)))
    }

    /// The same subjects (identical fundus images, labels and attributes) in FairVision's
    /// form, each with an OCT volume drawn by `oct`.
    pub fn generate_vision(&self, oct: &OctSynth) -> Result<[Vec<VisionSample>; 3]> {
        self.validate()?;
        oct.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut id = 0usize;
        let mut split = |n: usize| -> Vec<VisionSample> {
            (0..n)
                .map(|_| {
                    id += 1;
                    let (s, latent) = self.subject(&mut rng, id, false);
                    let truth = latent.truth;
                    // A stream of its own per subject: the fundus benchmark's draws are unchanged.
                    let mut orng = ChaCha8Rng::seed_from_u64(self.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (id as u64).wrapping_add(0x0C7));
                    VisionSample {
                        file: s.file,
                        fundus: s.image,
                        oct: oct.volume(&mut orng, truth),
                        glaucoma: s.glaucoma,
                        race: s.race,
                        male: s.gender,
                        hispanic: s.ethnicity,
                        language: s.language,
                        maritalstatus: s.maritalstatus,
                    }
                })
                .collect()
        };
        Ok([split(self.sizes[0]), split(self.sizes[1]), split(self.sizes[2])])
    }

    /// One subject and their latent truth. `test`: the subject is in the test split (where a
    /// shortcut's artefact is independent of the diagnosis).
    fn subject(&self, rng: &mut ChaCha8Rng, id: usize, test: bool) -> (Sample, Latent) {
        let demo = Demographics::draw(rng);
        self.subject_of(rng, id, demo, test)
    }

    /// The combined effect of every group `demo` belongs to.
    fn effects_of(&self, demo: &Demographics) -> GroupEffect {
        let mut fx = GroupEffect::none("", 0);
        for e in self.effects.iter().filter(|e| demo.get(&e.attribute) == e.value) {
            fx.signal *= e.signal;
            fx.contrast *= e.contrast;
            fx.prevalence_shift += e.prevalence_shift;
            fx.brightness += e.brightness;
            fx.blur += e.blur;
            fx.label_noise += e.label_noise;
            fx.note_signal *= e.note_signal;
            if e.sign == Sign::Pallor {
                fx.sign = Sign::Pallor;
            }
        }
        fx
    }

    /// The rest of a subject whose demographics are drawn.
    fn subject_of(&self, rng: &mut ChaCha8Rng, id: usize, demo: Demographics, test: bool) -> (Sample, Latent) {
        let Demographics { race, gender, ethnicity, language, maritalstatus, age } = demo;
        let fx = self.effects_of(&demo);
        let p = (self.prevalence + fx.prevalence_shift).clamp(0.0, 1.0);
        let truth = rng.random::<f64>() < p;
        let lift = if truth { LIFT * fx.signal } else { 0.0 };
        // The latent sign: the cup-to-disc ratio, or the rim's pallor (in the same units).
        let (cdr, pallor, sign, healthy) = match fx.sign {
            Sign::Cup => {
                let z = HEALTHY_CDR + lift + normal(rng, 0.0, SPREAD);
                (z.clamp(0.1, 0.9), 0.0, z, HEALTHY_CDR)
            }
            Sign::Pallor => {
                let cdr = (HEALTHY_CDR + normal(rng, 0.0, SPREAD)).clamp(0.1, 0.9);
                let z = lift + normal(rng, 0.0, SPREAD);
                (cdr, z * PALLOR_GREY / LIFT, z, 0.0)
            }
        };
        let mut image = fundus(rng, self.image_size, cdr, pallor, &fx);
        let label_noise = fx.label_noise.min(0.5);
        let recorded = truth ^ (rng.random::<f64>() < label_noise);
        let mut note = self.note(rng, truth, cdr, age, race, gender, fx.note_signal);
        if let Some(sc) = self.shortcut.as_ref().filter(|sc| demo.get(&sc.attribute) == sc.value) {
            let present = if test { rng.random::<f64>() < 0.5 } else { (rng.random::<f64>() < sc.agreement) == truth };
            if present {
                if matches!(sc.modality, ShortcutModality::Image | ShortcutModality::Both) {
                    stamp(&mut image);
                }
                if matches!(sc.modality, ShortcutModality::Note | ShortcutModality::Both) {
                    note.push_str(" imaged with the portable camera.");
                }
            }
        }
        let oracle = oracle_score(sign, healthy, LIFT * fx.signal, SPREAD, p, label_noise);
        let sample = Sample { file: format!("data_{id:05}.npz"), image, glaucoma: recorded as u8, race, gender, ethnicity, language, maritalstatus, age, note };
        (sample, Latent { truth, oracle })
    }

    #[allow(clippy::too_many_arguments)]
    fn note(&self, rng: &mut ChaCha8Rng, glaucoma: bool, cdr: f64, age: f64, race: i64, gender: i64, note_signal: f64) -> String {
        // Findings end with the class word of FairCLIP's prompts ("A photo of glaucoma" /
        // "A photo of non-glaucoma") and close the note, as the prompts close with it, so that
        // zero-shot evaluation with the two prompts is in distribution for a text tower that
        // pools at the end token.
        const POS: [&str; 4] = [
            "cup-to-disc ratio {c} with inferior rim thinning, glaucoma",
            "arcuate visual field defect, glaucomatous optic neuropathy, glaucoma",
            "elevated intraocular pressure and enlarged cup, cdr {c}, glaucoma",
            "progressive nerve fiber layer loss consistent with glaucoma",
        ];
        const NEG: [&str; 4] = [
            "healthy optic nerve, cup-to-disc ratio {c}, non-glaucoma",
            "no glaucomatous changes, full visual field, non-glaucoma",
            "normal intraocular pressure and intact rim, non-glaucoma",
            "optic discs appear normal, cdr {c}, non-glaucoma",
        ];
        const NEUTRAL: [&str; 5] = [
            "routine follow-up visit for eye examination",
            "patient reports intermittent blurry vision",
            "cataract evaluation requested by primary care",
            "dry eye symptoms treated with artificial tears",
            "referred for visual field testing",
        ];
        let pick = |rng: &mut ChaCha8Rng, t: &[&str]| t[rng.random_range(0..t.len())].replace("{c}", &format!("{cdr:.2}"));
        let finding = if rng.random::<f64>() < self.text_signal * note_signal { pick(rng, if glaucoma { &POS } else { &NEG }) } else { pick(rng, &NEUTRAL) };
        let extra = pick(rng, &NEUTRAL);
        let mut note = format!("{extra}; {finding}.");
        if rng.random::<f64>() < self.demographic_leakage {
            let race_word = ["asian", "black", "white"].get(race as usize).copied().unwrap_or("");
            let gender_word = if gender == 0 { "female" } else { "male" };
            note = format!("{age:.0} year old {race_word} {gender_word} patient. {note}");
        }
        note
    }
}

/// Draws a fundus-like image: a bright optic disc with a brighter cup of radius
/// `cdr x disc radius`, its rim (the disc outside the cup) darker by `pallor` grey levels,
/// vessels leaving the disc, a circular field of view, Gaussian noise, and the group's
/// nuisance (brightness, contrast, blur).
fn fundus(rng: &mut ChaCha8Rng, size: usize, cdr: f64, pallor: f64, fx: &GroupEffect) -> GrayImage {
    let s = size as f64;
    let (cx, cy) = (s * (0.5 + normal(rng, 0.0, 0.05)), s * (0.5 + normal(rng, 0.0, 0.05)));
    let rd = s * (0.14 + normal(rng, 0.0, 0.01)).max(0.08);
    let rc = rd * cdr;
    let vessels: Vec<(f64, f64)> = (0..rng.random_range(4..7)).map(|_| (rng.random::<f64>() * std::f64::consts::TAU, normal(rng, 0.0, 0.8))).collect();
    let base = normal(rng, 75.0, 8.0);
    let mut px = vec![0f32; size * size];
    for yy in 0..size {
        for xx in 0..size {
            let (x, y) = (xx as f64 + 0.5, yy as f64 + 0.5);
            let (dx, dy) = (x - cx, y - cy);
            let r = (dx * dx + dy * dy).sqrt();
            let field = ((s * 0.48 - ((x - s / 2.0).powi(2) + (y - s / 2.0).powi(2)).sqrt()) / 2.0).clamp(0.0, 1.0);
            let mut v = base * (1.0 - 0.3 * ((x - s / 2.0).powi(2) + (y - s / 2.0).powi(2)).sqrt() / s);
            let (in_disc, in_cup) = (((rd - r) / 1.5).clamp(0.0, 1.0), ((rc - r) / 1.5).clamp(0.0, 1.0));
            v += 80.0 * in_disc; // disc, soft edge
            v += 60.0 * in_cup; // cup
            if pallor != 0.0 {
                v -= pallor * in_disc * (1.0 - in_cup); // the rim
            }
            if r > rd * 0.6 {
                let theta = dy.atan2(dx);
                for &(a, curve) in &vessels {
                    let along = a + curve * (r / s);
                    let d = (((theta - along + std::f64::consts::PI).rem_euclid(std::f64::consts::TAU)) - std::f64::consts::PI).abs() * r;
                    v -= 35.0 * (1.0 - d / 1.5).clamp(0.0, 1.0);
                }
            }
            px[yy * size + xx] = (v * field) as f32;
        }
    }
    for _ in 0..fx.blur {
        px = box_blur(&px, size);
    }
    let mean = px.iter().map(|&v| v as f64).sum::<f64>() / px.len() as f64;
    for p in px.iter_mut() {
        let v = mean + (*p as f64 - mean) * fx.contrast + fx.brightness + normal(rng, 0.0, 6.0);
        *p = v.clamp(0.0, 255.0).round() as f32;
    }
    GrayImage { height: size, width: size, pixels: px }
}

fn box_blur(px: &[f32], size: usize) -> Vec<f32> {
    let mut out = vec![0f32; px.len()];
    for y in 0..size {
        for x in 0..size {
            let (mut sum, mut n) = (0.0, 0.0);
            for yy in y.saturating_sub(1)..(y + 2).min(size) {
                for xx in x.saturating_sub(1)..(x + 2).min(size) {
                    sum += px[yy * size + xx];
                    n += 1.0;
                }
            }
            out[y * size + x] = sum / n;
        }
    }
    out
}

/// Writes splits in Harvard-FairVLMed's format under `root`: `Training/`, `Validation/`,
/// `Test/` with one `data_XXXXX.npz` per subject (keys `slo_fundus` uint8, `glaucoma`, `race`,
/// `gender`, `ethnicity`, `language`, `maritalstatus` int64, `age`, `md` float64, `tds` 52
/// float64, `note`, `note_extra` unicode), `data_summary.csv` and
/// `gpt-4_summarized_notes.csv` (file name, original note, summary).
pub fn write_fairvlmed(root: &Path, splits: &[Vec<Sample>; 3]) -> Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| Error::Io { path, source }
    };
    let mut summary = String::from("filename,use,age,gender,race,ethnicity,language,maritalstatus,glaucoma,note\n");
    let mut gpt = String::from("filename,note,gpt4_summary\n");
    let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    for (samples, split) in splits.iter().zip([Split::Training, Split::Validation, Split::Test]) {
        let folder = split.folders()[0];
        let dir = root.join(folder);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for s in samples {
            let pixels: Vec<u8> = s.image.pixels.iter().map(|&v| v.clamp(0.0, 255.0) as u8).collect();
            let md = if s.glaucoma == 1 { -6.0 } else { -0.5 };
            let note_extra = format!("{} year old, race {}, gender {}. {}", s.age, s.race, s.gender, s.note);
            let int = |v: i64| NpyArray::from_i64(vec![], vec![v]);
            write_npz(
                &dir.join(&s.file),
                &[
                    ("slo_fundus", NpyArray::from_u8(vec![s.image.height, s.image.width], &pixels)),
                    ("md", NpyArray::from_f64(vec![], vec![md])),
                    ("tds", NpyArray::from_f64(vec![52], vec![md; 52])),
                    ("age", NpyArray::from_f64(vec![], vec![s.age])),
                    ("gender", int(s.gender)),
                    ("race", int(s.race)),
                    ("ethnicity", int(s.ethnicity)),
                    ("language", int(s.language)),
                    ("maritalstatus", int(s.maritalstatus)),
                    ("glaucoma", int(s.glaucoma as i64)),
                    ("note", NpyArray::unicode(&s.note)),
                    ("note_extra", NpyArray::unicode(&note_extra)),
                ],
            )?;
            summary.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{}\n",
                s.file,
                folder.to_lowercase(),
                s.age,
                s.gender,
                s.race,
                s.ethnicity,
                s.language,
                s.maritalstatus,
                s.glaucoma,
                quote(&s.note)
            ));
            gpt.push_str(&format!("{},{},{}\n", s.file, quote(&note_extra), quote(&s.note)));
        }
    }
    let write = |name: &str, text: &str| -> Result<()> {
        let p = root.join(name);
        std::fs::write(&p, text).map_err(io(&p))
    };
    write("data_summary.csv", &summary)?;
    write("gpt-4_summarized_notes.csv", &gpt)
}

/// The OCT side of the synthetic FairVision benchmark: B-scans through the retina, whose
/// nerve-fibre layer (the bright top band) thins in glaucoma. The same for every group, and
/// subtle against the speckle: the informative but slow modality, against the fundus image,
/// which is fast to learn but group-biased (the [`SynthConfig`] effects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OctSynth {
    /// B-scans per volume.
    pub depth: usize,
    /// Side of a B-scan.
    pub size: usize,
    /// Fraction of the nerve-fibre layer lost in glaucoma.
    pub signal: f64,
    /// Standard deviation of the speckle noise (0-255 scale).
    pub noise: f64,
}

impl Default for OctSynth {
    /// 16 scans of 32 x 32, 40% thinning, noise 30.
    fn default() -> Self {
        OctSynth { depth: 16, size: 32, signal: 0.4, noise: 30.0 }
    }
}

impl OctSynth {
    /// Checks the knobs; the message names the field.
    pub fn validate(&self) -> Result<()> {
        if self.depth == 0 || self.size < 8 {
            return Err(Error::Invalid(format!("oct.depth = {}, oct.size = {}: expected at least 1 scan of at least 8 x 8", self.depth, self.size)));
        }
        if !((0.0..=1.0).contains(&self.signal) && self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(Error::Invalid(format!("oct.signal = {}, oct.noise = {}: expected signal in [0, 1], noise >= 0", self.signal, self.noise)));
        }
        Ok(())
    }

    /// One volume; `glaucoma` thins the nerve-fibre layer, most near the disc (the middle
    /// scans and columns).
    fn volume(&self, rng: &mut ChaCha8Rng, glaucoma: bool) -> Volume {
        let (d, n) = (self.depth, self.size);
        let s = n as f64;
        let surface = s * (0.25 + normal(rng, 0.0, 0.02));
        let rnfl = s * (0.12 + normal(rng, 0.0, 0.01)).max(0.05);
        let tilt = normal(rng, 0.0, 0.03);
        let mut voxels = Vec::with_capacity(d * n * n);
        for z in 0..d {
            let zc = (z as f64 + 0.5) / d as f64 - 0.5;
            for y in 0..n {
                for x in 0..n {
                    let xc = (x as f64 + 0.5) / s - 0.5;
                    // Thicker towards the disc, thinner in glaucoma, most where it is thickest.
                    let near_disc = (-(xc * xc + zc * zc) / 0.08).exp();
                    let thinning = if glaucoma { 1.0 - self.signal * (0.5 + 0.5 * near_disc) } else { 1.0 };
                    let top = surface + tilt * s * xc + 2.0 * (xc * 6.0).cos();
                    let t_rnfl = rnfl * (0.7 + 0.6 * near_disc) * thinning;
                    let depth_in = y as f64 + 0.5 - top;
                    let v = if depth_in < 0.0 {
                        10.0 // vitreous
                    } else if depth_in < t_rnfl {
                        200.0 // nerve-fibre layer
                    } else if depth_in < t_rnfl + s * 0.2 {
                        110.0 // inner layers
                    } else if depth_in < t_rnfl + s * 0.3 {
                        70.0 // outer nuclear layer
                    } else if depth_in < t_rnfl + s * 0.34 {
                        230.0 // retinal pigment epithelium
                    } else {
                        60.0 // choroid
                    };
                    voxels.push((v + normal(rng, 0.0, self.noise)).clamp(0.0, 255.0).round() as f32);
                }
            }
        }
        Volume { depth: d, height: n, width: n, voxels }
    }
}

/// Writes splits in Harvard-FairVision's format under `root`: `train/`, `val/`, `test/` with
/// one `data_XXXXX.npz` per subject (`oct_bscans` uint8 [scans, height, width], `slo_fundus`
/// uint8, `glaucoma`, `race`, `male`, `hispanic`, `language`, `maritalstatus` int64).
pub fn write_fairvision(root: &Path, splits: &[Vec<VisionSample>; 3]) -> Result<()> {
    for (samples, folder) in splits.iter().zip(["train", "val", "test"]) {
        let dir = root.join(folder);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        for s in samples {
            let u8s = |v: &[f32]| -> Vec<u8> { v.iter().map(|&x| x.clamp(0.0, 255.0) as u8).collect() };
            let int = |v: i64| NpyArray::from_i64(vec![], vec![v]);
            write_npz(
                &dir.join(&s.file),
                &[
                    ("oct_bscans", NpyArray::from_u8(vec![s.oct.depth, s.oct.height, s.oct.width], &u8s(&s.oct.voxels))),
                    ("slo_fundus", NpyArray::from_u8(vec![s.fundus.height, s.fundus.width], &u8s(&s.fundus.pixels))),
                    ("glaucoma", int(s.glaucoma as i64)),
                    ("race", int(s.race)),
                    ("male", int(s.male)),
                    ("hispanic", int(s.hispanic)),
                    ("language", int(s.language)),
                    ("maritalstatus", int(s.maritalstatus)),
                ],
            )?;
        }
    }
    Ok(())
}
