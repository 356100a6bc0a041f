#!/usr/bin/env python3
"""Write the shipped example dataset in the generic "imagefolder" format, next to this script:
`metadata.csv` and `images/`.

    python3 -m venv .venv && .venv/bin/pip install numpy pillow
    .venv/bin/python datasets/example/make_example.py

60 synthetic subjects (36 `train`, 12 `validation`, 12 `test`), one small fundus-like picture
each, 64 wide x 48 high (not square, so the centre crop matters). metadata.csv has the header
`file_name,split,diagnosis,note,site,sex`:

  file_name  images/0001.png ... images/0060.npy, relative to the CSV
  split      train / validation / test (rows in that order)
  diagnosis  glaucoma / normal, half each in every split; in the test (and validation) split
             every site has both diagnoses
  note       a short clinical text (40-120 characters) with the cup-to-disc ratio and IOP;
             informative but not perfect (a few notes contradict the label); one contains a
             comma (the CSV quotes it) and one a non-ASCII letter (é)
  site       north / south / east / west, 15 each, except that 2 training rows have the cell
             empty and 1 training row says `unknown` (their pictures keep their site's tint)
  sex        F / M

Pictures: a dark background, a round reddish (or grey) field, a bright optic disc that is larger
for glaucoma, a few dark vessels, a little noise, and a faint per-site tint and brightness shift
(the site effect real multi-site data has). The file formats cycle over the rows, so every
format appears in every split: 8-bit greyscale PNG (L), RGB PNG, 16-bit greyscale PNG (I;16,
values from 0 to 65535), baseline RGB JPEG (quality 90), greyscale JPEG, .npy uint8 (H, W) and
.npy uint8 (H, W, 3).

Deterministic: one seeded numpy Generator; running it twice writes identical bytes (with the
same numpy, Pillow and zlib/libjpeg). Needs numpy and Pillow.
"""
import csv
import os
import shutil

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
W, H = 64, 48
SEED = 20240
SITES = ["north", "south", "east", "west"]
# faint site effect: brightness gain and an RGB tint (mean about 1)
SITE_GAIN = {"north": 1.06, "south": 0.94, "east": 1.0, "west": 0.97}
SITE_TINT = {"north": (1.05, 1.0, 0.95), "south": (0.96, 1.0, 1.04), "east": (1.0, 1.05, 0.95), "west": (0.97, 0.98, 1.05)}
FUNDUS_RGB = np.array([1.0, 0.58, 0.32], dtype=np.float64)
FORMATS = ["png_l", "png_rgb", "png_i16", "jpeg_rgb", "jpeg_l", "npy_2d", "npy_rgb"]
EXT = {"png_l": "png", "png_rgb": "png", "png_i16": "png", "jpeg_rgb": "jpg", "jpeg_l": "jpg",
       "npy_2d": "npy", "npy_rgb": "npy"}


