"""Bad input raises ValueError or TypeError naming the argument; nothing crashes."""

import numpy as np
import pandas as pd
import pytest

import fair_metrics

Y = [1, 0, 1, 0]
S = [0.9, 0.2, 0.6, 0.4]
G = {"sex": ["F", "F", "M", "M"]}


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(y_score=S[:3]), ValueError, "y_score has 3 values, y_true has 4"),
        (dict(y_score=[0.9, float("nan"), 0.6, 0.4]), ValueError, r"y_score\[1\] is nan"),
        (dict(y_score=[0.9, float("inf"), 0.6, 0.4]), ValueError, r"y_score\[1\] is inf"),
        (dict(y_score=["a", "b", "c", "d"]), TypeError, "y_score: expected numbers"),
        (dict(y_score=np.ones((4, 2))), TypeError, "y_score: expected a 1-D array"),
        (dict(y_score=None), TypeError, "needs y_score, y_pred or both"),
        (dict(sensitive_features={"sex": ["F", "F", "M"]}), ValueError, r"sensitive_features\['sex'\] has 3 values"),
        (dict(sensitive_features={"sex": ["F", None, "M", "M"]}), ValueError, r"sensitive_features\['sex'\]\[1\] is missing"),
        (dict(sensitive_features={"sex": [1.0, np.nan, 2.0, 2.0]}), ValueError, r"sensitive_features\['sex'\]\[1\] is missing"),
        (dict(sensitive_features={"sex": ["F", "", "M", "M"]}), ValueError, "empty string is not a group"),
        (dict(sensitive_features={}), ValueError, "no feature"),
        (dict(sensitive_features=np.zeros((4, 2, 2))), TypeError, "sensitive_features: expected"),
        (dict(pos_label="yes"), ValueError, "pos_label='yes' does not occur in y_true"),
        (dict(sample_weight=[1.0, -1.0, 1.0, 1.0]), ValueError, r"sample_weight\[1\] is -1.0"),
        (dict(sample_weight=[1.0, 1.0]), ValueError, "sample_weight has 2 values"),
        (dict(y_pred=[1, 0]), ValueError, "y_pred has 2 values"),
        (dict(threshold=float("nan")), TypeError, "threshold=nan"),
        (dict(alpha=1.5), ValueError, "alpha=1.5"),
        (dict(bootstrap=-1), TypeError, "bootstrap=-1"),
        (dict(bootstrap=2.5), TypeError, "bootstrap=2.5"),
        (dict(seed=-1), TypeError, "seed=-1"),
        (dict(undefined_auc="drop"), ValueError, "undefined_auc='drop'"),
    ],
)
def test_bad_input_names_the_argument(kwargs, error, match):
    args = dict(y_score=S, sensitive_features=G)
    args.update(kwargs)
    y_score = args.pop("y_score")
    with pytest.raises(error, match=match):
        fair_metrics.report(Y, y_score, **args)


def test_bad_labels():
    with pytest.raises(ValueError, match="y_true has 3 distinct values"):
        fair_metrics.report([0, 1, 2, 1], S, sensitive_features=G)
    with pytest.raises(ValueError, match=r"y_true\[2\] is NaN"):
        fair_metrics.report([0.0, 1.0, np.nan, 1.0], S, sensitive_features=G)
    with pytest.raises(ValueError, match="y_true is empty"):
        fair_metrics.report([], [], sensitive_features={"sex": []})
    with pytest.raises(ValueError, match="pos_label must be 1 or True"):
        fair_metrics.report(np.array([True, False, True, False]), S, sensitive_features=G, pos_label="yes")
    with pytest.raises(TypeError, match="expected one column"):
        fair_metrics.report(pd.DataFrame({"a": Y, "b": Y}), S, sensitive_features=G)


def test_string_labels_with_pos_label():
    r = fair_metrics.report(["glaucoma", "normal", "glaucoma", "normal"], S, sensitive_features=G, pos_label="glaucoma")
    assert r.overall["positives"] == 2
    # All-negative 0/1 labels are data, not an error: the AUCs are then undefined.
    r = fair_metrics.report([0, 0, 0, 0], S, sensitive_features=G)
    assert r.overall["auc"] is None


def test_errors_from_the_engine_are_value_errors():
    # Too many bootstrap values for memory is refused by the engine, as a ValueError.
    with pytest.raises(ValueError, match="fair_metrics.report: "):
        fair_metrics.report(Y, S, sensitive_features=G, bootstrap=10**12)
