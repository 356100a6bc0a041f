#!/usr/bin/env python3
"""Write a synthetic Harvard-FairVLMed folder of any size, in the real dataset's format, for
input-throughput benchmarks (fairvlm's loader against `fairclip_input.py`, FairCLIP's dataset
class driven like a torch DataLoader).

    .venv/bin/python benches/peer/make_fairvlmed_large.py --subjects 2000 --out .bench/fairvlmed-2000 [--seed 0]

Layout: DIR/Training/, DIR/Validation/, DIR/Test/ with 70% / 10% / 20% of the subjects, one
`data_XXXXX.npz` each, numbered 1..N across the splits in that order, written with `np.savez`
(uncompressed, as the real files are). Keys, all numpy arrays as the real files have them:

    slo_fundus     uint8 (664, 512)   height 664, width 512: the real size
    md             float64 0-d        visual-field mean deviation (dB)
    tds            float64 (52,)      total deviation at the 52 points of a 24-2 field
    age            float64 0-d
    gender         int64 0-d          0 female, 1 male
    race           int64 0-d          0 Asian, 1 Black, 2 White
    ethnicity      int64 0-d          0 non-Hispanic, 1 Hispanic, -1 unknown (rare)
    language       int64 0-d          0 English, 1 Spanish, 2 other, -1 unknown (rare)
    maritalstatus  int64 0-d          0..4, -1 unknown (rare)
    glaucoma       int64 0-d          0/1, about half
    note           numpy unicode 0-d  a clinical note of 200-600 characters
    note_extra     numpy unicode 0-d  demographics followed by the note

The image looks vaguely like an SLO fundus: a dark background, a bright round field with some
vignetting, a brighter optic disc (larger, with a larger bright cup, for glaucoma) on the left or
right, dark vessel-like curves leaving the disc, and pixel noise, so that neither compression nor
decoding is trivially uniform. Vessel maps come from a small bank built once and shifted per
subject; everything else is drawn per subject with vectorised numpy (about 10 ms a subject).

Deterministic given --seed (one numpy Generator, subjects drawn in order). Prints the number of
subjects per split and the total bytes written. Needs numpy only.
"""
import argparse
import os
import shutil
import time

import numpy as np

H, W = 664, 512
BANK = 12            # vessel maps built once
SHIFT = 48           # vertical disc shift, pixels either way
RACE_P = [0.09, 0.15, 0.76]
RACE_WORDS = ["Asian", "Black", "White"]
SEX_WORDS = ["female", "male"]
ETHNICITY_WORDS = {0: "non-Hispanic", 1: "Hispanic", -1: "ethnicity unknown"}
LANGUAGE_WORDS = {0: "English", 1: "Spanish", 2: "other language", -1: "language unknown"}
MARITAL_WORDS = {0: "married or partnered", 1: "single", 2: "divorced", 3: "widowed",
                 4: "legally separated", -1: "marital status unknown"}


