"""TIH frame labels at an encoder's own frame rate.

Every function returns ``(labels [B, T], mask [B, T])``: ``labels`` are class ids (0 where
masked) and ``mask`` is True for frames that carry a label. Frame ``t`` of an encoder with
frame rate ``r`` covers ``[t / r, (t + 1) / r)`` seconds and takes the label of the segment
that contains its centre ``(t + 0.5) / r``.

Sources, best first (:class:`~lightning_tx.scoring.TaskLabels` picks one per task):

(a) :func:`broadcast_frame_labels`: an utterance label on every valid frame;
(b) :func:`alignment_frame_labels`: time alignments (``start end label``, seconds), e.g. the
    synthesizer's phone timings of the built-in corpus, or the segments of a
    :class:`~lightning_tx.encoders.CTCForcedAligner` (a CTC model's forced alignment of
    the transcript);
(c) :func:`uniform_frame_labels`: the transcript's tokens spread evenly over the valid
    frames; a crude fallback that ignores how long each token really lasts.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from lightning_tx.functional.frames import lengths_to_mask

Segment = tuple[float, float, str]


def _valid_mask(frame_lengths: Tensor, steps: int | None) -> Tensor:
    return lengths_to_mask(frame_lengths, int(frame_lengths.max()) if steps is None else steps)


def broadcast_frame_labels(labels: Tensor, frame_lengths: Tensor, steps: int | None = None) -> tuple[Tensor, Tensor]:
    """(a) ``[B]`` utterance class ids on every one of the ``frame_lengths`` valid frames.

    A negative id marks an utterance left out of the task: all its frames are masked.
    """
    if labels.shape != frame_lengths.shape:
        raise ValueError(f"`labels` {tuple(labels.shape)} and `frame_lengths` {tuple(frame_lengths.shape)} differ")
    labels = labels.to(frame_lengths.device).long()
    mask = _valid_mask(frame_lengths, steps) & (labels >= 0).unsqueeze(1)
    return labels.clamp_min(0).unsqueeze(1).expand_as(mask) * mask, mask


def alignment_frame_labels(
    alignments: Sequence[Sequence[Segment]],
    frame_lengths: Tensor,
    frame_rate: float,
    vocabulary: dict[str, int],
    *,
    steps: int | None = None,
    exclude: Sequence[str] = (),
) -> tuple[Tensor, Tensor]:
    """(b) Time alignments -> frame labels at ``frame_rate`` (frames per second).

    Frames whose centre falls in no segment, or in a segment labelled in ``exclude``
    (e.g. ``("sil",)`` to drop silence), are masked.

    Raises:
        ValueError: a segment label missing from ``vocabulary`` (named), or a batch size
            mismatch.
    """
    if len(alignments) != frame_lengths.shape[0]:
        raise ValueError(f"{len(alignments)} alignments for a batch of {frame_lengths.shape[0]} utterances")
    mask = _valid_mask(frame_lengths, steps)
    labels = torch.zeros(mask.shape, dtype=torch.long)
    labelled = torch.zeros(mask.shape, dtype=torch.bool)
    centres = (torch.arange(mask.shape[1], dtype=torch.float64) + 0.5) / frame_rate
    excluded = set(exclude)
    for row, segments in enumerate(alignments):
        for start, end, label in segments:
            if label in excluded:
                continue
            if label not in vocabulary:
                raise ValueError(
                    f"alignment label {label!r} is not in the vocabulary "
                    f"({len(vocabulary)} labels from the train split)"
                )
            inside = (centres >= start) & (centres < end)
            labels[row, inside] = vocabulary[label]
            labelled[row, inside] = True
    mask = mask & labelled.to(mask.device)
    return labels.to(mask.device) * mask, mask


def uniform_frame_labels(
    tokens: Sequence[Sequence[int]], frame_lengths: Tensor, steps: int | None = None
) -> tuple[Tensor, Tensor]:
    """(c) Each utterance's token ids spread evenly over its valid frames (crude fallback).

    Token ``j`` of ``n`` covers frames ``[j * T_i / n, (j + 1) * T_i / n)`` of an utterance
    with ``T_i`` valid frames; an utterance without tokens is masked.
    """
    mask = _valid_mask(frame_lengths, steps)
    labels = torch.zeros(mask.shape, dtype=torch.long, device=mask.device)
    for row, sequence in enumerate(tokens):
        count = int(frame_lengths[row])
        if not sequence:
            mask[row] = False
            continue
        positions = torch.arange(count, device=mask.device) * len(sequence) // max(count, 1)
        labels[row, :count] = torch.as_tensor(list(sequence), device=mask.device)[positions]
    return labels * mask, mask
