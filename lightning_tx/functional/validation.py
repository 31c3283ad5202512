"""Input validation shared by the estimators: fail early, name what is wrong."""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
from torch import Tensor

_VALUES_CHECKED_BY_CALLER = contextvars.ContextVar("values_checked_by_caller", default=False)


@contextlib.contextmanager
def values_checked_by_caller() -> Iterator[None]:
    """Inside the block, :func:`check_features` and :func:`check_class_labels` check shapes
    and dtypes only, not values (finiteness, the range of class ids): for a caller that has
    checked the values of a whole batch once, such as the scoring engine, where a check per
    layer and estimator would each wait for the GPU."""
    token = _VALUES_CHECKED_BY_CALLER.set(True)
    try:
        yield
    finally:
        _VALUES_CHECKED_BY_CALLER.reset(token)


class UndefinedScore(ValueError):
    """An estimator has no meaningful value on these frames (fewer frames than feature
    dimensions, constant features, too few frames per class...); the message says why and
    what to do. Called directly, the estimators raise it; the scoring engine reports the
    score as NaN with this reason, and rankings put it last."""


def check_features(features: Tensor, name: str = "features", *, finite: bool = True) -> None:
    """Raise if ``features`` is not a ``[N, D]`` floating tensor, finite unless ``finite=False``
    (for callers that check a cheaper derived tensor instead)."""
    if not isinstance(features, Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(features).__name__}")
    if features.ndim != 2:
        raise ValueError(f"`{name}` must have shape [N, D], got {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"`{name}` must be a floating tensor, got dtype {features.dtype}")
    if not finite or _VALUES_CHECKED_BY_CALLER.get():
        return
    # Fast path: a finite sum means every entry is finite (NaN and Inf propagate); a
    # non-finite sum may be an overflow, so the full scan decides.
    if not torch.isfinite(features.sum()) and not torch.isfinite(features).all():
        bad = (~torch.isfinite(features)).any(dim=1).nonzero().flatten()
        raise ValueError(
            f"`{name}` contains NaN or Inf in {bad.numel()} of {features.shape[0]} frames (first at row {int(bad[0])})"
        )


def check_speaker_ids(speakers: Tensor, count: int) -> None:
    """Raise if ``speakers`` is not ``[count]`` integer ids >= 0 (the value check is the
    caller's inside :func:`values_checked_by_caller`)."""
    if speakers.shape != (count,) or speakers.is_floating_point() or speakers.dtype == torch.bool:
        raise ValueError(f"`speakers` must be [N]=[{count}] integer ids, got {tuple(speakers.shape)} {speakers.dtype}")
    if count and not _VALUES_CHECKED_BY_CALLER.get() and bool((speakers < 0).any()):
        raise ValueError("speaker ids must be >= 0 (see lightning_tx.scoring.frames.speaker_ids)")


def check_class_labels(labels: Tensor, num_classes: int, name: str = "targets") -> None:
    """Raise if ``labels`` is not a ``[N]`` integer tensor with values in ``[0, num_classes)``."""
    if labels.ndim != 1:
        raise ValueError(f"`{name}` must have shape [N] of class ids, got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise TypeError(f"`{name}` must hold integer class ids, got dtype {labels.dtype}")
    if labels.numel() == 0 or _VALUES_CHECKED_BY_CALLER.get():
        return
    low, high = torch.stack(torch.aminmax(labels)).tolist()  # one synchronisation for both
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"`{name}` holds class ids in [{low}, {high}] but num_classes={num_classes}: "
            f"every id must lie in [0, {num_classes - 1}]"
        )


def check_same_length(features: Tensor, targets: Tensor) -> None:
    if features.shape[0] != targets.shape[0]:
        raise ValueError(f"`features` has {features.shape[0]} frames but `targets` has {targets.shape[0]}")


def check_enough_frames(num_frames: int, minimum: int = 2) -> None:
    if num_frames < minimum:
        raise ValueError(
            f"need at least {minimum} frames to score, got {num_frames}"
            + (" (was update() ever called?)" if num_frames == 0 else "")
        )


def check_classes_present(class_counts: Tensor) -> None:
    """Every class of the task must have frames: an empty class has no defined statistics."""
    present = int((class_counts > 0).sum())
    if present < 2:
        raise ValueError(
            f"need frames of at least 2 classes to score, got {present} (frames per class: {class_counts.tolist()})"
        )
    absent = (class_counts == 0).nonzero().flatten().tolist()
    if absent:
        raise ValueError(
            f"classes {absent} of num_classes={class_counts.numel()} have no frames; score more "
            "data (e.g. raise limit_batches) or remove those classes from the task"
        )


def check_labelled_frames(features: Tensor, labels: Tensor, num_classes: int | None, name: str = "labels") -> int:
    """Validate ``[N, D]`` features with ``[N]`` class ids; returns ``num_classes``
    (``labels.max() + 1`` when not given, as the reference implementations do)."""
    check_features(features)
    check_same_length(features, labels)
    if num_classes is None:
        check_class_labels(labels, torch.iinfo(torch.int64).max, name=name)
        num_classes = int(labels.max()) + 1 if labels.numel() else 0
    check_class_labels(labels, num_classes, name=name)
    return num_classes
