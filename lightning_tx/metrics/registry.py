"""Estimators by name, so configs and callbacks can list them as strings."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightning_tx.metrics.base import TransferabilityMetric
from lightning_tx.metrics.class_separability import GBC, HScore
from lightning_tx.metrics.logme import LogME
from lightning_tx.metrics.sliced_wasserstein import SlicedWasserstein


@dataclass(frozen=True)
class Estimator:
    """How to build one estimator's metric for a layer of width ``num_features``."""

    name: str
    build: Callable[..., TransferabilityMetric]
    higher_is_better: bool
    needs_labels: bool = True
    needs_source: bool = False


ESTIMATORS: dict[str, Estimator] = {
    "logme": Estimator("logme", lambda d, c, **kw: LogME(d, c, **kw), True),
    "hscore": Estimator("hscore", lambda d, c, **kw: HScore(d, c, **kw), True),
    "halpha": Estimator("halpha", lambda d, c, **kw: HScore(d, c, shrinkage=True, **kw), True),
    "gbc": Estimator("gbc", lambda d, c, **kw: GBC(d, c, **kw), True),
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
