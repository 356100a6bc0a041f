#!/usr/bin/env python3
"""The peer of the fair-metrics benchmark: the evaluation that FairCLIP's training scripts run
(`evalute_comprehensive_perf` in FairCLIP/src/modules.py), CSV in to JSON out.

Per attribute it makes the same library calls as that function: scikit-learn's roc_curve + auc
for the overall AUC, for ES-AUC's group AUCs and again for the reported group AUCs; numpy
accuracies for ES-Accuracy; fairlearn's demographic_parity_difference/ratio and
equalized_odds_difference/ratio; the between-group disparity. Reading the CSV with pandas and
writing JSON are included, as the fair-metrics CLI does both.

    python fairclip_eval.py predictions.csv -o peer.json
"""
import argparse
import json

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    equalized_odds_ratio,
)
from sklearn.metrics import auc, roc_curve

ATTRS = ["race", "gender", "ethnicity", "language"]


def roc_auc(prob, y):
    fpr, tpr, _ = roc_curve(y, prob)
    return auc(fpr, tpr)


def hard_accuracy(prob, y):
    return np.sum((prob >= 0.5).astype(float) == y) / y.shape[0]


def equity_scaled(overall, per_group, alpha=1.0):
    return overall / (alpha * sum(abs(g - overall) for g in per_group) + 1)


def evaluate(prob, y, attrs):
    out = {"overall": {"auc": roc_auc(prob, y), "accuracy": hard_accuracy(prob, y)}}
    pred = (prob >= 0.5).astype(float)
    for name, attr in attrs.items():
        groups = np.unique(attr).astype(int)
        es_acc = equity_scaled(out["overall"]["accuracy"], [hard_accuracy(prob[attr == g], y[attr == g]) for g in groups])
        es_auc = equity_scaled(out["overall"]["auc"], [roc_auc(prob[attr == g], y[attr == g]) for g in groups])
        group_auc = {str(g): roc_auc(prob[attr == g], y[attr == g]) for g in groups}
        aucs = list(group_auc.values())
        out[name] = {
            "es_acc": es_acc,
            "es_auc": es_auc,
            "group_auc": group_auc,
            "auc_std": np.std(aucs) / out["overall"]["auc"],
            "auc_range": (np.max(aucs) - np.min(aucs)) / out["overall"]["auc"],
            "dpd": demographic_parity_difference(y, pred, sensitive_features=attr),
            "dpr": demographic_parity_ratio(y, pred, sensitive_features=attr),
            "deodds": equalized_odds_difference(y, pred, sensitive_features=attr),
            "eor": equalized_odds_ratio(y, pred, sensitive_features=attr),
        }
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("-o", "--output", required=True)
    a = ap.parse_args()
    df = pd.read_csv(a.csv)
    prob = df["prob"].to_numpy()
    y = df["glaucoma"].to_numpy()
    attrs = {k: df[k].to_numpy() for k in ATTRS}
    result = evaluate(prob, y, attrs)
    with open(a.output, "w") as f:
        json.dump(result, f, indent=1, default=float)


if __name__ == "__main__":
    main()
