"""RankingModule: the LightningModule the ``rank`` subcommand validates, once per candidate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch

from lightning_tx.encoders import encoder_from_spec
from lightning_tx.encoders.base import FrozenEncoder
from lightning_tx.metrics.registry import get_estimator
from lightning_tx.scoring import FRAME_LABEL_SOURCES, EncoderFrames, ScoringSession, TaskLabels, expand_estimators


@dataclass
class Candidate:
    """An encoder to score, and which of its layers (default: all).

    Attributes:
        encoder: any :class:`~lightning_tx.encoders.FrozenEncoder` (``class_path``/``init_args`` in YAML)
            or a spec string of :func:`~lightning_tx.encoders.encoder_from_spec` (``"hf:<id or path>"``,
            ``"fbank"``, ``"mfcc"``, ``"conformer:<state dict>"``, ``"torchaudio:<builder>[:<state dict>]"``).
        name: shown in rankings (default: derived from the encoder).
        layers: layer indices to score (negative counts from the end).
    """

    encoder: FrozenEncoder | str
    name: str | None = None
    layers: list[int] | None = field(default=None)

    def __post_init__(self) -> None:
        if isinstance(self.encoder, str):  # a spec string: "fbank", "hf:<id or path>", ...
            self.encoder = encoder_from_spec(self.encoder)

    def display_name(self) -> str:
        if self.name:
            return self.name
        init = getattr(self.encoder, "init_args", {}) or {}
        detail = init.get("name_or_path") or init.get("state_dict") or init.get("builder")
        base = type(self.encoder).__name__
        return f"{base}({str(detail).rsplit('/', 1)[-1]})" if detail else base


class RankingModule(L.LightningModule):
    """The candidates and how to score them; the ``rank`` subcommand (``TxTrainer.rank``)
    runs ``Trainer.validate`` once per candidate, each validation step feeding the scoring
    engine's :class:`~lightning_tx.scoring.ScoringSession` (second dataloader: source-domain
    audio). Under any strategy each utterance is scored exactly once (see
    :class:`~lightning_tx.scoring.ScoringSampler`) and the metric states are summed across
    processes, so the scores do not depend on the number of devices.

    Args:
        candidates: the encoders (and layers) to score.
        estimators: estimator names; the first one orders the ranking, each next one breaks
            the exact ties of those before it (:func:`~lightning_tx.scoring.order_key`).
        frame_labels: ``"utterance"``, ``"alignment"``, ``"ctc"`` or ``"uniform"`` (see
            :class:`~lightning_tx.scoring.TaskLabels`).
        exclude_labels: labels whose frames are left out (e.g. ``["sil"]``).
        ctc_aligner: a Hugging Face ``*ForCTC`` checkpoint for ``frame_labels="ctc"``.
        metric_kwargs: per-estimator keyword arguments.
        limit_batches: score a random subset of this many batches (int) or this fraction
            (float) of the data, the same subset for every candidate and any number of
            devices (default: everything).
        seed: seed of that subset.
    """

    def __init__(
        self,
        candidates: list[Candidate],
        estimators: list[str] | None = None,
        frame_labels: str = "utterance",
        exclude_labels: list[str] | None = None,
        ctc_aligner: str | None = None,
        metric_kwargs: dict[str, dict[str, Any]] | None = None,
        limit_batches: int | float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if not candidates:
            raise ValueError("give at least one candidate encoder")
        if frame_labels not in FRAME_LABEL_SOURCES:
            raise ValueError(f"`frame_labels` must be one of {FRAME_LABEL_SOURCES}, got {frame_labels!r}")
        if frame_labels == "ctc" and not ctc_aligner:
            raise ValueError("frame_labels='ctc' needs `ctc_aligner`: a Hugging Face *ForCTC checkpoint")
        self.estimators = expand_estimators(estimators or ["logme"])
        # A plain list: candidates are moved to the device one at a time, never all at once.
        self.candidates = list(candidates)
        self.frame_labels, self.exclude_labels = frame_labels, list(exclude_labels or [])
        self.ctc_aligner, self.metric_kwargs = ctc_aligner, metric_kwargs or {}
        self.limit_batches, self.seed = limit_batches, seed
        self.needs_source = any(get_estimator(n).needs_source for n in self.estimators)
        self.session: ScoringSession | None = None
        self._encoder: FrozenEncoder | None = None
        # Scoring passes deal whole batches to processes: one may get none (and must still
        # take part in the collective compute()).
        self.allow_zero_length_dataloader_with_multiple_devices = True

    def task_labels(self, datamodule: Any, device: torch.device | str = "cpu") -> TaskLabels:
        """The task's label space, from the datamodule's train split."""
        return TaskLabels.from_datamodule(
            datamodule, self.frame_labels, exclude=self.exclude_labels, ctc_aligner=self.ctc_aligner, device=device
        )

    def start(self, candidate: Candidate, labels: TaskLabels, device: torch.device | str) -> ScoringSession:
        """Begin scoring ``candidate``: the next validation pass feeds a new session."""
        self._encoder = candidate.encoder
        self.session = ScoringSession(
            EncoderFrames(candidate.encoder, labels),
            self.estimators,
            labels.num_classes,
            layers=candidate.layers,
            metric_kwargs=self.metric_kwargs,
            device=device,
        )
        return self.session

    def finish(self) -> None:
        """Release the candidate (its weights go back to the CPU)."""
        if self._encoder is not None:
            self._encoder.to("cpu")
        self.session, self._encoder = None, None

    def on_validation_start(self) -> None:
        if self.session is None:
            raise RuntimeError("RankingModule.start(candidate, ...) must come before a validation pass")
        self._encoder.to(self.device)

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        self.session.update(batch, "source" if dataloader_idx == 1 else "target")

    def configure_optimizers(self) -> None:  # scoring never trains
        return None

    def candidate_names(self) -> Sequence[str]:
        return [candidate.display_name() for candidate in self.candidates]
