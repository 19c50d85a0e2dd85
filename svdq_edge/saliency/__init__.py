"""Saliency methods, registered by name. Importing this package registers every built-in method."""

from svdq_edge.saliency import (  # noqa: F401  (registration side effect)
    awq,
    magnitude,
    outlier,
    proxy,
    random_scores,
    range_gain,
    rosaq,
    rtn,
    spqr,
    svd,
)
from svdq_edge.saliency.registry import SaliencyMethod, ScoreContext, available, get, register

__all__ = ["SaliencyMethod", "ScoreContext", "available", "get", "register"]
