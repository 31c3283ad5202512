"""Frame sources: how one batch of any format becomes every layer's frames, a mask and labels."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from lightning_tx.encoders import encoder_from_spec
from lightning_tx.encoders.base import FrozenEncoder
from lightning_tx.functional.frames import lengths_to_mask
from lightning_tx.scoring.labels import TaskLabels


@dataclass
class BatchFrames:
    """One batch's frames, ready for a :class:`~lightning_tx.scoring.LayerScorer`.

    Attributes:
        hidden_states: one ``[B, T, D_l]`` tensor per layer.
        mask: ``[B, T]`` bool, True for the frames to score (valid, and labelled when
            ``labels`` is given).
        labels: ``[B, T]`` class ids, or None (source-domain audio).
        speakers: ``[B]`` int64 speaker ids (:func:`speaker_ids`), or None where unknown.
    """

    hidden_states: list[Tensor]
    mask: Tensor
    labels: Tensor | None
    speakers: Tensor | None = None


def speaker_ids(speakers: Sequence[str | None] | None) -> Tensor | None:
    """``[B]`` int64 ids of speaker names, the same in every batch and process (63 bits of
    their BLAKE2b digest); None when any speaker is unknown (None or empty)."""
    if speakers is None or not len(speakers) or any(s is None or str(s) == "" for s in speakers):
        return None
    digests = [hashlib.blake2b(str(s).encode("utf-8"), digest_size=8).digest() for s in speakers]
    return torch.tensor([int.from_bytes(d, "little") >> 1 for d in digests], dtype=torch.long)


class FrameSource(Protocol):
    """``(batch, labelled) -> BatchFrames``; ``layer_dims`` is None when unknown before a batch."""

    layer_dims: list[int] | None

    def __call__(self, batch: Any, labelled: bool = True) -> BatchFrames: ...


class EncoderFrames:
    """Speech batches (``waveforms``, ``lengths`` and the label fields of
    :func:`~lightning_tx.data.collate_utterances`) through a frozen encoder, labelled at the
    encoder's frame rate by the task's :class:`~lightning_tx.scoring.TaskLabels`, with the
    batch's ``speakers`` when the task is tested on unseen ones (``unseen_speakers``).

    Args:
        encoder: any :class:`~lightning_tx.encoders.FrozenEncoder`.
        labels: the task's label space (None when only unlabelled audio is scored).
    """

    def __init__(self, encoder: FrozenEncoder, labels: TaskLabels | None) -> None:
        if not callable(encoder) or not hasattr(encoder, "frame_rate"):
            raise TypeError(
                f"the encoder must be a FrozenEncoder-like callable with a frame_rate, got {type(encoder).__name__}"
            )
        self.encoder, self.labels = encoder, labels
        self.layer_dims = list(encoder.layer_dims) if hasattr(encoder, "layer_dims") else None

    def __call__(self, batch: dict, labelled: bool = True) -> BatchFrames:
        output = self.encoder(batch["waveforms"], batch["lengths"], names=batch.get("paths"))
        steps = output.hidden_states[0].shape[1]
        frame_lengths = output.frame_lengths.to(output.hidden_states[0].device)
        if not labelled:
            return BatchFrames(list(output.hidden_states), lengths_to_mask(frame_lengths, steps), None)
        if self.labels is None:
            raise ValueError("labelled frames need the task's labels (a TaskLabels)")
        labels, mask = self.labels.frame_labels(batch, frame_lengths, self.encoder.frame_rate, steps)
        speakers = speaker_ids(batch.get("speakers")) if self.labels.unseen_speakers else None
        return BatchFrames(list(output.hidden_states), mask, labels, speakers)


class ModuleFrames:
    """A LightningModule's own frames: ``module.transfer_features(batch) -> (hidden_states,
    frame_lengths, labels)``, for any batch format.

    ``hidden_states`` is a sequence of ``[B, T, D_l]`` tensors, ``frame_lengths`` ``[B]``
    valid frames, ``labels`` ``[B]`` utterance or ``[B, T]`` frame class ids (negative ids,
    e.g. ``-100``, mark frames or utterances to leave out; None for unlabelled audio).
    """

    layer_dims = None

    def __init__(self, module: Any) -> None:
        if not hasattr(module, "transfer_features"):
            raise AttributeError(f"{type(module).__name__} has no `transfer_features(batch)` method")
        self.module = module

    def __call__(self, batch: Any, labelled: bool = True) -> BatchFrames:
        hidden_states, frame_lengths, labels = self.module.transfer_features(batch)
        hidden_states = list(hidden_states)
        steps = hidden_states[0].shape[1]
        mask = lengths_to_mask(frame_lengths.to(hidden_states[0].device).long(), steps)
        if not labelled:
            return BatchFrames(hidden_states, mask, None)
        if labels is None:
            raise ValueError("transfer_features returned no labels for the task's data")
        labels = labels.to(mask.device).long()
        if labels.ndim == 1:
            labels = labels.unsqueeze(1).expand(-1, steps)
        if labels.shape != mask.shape:
            raise ValueError(
                f"transfer_features labels must be [B] or [B, T]=[{mask.shape[0]}, {steps}], got {tuple(labels.shape)}"
            )
        mask = mask & (labels >= 0)
        return BatchFrames(hidden_states, mask, labels.clamp_min(0) * mask)


def module_frames(module: Any, encoder: Any = None, labels: TaskLabels | None = None) -> FrameSource:
    """The frames of a LightningModule, first match wins: ``module.transfer_features``;
    else ``encoder`` (or ``module.transfer_encoder``) on speech batches labelled by ``labels``."""
    if hasattr(module, "transfer_features"):
        return ModuleFrames(module)
    encoder = encoder if encoder is not None else getattr(module, "transfer_encoder", None)
    if isinstance(encoder, str):  # a spec string: "fbank", "hf:<id or path>", ...
        encoder = encoder_from_spec(encoder)
    if encoder is None:
        raise AttributeError(
            "no frames to score: give the callback `encoder=`, or give the LightningModule a "
            "`transfer_encoder` attribute or a `transfer_features(batch)` method"
        )
    return EncoderFrames(encoder, labels)
