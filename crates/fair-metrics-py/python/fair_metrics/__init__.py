"""fair-metrics: group metrics and fairness gaps with fairlearn's and scikit-learn's values,
computed in Rust.

One call gives what a fairness audit reads: AUC, accuracy, TPR, FPR and the other rates per
group of every sensitive feature, and the gaps between groups (ES-AUC, demographic parity,
equalized odds, equal opportunity, parity ratios), optionally with bootstrap intervals::

    >>> import fair_metrics
    >>> r = fair_metrics.report(
    ...     [1, 0, 1, 0, 1, 0],
    ...     [0.9, 0.3, 0.6, 0.7, 0.4, 0.1],
    ...     sensitive_features={"sex": ["F", "F", "F", "M", "M", "M"]},
    ... )
    >>> round(r.overall_metrics["auc"], 4)
    0.7778
    >>> r.dpd["sex"]
    0.33333333333333337

The values are those of fairlearn's ``MetricFrame`` and metric functions and of
scikit-learn's ``roc_auc_score`` (to 1e-12, tested); docs/metrics.md in the repository defines
every key.
"""

from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _native

__all__ = ["report", "Report", "GAPS"]
__version__ = _native.__version__

#: The gaps between groups that a report gives per sensitive feature (docs/metrics.md).
GAPS = (
    "es_auc",
    "es_accuracy",
    "dpd",
    "dpr",
    "eod",
    "eod_mean",
    "eor",
    "eor_mean",
    "eopd",
    "eopr",
    "fpr_ratio",
    "auc_std",
    "auc_range",
)


