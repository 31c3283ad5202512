"""Per-class first and second moments of frames, additive over chunks of frames.

H-score and GBC need only these sums, so they stream in bounded memory and sync across
processes with a sum-reduce.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property

import torch
from torch import Tensor

from lightning_tx.functional.linalg import as_float64, gram_matrix
from lightning_tx.functional.validation import UndefinedScore

# Centring streamed raw moments, ``sum f^2 / N - mu^2``, keeps about
# ``16 - log10(E[f^2] / var)`` of float64's digits: below this ratio of spread to raw second
# moment (a mean about 3e5 times the spread) fewer than 5 are left.
MIN_RESOLVED_SPREAD = 1e-11


@dataclass
class ClassStatistics:
    """Sums over the frames seen so far (float64; ``N`` frames, ``D`` dims, ``C`` classes).

    Attributes:
        class_counts: ``[C]`` frames per class.
        class_sums: ``[C, D]`` sum of the frames of each class.
        class_sq_sums: ``[C, D]`` sum of the squared frames of each class (elementwise).
        gram: ``[D, D]`` sum of ``f f^T`` over all frames (None when not accumulated;
            H-score and H_alpha need it).
        norm4_sum: ``[]`` sum of ``|f|^4`` (None when not accumulated).
        norm2_weighted_sum: ``[D]`` sum of ``|f|^2 f`` (None when not accumulated).
    """

    class_counts: Tensor
    class_sums: Tensor
    class_sq_sums: Tensor | None = None
    gram: Tensor | None = None
    norm4_sum: Tensor | None = None
    norm2_weighted_sum: Tensor | None = None

    @property
    def num_frames(self) -> Tensor:
        return self.class_counts.sum()

    @property
    def feature_sum(self) -> Tensor:
        return self.class_sums.sum(0)

    @cached_property
    def gram_eigh(self) -> tuple[Tensor, Tensor]:
        """Eigenvalues ``[D]`` and eigenvectors ``[D, D]`` of :attr:`gram`, computed once:
        LogME, H-score and H_alpha all read this one decomposition. The sums must not change
        afterwards."""
        if self.gram is None:
            raise ValueError("these statistics were accumulated without the Gram matrix")
        return torch.linalg.eigh(self.gram)

    @cached_property
    def covariance_eigh(self) -> tuple[Tensor, Tensor, Tensor]:
        """The population covariance ``[D, D]`` of the frames, its eigenvalues ``[D]`` and
        eigenvectors ``[D, D]``; computed once, only where :attr:`gram_eigh` cannot serve
        (see :func:`~lightning_tx.functional.hscore_from_statistics`)."""
        _, cov = _mean_and_covariance(self)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        return cov, eigenvalues, eigenvectors

    def __add__(self, other: ClassStatistics) -> ClassStatistics:
        merged = {}
        for field in fields(self):
            mine, theirs = getattr(self, field.name), getattr(other, field.name)
            merged[field.name] = None if mine is None or theirs is None else mine + theirs
        return ClassStatistics(**merged)


def class_statistics(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    *,
    with_sq_sums: bool = False,
    with_gram: bool = False,
    with_fourth_moments: bool = False,
) -> ClassStatistics:
    """The sums of :class:`ClassStatistics` for ``[N, D]`` features and ``[N]`` class ids."""
    features = as_float64(features)
    labels = labels.to(features.device).long()
    # index_add_, not bincount: on a GPU bincount reads the largest label back to the host
    counts = features.new_zeros(num_classes).index_add_(0, labels, features.new_ones(labels.shape[0]))
    sums = features.new_zeros(num_classes, features.shape[1]).index_add_(0, labels, features)
    stats = ClassStatistics(class_counts=counts, class_sums=sums)
    squares = features**2 if with_sq_sums or with_fourth_moments else None
    if with_sq_sums:
        stats.class_sq_sums = torch.zeros_like(sums).index_add_(0, labels, squares)
    if with_gram:
        stats.gram = gram_matrix(features)
    if with_fourth_moments:
        norm2 = squares.sum(1)
        stats.norm4_sum = (norm2**2).sum()
        stats.norm2_weighted_sum = norm2 @ features
    return stats


def _mean_and_covariance(stats: ClassStatistics) -> tuple[Tensor, Tensor]:
    """Global mean ``[D]`` and population covariance ``[D, D]`` (1/N) from the sums."""
    if stats.gram is None:
        raise ValueError("these statistics were accumulated without the Gram matrix")
    n = stats.num_frames
    mean = stats.feature_sum / n
    return mean, stats.gram / n - torch.outer(mean, mean)


def check_spread_resolved(spread: Tensor, raw_second_moment: Tensor, estimator: str) -> None:
    """Raise :class:`~lightning_tx.functional.UndefinedScore` when the features' spread
    (a summed variance, scalar) is too small against their raw second moment (the same sum
    of ``E[f^2]``) to be recovered from streamed sums in float64: the centred moments would
    be round-off, and the score silently wrong."""
    if float(spread) >= MIN_RESOLVED_SPREAD * float(raw_second_moment):
        return
    ratio = float(raw_second_moment) / max(float(spread), torch.finfo(torch.float64).tiny)
    raise UndefinedScore(
        f"{estimator} cannot be computed: the features barely vary against their offset (mean square about "
        f"{ratio:.1e} times the variance, so centring their streamed sums in float64 leaves round-off); "
        "subtract a typical frame (e.g. an estimate of the mean) from the features before scoring"
    )


def between_class_factor(stats: ClassStatistics) -> Tensor:
    """``[C', D]`` matrix ``M`` (one row per class with frames) such that the between-class
    covariance is ``M^T M``: rows ``sqrt(n_c / N) (mu_c - mu)``."""
    n = stats.num_frames
    mean = stats.feature_sum / n
    present = stats.class_counts > 0
    class_means = stats.class_sums[present] / stats.class_counts[present].unsqueeze(1)
    return (class_means - mean) * (stats.class_counts[present] / n).sqrt().unsqueeze(1)
