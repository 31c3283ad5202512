r"""H-score and its shrinkage form H_alpha.

Bao et al., "An Information-theoretic Approach to Transferability in Task Transfer
Learning" (ICIP 2019):

.. math:: H(f) = \mathrm{tr}\big(\mathrm{cov}(f)^{+}\,\mathrm{cov}(E[f \mid y])\big)

Ibrahim, Ponomareva, Mazumder, "Newer is not always better: rethinking transferability
metrics, their peculiarities, stability and performance" (ECML-PKDD 2022) replace the
ill-conditioned feature covariance by its Ledoit-Wolf shrinkage
:math:`\Sigma_\alpha = (1-\alpha)\,\mathrm{cov}(f) + \alpha\,\sigma I`,
:math:`\sigma = \mathrm{tr}(\mathrm{cov}(f))/D`, with the Ledoit-Wolf (2004) coefficient
:math:`\alpha` (as ``sklearn.covariance.ledoit_wolf_shrinkage``):

.. math:: H_\alpha(f) = \mathrm{tr}\big(\Sigma_\alpha^{-1}\,(1-\alpha)\,\mathrm{cov}(E[f \mid y])\big)

Both covariances are population covariances over frames (1/N; the 1/(N-1) of some
implementations cancels in H and changes H_alpha by N/(N-1)). Higher is better; H is at
most ``C - 1``. The Ledoit-Wolf coefficient needs the centred fourth moment
:math:`\sum_k |f_k - \mu|^4`, which is expanded into additive raw moments so that it
streams; features with a large common offset lose digits in that expansion (about
``log10(|mu|^4 / var^2)`` of them), and where too few are left H_alpha raises
:class:`~lightning_tx.functional.UndefinedScore` rather than return round-off.
"""

from __future__ import annotations

import torch
from torch import Tensor

from lightning_tx.functional.class_statistics import (
    ClassStatistics,
    _mean_and_covariance,
    between_class_factor,
    check_spread_resolved,
    class_statistics,
)
from lightning_tx.functional.validation import (
    UndefinedScore,
    check_classes_present,
    check_enough_frames,
    check_labelled_frames,
)


def _trace_of_pinv_times(eigenvalues: Tensor, weights: Tensor) -> Tensor:
    """``trace(pinv(A) B)`` for a symmetric PSD ``A = V diag(eigenvalues) V^T`` and
    ``weights[i] = v_i^T B v_i``; eigenvalues below ``D * eps * max`` count as zero."""
    cutoff = eigenvalues.max().clamp_min(0) * eigenvalues.shape[0] * torch.finfo(eigenvalues.dtype).eps
    inverse = torch.where(eigenvalues > cutoff, 1.0 / eigenvalues, torch.zeros_like(eigenvalues))
    return inverse @ weights


def _trace_of_inverse_times_from_gram(
    stats: ClassStatistics, scale: Tensor | float, shift: Tensor | float, factor: Tensor
) -> Tensor | None:
    """``trace(S^-1 M^T M)`` for ``S = scale * cov + shift * I`` from the eigendecomposition of
    the uncentred Gram matrix that LogME decomposes too, so no second ``D x D`` decomposition.

    With ``A = G / N = V diag(a) V^T`` and the mean ``u``, ``cov = A - u u^T``, so
    ``S = P - scale u u^T`` with ``P = V diag(scale a + shift) V^T`` and, by Sherman-Morrison,
    ``trace(S^-1 B) = trace(P^-1 B) + scale |M P^-1 u|^2 / (1 - scale u^T P^-1 u)``: ``O(DC)``.
    ``cond(S) <= cond(P) / (1 - scale u^T P^-1 u)``; returns None when that bound exceeds
    ``1e10`` (a nearly singular ``S``, or a mean far out in units of the spread), where the
    caller decomposes ``S`` itself (with ``S``'s pseudo-inverse semantics).
    """
    n = stats.num_frames
    eigenvalues, eigenvectors = stats.gram_eigh
    diagonal = scale * eigenvalues / n + shift
    if float(diagonal.min()) <= 0:
        return None
    mean_coordinates = eigenvectors.T @ (stats.feature_sum / n)  # V^T u  [D]
    factor_coordinates = factor @ eigenvectors  # (V^T M^T)^T  [C', D]
    scaled_mean = mean_coordinates / diagonal  # V^T P^-1 u
    denominator = 1 - scale * (mean_coordinates @ scaled_mean)
    condition = diagonal.max() / diagonal.min() / denominator
    if float(denominator) <= 0 or float(condition) > 1e10:
        return None
    direct = (factor_coordinates.pow(2).sum(0) / diagonal).sum()
    correction = scale * (factor_coordinates @ scaled_mean).pow(2).sum() / denominator
    return direct + correction


