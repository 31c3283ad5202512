"""Estimators by name, so configs and callbacks can list them as strings.

Label-based estimators are functions of an accumulator that several of them share (per
layer, in the scoring engine): :class:`~lightning_tx.metrics.ClassStatisticsMetric` sums
(LogME, H-score, H_alpha, GBC) or a :class:`~lightning_tx.metrics.LabelledSampleMetric`
sample (k-NN, class SWD, the ridge probes). Each has a ``pooled_`` twin scored on the means of labelled
segments instead of frames (one vector per utterance for utterance labels, per token for
frame labels): what a head on pooled features sees. TIH-SWD compares source-domain and
task frames: all frames (``sliced_wasserstein``), per time step or per target utterance
(the medians ``sliced_wasserstein_time_steps``, ``sliced_wasserstein_utterances``).
``ensemble`` is the rank average of other estimators over the candidates being ranked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from torch import Tensor

from lightning_tx.functional.class_statistics import ClassStatistics
from lightning_tx.functional.gbc import gbc_from_statistics
from lightning_tx.functional.hscore import hscore_from_statistics
from lightning_tx.functional.logme import logme_from_class_statistics, logme_standardized_from_class_statistics
from lightning_tx.metrics.base import TransferabilityMetric
from lightning_tx.metrics.class_separability import GBC, HScore
from lightning_tx.metrics.logme import LogME
from lightning_tx.metrics.sample import (
    ClassSlicedWasserstein,
    KNNAccuracy,
    LabelledSample,
    class_swd_from_sample,
    knn_from_sample,
    logistic_probe_from_sample,
    probe_from_sample,
    voice_probe_from_sample,
)
from lightning_tx.metrics.sliced_wasserstein import SlicedWasserstein

STATISTICS, SAMPLE, PROJECTIONS = "statistics", "sample", "projections"


@dataclass(frozen=True)
class Estimator:
    """One estimator: how to build its standalone metric, and how the scoring engine
    computes it from a shared accumulator.

    Attributes:
        name: the name configs use.
        build: ``(num_features, num_classes, **kwargs) -> metric``, a standalone metric (None
            for estimators only the engine computes).
        higher_is_better: the direction of its scores.
        needs_labels: scores frames with their class labels.
        needs_source: compares the task's frames with source-domain frames.
        shared: the accumulator it is computed from: ``"statistics"`` (class sums),
            ``"sample"`` (a labelled sample) or ``"projections"`` (a
            :class:`~lightning_tx.metrics.SlicedWasserstein`'s samples of both domains);
            None: it keeps its own metric.
        from_shared: ``(accumulated, num_classes=C, **kwargs) -> scalar``.
        statistics: which optional sums it reads (``ClassStatisticsMetric`` flags).
        pooled: scored on segment means rather than frames.
        members: for ``ensemble``, the estimators whose ranks it averages.
    """

    name: str
    build: Callable[..., TransferabilityMetric] | None
    higher_is_better: bool
    needs_labels: bool = True
    needs_source: bool = False
    shared: str | None = None
    from_shared: Callable[..., Tensor] | None = None
    statistics: frozenset[str] = frozenset()
    pooled: bool = False
    members: tuple[str, ...] = ()


def _statistics_estimator(
    name: str, build: Callable[..., TransferabilityMetric], compute: Callable[..., Tensor], statistics: set[str]
) -> Estimator:
    def from_shared(stats: ClassStatistics, num_classes: int | None = None, **kwargs: Any) -> Tensor:
        return compute(stats, **kwargs)

    return Estimator(name, build, True, shared=STATISTICS, from_shared=from_shared, statistics=frozenset(statistics))


def _sample_estimator(name: str, build: Callable[..., TransferabilityMetric] | None, compute: Callable[..., Tensor]):
    def from_shared(sample: LabelledSample, num_classes: int, **kwargs: Any) -> Tensor:
        return compute(sample, num_classes=num_classes, **kwargs)

    return Estimator(name, build, True, shared=SAMPLE, from_shared=from_shared)


# The ensemble: one estimator of each family (Bayesian evidence, discriminant ratio,
# neighbours), each the family's best on average in docs/benchmark.md.
ENSEMBLE_MEMBERS = ("pooled_logme", "pooled_halpha", "knn")

_BASE = [
    _statistics_estimator("logme", lambda d, c, **kw: LogME(d, c, **kw), logme_from_class_statistics, {"gram"}),
    _statistics_estimator(
        "logme_standardized",
        lambda d, c, **kw: LogME(d, c, standardize=True, **kw),
        logme_standardized_from_class_statistics,
        {"gram"},
    ),
    _statistics_estimator("hscore", lambda d, c, **kw: HScore(d, c, **kw), hscore_from_statistics, {"gram"}),
    _statistics_estimator(
        "halpha",
        lambda d, c, **kw: HScore(d, c, shrinkage=True, **kw),
        lambda stats, **kw: hscore_from_statistics(stats, shrinkage=True, **kw),
        {"gram", "fourth_moments"},
    ),
    _statistics_estimator("gbc", lambda d, c, **kw: GBC(d, c, **kw), gbc_from_statistics, {"sq_sums"}),
    _sample_estimator("knn", lambda d, c, **kw: KNNAccuracy(d, c, **kw), knn_from_sample),
    _sample_estimator("class_swd", lambda d, c, **kw: ClassSlicedWasserstein(d, c, **kw), class_swd_from_sample),
]

ESTIMATORS: dict[str, Estimator] = {e.name: e for e in _BASE}
for _estimator in _BASE:
    _name = f"pooled_{_estimator.name}"
    ESTIMATORS[_name] = replace(_estimator, name=_name, build=None, pooled=True)
# The probe only on pooled vectors: left out, a frame's near-duplicate neighbours of the same
# utterance would stay in the fit.
ESTIMATORS["pooled_probe"] = replace(_sample_estimator("pooled_probe", None, probe_from_sample), pooled=True)
# ... and held out a speaker at a time, as a test set of unseen voices holds them out.
ESTIMATORS["pooled_voice_probe"] = replace(
    _sample_estimator("pooled_voice_probe", None, voice_probe_from_sample), pooled=True
)
# ... and the confirming head's own model, a softmax classifier, fitted in every fold.
ESTIMATORS["pooled_logistic_probe"] = replace(
    _sample_estimator("pooled_logistic_probe", None, logistic_probe_from_sample), pooled=True
)
for _reduction in ("frames", "time_steps", "utterances"):
    _name = "sliced_wasserstein" if _reduction == "frames" else f"sliced_wasserstein_{_reduction}"
    ESTIMATORS[_name] = Estimator(
        _name,
        lambda d, c, _r=_reduction, **kw: SlicedWasserstein(d, reduction=_r, **kw),
        False,
        needs_labels=False,
        needs_source=True,
        shared=PROJECTIONS,
        from_shared=lambda metric, num_classes=None, _r=_reduction, **kw: metric.distance(_r),
    )
ESTIMATORS["swd"] = ESTIMATORS["sliced_wasserstein"]
ESTIMATORS["ensemble"] = Estimator("ensemble", None, True, needs_labels=True, members=ENSEMBLE_MEMBERS)


def get_estimator(name: str) -> Estimator:
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose from {sorted(ESTIMATORS)}")
    return ESTIMATORS[name]


def build_metric(name: str, num_features: int, num_classes: int | None, **kwargs: Any) -> TransferabilityMetric:
    """The standalone metric of estimator ``name`` for features of width ``num_features``."""
    estimator = get_estimator(name)
    if estimator.build is None:
        raise ValueError(
            f"{name!r} is computed by the scoring engine (lightning_tx.scoring.LayerScorer), not as a "
            "standalone metric" + ("; pool segments with functional.segment_means" if estimator.pooled else "")
        )
    return estimator.build(num_features, num_classes, **kwargs)