def report(
    y_true: Any,
    y_score: Any = None,
    *,
    y_pred: Any = None,
    sensitive_features: Any,
    threshold: float = 0.5,
    pos_label: Any = 1,
    sample_weight: Any = None,
    intersect: bool = False,
    bootstrap: int = 0,
    seed: int = 0,
    alpha: float = 0.05,
    es_alpha: float = 1.0,
    undefined_auc: str = "skip",
) -> "Report":
    """Computes the fairness report of binary predictions.

    Args:
        y_true: the labels, one per row (numpy array, pandas Series or list). The positive class
            is ``pos_label``; any other value is the negative class.
        y_score: the scores (higher = more positive), finite numbers. Optional when ``y_pred``
            is given: the AUCs are then those of the hard predictions, as
            ``roc_auc_score(y_true, y_pred)`` gives.
        y_pred: hard predictions (labelled like ``y_true``), used instead of
            ``y_score >= threshold`` for every rate.
        sensitive_features: the groups, named like fairlearn names them: a pandas DataFrame
            (one feature per column), a dict of name to values, a pandas Series (its name), or
            a 1-D or 2-D array or list (``sensitive_feature_0``, ``sensitive_feature_1``, ...).
        threshold: ``y_score >= threshold`` is a positive prediction (without ``y_pred``).
        pos_label: the value of ``y_true`` (and ``y_pred``) that is the positive class.
        sample_weight: non-negative weights, one per row.
        intersect: also report the intersection of all the features as one more feature,
            named ``"a & b"``.
        bootstrap: the number of bootstrap replicates of the intervals (0: none).
        seed: the seed of the bootstrap; the same seed gives the same intervals.
        alpha: the intervals are the ``alpha / 2`` and ``1 - alpha / 2`` percentiles.
        es_alpha: the alpha of ES-AUC and ES-Accuracy (FairCLIP's, 1).
        undefined_auc: how a group with a single class (whose AUC is undefined) enters ES-AUC:
            ``"skip"`` leaves it out, ``"null"`` makes ES-AUC undefined.

    Returns:
        A :class:`Report`.

    Raises:
        ValueError: a value is wrong (lengths differ, a score is NaN, ``pos_label`` does not
            occur in ``y_true``, a sensitive value is missing, ...); the message names the
            argument.
        TypeError: an argument has the wrong kind (a 2-D ``y_score``, neither scores nor
            predictions, ...).
    """
    if y_score is None and y_pred is None:
        raise TypeError("report() needs y_score, y_pred or both")
    labels_raw = _vector(y_true, "y_true")
    n = len(labels_raw)
    if n == 0:
        raise ValueError("y_true is empty")
    labels = _binary(labels_raw, "y_true", pos_label, require_positive=True)
    preds = None
    if y_pred is not None:
        preds = _binary(_same_length(_vector(y_pred, "y_pred"), "y_pred", n), "y_pred", pos_label, require_positive=False)
    if y_score is None:
        scores = preds.astype(np.float64)
    else:
        scores = _numbers(_same_length(_vector(y_score, "y_score"), "y_score", n), "y_score")
    weights = None
    if sample_weight is not None:
        weights = _numbers(_same_length(_vector(sample_weight, "sample_weight"), "sample_weight", n), "sample_weight")
        bad = np.flatnonzero(weights < 0)
        if bad.size:
            raise ValueError(f"sample_weight[{bad[0]}] is {weights[bad[0]]}: weights must be >= 0")
    features = [(name, _same_length(codes, f"sensitive_features['{name}']", n), levels) for name, codes, levels in _features(sensitive_features)]
    if not features:
        raise ValueError("sensitive_features has no feature")
    for name, value in (("threshold", threshold), ("alpha", alpha), ("es_alpha", es_alpha)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise TypeError(f"{name}={value!r}: expected a finite number")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha={alpha}: expected a value in (0, 1)")
    if es_alpha < 0:
        raise ValueError(f"es_alpha={es_alpha}: expected a value >= 0")
    if not isinstance(bootstrap, int) or isinstance(bootstrap, bool) or bootstrap < 0:
        raise TypeError(f"bootstrap={bootstrap!r}: expected a number of replicates >= 0")
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**64:
        raise TypeError(f"seed={seed!r}: expected an integer in [0, 2**64)")
    if undefined_auc not in ("skip", "null"):
        raise ValueError(f"undefined_auc={undefined_auc!r}: expected 'skip' or 'null'")
    try:
        text = _native.report(
            labels, scores, preds, weights, features, float(threshold), float(es_alpha), undefined_auc,
            bool(intersect), bootstrap, seed, (alpha / 2.0, 1.0 - alpha / 2.0),
        )
    except ValueError as e:
        raise ValueError(f"fair_metrics.report: {e}") from None
    return Report(json.loads(text))


class Report:
    """A fairness report: the content of the ``fair-metrics`` tool's JSON (docs/metrics.md).

    ``overall_metrics`` and :meth:`by_group` give the metrics as pandas DataFrames when pandas
    is installed (dicts otherwise); :attr:`gaps` gives every gap per feature; each gap is also
    an attribute (``r.es_auc["race"]``), with fairlearn's names as aliases
    (``r.demographic_parity_difference``, ``r.equalized_odds_difference``,
    ``r.equal_opportunity_difference``).
    """

    def __init__(self, data: Dict[str, Any]):
        self._data = data

    def to_dict(self) -> Dict[str, Any]:
        """The report as nested dicts (a copy): the ``fair-metrics`` tool's JSON."""
        return json.loads(json.dumps(self._data))

    def to_json(self, indent: Optional[int] = 2) -> str:
        """The report as JSON text, as the ``fair-metrics`` tool writes it."""
        return json.dumps(self._data, indent=indent)

    @property
    def n(self) -> int:
        """Rows."""
        return int(self._data["n"])

    @property
    def features(self) -> List[str]:
        """The sensitive features, in the order given (the intersection last)."""
        return list(self._data["attributes"])

    @property
    def overall(self) -> Dict[str, Any]:
        """Metrics over all rows, as a dict (``auc``, ``accuracy``, ``tpr``, ...)."""
        return dict(self._data["overall"])

    @property
    def overall_metrics(self) -> Any:
        """Metrics over all rows: a one-row pandas DataFrame, or a dict without pandas."""
        row = {k: v for k, v in self._data["overall"].items() if not isinstance(v, (dict, list))}
        pd = _pandas()
        return pd.DataFrame([row], index=["overall"]) if pd is not None else row

    def by_group(self, feature: str) -> Any:
        """The metrics of each group of ``feature`` (one row per group, in the report's order):
        a pandas DataFrame, or a dict of dicts without pandas."""
        attrs = self._data["attributes"]
        if feature not in attrs:
            raise KeyError(f"no sensitive feature {feature!r}; the report has {list(attrs)}")
        rows = {g: {k: v for k, v in m.items() if not isinstance(v, (dict, list))} for g, m in attrs[feature]["groups"].items()}
        pd = _pandas()
        if pd is None:
            return rows
        df = pd.DataFrame.from_dict(rows, orient="index")
        df.index.name = feature
        return df

    @property
    def gaps(self) -> Any:
        """Every gap (:data:`GAPS`) per feature: a pandas DataFrame with one row per feature,
        or a dict of dicts without pandas."""
        rows = {a: {g: m.get(g) for g in GAPS} for a, m in self._data["attributes"].items()}
        pd = _pandas()
        return pd.DataFrame.from_dict(rows, orient="index") if pd is not None else rows

    def gap(self, name: str) -> Dict[str, Optional[float]]:
        """One gap (``"es_auc"``, ``"dpd"``, ...) for every feature (``None`` where undefined)."""
        if name not in GAPS:
            raise KeyError(f"no gap {name!r}; the gaps are {list(GAPS)}")
        return {a: m.get(name) for a, m in self._data["attributes"].items()}

    def __getattr__(self, name: str) -> Any:
        alias = _ALIASES.get(name, name)
        if alias in GAPS:
            return self.gap(alias)
        raise AttributeError(f"'Report' object has no attribute {name!r}")

    def __repr__(self) -> str:
        o = self._data["overall"]
        parts = [f"n={self.n}", f"auc={_fmt(o.get('auc'))}", f"accuracy={_fmt(o.get('accuracy'))}"]
        for a, m in self._data["attributes"].items():
            parts.append(f"{a}: es_auc={_fmt(m.get('es_auc'))} dpd={_fmt(m.get('dpd'))} eod={_fmt(m.get('eod'))}")
        return "Report(" + ", ".join(parts) + ")"


# fairlearn's function names for the gaps whose short names are this package's.
_ALIASES = {
    "demographic_parity_difference": "dpd",
    "demographic_parity_ratio": "dpr",
    "equalized_odds_difference": "eod",
    "equalized_odds_ratio": "eor",
    "equal_opportunity_difference": "eopd",
    "equal_opportunity_ratio": "eopr",
    "false_positive_rate_ratio": "fpr_ratio",
}


def _fmt(v: Optional[float]) -> str:
    return "None" if v is None else f"{v:.4f}"


def _pandas():
    try:
        import pandas
    except ImportError:
        return None
    return pandas


def _vector(x: Any, name: str) -> np.ndarray:
    """``x`` as a 1-D numpy array, without a copy where it already is one."""
    if hasattr(x, "to_numpy") and hasattr(x, "ndim"):  # pandas Series (or a one-column frame)
        if x.ndim == 2:
            if x.shape[1] != 1:
                raise TypeError(f"{name}: expected one column, got a table of {x.shape[1]} columns")
            x = x.iloc[:, 0]
        x = x.to_numpy()
    a = np.asarray(x)
    if a.ndim == 2 and 1 in a.shape:
        a = a.reshape(-1)
    if a.ndim != 1:
        raise TypeError(f"{name}: expected a 1-D array, got shape {a.shape}")
    return a


def _same_length(a: np.ndarray, name: str, n: int) -> np.ndarray:
    if len(a) != n:
        raise ValueError(f"{name} has {len(a)} values, y_true has {n}")
    return a


def _numbers(a: np.ndarray, name: str) -> np.ndarray:
    """float64 values, all finite."""
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected numbers, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {a[bad[0]]}: expected a finite number")
    return a


def _binary(a: np.ndarray, name: str, pos_label: Any, require_positive: bool) -> np.ndarray:
    """``a == pos_label`` as bool, with the two-class check scikit-learn makes."""
    if a.dtype == np.bool_:
        if pos_label not in (1, True):
            raise ValueError(f"{name} is boolean: pos_label must be 1 or True, got {pos_label!r}")
        return np.ascontiguousarray(a)
    if a.dtype.kind == "f" and np.isnan(a).any():
        raise ValueError(f"{name}[{np.flatnonzero(np.isnan(a))[0]}] is NaN: expected a label")
    if a.dtype.kind in "iu" and a.size and 0 <= a.min() and a.max() <= 1:
        values = np.array([0, 1])[int(a.min()) : int(a.max()) + 1]  # no sort for 0/1 labels
    else:
        values = np.unique(a) if a.dtype.kind != "O" else np.unique(a.astype(str))
    if len(values) > 2:
        raise ValueError(f"{name} has {len(values)} distinct values ({_few(values)}): expected two classes")
    positive = np.asarray(a == pos_label if a.dtype.kind != "O" else a.astype(str) == str(pos_label), dtype=bool)
    if require_positive and not positive.any():
        # All-negative 0/1 labels are data; any other labels without pos_label are a mistake.
        zero_one = a.dtype.kind in "biuf" and set(values.tolist()) <= {0, 1} and pos_label in (1, True)
        if not zero_one:
            raise ValueError(f"pos_label={pos_label!r} does not occur in {name} (its values: {_few(values)})")
    return np.ascontiguousarray(positive)


def _few(values: np.ndarray) -> str:
    shown = ", ".join(repr(v) for v in values[:5].tolist())
    return shown + (", ..." if len(values) > 5 else "")


def _features(sf: Any) -> List[Tuple[str, np.ndarray, List[str]]]:
    """(name, uint32 codes, the label of each code) per sensitive feature, named as fairlearn
    names them."""
    pd = _pandas()
    columns: List[Tuple[str, Any]]
    if pd is not None and isinstance(sf, pd.DataFrame):
        columns = [(str(c), sf[c]) for c in sf.columns]
    elif isinstance(sf, dict):
        columns = [(str(k), v) for k, v in sf.items()]
    elif pd is not None and isinstance(sf, pd.Series):
        columns = [(str(sf.name) if sf.name is not None else "sensitive_feature_0", sf)]
    else:
        a = np.asarray(sf, dtype=object) if isinstance(sf, (list, tuple)) else np.asarray(sf)
        if a.ndim == 1:
            columns = [("sensitive_feature_0", a)]
        elif a.ndim == 2:
            columns = [(f"sensitive_feature_{i}", a[:, i]) for i in range(a.shape[1])]
        else:
            raise TypeError(f"sensitive_features: expected a DataFrame, a dict, a Series or a 1-D or 2-D array, got shape {a.shape}")
    out = []
    for name, values in columns:
        out.append((name, *_codes(values, name)))
    return out


def _codes(values: Any, name: str) -> Tuple[np.ndarray, List[str]]:
    """One feature's values as codes 0..k-1 and the text of each code (str of the value)."""
    label = f"sensitive_features['{name}']"
    pd = _pandas()
    a = None if (pd is not None and isinstance(values, pd.Series) and values.dtype.kind == "O") else _vector(values, label)
    if a is not None and a.dtype.kind in "US":
        # Fixed-width strings: hashed as raw records in Rust (the common numpy case).
        a = np.ascontiguousarray(a)
        codes, firsts = _native.factorize_fixed(a.view(np.uint8), a.dtype.itemsize)
        levels = [a[i].decode() if isinstance(a[i], bytes) else str(a[i]) for i in firsts]
    elif pd is not None:
        s = values if a is None else pd.Series(a)
        missing = s.isna().to_numpy()
        if missing.any():
            raise ValueError(f"{label}[{np.flatnonzero(missing)[0]}] is missing: every row needs a group")
        codes, uniques = pd.factorize(s, sort=False)
        levels = [str(u) for u in list(uniques)]
    else:
        if a.dtype.kind == "f" and np.isnan(a).any():
            raise ValueError(f"{label}[{np.flatnonzero(np.isnan(a))[0]}] is missing: every row needs a group")
        if a.dtype.kind == "O":
            nones = [i for i, v in enumerate(a) if v is None or (isinstance(v, float) and math.isnan(v))]
            if nones:
                raise ValueError(f"{label}[{nones[0]}] is missing: every row needs a group")
        uniques, codes = np.unique(a.astype(str) if a.dtype.kind == "O" else a, return_inverse=True)
        levels = [str(u) for u in uniques.tolist()]
    if len(set(levels)) != len(levels):
        raise ValueError(f"{label}: two different values print the same ({_few(np.array(levels))}); convert them to distinct strings")
    if any(level == "" for level in levels):
        raise ValueError(f"{label}: an empty string is not a group; name it")
    return np.ascontiguousarray(codes, dtype=np.uint32), levels
