r"""LogME: the log marginal evidence of a Bayesian linear model on frozen features.

You, Liu, Wang, Long: "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning" (ICML 2021) and the fixed-point solver of "Ranking and Tuning Pre-trained
Models" (JMLR 2022). For each target column :math:`y` (a one-vs-rest class indicator or
a regression target), with prior :math:`w \sim N(0, \alpha^{-1} I_D)` and noise precision
:math:`\beta`,

.. math::

    \log p(y \mid F, \alpha, \beta) = \tfrac{D}{2}\log\alpha + \tfrac{N}{2}\log\beta
        - \tfrac{\beta}{2}\lVert y - F m\rVert^2 - \tfrac{\alpha}{2}\lVert m\rVert^2
        - \tfrac12 \log\det(\alpha I + \beta F^\top F) - \tfrac{N}{2}\log 2\pi

with :math:`m = \beta (\alpha I + \beta F^\top F)^{-1} F^\top y`. Alpha and beta are set by
the reference fixed-point iteration; the score is the mean over columns of evidence / N.

Everything needed is additive over frames: :math:`G = F^\top F` ([D, D]),
:math:`B = F^\top Y` ([D, C]), :math:`\mathrm{diag}(Y^\top Y)` ([C]) and N. With
:math:`G = V \mathrm{diag}(s) V^\top`, the projections :math:`x = s^{-1/2} V^\top B_c`
carry all the information about :math:`y_c` that the features can explain.

**Rank-deficient features** (N <= D, duplicated or constant dimensions). The reference
code keeps only the k non-zero eigenvalues in :math:`\log\det(\alpha I + \beta G)`, which
drops :math:`(D - k)\log\alpha` from the determinant: its value is then not the evidence
of the model it describes (and disagrees with its own ICML solver). We return the exact
evidence: zero eigenvalues contribute :math:`\log\alpha` each. When N > D and the features
have full rank both agree (to float64 round-off): ``logme`` equals ``LogME().fit`` of
thuml/LogME in that case.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from lightning_tx.functional.class_statistics import MIN_RESOLVED_SPREAD, ClassStatistics, class_statistics
from lightning_tx.functional.linalg import as_float64, gram_matrix
from lightning_tx.functional.validation import (
    UndefinedScore,
    check_class_labels,
    check_classes_present,
    check_enough_frames,
    check_features,
    check_same_length,
)


def target_statistics(
    features: Tensor, targets: Tensor, *, num_classes: int | None = None, regression: bool = False
) -> tuple[Tensor, Tensor]:
    """``F^T Y`` ([D, C]) and ``diag(Y^T Y)`` ([C]) of float64 features: for class ids, the
    per-class feature sums and frame counts of the one-hot targets."""
    if regression:
        targets = targets.to(device=features.device, dtype=torch.float64)
        if targets.ndim == 1:
            targets = targets.unsqueeze(1)
        return features.T @ targets, (targets * targets).sum(0)
    if num_classes is None:
        raise ValueError("`num_classes` is required for classification targets")
    labels = targets.to(features.device).long()
    sums = features.new_zeros(num_classes, features.shape[1]).index_add_(0, labels, features)
    counts = torch.bincount(labels, minlength=num_classes).to(torch.float64)
    return sums.T, counts


def logme_statistics(
    features: Tensor,
    targets: Tensor,
    *,
    num_classes: int | None = None,
    regression: bool = False,
) -> tuple[Tensor, Tensor, Tensor, int]:
    """The additive statistics of LogME for one chunk of frames, in float64.

    Args:
        features: ``[N, D]`` frame features.
        targets: ``[N]`` int class ids in ``[0, num_classes)``, or ``[N, K]`` float
            regression targets when ``regression=True``.
        num_classes: number of classes of the task (classification only).
        regression: whether ``targets`` are regression targets.

    Returns:
        ``(gram [D, D], cross [D, C], target_sq [C], num_frames)``, where ``C`` is
        ``num_classes`` or ``K``.
    """
    features = as_float64(features)
    cross, target_sq = target_statistics(features, targets, num_classes=num_classes, regression=regression)
    return gram_matrix(features), cross, target_sq, features.shape[0]


def _fixed_point(
    sigma: Tensor,
    x2: Tensor,
    res_x2: Tensor,
    num_frames: float,
    max_iter: int,
    tol: float,
    epsilon: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The reference fixed-point iteration, vectorised over the C target columns.

    ``sigma`` [k] non-zero eigenvalues of G; ``x2`` [k, C]; ``res_x2`` [C]. Each column
    stops on its own, exactly where the reference loop would ``break``.

    Returns ``(alpha, beta, m2, res2)``, each ``[C]``: the final precisions and the squared
    norms of the weights and of the residual computed at the last step's ``t``.
    """
    num_columns = x2.shape[1]
    alpha = x2.new_ones(num_columns)
    beta = x2.new_ones(num_columns)
    m2 = x2.new_zeros(num_columns)
    res2 = x2.new_zeros(num_columns)
    active = torch.ones(num_columns, dtype=torch.bool, device=x2.device)
    sigma = sigma.unsqueeze(1)
    for _ in range(max_iter):
        t = alpha / beta
        gamma_new = (sigma / (sigma + t)).sum(0)
        m2_new = (sigma * x2 / (t + sigma) ** 2).sum(0)
        res2_new = (x2 / (1 + sigma / t) ** 2).sum(0) + res_x2
        alpha_new = gamma_new / (m2_new + epsilon)
        beta_new = (num_frames - gamma_new) / (res2_new + epsilon)
        alpha = torch.where(active, alpha_new, alpha)
        beta = torch.where(active, beta_new, beta)
        m2 = torch.where(active, m2_new, m2)
        res2 = torch.where(active, res2_new, res2)
        active = active & ((alpha / beta - t).abs() / t > tol)
        if not bool(active.any()):
            break
    return alpha, beta, m2, res2


