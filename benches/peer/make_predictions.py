#!/usr/bin/env python3
"""A FairVLMed-shaped prediction file for the metrics benchmark: glaucoma label, predicted
probability (written by pandas with full precision, as an evaluation script would) and the four
attributes with FairVLMed's marginals (race 3, gender 2, ethnicity 2, language 3 groups).

    python make_predictions.py --rows 1000000 --out predictions.csv
"""
import argparse

import numpy as np
import pandas as pd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    n = a.rows
    race = rng.choice(3, n, p=[0.082, 0.149, 0.769])
    gender = rng.choice(2, n, p=[0.563, 0.437])
    ethnicity = rng.choice(2, n, p=[0.958, 0.042])
    language = rng.choice(3, n, p=[0.974, 0.018, 0.008])
    y = (rng.random(n) < 0.5).astype(int)
    # A weaker signal for Black patients, so the gaps are not zero.
    signal = np.where(race == 1, 0.5, 1.0)
    prob = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + signal * (2 * y - 1))))
    pd.DataFrame({"glaucoma": y, "prob": prob, "race": race, "gender": gender, "ethnicity": ethnicity,
                  "language": language}).to_csv(a.out, index=False)


if __name__ == "__main__":
    main()