def build_field():
    """The bright round field with vignetting (float32, 0 outside) and its mask."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    cy, cx = (H - 1) / 2.0, (W - 1) / 2.0
    r = np.sqrt((y - cy) ** 2 + (x - cx) ** 2) / np.float32(0.49 * W)
    edge = np.clip((1.0 - r) * 40.0, 0.0, 1.0)          # soft rim a few pixels wide
    vignette = 1.0 - 0.35 * r ** 2
    return (edge * vignette).astype(np.float32), edge.astype(np.float32)


def build_vessel_bank(rng, disc_x, disc_y):
    """BANK maps (float32, 0..1) of dark vessel curves leaving a disc at (disc_x, disc_y),
    taller than the image by 2*SHIFT so that a vertical shift is a slice."""
    hh = H + 2 * SHIFT
    y, x = np.mgrid[0:hh, 0:W].astype(np.float32)
    dy, dx = y - (disc_y + SHIFT), x - disc_x
    r = np.sqrt(dx * dx + dy * dy) + np.float32(1e-3)
    theta = np.arctan2(dy, dx)
    bank = np.empty((BANK, hh, W), dtype=np.float32)
    for k in range(BANK):
        acc = np.zeros((hh, W), dtype=np.float32)
        # the main arcades (up and down, bending away from the disc) and smaller branches
        angles = np.concatenate([[-np.pi / 2 + rng.uniform(-0.3, 0.3), np.pi / 2 + rng.uniform(-0.3, 0.3)],
                                 rng.uniform(-np.pi, np.pi, size=int(rng.integers(5, 9)))])
        for j, a0 in enumerate(angles):
            bend = rng.uniform(0.6, 1.2) * (1 if j % 2 else -1) if j < 2 else rng.uniform(-0.8, 0.8)
            wiggle = rng.uniform(0.02, 0.08)
            freq = rng.uniform(0.02, 0.05)
            path = a0 + bend * np.tanh(r / 250.0) + wiggle * np.sin(freq * r)
            d = (np.mod(theta - path + np.pi, 2 * np.pi) - np.pi).astype(np.float32) * r   # about the distance across
            width = np.float32(4.5 if j < 2 else 2.8) * (1.0 - 0.5 * np.tanh(r / 300.0))
            acc = np.maximum(acc, np.exp(-(d / width) ** 2) * (r > 20))
        bank[k] = acc
    return bank


def fundus(rng, field, vessels, glaucoma):
    """One uint8 (H, W) image."""
    k = int(rng.integers(BANK))
    left = bool(rng.integers(2))
    shift = int(rng.integers(-SHIFT, SHIFT + 1))
    v = vessels[k, SHIFT - shift:SHIFT - shift + H]
    if left:
        v = v[:, ::-1]
    brightness = rng.uniform(95.0, 150.0)
    img = field * np.float32(brightness)
    img -= v * np.float32(rng.uniform(25.0, 45.0)) * field
    img += rng.standard_normal((H, W), dtype=np.float32) * np.float32(rng.uniform(4.0, 9.0))
    # optic disc: brighter disc with a brighter cup, bigger for glaucoma
    cx = (0.32 if left else 0.68) * W + rng.uniform(-10, 10)
    cy = H / 2.0 + shift
    rd = rng.uniform(38, 50) if glaucoma else rng.uniform(28, 38)
    cdr = rng.uniform(0.6, 0.85) if glaucoma else rng.uniform(0.2, 0.45)
    y0, y1 = int(max(cy - 2 * rd, 0)), int(min(cy + 2 * rd, H))
    x0, x1 = int(max(cx - 2 * rd, 0)), int(min(cx + 2 * rd, W))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / np.float32(rd * rd)
    disc = np.float32(rng.uniform(50, 80)) * np.exp(-d2 ** 2) + np.float32(rng.uniform(30, 50)) * np.exp(-d2 / np.float32(cdr * cdr))
    img[y0:y1, x0:x1] += disc
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)


def sentence_pool(rng, age, sex, glaucoma, md):
    iop_od = int(rng.integers(18, 32) if glaucoma else rng.integers(10, 21))
    iop_os = iop_od + int(rng.integers(-3, 4))
    cdr_od = rng.uniform(0.6, 0.9) if glaucoma else rng.uniform(0.2, 0.5)
    cdr_os = min(max(cdr_od + rng.uniform(-0.1, 0.1), 0.1), 0.95)
    rnfl = int(rng.integers(55, 80) if glaucoma else rng.integers(80, 105))
    head = f"{age:.0f}-year-old {sex} presents for {'glaucoma follow-up' if glaucoma else 'routine eye examination'}."
    core = [
        f"Intraocular pressure {iop_od} mmHg OD and {iop_os} mmHg OS by applanation.",
        f"Cup-to-disc ratio {cdr_od:.2f} OD and {cdr_os:.2f} OS.",
        f"Humphrey 24-2 visual field mean deviation {md:.2f} dB.",
        f"OCT average RNFL thickness {rnfl} microns{' with inferior thinning' if glaucoma else ', within normal limits'}.",
    ]
    extra = [
        f"Central corneal thickness {int(rng.integers(500, 600))} microns.",
        "Gonioscopy shows open angles 360 degrees.",
        "Patient reports good adherence to drops." if glaucoma else "No ocular complaints today.",
        f"Family history of glaucoma in {['mother', 'father', 'sibling'][int(rng.integers(3))]}." if rng.random() < 0.5 else "No family history of glaucoma.",
        "Anterior segment unremarkable; lens with mild nuclear sclerosis.",
        "Best corrected visual acuity 20/25 OD and 20/30 OS.",
        "Disc hemorrhage noted inferotemporally." if glaucoma and rng.random() < 0.3 else "No disc hemorrhage.",
    ]
    if glaucoma:
        stage = ["mild", "moderate", "severe"][int(rng.integers(3))]
        plan = f"Assessment: primary open-angle glaucoma, {stage} stage. Continue latanoprost 0.005% qhs OU; return in 3 months."
    else:
        plan = ("Assessment: no glaucomatous optic neuropathy. Return in 12 months." if rng.random() < 0.7
                else "Assessment: glaucoma suspect by disc appearance; repeat visual field in 6 months.")
    return head, core, extra, plan


def make_note(rng, age, sex, glaucoma, md):
    head, core, extra, plan = sentence_pool(rng, age, sex, glaucoma, md)
    order = rng.permutation(len(extra))
    parts = [head] + [core[i] for i in sorted(rng.choice(len(core), size=int(rng.integers(2, 5)), replace=False))]
    note = " ".join(parts + [plan])
    for i in order:
        if len(note) >= 200 and rng.random() < 0.4:
            break
        candidate = " ".join(parts + [extra[i], plan])
        if len(candidate) > 600:
            break
        parts.append(extra[i])
        note = candidate
    if len(note) > 600:
        note = note[:600]
        note = note[:note.rfind(" ")]
    return note


def subject(rng, field, vessels):
    glaucoma = int(rng.random() < 0.5)
    gender = int(rng.random() < 0.43)
    race = int(rng.choice(3, p=RACE_P))
    ethnicity = int(rng.choice([0, 1, -1], p=[0.92, 0.07, 0.01]))
    language = int(rng.choice([0, 1, 2, -1], p=[0.92, 0.03, 0.04, 0.01]))
    marital = int(rng.choice([0, 1, 2, 3, 4, -1], p=[0.55, 0.2, 0.12, 0.09, 0.02, 0.02]))
    age = float(np.round(np.clip(rng.normal(61.0, 15.0), 20.0, 90.0), 2))
    md = float(np.round(rng.normal(-6.0, 5.0) if glaucoma else rng.normal(-1.0, 1.8), 2))
    tds = np.round(md + rng.normal(0.0, 2.5 if glaucoma else 1.2, size=52), 2).astype(np.float64)
    note = make_note(rng, age, SEX_WORDS[gender], glaucoma, md)
    extra = (f"{age:.0f} year old {RACE_WORDS[race]} {SEX_WORDS[gender]}, {ETHNICITY_WORDS[ethnicity]}, "
             f"{LANGUAGE_WORDS[language]}, {MARITAL_WORDS[marital]}. ") + note
    img = fundus(rng, field, vessels, glaucoma)
    return dict(
        slo_fundus=img, md=np.array(md, dtype=np.float64), tds=tds, age=np.array(age, dtype=np.float64),
        gender=np.array(gender, dtype=np.int64), race=np.array(race, dtype=np.int64),
        ethnicity=np.array(ethnicity, dtype=np.int64), language=np.array(language, dtype=np.int64),
        maritalstatus=np.array(marital, dtype=np.int64), glaucoma=np.array(glaucoma, dtype=np.int64),
        note=np.array(note), note_extra=np.array(extra),
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--subjects", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    n = a.subjects
    n_train = int(round(0.7 * n))
    n_val = int(round(0.1 * n))
    splits = [("Training", n_train), ("Validation", n_val), ("Test", n - n_train - n_val)]
    for name, _ in splits:
        shutil.rmtree(os.path.join(a.out, name), ignore_errors=True)
        os.makedirs(os.path.join(a.out, name))
    start = time.perf_counter()
    rng = np.random.default_rng(a.seed)
    field, _ = build_field()
    vessels = build_vessel_bank(rng, disc_x=0.68 * W, disc_y=H / 2.0)
    idx, total = 1, 0
    for name, count in splits:
        for _ in range(count):
            path = os.path.join(a.out, name, f"data_{idx:05d}.npz")
            np.savez(path, **subject(rng, field, vessels))
            total += os.path.getsize(path)
            idx += 1
    secs = time.perf_counter() - start
    print(" ".join(f"{name} {count}" for name, count in splits) + f" subjects; {total} bytes "
          f"({total / 2**20:.1f} MiB) in {a.out}; {secs:.1f} s")


if __name__ == "__main__":
    main()
