"""LayerScorer: every estimator for every layer of one encoder, fed one batch at a time."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_tx.functional.frames import Segments, selected_frames
from lightning_tx.functional.linalg import as_float64
from lightning_tx.functional.validation import (
    UndefinedScore,
    check_class_labels,
    check_features,
    values_checked_by_caller,
)
from lightning_tx.metrics.class_statistics import ClassStatisticsMetric
from lightning_tx.metrics.registry import PROJECTIONS, SAMPLE, STATISTICS, Estimator, build_metric, get_estimator
from lightning_tx.metrics.sample import LabelledSampleMetric
from lightning_tx.metrics.sliced_wasserstein import SlicedWasserstein


def expand_estimators(names: Sequence[str]) -> list[str]:
    """Estimator names without duplicates (aliases resolved), ``ensemble`` followed by the
    members it needs."""
    expanded = []
    for name in names:
        estimator = get_estimator(name)
        expanded += [estimator.name, *estimator.members]
    return list(dict.fromkeys(expanded))


class LayerScorer:
    """Streams the frames of every layer into the states of every estimator.

    Estimators computed from the same accumulator share one per layer (and per level,
    frames or pooled segments): a :class:`~lightning_tx.metrics.ClassStatisticsMetric` holding
    the union of the sums LogME, H-score, H_alpha and GBC read (so the ``[D, D]`` Gram matrix
    is accumulated once per layer), a :class:`~lightning_tx.metrics.LabelledSampleMetric`
    for k-NN and class SWD, a :class:`~lightning_tx.metrics.SlicedWasserstein` whose samples of
    both domains serve the three TIH-SWD forms. Any other estimator keeps its own metric.
    Metrics live here, never in a LightningModule, so precision plugins never cast their
    float64 states. :meth:`compute` is collective under DDP: every rank must call it.
    ``ensemble`` is not computed here (it ranks candidates against each other): its members are.

    Args:
        layer_dims: the width of each layer of the encoder.
        estimators: estimator names (see :data:`lightning_tx.metrics.ESTIMATORS`).
        num_classes: the task's number of classes (for label-based estimators).
        layers: the layers to score (negative indices count from the end; default: all).
        metric_kwargs: per-estimator keyword arguments, e.g.
            ``{"gbc": {"gaussian_type": "spherical"}, "sliced_wasserstein": {"max_samples": 5000}}``;
            ``"sample"`` configures the shared labelled sample (``{"max_samples": 2000}``).
    """

    def __init__(
        self,
        layer_dims: Sequence[int],
        estimators: Sequence[str],
        num_classes: int | None,
        *,
        layers: Sequence[int] | None = None,
        metric_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if not estimators:
            raise ValueError("give at least one estimator")
        self.layer_dims = [int(d) for d in layer_dims]
        count = len(layer_dims)
        layers = list(range(count)) if layers is None else [int(k) for k in layers]
        for k in layers:
            if not -count <= k < count:
                raise ValueError(f"layer {k} does not exist: the encoder has {count} layers (0..{count - 1})")
        self.layers = list(dict.fromkeys(k % count for k in layers))
        self.estimators = [n for n in expand_estimators(estimators) if not get_estimator(n).members]
        self.num_classes = num_classes
        self.metric_kwargs = metric_kwargs or {}
        if any(get_estimator(n).needs_labels for n in self.estimators) and num_classes is None:
            raise ValueError(f"estimators {self.estimators} score labels: give the task's `num_classes`")
        by_accumulator: dict[tuple[str, bool], list[Estimator]] = {}
        self.separate = []
        for name in self.estimators:
            estimator = get_estimator(name)
            if estimator.shared is None:
                self.separate.append(name)
            else:
                by_accumulator.setdefault((estimator.shared, estimator.pooled), []).append(estimator)
        self.shared = {key: [e.name for e in members] for key, members in by_accumulator.items()}
        self.accumulators = {
            (kind, pooled, layer): self._accumulator(kind, layer_dims[layer], members)
            for (kind, pooled), members in by_accumulator.items()
            for layer in self.layers
        }
        self.metrics = {
            (layer, name): build_metric(name, layer_dims[layer], num_classes, **self.metric_kwargs.get(name, {}))
            for layer in self.layers
            for name in self.separate
        }
        self.needs_source = any(get_estimator(n).needs_source for n in self.estimators)
        self.needs_segments = any(pooled for (_, pooled) in self.shared)

    def _accumulator(self, kind: str, dim: int, members: list[Estimator]) -> Any:
        if kind == STATISTICS:
            needed = set().union(*(e.statistics for e in members))
            flags = {flag: flag in needed for flag in ("gram", "sq_sums", "fourth_moments")}
            return ClassStatisticsMetric(dim, self.num_classes, **flags)
        if kind == SAMPLE:
            return LabelledSampleMetric(dim, self.num_classes, **self.metric_kwargs.get("sample", {}))
        if kind == PROJECTIONS:  # one sample of projected frames serves every TIH-SWD form
            return SlicedWasserstein(dim, **self.metric_kwargs.get("sliced_wasserstein", {}))
        raise ValueError(f"unknown accumulator {kind!r}")

    def to(self, device: torch.device | str) -> LayerScorer:
        for metric in (*self.accumulators.values(), *self.metrics.values()):
            metric.to(device)
        return self

    def update(
        self, hidden_states: Sequence[Tensor], mask: Tensor, labels: Tensor | None, speakers: Tensor | None = None
    ) -> None:
        """Add one batch of the task's frames.

        Args:
            hidden_states: one ``[B, T, D_l]`` tensor per layer of the encoder.
            mask: ``[B, T]`` bool, True for frames that are scored (valid and labelled).
            labels: ``[B, T]`` class ids (None when no estimator needs labels).
            speakers: ``[B]`` int64 speaker ids, the same for a speaker in every batch (for
                the labelled sample; None: unknown).
        """
        device = hidden_states[self.layers[0]].device
        mask = mask.to(device)
        # One host synchronisation per batch: every layer reads its frames by these indices.
        index = selected_frames(mask)
        steps_per_row = mask.shape[1]
        rows, steps = index // steps_per_row, index % steps_per_row  # utterance and time step of each frame
        frame_labels = None if labels is None else labels.to(device).flatten().index_select(0, index)
        if frame_labels is not None and self.num_classes:
            check_class_labels(frame_labels, self.num_classes)  # once for the batch, not per layer and estimator
        segments = Segments.find(labels, mask, index) if self.needs_segments else None
        finite = []
        with values_checked_by_caller():
            for layer in self.layers:
                hidden = hidden_states[layer]
                frames = as_float64(hidden.flatten(0, 1).index_select(0, index))  # cast once, for every estimator
                finite.append(torch.isfinite(frames.sum()))
                levels = {False: (frames, frame_labels, rows)}
                if segments is not None:
                    levels[True] = (segments.means(hidden), segments.labels, segments.utterances)
                for (kind, pooled), _ in self.shared.items():
                    vectors, vector_labels, groups = levels[pooled]
                    accumulator = self.accumulators[(kind, pooled, layer)]
                    if kind == PROJECTIONS:
                        accumulator.update(frames, domain="target", steps=steps, utterances=rows)
                    elif kind == SAMPLE:
                        vector_speakers = None if speakers is None else speakers.to(device)[groups]
                        accumulator.update(vectors, vector_labels, groups=groups, speakers=vector_speakers)
                    else:
                        accumulator.update(vectors, vector_labels)
                for name in self.separate:
                    metric = self.metrics[(layer, name)]
                    if get_estimator(name).needs_source:
                        metric.update(frames, domain="target", steps=steps, utterances=rows)
                    else:
                        metric.update(frames, frame_labels)
        self._check_finite(hidden_states, index, finite)

    def _check_finite(self, hidden_states: Sequence[Tensor], index: Tensor, finite: list[Tensor]) -> None:
        """One synchronisation for every layer of a batch: raise, naming the layer, if its
        selected frames hold NaN or Inf (a non-finite sum may be an overflow: the layer's
        full scan decides)."""
        if not finite or bool(torch.stack(finite).all()):
            return
        for layer, layer_finite in zip(self.layers, finite, strict=True):
            if not bool(layer_finite):
                frames = as_float64(hidden_states[layer].flatten(0, 1).index_select(0, index))
                check_features(frames, name=f"layer {layer} frames")

    def update_source(self, hidden_states: Sequence[Tensor], mask: Tensor) -> None:
        """Add one batch of source-domain frames (for the estimators that compare domains)."""
        sources = [n for n in self.separate if get_estimator(n).needs_source]
        shared = [key for key in self.accumulators if key[0] == PROJECTIONS]
        if not (sources or shared):
            return
        mask = mask.to(hidden_states[self.layers[0]].device)
        index = selected_frames(mask)  # one host synchronisation per batch, as in update
        rows, steps = index // mask.shape[1], index % mask.shape[1]
        finite = []
        with values_checked_by_caller():
            for layer in self.layers:
                frames = as_float64(hidden_states[layer].flatten(0, 1).index_select(0, index))
                finite.append(torch.isfinite(frames.sum()))
                metrics = [self.metrics[(layer, name)] for name in sources]
                metrics += [self.accumulators[key] for key in shared if key[2] == layer]
                for metric in metrics:
                    metric.update(frames, domain="source", steps=steps, utterances=rows)
        self._check_finite(hidden_states, index, finite)

    def compute(self) -> dict[str, dict[int, float]]:
        """``{estimator: {layer: score}}`` (collective). A score the estimator cannot define on
        these frames (:class:`~lightning_tx.functional.UndefinedScore`) is NaN, with the reason
        in :attr:`reasons` (``{estimator: {layer: reason}}``)."""
        results: dict[str, dict[int, float]] = {name: {} for name in self.estimators}
        self.reasons: dict[str, dict[int, str]] = {}

        def record(name: str, layer: int, compute) -> None:
            try:
                results[name][layer] = float(compute())
            except UndefinedScore as error:
                results[name][layer] = math.nan
                self.reasons.setdefault(name, {})[layer] = str(error)

        for (kind, pooled, layer), accumulator in self.accumulators.items():
            # Sums and labelled samples are what compute() returns; the projections' samples
            # are read from the metric itself while its states are synced across processes.
            with accumulator.sync_context() if kind == PROJECTIONS else contextlib.nullcontext():
                accumulated = accumulator if kind == PROJECTIONS else accumulator.compute()
                for name in self.shared[(kind, pooled)]:
                    kwargs = {} if kind == PROJECTIONS else self.metric_kwargs.get(name, {})
                    compute = get_estimator(name).from_shared
                    record(
                        name,
                        layer,
                        lambda c=compute, a=accumulated, kw=kwargs: c(a, num_classes=self.num_classes, **kw),
                    )
        for (layer, name), metric in self.metrics.items():
            record(name, layer, metric.compute)
        return {name: dict(sorted(scores.items())) for name, scores in results.items()}

    def reset(self) -> None:
        for metric in (*self.accumulators.values(), *self.metrics.values()):
            metric.reset()
