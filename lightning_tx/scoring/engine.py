"""The frozen pass: one candidate's batches (the task's, and source-domain audio when an
estimator compares domains) through its frames into every (layer, estimator) score."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from lightning_tx.metrics.registry import get_estimator
from lightning_tx.scoring.frames import EncoderFrames, FrameSource, module_frames
from lightning_tx.scoring.labels import TaskLabels
from lightning_tx.scoring.loaders import ScoringSampler, scoring_loader_like, speech_loader
from lightning_tx.scoring.order import order_key
from lightning_tx.scoring.scorer import LayerScorer, expand_estimators

Results = dict[str, dict[int, float]]


class ScoringSession:
    """One candidate's scoring: feed it batches with :meth:`update`, then :meth:`compute`.

    Used as it is by :func:`score` (the loop of the callback and the benchmark) and from a
    ``validation_step`` by :class:`~lightning_tx.ranking.RankingModule` (the ``rank``
    subcommand, where Lightning's loop runs the batches).

    Args:
        frames: how a batch becomes frames (:class:`~lightning_tx.scoring.EncoderFrames`,
            :class:`~lightning_tx.scoring.ModuleFrames`).
        estimators: estimator names.
        num_classes: the task's number of classes.
        layers: the layers to score (default: all).
        metric_kwargs: per-estimator keyword arguments.
        device: where the metric states live (default: where the first frames are; a
            process without batches needs it under NCCL).
    """

    def __init__(
        self,
        frames: FrameSource,
        estimators: Sequence[str],
        num_classes: int | None,
        *,
        layers: Sequence[int] | None = None,
        metric_kwargs: dict[str, dict[str, Any]] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.frames = frames
        self.estimators = expand_estimators(estimators)
        self.num_classes, self.layers, self.metric_kwargs = num_classes, layers, metric_kwargs
        self.needs_labels = any(get_estimator(n).needs_labels for n in self.estimators)
        self.needs_source = any(get_estimator(n).needs_source for n in self.estimators)
        self.device = device
        self.scorer: LayerScorer | None = None
        if frames.layer_dims is not None:
            self._build(frames.layer_dims)

    def _build(self, layer_dims: Sequence[int]) -> LayerScorer:
        self.scorer = LayerScorer(
            layer_dims, self.estimators, self.num_classes, layers=self.layers, metric_kwargs=self.metric_kwargs
        )
        if self.device is not None:
            self.scorer.to(self.device)
        return self.scorer

    def update(self, batch: Any, domain: str = "target") -> None:
        """Add one batch of the task's audio (``"target"``) or of source-domain audio (``"source"``)."""
        if domain not in ("target", "source"):
            raise ValueError(f"`domain` must be 'target' or 'source', got {domain!r}")
        if domain == "source" and not self.needs_source:
            return
        frames = self.frames(batch, labelled=domain == "target" and self.needs_labels)
        if self.scorer is None:
            self._build([h.shape[-1] for h in frames.hidden_states])
        if self.device is None:
            self.device = frames.hidden_states[0].device
            self.scorer.to(self.device)
        if domain == "target":
            self.scorer.update(frames.hidden_states, frames.mask, frames.labels, frames.speakers)
        else:
            self.scorer.update_source(frames.hidden_states, frames.mask)

    def compute(self) -> Results:
        """``{estimator: {layer: score}}``. Collective under DDP: every process calls it,
        also one that saw no batch."""
        if self.frames.layer_dims is None and dist.is_available() and dist.is_initialized():
            # Frames whose widths show only in a batch: a process that got none learns them
            # from one that did, so that every process holds (and syncs) the same states.
            found: list[list[int] | None] = [None] * dist.get_world_size()
            dist.all_gather_object(found, None if self.scorer is None else self.scorer.layer_dims)
            dims = next((d for d in found if d is not None), None)
            if self.scorer is None and dims is not None:
                self._build(dims)
        if self.scorer is None:
            raise ValueError("no batches were scored: the data to score is empty")
        return self.scorer.compute()

    @property
    def reasons(self) -> dict[str, dict[int, str]]:
        """Why some scores are NaN (after :meth:`compute`): ``{estimator: {layer: reason}}``."""
        return getattr(self.scorer, "reasons", {})


def limited(batches: Iterable, limit_batches: int | float | None) -> Iterable:
    """``batches`` capped at ``limit_batches``, unless a :class:`ScoringSampler` already chose them."""
    if limit_batches is None or isinstance(getattr(batches, "sampler", None), ScoringSampler):
        return batches
    if isinstance(limit_batches, float):
        total = len(batches) if hasattr(batches, "__len__") else None
        if total is None:
            raise ValueError("a fractional `limit_batches` needs a loader with a length")
        return itertools.islice(batches, max(1, int(total * limit_batches)))
    return itertools.islice(batches, limit_batches)


def _length(batches: Iterable) -> int | None:
    try:
        return len(batches)
    except TypeError:
        return None


def score(
    session: ScoringSession,
    target: Iterable,
    source: Iterable | None = None,
    *,
    limit_batches: int | float | None = None,
    to_device: Callable[[Any], Any] | None = None,
    progress: bool = False,
    description: str = "scoring",
) -> Results:
    """The frozen pass: every target batch (and source batch, when an estimator needs them)
    into ``session``, under ``torch.inference_mode()``; returns ``session.compute()``.

    Collective under DDP (every process calls it). ``to_device`` moves a batch where the
    frames are computed (e.g. ``trainer.strategy.batch_to_device``); ``progress`` shows a
    progress bar; Ctrl-C interrupts it.
    """
    if session.needs_source and source is None:
        names = [n for n in session.estimators if get_estimator(n).needs_source]
        raise ValueError(
            f"{names} compare the task's frames with source-domain frames: give source-domain audio "
            "(e.g. `source=` a manifest of audio like the encoder's training data), or drop them"
        )
    passes = [("target", limited(target, limit_batches))]
    if session.needs_source:
        passes.append(("source", limited(source, limit_batches)))
    total = sum(n for n in (_length(b) for _, b in passes) if n is not None) or None
    bar = tqdm(total=total, desc=description, disable=not progress, leave=False, dynamic_ncols=True)
    try:
        with torch.inference_mode():
            for domain, batches in passes:
                for batch in batches:
                    session.update(to_device(batch) if to_device is not None else batch, domain)
                    bar.update(1)
    finally:
        bar.close()
    return session.compute()


def score_module(
    module: Any,
    loader: Any,
    estimators: Sequence[str],
    labels: TaskLabels,
    *,
    encoder: Any = None,
    source: Any = None,
    layers: Sequence[int] | None = None,
    metric_kwargs: dict[str, dict[str, Any]] | None = None,
    limit_batches: int | float | None = None,
    seed: int = 0,
    to_device: Callable[[Any], Any] | None = None,
    progress: bool = False,
) -> Results:
    """Score a LightningModule's frames (see :func:`~lightning_tx.scoring.module_frames`) on
    ``loader``'s dataset, each item once across processes, with the module in eval mode
    (its mode restored after); ``source`` (a manifest path, datamodule or loader, read at the
    encoder's rate) feeds the estimators that compare domains. Collective under DDP."""
    frames = module_frames(module, encoder, labels)
    device = getattr(module, "device", None)
    if isinstance(frames, EncoderFrames) and hasattr(frames.encoder, "to") and device is not None:
        frames.encoder.to(device)
    session = ScoringSession(
        frames, estimators, labels.num_classes, layers=layers, metric_kwargs=metric_kwargs, device=device
    )
    target = scoring_loader_like(loader, limit_batches=limit_batches, seed=seed)
    source_batches = None
    if session.needs_source and source is not None:
        rate = getattr(getattr(frames, "encoder", None), "sample_rate", None) or 16_000
        batch_size = getattr(target.sampler, "batch_size", None) or 16
        source_batches = speech_loader(
            source, sample_rate=rate, batch_size=batch_size, limit_batches=limit_batches, seed=seed
        )
    was_training = module.training
    module.eval()
    try:
        return score(
            session,
            target,
            source_batches,
            limit_batches=limit_batches,
            to_device=to_device,
            progress=progress,
            description="transferability",
        )
    finally:
        module.train(was_training)


def best_layer(results: Results, estimators: str | Sequence[str]) -> int:
    """The best layer by the first of ``estimators`` (its direction respected; NaN never
    wins), a tie broken by the next of them present in ``results`` (:func:`order_key`)."""
    estimators = [estimators] if isinstance(estimators, str) else list(estimators)
    primary = results[estimators[0]]
    finite = [k for k, v in primary.items() if math.isfinite(v)]
    if not finite:
        raise ValueError(f"no layer has a finite {estimators[0]} score: {primary}")
    present = [e for e in estimators if e in results]
    return min(finite, key=lambda k: order_key({e: results[e].get(k, math.nan) for e in present}, present))
