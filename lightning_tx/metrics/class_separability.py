"""H-score, H_alpha and GBC as streaming, DDP-synced torchmetrics metrics."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_tx.functional._linalg import add_gram_, as_float64, symmetric_from_upper
from lightning_tx.functional.class_statistics import ClassStatistics, class_statistics
from lightning_tx.functional.gbc import gbc_from_statistics
from lightning_tx.functional.hscore import hscore_from_statistics
from lightning_tx.metrics.base import ClassificationTransferabilityMetric


class _ClassStatisticsMetric(ClassificationTransferabilityMetric):
    """Keeps the per-class sums of :class:`~lightning_tx.functional.ClassStatistics` as
    float64 sum states (only those the estimator needs)."""

    _with_sq_sums = False
    _with_gram = False
    _with_fourth_moments = False

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        dim, classes, f64 = num_features, num_classes, torch.float64
        self.add_state("class_counts", torch.zeros(classes, dtype=f64), dist_reduce_fx="sum")
        self.add_state("class_sums", torch.zeros(classes, dim, dtype=f64), dist_reduce_fx="sum")
        if self._with_sq_sums:
            self.add_state("class_sq_sums", torch.zeros(classes, dim, dtype=f64), dist_reduce_fx="sum")
        if self._with_gram or self._with_fourth_moments:
            self.add_state("gram", torch.zeros(dim, dim, dtype=f64), dist_reduce_fx="sum")
        if self._with_fourth_moments:
            self.add_state("norm4_sum", torch.zeros((), dtype=f64), dist_reduce_fx="sum")
            self.add_state("norm2_weighted_sum", torch.zeros(dim, dtype=f64), dist_reduce_fx="sum")

    def update(
        self,
        features: Tensor,
        targets: Tensor,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> None:
        """Add a batch: ``[N, D]`` or ``[B, T, D]`` features with ``[N]``, ``[B]`` or
        ``[B, T]`` class ids and, for padded input, ``lengths`` ``[B]`` or ``mask`` ``[B, T]``."""
        frames, labels = self._labelled_frames(features, targets, lengths, mask)
        frames = as_float64(frames)
        batch = class_statistics(
            frames,
            labels,
            self.num_classes,
            with_sq_sums=self._with_sq_sums,
            with_fourth_moments=self._with_fourth_moments,
        )
        for name in self._defaults:
            if name == "gram":
                add_gram_(self.gram, frames)  # upper triangle only: see _statistics
            else:
                setattr(self, name, getattr(self, name) + getattr(batch, name))

    def _statistics(self) -> ClassStatistics:
        states = {name: getattr(self, name) for name in self._defaults}
        if "gram" in states:
            states["gram"] = symmetric_from_upper(states["gram"])
        return ClassStatistics(**states)


class HScore(_ClassStatisticsMetric):
    """H-score (Bao et al. 2019), or H_alpha with ``shrinkage=True`` (Ibrahim et al. 2022).

    Dimensionless, higher is better, at most ``num_classes - 1``. States: per-class counts
    and sums, the Gram matrix, and for H_alpha two fourth-moment sums (O(D^2 + C*D)).
    See :mod:`lightning_tx.functional.hscore`.
    """

    _with_gram = True

    def __init__(self, num_features: int, num_classes: int, *, shrinkage: bool = False, **kwargs: Any) -> None:
        self._with_fourth_moments = shrinkage
        super().__init__(num_features, num_classes, **kwargs)
        self.shrinkage = shrinkage

    def compute(self) -> Tensor:
        return hscore_from_statistics(self._statistics(), shrinkage=self.shrinkage)


class GBC(_ClassStatisticsMetric):
    """Gaussian Bhattacharyya coefficient (Pandy et al. 2022): <= 0, higher is better.

    States: per-class counts, sums and squared sums (O(C*D)). See
    :mod:`lightning_tx.functional.gbc`.
    """

    _with_sq_sums = True

    def __init__(self, num_features: int, num_classes: int, *, gaussian_type: str = "diagonal", **kwargs: Any) -> None:
        if gaussian_type not in ("diagonal", "spherical"):
            raise ValueError(f"`gaussian_type` must be 'diagonal' or 'spherical', got {gaussian_type!r}")
        super().__init__(num_features, num_classes, **kwargs)
        self.gaussian_type = gaussian_type

    def compute(self) -> Tensor:
        return gbc_from_statistics(self._statistics(), gaussian_type=self.gaussian_type)
