"""The order of scored (candidate, layer) rows: best first by the first estimator, its ties
broken by the next.

Held-out accuracies (``pooled_voice_probe``, ``pooled_logistic_probe``) step by one scored
sample, so two candidates or two layers of one often tie exactly on them; such a tie says the
estimator cannot tell them apart, and the next estimator the user listed decides, rather
than the order the candidates were configured in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from lightning_tx.metrics.registry import get_estimator


def order_key(scores: Mapping[str, float | None], estimators: Sequence[str]) -> tuple[tuple[bool, float], ...]:
    """Sort key of one row, ascending from the best: for each of ``estimators`` in turn,
    whether its score is undefined (None or NaN: after every defined one), then the score
    negated where higher is better. Rows equal on every estimator keep their order under a
    stable sort.

    Args:
        scores: estimator name -> score of the row (every one of ``estimators``).
        estimators: the estimators, the first deciding, each later one breaking ties.
    """
    key = []
    for estimator in estimators:
        value = scores[estimator]
        undefined = value is None or math.isnan(value)
        sign = -1.0 if get_estimator(estimator).higher_is_better else 1.0
        key.append((undefined, 0.0 if undefined else sign * value))
    return tuple(key)
