"""Parity with scikit-learn and fairlearn.

1. The Rust crate's fixtures (crates/fair-metrics/tests/fixtures/parity: the CSV inputs and the
   values make_parity.py computed with fairlearn and scikit-learn) through the Python API.
2. Random cases computed here, against fairlearn and scikit-learn run now.

Values must match to 1e-12 relative (or 1e-15 absolute), and be None exactly where the
reference is undefined.
"""

import json
import math
import pathlib

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    demographic_parity_difference,
    demographic_parity_ratio,
    equal_opportunity_difference,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score, roc_auc_score

import fair_metrics

FIXTURES = pathlib.Path(__file__).resolve().parents[2] / "fair-metrics" / "tests" / "fixtures" / "parity"
CASES = json.loads((FIXTURES / "expected.json").read_text())["cases"]


def close(a, b):
    if a is None or b is None:
        return a is None and b is None
    d = abs(a - b)
    return d <= 1e-12 * max(abs(a), abs(b)) or d <= 1e-15


class Checker:
    def __init__(self):
        self.checked = 0
        self.failures = []

    def value(self, path, ours, ref):
        self.checked += 1
        if not close(ours, ref):
            self.failures.append(f"{path}: ours {ours}, reference {ref}")


def run_case(case):
    spec = case["spec"]
    df = pd.read_csv(FIXTURES / case["csv"], dtype=str, keep_default_na=False)
    pos = spec.get("pos_label")
    to_label = (lambda s: s.to_numpy()) if pos else (lambda s: s.astype(float).astype(int).to_numpy())
    kwargs = dict(
        y_pred=to_label(df[spec["pred"]]) if spec.get("pred") else None,
        sensitive_features=df[spec["attrs"]],
        threshold=case["threshold"],
        pos_label=pos if pos else 1,
        sample_weight=df[spec["weight"]].astype(float).to_numpy() if spec.get("weight") else None,
        intersect=bool(spec.get("intersect")),
    )
    return fair_metrics.report(to_label(df[spec["label"]]), df[spec["score"]].astype(float).to_numpy(), **kwargs)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_fixture(case):
    r = run_case(case).to_dict()
    exp = case["expected"]
    c = Checker()
    c.value("n", r["n"], exp["n"])
    for k, v in exp["overall"].items():
        c.value(f"overall.{k}", r["overall"].get(k), v)
    assert list(r["attributes"]) == list(exp["attributes"])
    for a, e in exp["attributes"].items():
        ours = r["attributes"][a]
        assert list(ours["groups"]) == list(e["groups"]), a
        for g, metrics in e["groups"].items():
            for k, v in metrics.items():
                c.value(f"{a}.{g}.{k}", ours["groups"][g].get(k), v)
        for k in ("dpd", "dpr", "eod", "eod_mean", "eor", "eor_mean", "eopd", "eopr", "fpr_ratio", "es_auc", "es_accuracy", "auc_std", "auc_range"):
            c.value(f"{a}.{k}", ours.get(k), e[k])
        for m, aggs in e["metric_frame"].items():
            for k, v in aggs.items():
                c.value(f"{a}.metric_frame.{m}.{k}", ours["metric_frame"][m].get(k), v)
    assert c.checked > 50
    assert not c.failures, "\n".join(c.failures[:20])


def nan_to_none(x):
    x = float(x)
    return None if math.isnan(x) else x


@pytest.mark.parametrize("seed", range(8))
def test_random_against_fairlearn(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(50, 3000))
    k = int(rng.integers(2, 6))
    y = rng.integers(0, 2, n)
    score = 1.0 / (1.0 + np.exp(-(rng.normal(size=n) + (2 * y - 1) * rng.uniform(0.2, 2.0))))
    if seed % 2:
        score = np.round(score, 1)  # ties
    group = rng.choice(np.array([f"g{i}" for i in range(k)], dtype=object), size=n)
    weights = rng.gamma(2.0, 1.0, n) if seed % 3 == 0 else None
    threshold = float(rng.uniform(0.3, 0.7))
    ours = fair_metrics.report(y, score, sensitive_features=pd.Series(group, name="g"), threshold=threshold, sample_weight=weights)
    yhat = (score >= threshold).astype(int)
    kw = {"sensitive_features": group, "sample_weight": weights}
    sp = {m: {"sample_weight": weights} for m in ("acc", "sel", "tpr", "fpr")} if weights is not None else None
    mf = MetricFrame(
        metrics={"acc": accuracy_score, "sel": selection_rate, "tpr": true_positive_rate, "fpr": false_positive_rate},
        y_true=y, y_pred=yhat, sensitive_features=group, sample_params=sp,
    )
    by = ours.by_group("g")
    c = Checker()
    for g in mf.by_group.index:
        for ours_key, ref_key in (("accuracy", "acc"), ("selection_rate", "sel"), ("tpr", "tpr"), ("fpr", "fpr")):
            c.value(f"{g}.{ours_key}", by.loc[g, ours_key], mf.by_group.loc[g, ref_key])
        rows = group == g
        ref_auc = roc_auc_score(y[rows], score[rows], sample_weight=None if weights is None else weights[rows]) if len(set(y[rows])) == 2 else None
        auc = by.loc[g, "auc"]
        c.value(f"{g}.auc", None if auc is None or (isinstance(auc, float) and math.isnan(auc)) else float(auc), ref_auc)
    c.value("auc", ours.overall["auc"], roc_auc_score(y, score, sample_weight=weights))
    c.value("dpd", ours.dpd["g"], demographic_parity_difference(y, yhat, **kw))
    c.value("dpr", ours.demographic_parity_ratio["g"], demographic_parity_ratio(y, yhat, **kw))
    c.value("eod", ours.equalized_odds_difference["g"], equalized_odds_difference(y, yhat, **kw))
    c.value("eopd", ours.eopd["g"], equal_opportunity_difference(y, yhat, **kw))
    assert not c.failures, "\n".join(c.failures)


