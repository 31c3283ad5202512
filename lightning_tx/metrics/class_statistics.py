"""ClassStatisticsMetric: the per-class sums every label-based estimator is computed from."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_tx.functional.class_statistics import ClassStatistics, class_statistics
from lightning_tx.functional.linalg import add_gram_, as_float64, symmetric_from_upper
from lightning_tx.metrics.base import ClassificationTransferabilityMetric


class ClassStatisticsMetric(ClassificationTransferabilityMetric):
    """Streams labelled frames into the float64 sums of
    :class:`~lightning_tx.functional.ClassStatistics`; ``compute()`` returns them, summed
    across ranks.

    LogME, H-score, H_alpha and GBC are functions of these sums, so one accumulator per layer
    feeds all of them (the scoring engine does this): the ``[D, D]`` Gram matrix, the
    expensive part, is accumulated once however many estimators read it. Only the sums
    asked for are kept.

    Args:
        num_features: ``D``.
        num_classes: ``C``, fixed up front.
        sq_sums: keep ``[C, D]`` per-class squared sums (GBC).
        gram: keep the ``[D, D]`` Gram matrix (LogME, H-score).
        fourth_moments: keep ``sum |f|^4`` and ``sum |f|^2 f`` (H_alpha's shrinkage; implies ``gram``).
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        *,
        sq_sums: bool = False,
        gram: bool = False,
        fourth_moments: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self.with_sq_sums, self.with_fourth_moments = sq_sums, fourth_moments
        self.with_gram = gram or fourth_moments
        dim, classes, f64 = num_features, num_classes, torch.float64
        self.add_state("class_counts", torch.zeros(classes, dtype=f64), dist_reduce_fx="sum")
        self.add_state("class_sums", torch.zeros(classes, dim, dtype=f64), dist_reduce_fx="sum")
        if self.with_sq_sums:
            self.add_state("class_sq_sums", torch.zeros(classes, dim, dtype=f64), dist_reduce_fx="sum")
        if self.with_gram:
            # Only the upper triangle is maintained (a BLAS syrk on the CPU): see statistics().
            self.add_state("gram", torch.zeros(dim, dim, dtype=f64), dist_reduce_fx="sum")
        if self.with_fourth_moments:
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
            with_sq_sums=self.with_sq_sums,
            with_fourth_moments=self.with_fourth_moments,
        )
        for name in self._defaults:
            if name == "gram":
                add_gram_(self.gram, frames)
            else:
                setattr(self, name, getattr(self, name) + getattr(batch, name))

    def statistics(self) -> ClassStatistics:
        """The sums held now (this rank's, unless called inside ``compute()``)."""
        states = {name: getattr(self, name) for name in self._defaults}
        if "gram" in states:
            states["gram"] = symmetric_from_upper(states["gram"])
        return ClassStatistics(**states)

    def compute(self) -> ClassStatistics:
        return self.statistics()
