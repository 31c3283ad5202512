"""Temporal independence hypothesis (TIH): every valid frame is one sample.

A batch of encoder outputs ``[B, T, D]`` with per-utterance frame lengths (or a
``[B, T]`` validity mask) becomes a ``[N, D]`` matrix of its ``N`` valid frames;
utterance-level targets are broadcast to every valid frame of their utterance.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def lengths_to_mask(lengths: Tensor, max_length: int) -> Tensor:
    """``[B]`` valid frame counts -> ``[B, max_length]`` bool mask (True = valid frame)."""
    if lengths.ndim != 1:
        raise ValueError(f"`lengths` must have shape [B], got {tuple(lengths.shape)}")
    if lengths.is_floating_point():
        raise TypeError(f"`lengths` must hold integer frame counts, got dtype {lengths.dtype}")
    if lengths.numel() and (int(lengths.min()) < 0 or int(lengths.max()) > max_length):
        raise ValueError(
            f"`lengths` must lie in [0, {max_length}] (the padded length T), "
            f"got values in [{int(lengths.min())}, {int(lengths.max())}]"
        )
    steps = torch.arange(max_length, device=lengths.device)
    return steps.unsqueeze(0) < lengths.unsqueeze(1)


def frame_mask(features: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """The ``[B, T]`` validity mask of ``[B, T, D]`` features from ``lengths`` or ``mask``.

    With neither given, every frame is valid.
    """
    if features.ndim != 3:
        raise ValueError(f"`features` must have shape [B, T, D], got {tuple(features.shape)}")
    batch, steps = features.shape[:2]
    if lengths is not None and mask is not None:
        raise ValueError("pass either `lengths` or `mask`, not both")
    if lengths is not None:
        if lengths.shape != (batch,):
            raise ValueError(
                f"`lengths` must have shape [B]=[{batch}] to match features {tuple(features.shape)}, "
                f"got {tuple(lengths.shape)}"
            )
        return lengths_to_mask(lengths.to(features.device), steps)
    if mask is not None:
        if mask.shape != (batch, steps):
            raise ValueError(
                f"`mask` must have shape [B, T]=[{batch}, {steps}] to match features "
                f"{tuple(features.shape)}, got {tuple(mask.shape)}"
            )
        return mask.to(device=features.device, dtype=torch.bool)
    return torch.ones(batch, steps, dtype=torch.bool, device=features.device)


def flatten_frames(features: Tensor, lengths: Tensor | None = None, mask: Tensor | None = None) -> Tensor:
    """``[B, T, D]`` padded frames -> ``[N, D]`` valid frames, ``N = mask.sum()``.

    Frames are taken utterance by utterance, in time order.
    """
    return features[frame_mask(features, lengths, mask)]


def frame_targets(targets: Tensor, mask: Tensor) -> Tensor:
    """Targets of every valid frame, in the order of :func:`flatten_frames`.

    Args:
        targets: ``[B]`` utterance class ids or ``[B, K]`` utterance regression targets
            (broadcast to every frame), or ``[B, T]`` frame class ids or ``[B, T, K]``
            frame regression targets.
        mask: ``[B, T]`` bool validity mask.

    Returns:
        ``[N]`` or ``[N, K]`` targets, ``N = mask.sum()``.
    """
    batch, steps = mask.shape
    if targets.shape[0] != batch:
        raise ValueError(f"`targets` has {targets.shape[0]} rows but the batch has {batch} utterances")
    targets = targets.to(mask.device)
    if targets.ndim >= 2 and targets.shape[1] == steps and (targets.ndim == 3 or not targets.is_floating_point()):
        return targets[mask]  # per-frame targets
    if targets.ndim == 1 or (targets.ndim == 2 and targets.is_floating_point()):
        counts = mask.sum(dim=1)
        return torch.repeat_interleave(targets, counts, dim=0)  # per-utterance, broadcast
    raise ValueError(
        f"`targets` must have shape [B], [B, K] (utterance) or [B, T], [B, T, K] (frame) with "
        f"B={batch}, T={steps}; got {tuple(targets.shape)} of dtype {targets.dtype}"
    )


def tih_frames(
    features: Tensor,
    targets: Tensor | None = None,
    lengths: Tensor | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Frames (and their targets) as independent samples.

    ``[N, D]`` features pass through unchanged (with ``[N]`` / ``[N, K]`` targets);
    ``[B, T, D]`` features are flattened to their valid frames and utterance targets
    are broadcast (see :func:`frame_targets`).

    Returns:
        ``(frames [N, D], targets [N] or [N, K] or None)``.
    """
    if features.ndim == 2:
        if lengths is not None or mask is not None:
            raise ValueError("`lengths`/`mask` apply to [B, T, D] features, got [N, D] features")
        if targets is not None and targets.shape[0] != features.shape[0]:
            raise ValueError(f"`features` has {features.shape[0]} frames but `targets` has {targets.shape[0]}")
        return features, targets
    valid = frame_mask(features, lengths, mask)
    frames = features[valid]
    return frames, (None if targets is None else frame_targets(targets, valid))


