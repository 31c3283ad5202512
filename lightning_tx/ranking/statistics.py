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
    the score picks the best; where several candidates tie for the best score, the mean of
    their regrets: the expected regret of a pick among them at random, since the score gives
    no reason to prefer one), plus ``n``. Scores of lower-is-better estimators (distances)
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
    picked = results[oriented == oriented.max()].mean()  # ties: a random pick's expected result
    out["top1_regret"] = float(1 - picked / best) if best != 0 else float(best - picked)
    return out


def result_standard_error(mean: float, seed_std: float, num_seeds: int, test_units: int | None = None) -> float:
    """Standard error of a fine-tuning result that is a mean over ``num_seeds`` seeds on one test set.

    Two sources: the seeds (``seed_std / sqrt(num_seeds)``) and, given ``test_units`` (the
    test utterances an accuracy averages over), the test set's own sampling error, binomial:
    ``p (1 - p) / test_units`` with ``p`` the mean clipped to [0, 1]. It is shared by every
    seed, so more seeds do not shrink it; only a larger test set does. Without ``test_units``
    (e.g. phone error rate, whose errors cluster within utterances) only the seeds count, a
    lower bound.
    """
    variance = seed_std**2 / num_seeds if num_seeds > 1 else 0.0
    if test_units is not None:
        if test_units < 1:
            raise ValueError(f"`test_units` must be >= 1, got {test_units}")
        p = min(max(mean, 0.0), 1.0)
        variance += p * (1 - p) / test_units
    return float(np.sqrt(variance))


def result_reliability(
    results: Sequence[float], standard_errors: Sequence[float], *, draws: int = 2000, seed: int = 0
) -> float:
    """How well fine-tuning results agree with a re-measurement of themselves.

    Each result is redrawn as ``result + standard_error * N(0, 1)`` (another test set of the
    same size, other seeds), ``draws`` times; the mean Spearman rho between the measured and
    the redrawn results is about what the candidates' exact results (an estimator that knew
    them) would reach against the measured ones. An estimator's rho against these results is
    not expected to exceed it: below it, the disagreement may be the measurement's noise.

    Returns NaN with fewer than 3 results or constant ones.
    """
    results_array = np.asarray(results, dtype=np.float64)
    errors = np.asarray(standard_errors, dtype=np.float64)
    if results_array.shape != errors.shape or results_array.ndim != 1:
        raise ValueError(
            f"results {results_array.shape} and standard_errors {errors.shape} must be equal-length vectors"
        )
    if (errors < 0).any() or not np.isfinite(errors).all():
        raise ValueError("standard_errors must be finite and >= 0")
    if len(results_array) < 3 or np.ptp(results_array) == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    redrawn = results_array + errors * rng.standard_normal((draws, len(results_array)))
    return float(np.mean([stats.spearmanr(results_array, row).statistic for row in redrawn]))
