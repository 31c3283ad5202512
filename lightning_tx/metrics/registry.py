"""Estimators by name, so configs and callbacks can list them as strings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from lightning_tx.functional.class_statistics import ClassStatistics
from lightning_tx.functional.gbc import gbc_from_statistics
from lightning_tx.functional.hscore import hscore_from_statistics
from lightning_tx.functional.logme import logme_from_class_statistics
from lightning_tx.metrics.base import TransferabilityMetric
from lightning_tx.metrics.class_separability import GBC, HScore
from lightning_tx.metrics.logme import LogME
from lightning_tx.metrics.sliced_wasserstein import SlicedWasserstein


@dataclass(frozen=True)
class Estimator:
    """One estimator: how to build its metric, and (for label-based estimators) how to
    compute it from shared per-class statistics.

    Attributes:
        name: the name configs use.
        build: ``(num_features, num_classes, **kwargs) -> metric``, a standalone metric.
        higher_is_better: the direction of its scores.
        needs_labels: scores frames with their class labels.
        needs_source: compares the task's frames with source-domain frames.
        from_statistics: ``(ClassStatistics, **kwargs) -> scalar``, the score from the sums of
            a :class:`~lightning_tx.metrics.ClassStatisticsMetric` (None: the estimator
            keeps its own states).
        statistics: which optional sums ``from_statistics`` reads: ``"gram"``, ``"sq_sums"``,
            ``"fourth_moments"`` (the keyword arguments of ``ClassStatisticsMetric``).
    """

    name: str
    build: Callable[..., TransferabilityMetric]
    higher_is_better: bool
    needs_labels: bool = True
    needs_source: bool = False
    from_statistics: Callable[..., Tensor] | None = None
    statistics: frozenset[str] = frozenset()


def _logme(stats: ClassStatistics, **kwargs: Any) -> Tensor:
    return logme_from_class_statistics(stats, **kwargs)


def _halpha(stats: ClassStatistics, **kwargs: Any) -> Tensor:
    return hscore_from_statistics(stats, shrinkage=True, **kwargs)


ESTIMATORS: dict[str, Estimator] = {
    "logme": Estimator(
        "logme",
        lambda d, c, **kw: LogME(d, c, **kw),
        True,
        from_statistics=_logme,
        statistics=frozenset({"gram"}),
    ),
    "hscore": Estimator(
        "hscore",
        lambda d, c, **kw: HScore(d, c, **kw),
        True,
        from_statistics=hscore_from_statistics,
        statistics=frozenset({"gram"}),
    ),
    "halpha": Estimator(
        "halpha",
        lambda d, c, **kw: HScore(d, c, shrinkage=True, **kw),
        True,
        from_statistics=_halpha,
        statistics=frozenset({"gram", "fourth_moments"}),
    ),
    "gbc": Estimator(
        "gbc",
        lambda d, c, **kw: GBC(d, c, **kw),
        True,
        from_statistics=gbc_from_statistics,
        statistics=frozenset({"sq_sums"}),
    ),
    "sliced_wasserstein": Estimator(
        "sliced_wasserstein",
        lambda d, c, **kw: SlicedWasserstein(d, **kw),
        False,
        needs_labels=False,
        needs_source=True,
    ),
}
ESTIMATORS["swd"] = ESTIMATORS["sliced_wasserstein"]


def get_estimator(name: str) -> Estimator:
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose from {sorted(ESTIMATORS)}")
    return ESTIMATORS[name]


def build_metric(name: str, num_features: int, num_classes: int | None, **kwargs: Any) -> TransferabilityMetric:
    """The metric of estimator ``name`` for features of width ``num_features``."""
    return get_estimator(name).build(num_features, num_classes, **kwargs)