def test_input_forms_give_the_same_report():
    rng = np.random.default_rng(7)
    n = 500
    y = rng.integers(0, 2, n)
    s = rng.random(n)
    race = rng.choice(["A", "B", "C"], n)
    sex = rng.choice(["F", "M"], n)
    base = fair_metrics.report(y, s, sensitive_features=pd.DataFrame({"race": race, "sex": sex})).to_dict()
    forms = [
        fair_metrics.report(list(y), list(s), sensitive_features={"race": list(race), "sex": list(sex)}),
        fair_metrics.report(pd.Series(y), pd.Series(s), sensitive_features={"race": pd.Series(race), "sex": sex}),
        fair_metrics.report(y.astype(bool), s.astype(np.float32).astype(np.float64), sensitive_features={"race": race, "sex": sex}),
    ]
    for r in forms:
        assert r.to_dict() == base
    # fairlearn's names for unnamed features.
    two = fair_metrics.report(y, s, sensitive_features=np.stack([race, sex], axis=1))
    assert two.features == ["sensitive_feature_0", "sensitive_feature_1"]
    assert two.gap("es_auc")["sensitive_feature_0"] == base["attributes"]["race"]["es_auc"]
    one = fair_metrics.report(y, s, sensitive_features=race)
    assert one.features == ["sensitive_feature_0"]


def test_report_content_matches_the_cli_json_and_helpers():
    y = [1, 0, 1, 0, 1, 0]
    s = [0.9, 0.3, 0.6, 0.7, 0.4, 0.1]
    r = fair_metrics.report(y, s, sensitive_features={"sex": ["F", "F", "F", "M", "M", "M"]}, bootstrap=50, seed=3)
    d = r.to_dict()
    assert set(d) >= {"n", "threshold", "alpha", "overall", "attributes", "bootstrap"}
    assert json.loads(r.to_json()) == d
    assert d["bootstrap"]["replicates"] == 50 and d["bootstrap"]["quantiles"] == [0.025, 0.975]
    assert r.overall["auc"] == pytest.approx(7 / 9)
    assert r.overall_metrics.loc["overall", "auc"] == pytest.approx(7 / 9)
    assert list(r.by_group("sex").index) == ["F", "M"]
    assert r.gaps.loc["sex", "dpd"] == pytest.approx(1 / 3)
    assert r.es_auc == {"sex": d["attributes"]["sex"]["es_auc"]}
    # `eod` is equalized odds (not AIF360's equal-opportunity "EOD"), also under its full name.
    assert d["attributes"]["sex"]["equalized_odds_difference"] == d["attributes"]["sex"]["eod"] == r.equalized_odds_difference["sex"]
    # The same seed gives the same intervals.
    again = fair_metrics.report(y, s, sensitive_features={"sex": ["F", "F", "F", "M", "M", "M"]}, bootstrap=50, seed=3)
    assert again.to_dict() == d
    with pytest.raises(KeyError, match="no sensitive feature 'race'"):
        r.by_group("race")
    assert "es_auc" in repr(r)


def test_scores_optional_with_hard_predictions():
    y = np.array([1, 0, 1, 0, 1, 1, 0, 0])
    yhat = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    g = ["a", "a", "a", "a", "b", "b", "b", "b"]
    r = fair_metrics.report(y, y_pred=yhat, sensitive_features=g)
    assert r.overall["auc"] == pytest.approx(roc_auc_score(y, yhat))
    assert r.dpd["sensitive_feature_0"] == pytest.approx(demographic_parity_difference(y, yhat, sensitive_features=g))


def test_intersection():
    case = next(c for c in CASES if c["name"] == "intersection")
    r = run_case(case)
    assert r.features == ["race", "sex", "race & sex"]
