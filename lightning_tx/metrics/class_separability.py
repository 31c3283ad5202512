"""H-score, H_alpha and GBC as streaming, DDP-synced torchmetrics metrics."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from lightning_tx.functional.gbc import gbc_from_statistics
from lightning_tx.functional.hscore import hscore_from_statistics
from lightning_tx.metrics.class_statistics import ClassStatisticsMetric


class HScore(ClassStatisticsMetric):
    """H-score (Bao et al. 2019), or H_alpha with ``shrinkage=True`` (Ibrahim et al. 2022).

    Dimensionless, higher is better, at most ``num_classes - 1``. States: per-class counts
    and sums, the Gram matrix, and for H_alpha two fourth-moment sums (O(D^2 + C*D)).
    See :mod:`lightning_tx.functional.hscore`.
    """

    higher_is_better = True

    def __init__(self, num_features: int, num_classes: int, *, shrinkage: bool = False, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, gram=True, fourth_moments=shrinkage, **kwargs)
        self.shrinkage = shrinkage

    def compute(self) -> Tensor:
        return hscore_from_statistics(self.statistics(), shrinkage=self.shrinkage)


class GBC(ClassStatisticsMetric):
    """Gaussian Bhattacharyya coefficient (Pandy et al. 2022): <= 0, higher is better.

    States: per-class counts, sums and squared sums (O(C*D)). See
    :mod:`lightning_tx.functional.gbc`.
    """

    higher_is_better = True

    def __init__(self, num_features: int, num_classes: int, *, gaussian_type: str = "diagonal", **kwargs: Any) -> None:
        if gaussian_type not in ("diagonal", "spherical"):
            raise ValueError(f"`gaussian_type` must be 'diagonal' or 'spherical', got {gaussian_type!r}")
        super().__init__(num_features, num_classes, sq_sums=True, **kwargs)
        self.gaussian_type = gaussian_type

    def compute(self) -> Tensor:
        return gbc_from_statistics(self.statistics(), gaussian_type=self.gaussian_type)
