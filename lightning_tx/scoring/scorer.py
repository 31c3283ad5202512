"""One frozen pass, every layer, every estimator: the scoring shared by the callback and
the ``rank`` subcommand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from lightning_tx.data.frame_labels import batch_frame_labels
from lightning_tx.encoders.base import EncoderOutput
from lightning_tx.functional._linalg import as_float64
from lightning_tx.functional.frames import lengths_to_mask
from lightning_tx.metrics.registry import build_metric, get_estimator


class LayerScorer:
    """Streams frames of every layer of one encoder into one metric per (layer, estimator).

    Metrics live here, not in a LightningModule (so precision plugins never cast their
    float64 states); :meth:`compute` is collective under DDP (every rank must call it).

    Args:
        layer_dims: width of each layer.
        estimators: estimator names (see :data:`lightning_tx.metrics.ESTIMATORS`).
        num_classes: the task's number of classes (frame label classes).
        layers: which layers to score (default: all).
        metric_kwargs: per-estimator keyword arguments, e.g. ``{"sliced_wasserstein": {"max_samples": 5000}}``.
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
        self.layers = list(range(len(layer_dims))) if layers is None else [int(k) for k in layers]
        for k in self.layers:
            if not -len(layer_dims) <= k < len(layer_dims):
                raise ValueError(f"layer {k} does not exist: the encoder has {len(layer_dims)} layers")
        self.layers = [k % len(layer_dims) for k in self.layers]
        self.estimators = [get_estimator(name).name for name in estimators]
        self.estimators = list(dict.fromkeys(self.estimators))
        metric_kwargs = metric_kwargs or {}
        self.metrics = {
            (layer, name): build_metric(name, layer_dims[layer], num_classes, **metric_kwargs.get(name, {}))
            for layer in self.layers
            for name in self.estimators
        }
        self.needs_source = any(get_estimator(n).needs_source for n in self.estimators)

    def to(self, device: torch.device | str) -> LayerScorer:
        for metric in self.metrics.values():
            metric.to(device)
        return self

    def update(self, output: EncoderOutput, labels: Tensor | None, mask: Tensor) -> None:
        """Add one batch of target-task frames: ``labels``/``mask`` are ``[B, T]``.

        Each layer's valid frames are selected and cast to float64 once, then shared by
        all of that layer's estimators.
        """
        for layer in self.layers:
            hidden = output.hidden_states[layer]
            valid = mask.to(hidden.device)
            frames = as_float64(hidden[valid])
            frame_labels = None if labels is None else labels.to(hidden.device)[valid]
            for name in self.estimators:
                if get_estimator(name).needs_source:
                    self.metrics[(layer, name)].update(frames, domain="target")
                else:
                    self.metrics[(layer, name)].update(frames, frame_labels)

    def update_source(self, output: EncoderOutput) -> None:
        """Add one batch of source-domain frames (for the OT estimators)."""
        sources = [n for n in self.estimators if get_estimator(n).needs_source]
        for layer in self.layers if sources else []:
            hidden = output.hidden_states[layer]
            frames = as_float64(hidden[lengths_to_mask(output.frame_lengths.to(hidden.device), hidden.shape[1])])
            for name in sources:
                self.metrics[(layer, name)].update(frames, domain="source")

    def compute(self) -> dict[str, dict[int, float]]:
        """``{estimator: {layer: score}}`` (collective)."""
        results: dict[str, dict[int, float]] = {name: {} for name in self.estimators}
        for (layer, name), metric in self.metrics.items():
            results[name][layer] = float(metric.compute())
        return results

    def reset(self) -> None:
        for metric in self.metrics.values():
            metric.reset()


def batch_labels(
    batch: dict,
    output: EncoderOutput,
    frame_rate: float,
    *,
    source: str = "utterance",
    vocabulary: dict[str, int] | None = None,
    exclude: Sequence[str] = (),
    aligner: Any = None,
) -> tuple[Tensor, Tensor]:
    """Frame labels and mask of a batch at this encoder's frame rate and padded length."""
    steps = output.hidden_states[0].shape[1]
    return batch_frame_labels(
        batch,
        output.frame_lengths,
        frame_rate,
        source=source,
        steps=steps,
        vocabulary=vocabulary,
        exclude=exclude,
        aligner=aligner,
    )