def logme_from_statistics(
    gram: Tensor,
    cross: Tensor,
    target_sq: Tensor,
    num_frames: int | Tensor,
    *,
    max_iter: int = 11,
    tol: float = 1e-3,
    epsilon: float = 1e-5,
    reduction: str = "mean",
    gram_eigh: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """LogME from the additive statistics of a set of frames.

    Args:
        gram: ``[D, D]`` sum over frames of ``f f^T``.
        cross: ``[D, C]`` sum over frames of ``f y^T`` (for classes: per-class feature sums).
        target_sq: ``[C]`` sum over frames of ``y * y`` (for classes: per-class frame counts).
        num_frames: ``N``.
        max_iter, tol, epsilon: the reference solver's settings (at most 11 steps; stop
            when ``|t' - t| / t <= 1e-3``; ``1e-5`` added to both denominators).
        reduction: ``"mean"`` (the LogME score) or ``"none"`` (``[C]`` per-column evidence / N).
        gram_eigh: ``torch.linalg.eigh(gram)`` when the caller has it already.

    Returns:
        Scalar float64 tensor (or ``[C]``): evidence per frame, in nats.
    """
    gram = gram.to(torch.float64)
    cross = cross.to(torch.float64)
    target_sq = target_sq.to(torch.float64)
    num_frames = float(num_frames)
    dim = gram.shape[0]
    if gram.shape != (dim, dim) or cross.shape[0] != dim or target_sq.shape != cross.shape[1:]:
        raise ValueError(
            f"inconsistent statistics: gram {tuple(gram.shape)}, cross {tuple(cross.shape)}, "
            f"target_sq {tuple(target_sq.shape)}"
        )
    check_enough_frames(int(num_frames))

    eigenvalues, eigenvectors = torch.linalg.eigh(gram) if gram_eigh is None else gram_eigh
    # Eigenvalues below round-off of the largest are zeros of a rank-deficient G: their
    # eigenvectors span (numerically) the null space, where F^T y has no component.
    cutoff = eigenvalues.max().clamp_min(0) * dim * torch.finfo(torch.float64).eps
    nonzero = eigenvalues > cutoff
    if not bool(nonzero.any()):
        raise UndefinedScore("the features are all zero: LogME has no evidence to compare (a dead layer?)")
    sigma = eigenvalues[nonzero]
    projected = eigenvectors[:, nonzero].T @ cross  # [k, C] = V_k^T B
    x2 = projected**2 / sigma.unsqueeze(1)
    res_x2 = target_sq - x2.sum(0)

    alpha, beta, m2, res2 = _fixed_point(sigma, x2, res_x2, num_frames, max_iter, tol, epsilon)
    num_zero = dim - sigma.numel()
    log_det = torch.log(alpha.unsqueeze(0) + beta.unsqueeze(0) * sigma.unsqueeze(1)).sum(0)
    log_det = log_det + num_zero * torch.log(alpha)
    evidence = (
        dim / 2.0 * torch.log(alpha)
        + num_frames / 2.0 * torch.log(beta)
        - 0.5 * log_det
        - beta / 2.0 * res2
        - alpha / 2.0 * m2
        - num_frames / 2.0 * math.log(2 * math.pi)
    ) / num_frames
    if reduction == "none":
        return evidence
    if reduction != "mean":
        raise ValueError(f"`reduction` must be 'mean' or 'none', got {reduction!r}")
    return evidence.mean()


def logme_from_class_statistics(stats: ClassStatistics, **solver: Any) -> Tensor:
    """LogME of class labels from :class:`~lightning_tx.functional.ClassStatistics` (with the
    Gram matrix): the one-hot targets' ``F^T Y`` are the per-class sums and ``diag(Y^T Y)``
    the per-class counts. ``solver``: ``max_iter``, ``tol``, ``epsilon``."""
    if stats.gram is None:
        raise ValueError("LogME needs class statistics accumulated with the Gram matrix")
    check_enough_frames(int(stats.num_frames))
    check_classes_present(stats.class_counts)
    return logme_from_statistics(
        stats.gram, stats.class_sums.T, stats.class_counts, stats.num_frames, gram_eigh=stats.gram_eigh, **solver
    )


def standardized_class_statistics(stats: ClassStatistics) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """LogME's statistics of z-scored features and centred one-hot targets, from the sums.

    Each feature dimension is centred and divided by its standard deviation over the frames,
    and each one-hot target column is centred (an intercept):
    ``G' = S^-1 (G - N mu mu^T) S^-1``, ``F'^T y' = S^-1 (F^T y - n_c mu)``,
    ``|y'|^2 = n_c - n_c^2 / N``. The result is invariant to ``f -> A f + b`` for any
    diagonal ``A`` with non-zero entries (so to any rescaling and shift), up to round-off:
    centring the streamed raw moments loses about ``log10(mu_d^2 / var_d)`` of float64's 16
    digits in a dimension whose mean is large against its spread. Constant dimensions are
    dropped, and so are those whose variance is below ``MIN_RESOLVED_SPREAD`` of their mean
    square: for them only round-off is left, which z-scoring would blow up to a
    unit-variance random dimension.

    Returns:
        ``(gram [D', D'], cross [D', C], target_sq [C], num_frames)``.
    """
    if stats.gram is None:
        raise ValueError("LogME needs class statistics accumulated with the Gram matrix")
    n = stats.num_frames
    mean = stats.feature_sum / n
    centred_gram = stats.gram - n * torch.outer(mean, mean)
    variance = centred_gram.diagonal() / n
    keep = (variance > variance.max().clamp_min(0) * torch.finfo(torch.float64).eps * 16) & (
        variance > MIN_RESOLVED_SPREAD * stats.gram.diagonal() / n
    )
    if int(keep.sum()) == 0:
        raise UndefinedScore(
            "every feature dimension is constant over the frames, or so nearly constant against its offset that "
            "its variance is round-off in float64 (subtract a typical frame from the features): nothing to score"
        )
    scale = variance[keep].sqrt()
    gram = centred_gram[keep][:, keep] / torch.outer(scale, scale)
    cross = (stats.class_sums[:, keep] - stats.class_counts.unsqueeze(1) * mean[keep]).T / scale.unsqueeze(1)
    target_sq = stats.class_counts - stats.class_counts**2 / n
    return gram, cross, target_sq, n


def logme_standardized_from_class_statistics(stats: ClassStatistics, **solver: Any) -> Tensor:
    """LogME of z-scored features (see :func:`standardized_class_statistics`): invariant to
    the scale and offset of every feature dimension, which the reference LogME is not (its
    solver's ``epsilon`` and start at ``alpha = beta = 1`` penalise large activations)."""
    check_enough_frames(int(stats.num_frames))
    check_classes_present(stats.class_counts)
    return logme_from_statistics(*standardized_class_statistics(stats), **solver)


def logme(
    features: Tensor,
    targets: Tensor,
    *,
    num_classes: int | None = None,
    regression: bool = False,
    standardize: bool = False,
    max_iter: int = 11,
    tol: float = 1e-3,
    epsilon: float = 1e-5,
) -> Tensor:
    """LogME of ``[N, D]`` features for their targets (higher: more transferable).

    Args:
        features: ``[N, D]`` frame (or utterance) features, any float dtype and device.
        targets: ``[N]`` int class ids, or ``[N]`` / ``[N, K]`` float targets with
            ``regression=True``.
        num_classes: the task's number of classes. Defaults to ``targets.max() + 1`` (as the
            reference does); pass it whenever a sample may miss a class. Every class must
            have frames.
        regression: treat ``targets`` as regression targets (one column per target).
        standardize: z-score every feature dimension and centre the targets first (class
            labels only; see :func:`standardized_class_statistics`): invariant to the
            features' scale and offset. ``False`` gives the reference value.

    Returns:
        Scalar float64 tensor: mean over target columns of the maximized evidence / N.

    Example:
        >>> import torch
        >>> from lightning_tx.functional import logme
        >>> features = torch.randn(500, 16, generator=torch.Generator().manual_seed(0))
        >>> labels = (features[:, 0] > 0).long()
        >>> float(logme(features, labels)) > float(logme(features, labels.flip(0)))
        True
    """
    check_features(features)
    check_same_length(features, targets)
    if regression:
        if not targets.is_floating_point():
            raise TypeError(f"regression `targets` must be floating, got dtype {targets.dtype}")
        if targets.ndim not in (1, 2):
            raise ValueError(f"regression `targets` must be [N] or [N, K], got {tuple(targets.shape)}")
        if not torch.isfinite(targets).all():
            raise ValueError("regression `targets` contain NaN or Inf")
    else:
        if num_classes is None:
            check_class_labels(targets, torch.iinfo(torch.int64).max)
            num_classes = int(targets.max()) + 1 if targets.numel() else 0
        check_class_labels(targets, num_classes)
    solver = {"max_iter": max_iter, "tol": tol, "epsilon": epsilon}
    if standardize:
        if regression:
            raise ValueError("standardize=True is for class labels")
        stats = class_statistics(features, targets, num_classes, with_gram=True)
        return logme_standardized_from_class_statistics(stats, **solver)
    gram, cross, target_sq, num_frames = logme_statistics(
        features, targets, num_classes=num_classes, regression=regression
    )
    if not regression:
        check_enough_frames(num_frames)
        check_classes_present(target_sq)
    return logme_from_statistics(gram, cross, target_sq, num_frames, max_iter=max_iter, tol=tol, epsilon=epsilon)