def ledoit_wolf_shrinkage(stats: ClassStatistics) -> Tensor:
    """The Ledoit-Wolf shrinkage coefficient in [0, 1] of the frames' covariance."""
    if stats.norm4_sum is None or stats.norm2_weighted_sum is None:
        raise ValueError("H_alpha needs statistics accumulated with fourth moments")
    n = stats.num_frames
    dim = stats.gram.shape[0]
    mean, cov = _mean_and_covariance(stats)
    mean_sq = mean @ mean
    # sum_k |f_k - mu|^4 expanded into raw moments (q = |f|^2, r = f . mu):
    # sum (q - 2r + |mu|^2)^2
    terms = torch.stack(
        [
            stats.norm4_sum,
            -4 * (stats.norm2_weighted_sum @ mean),
            4 * (mean @ stats.gram @ mean),
            2 * mean_sq * torch.trace(stats.gram),
            -4 * mean_sq * (stats.feature_sum @ mean),
            n * mean_sq**2,
        ]
    )
    centered_norm4 = terms.sum()
    # The expansion cancels about log10(|mu|^4 / var^2) digits, twice what centring the
    # covariance loses (at 1e-14 of the terms the result is off by about 1%): refuse below that.
    if float(centered_norm4) <= 1e-14 * float(terms.abs().sum()):
        raise UndefinedScore(
            "H_alpha's Ledoit-Wolf shrinkage cannot be computed: the features' common offset is so large against "
            "their spread that their centred fourth moment, expanded from streamed raw moments, is round-off in "
            "float64; subtract a typical frame (e.g. an estimate of the mean) from the features before scoring"
        )
    mu = torch.trace(cov) / dim
    cov_sq = (cov**2).sum()
    beta = (centered_norm4 / n - cov_sq) / (dim * n)
    delta = (cov_sq - 2 * mu * torch.trace(cov) + dim * mu**2) / dim
    beta = torch.minimum(beta, delta).clamp_min(0)
    if float(delta) == 0.0:
        return torch.zeros((), dtype=torch.float64, device=cov.device)
    return beta / delta


def hscore_from_statistics(stats: ClassStatistics, *, shrinkage: bool = False) -> Tensor:
    """H-score (``shrinkage=False``) or H_alpha (``shrinkage=True``) from class statistics.

    Returns a scalar float64 tensor (dimensionless, higher is better).
    """
    check_enough_frames(int(stats.num_frames))
    check_classes_present(stats.class_counts)
    frames, dim = int(stats.num_frames), stats.gram.shape[0]
    if not shrinkage and frames <= dim:
        raise UndefinedScore(
            f"H-score needs more frames than feature dimensions: {frames} frames of width {dim} make the "
            "covariance singular, so any labelling looks separable (H = C - 1); use halpha (shrinkage) or "
            "score more frames"
        )
    _, cov = _mean_and_covariance(stats)
    check_spread_resolved(torch.trace(cov), torch.trace(stats.gram) / frames, "H_alpha" if shrinkage else "H-score")
    factor = between_class_factor(stats)  # B = M^T M, rank <= C
    if shrinkage:
        alpha, spread = ledoit_wolf_shrinkage(stats), torch.trace(cov) / dim
        if float(spread) <= 0:
            raise UndefinedScore("the features are constant over the frames: H_alpha is undefined")
        scale, shift = 1 - alpha, alpha * spread  # (1 - alpha) cov + alpha tr(cov)/D I
    else:
        scale, shift = 1.0, 0.0
    fast = _trace_of_inverse_times_from_gram(stats, scale, shift, factor)
    if fast is not None:
        return scale * fast
    _, eigenvalues, eigenvectors = stats.covariance_eigh
    # trace(pinv(S) B) in cov's eigenbasis (S shares it): v_i^T B v_i = |M v_i|^2.
    weights = (factor @ eigenvectors).pow(2).sum(0)
    return scale * _trace_of_pinv_times(scale * eigenvalues + shift, weights)


def hscore(
    features: Tensor,
    labels: Tensor,
    *,
    num_classes: int | None = None,
    shrinkage: bool = False,
) -> Tensor:
    """H-score of ``[N, D]`` features for ``[N]`` class ids (H_alpha with ``shrinkage=True``).

    ``num_classes`` defaults to ``labels.max() + 1``; every class must have frames.
    """
    num_classes = check_labelled_frames(features, labels, num_classes)
    stats = class_statistics(features, labels, num_classes, with_gram=True, with_fourth_moments=shrinkage)
    return hscore_from_statistics(stats, shrinkage=shrinkage)
