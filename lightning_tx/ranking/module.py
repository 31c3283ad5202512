"""RankingModule: the LightningModule the ``rank`` subcommand validates, once per candidate."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

from lightning_tx.data.frame_labels import FRAME_LABEL_SOURCES, CTCForcedAligner
from lightning_tx.encoders.base import FrozenEncoder
from lightning_tx.metrics.registry import get_estimator
from lightning_tx.ranking.scoring import LayerScorer, batch_labels


@dataclass
class Candidate:
    """An encoder to score, and which of its layers (default: all).

    Attributes:
        encoder: any :class:`~lightning_tx.encoders.FrozenEncoder` (``class_path``/``init_args`` in YAML).
        name: shown in rankings (default: derived from the encoder).
        layers: layer indices to score (negative counts from the end).
    """

    encoder: FrozenEncoder
    name: str | None = None
    layers: list[int] | None = field(default=None)

    def display_name(self) -> str:
        if self.name:
            return self.name
        init = getattr(self.encoder, "init_args", {}) or {}
        detail = init.get("name_or_path") or init.get("state_dict") or init.get("builder")
        base = type(self.encoder).__name__
        return f"{base}({str(detail).rsplit('/', 1)[-1]})" if detail else base


class RankingModule(L.LightningModule):
    """Scores candidates' layers with transferability estimators in frozen passes.

    The ``rank`` subcommand (``TxTrainer.rank``) runs ``Trainer.validate`` once per candidate
    on the task's data (sharded over ranks under DDP; metric states are summed across
    ranks), with a second dataloader of source-domain audio when an OT estimator is asked for.

    Args:
        candidates: the encoders (and layers) to score.
        estimators: estimator names; the first one orders the ranking.
        frame_labels: where frame labels come from: ``"utterance"``, ``"alignment"``, ``"ctc"``
            or ``"uniform"`` (see :func:`lightning_tx.data.batch_frame_labels`).
        exclude_labels: alignment labels whose frames are left out (e.g. ``["sil"]``).
        ctc_aligner: a Hugging Face ``*ForCTC`` checkpoint for ``frame_labels="ctc"``.
        metric_kwargs: per-estimator keyword arguments.
    """

    def __init__(
        self,
        candidates: list[Candidate],
        estimators: list[str] | None = None,
        frame_labels: str = "utterance",
        exclude_labels: list[str] | None = None,
        ctc_aligner: str | None = None,
        metric_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        super().__init__()
        if not candidates:
            raise ValueError("give at least one candidate encoder")
        if frame_labels not in FRAME_LABEL_SOURCES:
            raise ValueError(f"`frame_labels` must be one of {FRAME_LABEL_SOURCES}, got {frame_labels!r}")
        if frame_labels == "ctc" and not ctc_aligner:
            raise ValueError("frame_labels='ctc' needs `ctc_aligner`: a Hugging Face *ForCTC checkpoint")
        self.estimators = [get_estimator(n).name for n in (estimators or ["logme"])]
        # A plain list: candidates are moved to the device one at a time, never all at once.
        self.candidates = list(candidates)
        self.frame_labels, self.exclude_labels = frame_labels, list(exclude_labels or [])
        self.ctc_aligner_path, self.metric_kwargs = ctc_aligner, metric_kwargs or {}
        self.needs_source = any(get_estimator(n).needs_source for n in self.estimators)
        self.active: int | None = None
        self.vocabulary: dict[str, int] | None = None
        self.num_classes: int | None = None
        self._aligner: CTCForcedAligner | None = None
        self._scorer: LayerScorer | None = None
        self.results: dict[str, dict[int, float]] | None = None
        self.seconds = 0.0

    def prepare_labels(self, num_classes: int, vocabulary: dict[str, int] | None) -> None:
        """The task's classes: utterance classes, or alignment / CTC token labels."""
        self.num_classes, self.vocabulary = num_classes, vocabulary

    def aligner(self) -> CTCForcedAligner:
        """The CTC aligner of ``frame_labels="ctc"``, loaded once (on this module's device)."""
        if self._aligner is None:
            self._aligner = CTCForcedAligner.from_pretrained(self.ctc_aligner_path, device=self.device)
        return self._aligner

    @property
    def encoder(self) -> FrozenEncoder:
        if self.active is None:
            raise RuntimeError("no active candidate: set `active` before validating")
        return self.candidates[self.active].encoder

    def on_validation_start(self) -> None:
        candidate = self.candidates[self.active]
        candidate.encoder.to(self.device)
        self._scorer = LayerScorer(
            candidate.encoder.layer_dims,
            self.estimators,
            self.num_classes,
            layers=candidate.layers,
            metric_kwargs=self.metric_kwargs,
        ).to(self.device)
        self._started = time.perf_counter()

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        encoder = self.encoder
        output = encoder(batch["waveforms"], batch["lengths"])
        if dataloader_idx == 1:
            self._scorer.update_source(output)
            return
        labels, mask = batch_labels(
            batch,
            output,
            encoder.frame_rate,
            source=self.frame_labels,
            vocabulary=self.vocabulary,
            exclude=self.exclude_labels,
            aligner=self._aligner,
        )
        self._scorer.update(output, labels, mask)

    def on_validation_epoch_end(self) -> None:
        self.results = self._scorer.compute()  # collective: every rank computes
        self.seconds = time.perf_counter() - self._started
        self._scorer = None
        self.encoder.to("cpu")

    def configure_optimizers(self) -> None:  # scoring never trains
        return None

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor):
        return self.encoder(waveforms, lengths)
