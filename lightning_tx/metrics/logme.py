"""LogME as a streaming, DDP-synced torchmetrics metric."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from lightning_tx.functional.class_statistics import ClassStatistics
from lightning_tx.functional.linalg import add_gram_, as_float64, symmetric_from_upper
from lightning_tx.functional.logme import (
    logme_from_statistics,
    logme_standardized_from_class_statistics,
    target_statistics,
)
from lightning_tx.functional.validation import (
    check_class_labels,
    check_classes_present,
    check_enough_frames,
)
from lightning_tx.metrics.base import TransferabilityMetric


class LogME(TransferabilityMetric):
    """LogME (evidence per frame, in nats; higher is better) of frozen features.

    States are the additive statistics ``F^T F`` ([D, D], upper triangle maintained),
    ``F^T Y`` ([D, C]), ``diag(Y^T Y)`` ([C]) and ``N`` in float64: O(D^2 + D*C) memory whatever the number of
    frames, summed across ranks. See :func:`lightning_tx.functional.logme` for the math and
    the treatment of rank-deficient features.

    Args:
        num_features: ``D``.
        num_classes: the task's number of classes (classification); every class must have
            frames by ``compute()``.
        num_targets: the number of regression targets ``K`` (with ``regression=True``).
        regression: score ``[N, K]`` float targets instead of class ids.
        standardize: z-score every feature dimension and centre the targets (see
            :func:`lightning_tx.functional.logme`): invariant to the features' scale and offset.
        max_iter, tol, epsilon: the reference fixed-point solver's settings.

    Example:
        >>> import torch
        >>> from lightning_tx.metrics import LogME
        >>> metric = LogME(num_features=8, num_classes=3)
        >>> hidden = torch.randn(4, 50, 8)               # [B, T, D] one layer's frames
        >>> lengths = torch.tensor([50, 42, 30, 7])      # valid frames per utterance
        >>> labels = torch.tensor([0, 1, 2, 1])          # utterance labels, broadcast to frames
        >>> metric.update(hidden, labels, lengths=lengths)
        >>> score = metric.compute()                     # scalar float64
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int | None = None,
        *,
        num_targets: int | None = None,
        regression: bool = False,
        standardize: bool = False,
        max_iter: int = 11,
        tol: float = 1e-3,
        epsilon: float = 1e-5,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_features, **kwargs)
        if standardize and regression:
            raise ValueError("standardize=True is for class labels")
        if regression:
            if not isinstance(num_targets, int) or num_targets < 1:
                raise ValueError(f"regression needs `num_targets` >= 1, got {num_targets!r}")
            columns = num_targets
        else:
            if not isinstance(num_classes, int) or num_classes < 2:
                raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}")
            columns = num_classes
        self.num_classes = num_classes
        self.num_targets = num_targets
        self.regression, self.standardize = regression, standardize
        self.max_iter, self.tol, self.epsilon = max_iter, tol, epsilon
        dim = num_features
        self.add_state("gram", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("cross", torch.zeros(dim, columns, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("target_sq", torch.zeros(columns, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("num_frames", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        features: Tensor,
        targets: Tensor,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> None:
        """Add a batch of frames.

        Args:
            features: ``[N, D]`` frames or ``[B, T, D]`` padded frames.
            targets: class ids ``[N]`` / ``[B]`` (utterance) / ``[B, T]`` (frame), or for
                regression float ``[N, K]`` / ``[B, K]`` / ``[B, T, K]``.
            lengths: ``[B]`` valid frames per utterance (padded input only).
            mask: ``[B, T]`` bool, True for valid frames (padded input only).
        """
        frames, frame_targets = self._frames(features, targets, lengths, mask)
        if self.regression:
            if frame_targets.ndim == 1:
                frame_targets = frame_targets.unsqueeze(1)
            if not frame_targets.is_floating_point() or frame_targets.shape[1] != self.num_targets:
                raise ValueError(
                    f"regression targets must be float with num_targets={self.num_targets} "
                    f"columns, got {tuple(frame_targets.shape)} of dtype {frame_targets.dtype}"
                )
            if not torch.isfinite(frame_targets).all():
                raise ValueError("regression `targets` contain NaN or Inf")
        else:
            check_class_labels(frame_targets, self.num_classes)
        frames = as_float64(frames)
        add_gram_(self.gram, frames)
        cross, target_sq = target_statistics(
            frames, frame_targets, num_classes=self.num_classes, regression=self.regression
        )
        self.cross += cross
        self.target_sq += target_sq
        self.num_frames += frames.shape[0]

    def compute(self) -> Tensor:
        check_enough_frames(int(self.num_frames))
        if not self.regression:
            check_classes_present(self.target_sq)
        solver = {"max_iter": self.max_iter, "tol": self.tol, "epsilon": self.epsilon}
        if self.standardize:
            stats = ClassStatistics(self.target_sq, self.cross.T, gram=symmetric_from_upper(self.gram))
            return logme_standardized_from_class_statistics(stats, **solver)
        return logme_from_statistics(
            symmetric_from_upper(self.gram),
            self.cross,
            self.target_sq,
            self.num_frames,
            max_iter=self.max_iter,
            tol=self.tol,
            epsilon=self.epsilon,
        )