def fundus(rng, glaucoma):
    """Grey fundus in [0, 1+] (float64, (H, W)): 0 outside the field, the disc above 1."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float64)
    cy, cx = (H - 1) / 2 + rng.uniform(-1, 1), (W - 1) / 2 + rng.uniform(-1, 1)
    r = np.hypot(y - cy, x - cx) / 22.5
    field = np.clip((1 - r) * 6, 0, 1) * (0.62 - 0.18 * r ** 2)
    left = rng.random() < 0.5
    dx, dy = cx + (-11 if left else 11) + rng.uniform(-1.5, 1.5), cy + rng.uniform(-3, 3)
    dr = rng.uniform(6.0, 7.5) if glaucoma else rng.uniform(3.5, 4.8)
    d = np.hypot(y - dy, x - dx)
    # vessels: dark curves leaving the disc
    theta = np.arctan2(y - dy, x - dx)
    vessels = np.zeros((H, W))
    for a0 in [-np.pi / 2 + rng.uniform(-0.4, 0.4), np.pi / 2 + rng.uniform(-0.4, 0.4), rng.uniform(-np.pi, np.pi)]:
        path = a0 + rng.uniform(-0.6, 0.6) * np.tanh(d / 20)
        dist = (np.mod(theta - path + np.pi, 2 * np.pi) - np.pi) * d
        vessels = np.maximum(vessels, np.exp(-(dist / 1.1) ** 2) * (d > dr))
    img = field * (1 - 0.45 * vessels)
    img = img + (field > 0) * (0.8 * np.exp(-(d / dr) ** 4) + 0.4 * np.exp(-(d / (0.5 * dr)) ** 2))
    img = img + rng.normal(0, 0.02, size=(H, W)) * (field > 0)
    return np.clip(img, 0, None)


def note_for(rng, glaucoma, noisy):
    """A short note without commas; `noisy` notes point the wrong way."""
    sign = (not glaucoma) if noisy else glaucoma
    cdr = rng.uniform(0.6, 0.9) if sign else rng.uniform(0.2, 0.5)
    iop = int(rng.integers(20, 31) if sign else rng.integers(11, 20))
    if sign:
        tail = ["suspected glaucoma", "inferior rim thinning", "superior arcuate field defect",
                "started latanoprost", "enlarged cup OU"][int(rng.integers(5))]
    else:
        tail = ["healthy optic nerve", "routine exam normal", "no glaucomatous change",
                "full visual field", "follow-up in 12 months"][int(rng.integers(5))]
    return f"cup-to-disc ratio {cdr:.1f}; IOP {iop} mmHg; {tail}"


def split_design(rng, split, n):
    """(site, diagnosis) per row, shuffled; half glaucoma; every site both diagnoses if it can."""
    per_site = n // len(SITES)
    rows = []
    for k, site in enumerate(SITES):
        # alternate which sites get the extra glaucoma row, and flip it between splits
        g = per_site // 2 + ((k + (split == "test")) % 2 if per_site % 2 else 0)
        rows += [(site, "glaucoma")] * g + [(site, "normal")] * (per_site - g)
    return [rows[i] for i in rng.permutation(len(rows))]


def save(fmt, grey, rgb, path):
    if fmt == "png_l":
        Image.fromarray(to8(grey)).save(path)
    elif fmt == "png_rgb":
        Image.fromarray(to8(rgb)).save(path)
    elif fmt == "png_i16":
        v = np.round(np.clip(grey, 0, 1) * 65535).astype(np.uint16)
        assert v.min() == 0 and v.max() == 65535
        im = Image.fromarray(v)
        assert im.mode == "I;16", im.mode
        im.save(path)
    elif fmt == "jpeg_rgb":
        Image.fromarray(to8(rgb)).save(path, quality=90)
    elif fmt == "jpeg_l":
        Image.fromarray(to8(grey)).save(path, quality=90)
    elif fmt == "npy_2d":
        np.save(path, to8(grey))
    elif fmt == "npy_rgb":
        np.save(path, to8(rgb))


def to8(a):
    return np.round(np.clip(a, 0, 1) * 255).astype(np.uint8)


def main():
    rng = np.random.default_rng(SEED)
    images = os.path.join(HERE, "images")
    shutil.rmtree(images, ignore_errors=True)
    os.makedirs(images)
    design = []
    for split, n in [("train", 36), ("validation", 12), ("test", 12)]:
        sexes = ["F", "M"] * (n // 2)
        sexes = [sexes[i] for i in rng.permutation(n)]
        design += [(split, site, diag, sex) for (site, diag), sex in zip(split_design(rng, split, n), sexes)]
    # label noise in the notes: 3 training rows and 1 test row
    noisy = {4, 17, 29, 53}
    rows = []
    for i, (split, site, diag, sex) in enumerate(design):
        glaucoma = diag == "glaucoma"
        note = note_for(rng, glaucoma, i in noisy)
        grey = fundus(rng, glaucoma) * SITE_GAIN[site]
        rgb = grey[..., None] * FUNDUS_RGB * np.array(SITE_TINT[site])
        fmt = FORMATS[i % len(FORMATS)]
        name = f"images/{i + 1:04d}.{EXT[fmt]}"
        save(fmt, grey, rgb, os.path.join(HERE, name))
        rows.append([name, split, diag, note, site, sex])
    # missing sites: 2 empty cells and 1 `unknown`, all in training, from different sites
    train_idx = [i for i, r in enumerate(rows) if r[1] == "train"]
    chosen = []
    for site in ["north", "east", "west"]:
        chosen.append(next(i for i in train_idx if rows[i][4] == site and i not in noisy))
    rows[chosen[0]][4] = ""
    rows[chosen[1]][4] = ""
    rows[chosen[2]][4] = "unknown"
    # one note with a comma, one with a non-ASCII letter (both keep their cup-to-disc ratio)
    comma = next(i for i in train_idx if rows[i][2] == "glaucoma" and i not in noisy)
    rows[comma][3] = rows[comma][3].replace("; IOP", ", IOP", 1)
    accent = next(i for i, r in enumerate(rows) if r[1] == "validation" and r[2] == "normal")
    rows[accent][3] += "; seen at Clinique Médicale"
    for r in rows:
        assert 40 <= len(r[3]) <= 120, r[3]
    with open(os.path.join(HERE, "metadata.csv"), "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["file_name", "split", "diagnosis", "note", "site", "sex"])
        w.writerows(rows)
    total = sum(os.path.getsize(os.path.join(images, f)) for f in os.listdir(images))
    total += os.path.getsize(os.path.join(HERE, "metadata.csv"))
    print(f"wrote {len(rows)} rows and {len(os.listdir(images))} images to {HERE} ({total} bytes)")


if __name__ == "__main__":
    main()
