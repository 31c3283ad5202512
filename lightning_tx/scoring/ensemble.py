"""The rank-average ensemble: estimators agree more often than their scales do."""

from __future__ import annotations

import math
from collections.abc import MutableMapping, Sequence

import numpy as np
from scipy.stats import rankdata

from lightning_tx.metrics.registry import get_estimator


def rank_average(scores: Sequence[MutableMapping[str, float]], members: Sequence[str]) -> list[float]:
    """For each row (a candidate, or a layer), the mean over ``members`` of its rank among
    the rows, as a score in [0, 1]: 1 when every member ranks it first, 0 when every member
    ranks it last. Each member's direction is respected; ties share their average rank; a
    NaN score ranks last.

    Args:
        scores: one ``{estimator: score}`` mapping per row, holding every member.
        members: the estimators to average.
    """
    count = len(scores)
    if count == 1:
        return [1.0]
    total = np.zeros(count)
    for name in members:
        sign = 1.0 if get_estimator(name).higher_is_better else -1.0
        values = np.array([sign * row[name] if math.isfinite(row[name]) else -math.inf for row in scores])
        total += (rankdata(values) - 1) / (count - 1)  # 0 = worst, 1 = best
    return (total / len(members)).tolist()


def add_ensemble(scores: Sequence[MutableMapping[str, float]], estimators: Sequence[str]) -> None:
    """Set ``row["ensemble"]`` in every row when ``"ensemble"`` is among ``estimators``."""
    if "ensemble" not in estimators:
        return
    for row, value in zip(scores, rank_average(scores, get_estimator("ensemble").members), strict=True):
        row["ensemble"] = value


def add_layer_ensemble(results: MutableMapping[str, dict[int, float]], estimators: Sequence[str]) -> None:
    """Set ``results["ensemble"]`` (``{layer: score}``) when ``"ensemble"`` is among
    ``estimators``: the rank average of its members over one model's layers."""
    if "ensemble" not in estimators:
        return
    members = get_estimator("ensemble").members
    layers = sorted(results[members[0]])
    rows = [{name: results[name][k] for name in members} for k in layers]
    results["ensemble"] = dict(zip(layers, rank_average(rows, members), strict=True))
