"""torchmetrics metrics, thin over :mod:`lightning_tx.functional` (no Lightning here)."""

from lightning_tx.metrics.base import ClassificationTransferabilityMetric, TransferabilityMetric
from lightning_tx.metrics.class_separability import GBC, HScore
from lightning_tx.metrics.class_statistics import ClassStatisticsMetric
from lightning_tx.metrics.logme import LogME
from lightning_tx.metrics.registry import ESTIMATORS, Estimator, build_metric, get_estimator
from lightning_tx.metrics.sample import ClassSlicedWasserstein, KNNAccuracy, LabelledSample, LabelledSampleMetric
from lightning_tx.metrics.sliced_wasserstein import SlicedWasserstein

__all__ = [
    "ESTIMATORS",
    "ClassSlicedWasserstein",
    "KNNAccuracy",
    "LabelledSample",
    "LabelledSampleMetric",
    "ClassStatisticsMetric",
    "ClassificationTransferabilityMetric",
    "Estimator",
    "GBC",
    "HScore",
    "LogME",
    "SlicedWasserstein",
    "TransferabilityMetric",
    "build_metric",
    "get_estimator",
]