def selected_frames(mask: Tensor) -> Tensor:
    """``[N]`` flat indices ``b * T + t`` of the True frames of a ``[B, T]`` mask, in
    utterance and time order (the order of ``features[mask]``). Reading a batch's frames
    with ``features.flatten(0, 1).index_select(0, index)`` for every layer costs one host
    synchronisation per batch (here), where ``features[mask]`` costs one per layer."""
    return mask.flatten().nonzero().squeeze(1)


@dataclass(frozen=True)
class Segments:
    """The labelled segments of a batch (see :func:`segment_means`), found once and shared
    by every layer: ``frames [N]`` flat indices of the counted frames, ``segment [N]`` the
    segment of each, ``sizes [S]`` float64 frames per segment, ``labels [S]`` and
    ``utterances [S]`` (the batch row of each segment)."""

    frames: Tensor
    segment: Tensor
    sizes: Tensor
    labels: Tensor
    utterances: Tensor

    @classmethod
    def find(cls, labels: Tensor, mask: Tensor, frames: Tensor | None = None) -> Segments:
        """Segments of ``[B, T]`` labels under a ``[B, T]`` mask (``frames``: the mask's
        :func:`selected_frames`, when already computed)."""
        if labels.shape != mask.shape or mask.ndim != 2:
            raise ValueError(f"expected labels and mask [B, T], got {tuple(labels.shape)} and {tuple(mask.shape)}")
        labels = labels.to(mask.device)
        frames = selected_frames(mask) if frames is None else frames
        previous_valid = torch.nn.functional.pad(mask[:, :-1], (1, 0), value=False)
        previous_label = torch.nn.functional.pad(labels[:, :-1], (1, 0), value=-1)
        starts = (mask & (~previous_valid | (labels != previous_label))).flatten()
        segment = (starts.cumsum(0) - 1).index_select(0, frames)
        first = starts.nonzero().squeeze(1)  # the flat index of each segment's first frame
        # index_add_, not bincount: on a GPU bincount reads the largest id back to the host
        sizes = torch.zeros(len(first), dtype=torch.float64, device=mask.device).index_add_(
            0, segment, torch.ones(len(segment), dtype=torch.float64, device=mask.device)
        )
        return cls(frames, segment, sizes, labels.flatten().index_select(0, first), first // mask.shape[1])

    def means(self, features: Tensor) -> Tensor:
        """``[S, D]`` float64 means of ``[B, T, D]`` features over each segment."""
        frames = features.flatten(0, 1).index_select(0, self.frames.to(features.device)).to(torch.float64)
        sums = frames.new_zeros(len(self.sizes), features.shape[-1]).index_add_(0, self.segment, frames)
        return sums / self.sizes.unsqueeze(1)


def segment_means(features: Tensor, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Mean of each labelled segment: a maximal run of valid frames with one label.

    For utterance labels (every frame of an utterance labelled alike) a segment is the whole
    utterance, so this is mean pooling; for frame labels (e.g. phones from an alignment) it
    is one vector per token. A masked frame (padding, or an excluded label such as silence)
    ends a segment. (Several layers of one batch: find the :class:`Segments` once.)

    Args:
        features: ``[B, T, D]`` frames.
        labels: ``[B, T]`` class ids.
        mask: ``[B, T]`` bool, True for the frames that count.

    Returns:
        ``(means [S, D], labels [S], utterances [S])``: float64 segment means in utterance
        and time order, their labels, and the row of the batch each comes from.
    """
    if features.ndim != 3 or labels.shape != features.shape[:2] or mask.shape != features.shape[:2]:
        raise ValueError(
            f"expected features [B, T, D] with labels and mask [B, T], got {tuple(features.shape)}, "
            f"{tuple(labels.shape)} and {tuple(mask.shape)}"
        )
    segments = Segments.find(labels, mask.to(features.device))
    return segments.means(features), segments.labels, segments.utterances
