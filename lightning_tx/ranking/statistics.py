"""How well a ranking by score agrees with fine-tuning results."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats


def rank_agreement(scores: Sequence[float], results: Sequence[float], *, higher_is_better: bool = True) -> dict:
    """Agreement between transferability ``scores`` and fine-tuning ``results`` (higher is
    better for results) of the same candidates.

    Returns ``spearman_rho``, ``spearman_p``, ``kendall_tau``, ``kendall_p``,
    ``weighted_tau`` (``scipy.stats.weightedtau``: disagreements among the best count more)
    and ``top1_regret`` (``1 - result of the best-scored candidate / best result``, 0 when
    the score picks the best), plus ``n``. Scores of lower-is-better estimators (distances)
    are negated first. Correlations are NaN with fewer than 3 candidates or constant inputs.
    """
    scores = np.asarray(scores, dtype=np.float64)
    results = np.asarray(results, dtype=np.float64)
    if scores.shape != results.shape or scores.ndim != 1:
        raise ValueError(f"scores {scores.shape} and results {results.shape} must be equal-length vectors")
    if len(scores) == 0:
        raise ValueError("no candidates to compare")
    oriented = scores if higher_is_better else -scores
    out = {"n": len(scores)}
    enough = len(scores) >= 3 and np.ptp(oriented) > 0 and np.ptp(results) > 0
    if enough:
        rho, p = stats.spearmanr(oriented, results)
        tau, tau_p = stats.kendalltau(oriented, results)
        weighted = stats.weightedtau(oriented, results).statistic
    else:
        rho = p = tau = tau_p = weighted = float("nan")
    out.update(
        spearman_rho=float(rho),
        spearman_p=float(p),
        kendall_tau=float(tau),
        kendall_p=float(tau_p),
        weighted_tau=float(weighted),
    )
    best = results.max()
    picked = results[int(np.argmax(oriented))]
    out["top1_regret"] = float(1 - picked / best) if best != 0 else float(best - picked)
    return out
