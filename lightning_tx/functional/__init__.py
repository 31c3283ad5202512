"""Pure tensor functions: the math of every estimator (float64, any device, no Lightning)."""

from lightning_tx.functional.class_statistics import ClassStatistics, class_statistics
from lightning_tx.functional.frames import (
    Segments,
    flatten_frames,
    frame_mask,
    frame_targets,
    lengths_to_mask,
    segment_means,
    selected_frames,
    tih_frames,
)
from lightning_tx.functional.gbc import gbc, gbc_from_statistics
from lightning_tx.functional.hscore import hscore, hscore_from_statistics, ledoit_wolf_shrinkage
from lightning_tx.functional.knn import knn_accuracy
from lightning_tx.functional.logistic_probe import logistic_probe_accuracy
from lightning_tx.functional.logme import (
    logme,
    logme_from_class_statistics,
    logme_from_statistics,
    logme_standardized_from_class_statistics,
    logme_statistics,
    standardized_class_statistics,
)
from lightning_tx.functional.probe import ridge_probe_accuracy
from lightning_tx.functional.sliced_wasserstein import (
    class_sliced_wasserstein,
    grouped_sliced_wasserstein,
    random_projections,
    sliced_wasserstein,
    sliced_wasserstein_from_projections,
    wasserstein_1d,
)
from lightning_tx.functional.validation import UndefinedScore
from lightning_tx.functional.voice_probe import evidence_ridge_penalty, voice_probe_accuracy

__all__ = [
    "UndefinedScore",
    "ClassStatistics",
    "class_sliced_wasserstein",
    "grouped_sliced_wasserstein",
    "knn_accuracy",
    "logme_from_class_statistics",
    "logme_standardized_from_class_statistics",
    "Segments",
    "segment_means",
    "selected_frames",
    "standardized_class_statistics",
    "class_statistics",
    "flatten_frames",
    "frame_mask",
    "frame_targets",
    "gbc",
    "gbc_from_statistics",
    "hscore",
    "hscore_from_statistics",
    "lengths_to_mask",
    "ledoit_wolf_shrinkage",
    "logistic_probe_accuracy",
    "logme",
    "logme_from_statistics",
    "logme_statistics",
    "random_projections",
    "ridge_probe_accuracy",
    "voice_probe_accuracy",
    "evidence_ridge_penalty",
    "sliced_wasserstein",
    "sliced_wasserstein_from_projections",
    "tih_frames",
    "wasserstein_1d",
]
