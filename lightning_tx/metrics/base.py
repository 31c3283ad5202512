"""The base of every transferability metric: frames in (TIH), summable states out."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torchmetrics import Metric

from lightning_tx.functional.frames import tih_frames
from lightning_tx.functional.validation import check_class_labels, check_features


class TransferabilityMetric(Metric):
    """A ``torchmetrics.Metric`` that scores how well frozen features suit a task.

    ``update`` accepts either ``[N, D]`` frames or padded ``[B, T, D]`` encoder outputs
    with ``lengths`` (``[B]`` valid frames per utterance) or a ``[B, T]`` ``mask``; every
    valid frame is one sample (the temporal independence hypothesis) and utterance
    targets are broadcast to their frames. Subclasses keep float64 sufficient statistics
    whose size does not grow with the number of frames, so ``compute()`` (collective: every
    rank must call it) after a sum-reduce across ranks equals the single-process value.

    Args:
        num_features: ``D``, the width of the features (one layer's hidden size).
        kwargs: passed to ``torchmetrics.Metric`` (``dist_sync_on_step`` is not supported).
    """

    is_differentiable = False
    full_state_update = False
    higher_is_better = True

    def __init__(self, num_features: int, **kwargs: Any) -> None:
        if kwargs.get("dist_sync_on_step"):
            raise ValueError(f"{type(self).__name__} does not support dist_sync_on_step=True")
        super().__init__(**kwargs)
        if not isinstance(num_features, int) or num_features < 1:
            raise ValueError(f"`num_features` must be a positive int, got {num_features!r}")
        self.num_features = num_features

    def _apply(self, fn: Any, exclude_state: Any = "") -> Any:
        """Moves the states with the metric (``.to(device)``) but never changes their dtype:
        the sufficient statistics are float64 by design, also when the metric (or the model
        holding it) is cast to bfloat16 or float16."""

        def keep_dtype(tensor: Tensor) -> Tensor:
            moved = fn(tensor)
            return moved.to(tensor.dtype) if isinstance(moved, Tensor) and moved.dtype != tensor.dtype else moved

        return super()._apply(keep_dtype, exclude_state)

    def plot(self, val: Any = None, ax: Any = None) -> Any:
        """Plot a score, or a sequence of scores (e.g. one per layer, or per step), with
        torchmetrics' plotting helper (matplotlib); returns ``(figure, axes)``.

        Example:
            >>> import torch
            >>> from lightning_tx.metrics import LogME
            >>> metric = LogME(4, 2)
            >>> metric.update(torch.randn(50, 4), torch.arange(50) % 2)
            >>> figure, axes = metric.plot()
        """
        return self._plot(val, ax)

    def merge_state(self, incoming_state: Any) -> None:
        """Merge another metric's states (or a state dict) into this one; both must have been
        built alike (same class, width and classes)."""
        if isinstance(incoming_state, TransferabilityMetric):
            mine = (type(self).__name__, self.num_features, getattr(self, "num_classes", None))
            theirs = (
                type(incoming_state).__name__,
                incoming_state.num_features,
                getattr(incoming_state, "num_classes", None),
            )
            if mine != theirs:
                raise ValueError(
                    f"cannot merge {theirs[0]}(num_features={theirs[1]}, num_classes={theirs[2]}) into "
                    f"{mine[0]}(num_features={mine[1]}, num_classes={mine[2]}): build both metrics alike"
                )
        super().merge_state(incoming_state)

    def _frames(
        self,
        features: Tensor,
        targets: Tensor | None,
        lengths: Tensor | None,
        mask: Tensor | None,
    ) -> tuple[Tensor, Tensor | None]:
        """Valid frames ``[N, D]`` (and their targets) of one batch, validated."""
        if not isinstance(features, Tensor):
            raise TypeError(f"`features` must be a torch.Tensor, got {type(features).__name__}")
        if features.ndim not in (2, 3):
            raise ValueError(
                f"`features` must be [N, D] frames or [B, T, D] padded frames, got {tuple(features.shape)}"
            )
        if features.shape[-1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__} was built for num_features={self.num_features} but got "
                f"features of width {features.shape[-1]} (shape {tuple(features.shape)})"
            )
        frames, frame_targets = tih_frames(features, targets, lengths, mask)
        check_features(frames)
        return frames, frame_targets


class ClassificationTransferabilityMetric(TransferabilityMetric):
    """A transferability metric for class labels (utterance or frame level).

    Args:
        num_features: ``D``, the feature width.
        num_classes: the task's number of classes, fixed up front: a shard of data may not
            see every class, so it is never inferred from the labels seen.
    """

    def __init__(self, num_features: int, num_classes: int, **kwargs: Any) -> None:
        super().__init__(num_features, **kwargs)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"`num_classes` must be an int >= 2, got {num_classes!r}")
        self.num_classes = num_classes

    def _labelled_frames(
        self, features: Tensor, targets: Tensor, lengths: Tensor | None, mask: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        if not isinstance(targets, Tensor):
            raise TypeError(f"`targets` must be a torch.Tensor, got {type(targets).__name__}")
        frames, labels = self._frames(features, targets, lengths, mask)
        check_class_labels(labels, self.num_classes)
        return frames, labels.long()
