"""The scoring engine: the task's label space, frames of every layer, one frozen pass.

The callback, the ``rank`` subcommand and the benchmarks all score through this package;
none keeps its own loop, labels or masks.
"""

from lightning_tx.scoring.engine import Results, ScoringSession, best_layer, limited, score, score_module
from lightning_tx.scoring.ensemble import add_ensemble, add_layer_ensemble, rank_average
from lightning_tx.scoring.frame_labels import alignment_frame_labels, broadcast_frame_labels, uniform_frame_labels
from lightning_tx.scoring.frames import BatchFrames, EncoderFrames, FrameSource, ModuleFrames, module_frames
from lightning_tx.scoring.labels import FRAME_LABEL_SOURCES, TaskLabels
from lightning_tx.scoring.loaders import (
    ScoringSampler,
    process_rank_and_count,
    scoring_loader,
    scoring_loader_like,
    speech_loader,
)
from lightning_tx.scoring.order import order_key
from lightning_tx.scoring.scorer import LayerScorer, expand_estimators

__all__ = [
    "FRAME_LABEL_SOURCES",
    "BatchFrames",
    "EncoderFrames",
    "FrameSource",
    "LayerScorer",
    "ModuleFrames",
    "Results",
    "ScoringSampler",
    "ScoringSession",
    "TaskLabels",
    "add_ensemble",
    "add_layer_ensemble",
    "alignment_frame_labels",
    "best_layer",
    "expand_estimators",
    "broadcast_frame_labels",
    "limited",
    "module_frames",
    "order_key",
    "process_rank_and_count",
    "rank_average",
    "score",
    "score_module",
    "scoring_loader",
    "scoring_loader_like",
    "speech_loader",
    "uniform_frame_labels",
]
