#!/usr/bin/env python3
"""Speed of fair_metrics.report against fairlearn's MetricFrame pipeline, in one process, from
numpy arrays: 1,000,000 rows x 4 sensitive features (FairVLMed's race, gender, ethnicity and
language proportions), the same metrics on both sides (per-group AUC, accuracy, TPR, FPR,
selection rate; DPD and equalized odds per feature). Not a test: run it by hand,

    target/py-venv/bin/python crates/fair-metrics-py/bench/bench_vs_fairlearn.py [--rows N] [--runs K]

and record the medians in docs/benchmarks.md. The first call of each side is a warm-up.
"""

import argparse
import statistics
import time

import numpy as np
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, roc_auc_score

import fair_metrics


def data(n, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.5).astype(np.int64)
    features = {
        "race": rng.choice(np.array(["Asian", "Black", "White"]), n, p=[0.082, 0.149, 0.769]),
        "gender": rng.choice(np.array(["Female", "Male"]), n, p=[0.563, 0.437]),
        "ethnicity": rng.choice(np.array(["Non-Hispanic", "Hispanic"]), n, p=[0.96, 0.04]),
        "language": rng.choice(np.array(["English", "Spanish", "Other"]), n, p=[0.975, 0.018, 0.007]),
    }
    score = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + (2 * y - 1))))
    return y, score, features


def with_fairlearn(y, score, features):
    yhat = (score >= 0.5).astype(np.int64)
    out = {}
    for name, sf in features.items():
        hard = MetricFrame(
            metrics={"accuracy": accuracy_score, "tpr": true_positive_rate, "fpr": false_positive_rate, "selection_rate": selection_rate},
            y_true=y, y_pred=yhat, sensitive_features=sf,
        )
        auc = MetricFrame(metrics=roc_auc_score, y_true=y, y_pred=score, sensitive_features=sf)
        out[name] = (hard.by_group, auc.by_group, demographic_parity_difference(y, yhat, sensitive_features=sf),
                     equalized_odds_difference(y, yhat, sensitive_features=sf))
    return out


def with_fair_metrics(y, score, features):
    return fair_metrics.report(y, score, sensitive_features=features)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    y, score, features = data(args.rows)
    timings = {}
    for name, f in (("fair_metrics.report", with_fair_metrics), ("fairlearn MetricFrame", with_fairlearn)):
        f(y, score, features)  # warm-up
        t = []
        for _ in range(args.runs):
            start = time.perf_counter()
            result = f(y, score, features)
            t.append(time.perf_counter() - start)
        timings[name] = statistics.median(t)
        print(f"{name}: median {timings[name]:.4f} s over {args.runs} runs ({', '.join(f'{x:.4f}' for x in t)})")
    r = with_fair_metrics(y, score, features)
    ref = with_fairlearn(y, score, features)
    for name, (_, _, dpd, eod) in ref.items():
        assert abs(r.dpd[name] - dpd) < 1e-12 and abs(r.eod[name] - eod) < 1e-12, name
    print(f"ratio: {timings['fairlearn MetricFrame'] / timings['fair_metrics.report']:.0f}x ({args.rows} rows, 4 features; the values agree)")


if __name__ == "__main__":
    main()
