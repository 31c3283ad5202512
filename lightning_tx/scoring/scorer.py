"""LayerScorer: every estimator for every layer of one encoder, fed one batch at a time."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_tx.functional.linalg import as_float64
from lightning_tx.metrics.class_statistics import ClassStatisticsMetric
from lightning_tx.metrics.registry import build_metric, get_estimator


class LayerScorer:
    """Streams the frames of every layer into the states of every estimator.

    Label-based estimators (LogME, H-score, H_alpha, GBC) share one
    :class:`~lightning_tx.metrics.ClassStatisticsMetric` per layer holding the union of
    the sums they read, so the ``[D, D]`` Gram matrix is accumulated once per layer; the
    others (sliced Wasserstein) keep one metric per layer. Metrics live here, never in a
    LightningModule, so precision plugins never cast their float64 states.
    :meth:`compute` is collective under DDP: every rank must call it, with or without data.

    Args:
        layer_dims: the width of each layer of the encoder.
        estimators: estimator names (see :data:`lightning_tx.metrics.ESTIMATORS`).
        num_classes: the task's number of classes (for label-based estimators).
        layers: the layers to score (negative indices count from the end; default: all).
        metric_kwargs: per-estimator keyword arguments, e.g.
            ``{"gbc": {"gaussian_type": "spherical"}, "sliced_wasserstein": {"max_samples": 5000}}``.
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
        self.estimators = list(dict.fromkeys(get_estimator(name).name for name in estimators))
        self.metric_kwargs = metric_kwargs or {}
        shared = [get_estimator(n) for n in self.estimators if get_estimator(n).from_statistics is not None]
        self.shared = [e.name for e in shared]
        self.separate = [n for n in self.estimators if n not in self.shared]
        if any(get_estimator(n).needs_labels for n in self.estimators) and num_classes is None:
            raise ValueError(f"estimators {self.estimators} score labels: give the task's `num_classes`")
        needed = set().union(*(e.statistics for e in shared)) if shared else set()
        flags = {"gram": "gram" in needed, "sq_sums": "sq_sums" in needed, "fourth_moments": "fourth_moments" in needed}
        self.statistics = {
            layer: ClassStatisticsMetric(layer_dims[layer], num_classes, **flags) for layer in self.layers if shared
        }
        self.metrics = {
            (layer, name): build_metric(name, layer_dims[layer], num_classes, **self.metric_kwargs.get(name, {}))
            for layer in self.layers
            for name in self.separate
        }
        self.needs_source = any(get_estimator(n).needs_source for n in self.estimators)

    def to(self, device: torch.device | str) -> LayerScorer:
        for metric in (*self.statistics.values(), *self.metrics.values()):
            metric.to(device)
        return self

    def update(self, hidden_states: Sequence[Tensor], mask: Tensor, labels: Tensor | None) -> None:
        """Add one batch of the task's frames.

        Args:
            hidden_states: one ``[B, T, D_l]`` tensor per layer of the encoder.
            mask: ``[B, T]`` bool, True for frames that are scored (valid and labelled).
            labels: ``[B, T]`` class ids (None when no estimator needs labels).
        """
        for layer in self.layers:
            hidden = hidden_states[layer]
            valid = mask.to(hidden.device)
            frames = as_float64(hidden[valid])  # cast once, shared by the layer's estimators
            if layer in self.statistics:
                self.statistics[layer].update(frames, labels.to(hidden.device)[valid])
            for name in self.separate:
                metric = self.metrics[(layer, name)]
                if get_estimator(name).needs_source:
                    metric.update(frames, domain="target")
                else:
                    metric.update(frames, labels.to(hidden.device)[valid])

    def update_source(self, hidden_states: Sequence[Tensor], mask: Tensor) -> None:
        """Add one batch of source-domain frames (for the estimators that compare domains)."""
        sources = [n for n in self.separate if get_estimator(n).needs_source]
        for layer in self.layers if sources else []:
            hidden = hidden_states[layer]
            frames = as_float64(hidden[mask.to(hidden.device)])
            for name in sources:
                self.metrics[(layer, name)].update(frames, domain="source")

    def compute(self) -> dict[str, dict[int, float]]:
        """``{estimator: {layer: score}}`` (collective)."""
        results: dict[str, dict[int, float]] = {name: {} for name in self.estimators}
        for layer, metric in self.statistics.items():
            stats = metric.compute()
            for name in self.shared:
                value = get_estimator(name).from_statistics(stats, **self.metric_kwargs.get(name, {}))
                results[name][layer] = float(value)
        for (layer, name), metric in self.metrics.items():
            results[name][layer] = float(metric.compute())
        return {name: dict(sorted(scores.items())) for name, scores in results.items()}

    def reset(self) -> None:
        for metric in (*self.statistics.values(), *self.metrics.values()):
            metric.reset()
