"""Type stubs of the compiled engine (`src/lib.rs`); call it through `fair_metrics.report`,
which converts and checks the arguments."""

from typing import List, Optional, Tuple

import numpy as np
import numpy.typing as npt

__version__: str

def report(
    y_true: npt.NDArray[np.bool_],
    y_score: npt.NDArray[np.float64],
    y_pred: Optional[npt.NDArray[np.bool_]],
    sample_weight: Optional[npt.NDArray[np.float64]],
    features: List[Tuple[str, npt.NDArray[np.uint32], List[str]]],
    threshold: float,
    alpha: float,
    undefined_auc: str,
    intersect: bool,
    bootstrap: int,
    seed: int,
    quantiles: Tuple[float, float],
) -> str:
    """The report as the `fair-metrics` tool's JSON; raises ValueError on invalid input."""

def factorize_fixed(buffer: npt.NDArray[np.uint8], itemsize: int) -> Tuple[npt.NDArray[np.uint32], List[int]]:
    """Codes of a fixed-width string array's records (viewed as bytes) in order of first
    appearance, and each code's first row."""
