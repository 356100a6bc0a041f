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
}

impl GroupEffect {
    /// No effect on the given group.
    pub fn none(attribute: &str, value: i64) -> Self {
        Self { attribute: attribute.into(), value, signal: 1.0, prevalence_shift: 0.0, brightness: 0.0, contrast: 1.0, blur: 0, label_noise: 0.0, note_signal: 1.0 }
    }
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
        Self { seed: 0, image_size: 64, sizes: [2000, 400, 800], prevalence: 0.5, text_signal: 0.5, demographic_leakage: 0.3, effects: vec![black, asian, hispanic, spanish] }
    }
}

/// FairVLMed's marginals (papers.md 1.1); unknown codes (-1) where the dataset has them.
/// Marital status is not published; the proportions used are an assumption.
const RACE: [(i64, f64); 3] = [(0, 0.082), (1, 0.149), (2, 0.769)];
const GENDER: [(i64, f64); 2] = [(0, 0.563), (1, 0.437)];
const ETHNICITY: [(i64, f64); 3] = [(0, 0.906), (1, 0.040), (-1, 0.054)];
const LANGUAGE: [(i64, f64); 4] = [(0, 0.925), (1, 0.017), (2, 0.008), (-1, 0.050)];
const MARITAL: [(i64, f64); 6] = [(0, 0.52), (1, 0.22), (2, 0.11), (3, 0.10), (4, 0.02), (-1, 0.03)];

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
            if !["race", "gender", "ethnicity", "language"].contains(&e.attribute.as_str()) {
                return bad(format!("effects[{i}].attribute = '{}': expected race, gender, ethnicity or language", e.attribute));
            }
            if !(e.signal >= 0.0 && e.note_signal >= 0.0 && e.contrast > 0.0 && (0.0..=0.5).contains(&e.label_noise) && e.prevalence_shift.is_finite() && e.brightness.is_finite())
            {
                return bad(format!("effects[{i}] ({}={}): expected signal >= 0, note_signal >= 0, contrast > 0, label_noise in [0, 0.5]", e.attribute, e.value));
            }
        }
        Ok(())
    }

    /// Generates the three splits.
    pub fn generate(&self) -> Result<[Vec<Sample>; 3]> {
        self.validate()?;
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let mut id = 0usize;
        let mut split = |n: usize| -> Vec<Sample> {
            (0..n)
                .map(|_| {
                    id += 1;
                    self.subject(&mut rng, id).0
                })
                .collect()
        };
        Ok([split(self.sizes[0]), split(self.sizes[1]), split(self.sizes[2])])
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
                    let (s, truth) = self.subject(&mut rng, id);
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

    /// One subject and whether they truly have glaucoma (before label noise).
    fn subject(&self, rng: &mut ChaCha8Rng, id: usize) -> (Sample, bool) {
        let (race, gender, ethnicity, language) = (draw(rng, &RACE), draw(rng, &GENDER), draw(rng, &ETHNICITY), draw(rng, &LANGUAGE));
        let maritalstatus = draw(rng, &MARITAL);
        let age = normal(rng, 60.9, 16.2).clamp(18.0, 95.0).round();
        let mut fx = GroupEffect::none("", 0);
        for e in &self.effects {
            let v = match e.attribute.as_str() {
                "race" => race,
                "gender" => gender,
                "ethnicity" => ethnicity,
                _ => language,
            };
            if v == e.value {
                fx.signal *= e.signal;
                fx.contrast *= e.contrast;
                fx.prevalence_shift += e.prevalence_shift;
                fx.brightness += e.brightness;
                fx.blur += e.blur;
                fx.label_noise += e.label_noise;
                fx.note_signal *= e.note_signal;
            }
        }
        let p = (self.prevalence + fx.prevalence_shift).clamp(0.0, 1.0);
        let truth = rng.random::<f64>() < p;
        let cdr = (0.3 + if truth { 0.35 * fx.signal } else { 0.0 } + normal(rng, 0.0, 0.07)).clamp(0.1, 0.9);
        let image = fundus(rng, self.image_size, cdr, &fx);
        let recorded = truth ^ (rng.random::<f64>() < fx.label_noise.min(0.5));
        let note = self.note(rng, truth, cdr, age, race, gender, fx.note_signal);
        let sample = Sample { file: format!("data_{id:05}.npz"), image, glaucoma: recorded as u8, race, gender, ethnicity, language, maritalstatus, age, note };
        (sample, truth)
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
/// `cdr x disc radius`, vessels leaving the disc, a circular field of view, Gaussian noise, and
/// the group's nuisance (brightness, contrast, blur).
fn fundus(rng: &mut ChaCha8Rng, size: usize, cdr: f64, fx: &GroupEffect) -> GrayImage {
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
            v += 80.0 * ((rd - r) / 1.5).clamp(0.0, 1.0); // disc, soft edge
            v += 60.0 * ((rc - r) / 1.5).clamp(0.0, 1.0); // cup
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
