"""Estimators computed from a bounded uniform sample of labelled frames: k-NN accuracy, the
label-aware sliced Wasserstein separation of the classes, the leave-one-out ridge probe and
the leave-one-speaker-out voice probe and logistic probe."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from lightning_tx.functional.frames import frame_mask
from lightning_tx.functional.knn import knn_accuracy
from lightning_tx.functional.logistic_probe import logistic_probe_accuracy
from lightning_tx.functional.probe import ridge_probe_accuracy
from lightning_tx.functional.sliced_wasserstein import class_sliced_wasserstein
from lightning_tx.functional.validation import check_classes_present, check_speaker_ids
from lightning_tx.functional.voice_probe import voice_probe_accuracy
from lightning_tx.metrics.base import ClassificationTransferabilityMetric
from lightning_tx.metrics.sampling import keep_smallest, process_rank, sample_keys

_GROUP_STRIDE = 1 << 40  # group ids of process r start at r * 2^40: unique after a merge
_NO_SPEAKER = -1  # speaker ids are >= 0 (scoring.frames.speaker_ids)


@dataclass
class LabelledSample:
    """A uniform sample of labelled frames: ``features [M, D]`` (float32), ``labels [M]``,
    ``groups [M]`` (the utterance each frame comes from), ``speakers [M]`` (its speaker's id;
    None when any is unknown)."""

    features: Tensor
    labels: Tensor
    groups: Tensor
    speakers: Tensor | None = None


class LabelledSampleMetric(ClassificationTransferabilityMetric):
    """Keeps a uniform sample of at most ``max_samples`` labelled frames (bottom-k sampling,
    see :mod:`lightning_tx.metrics.sampling`) with the utterance and the speaker each comes from;
    ``compute()`` returns it (a :class:`LabelledSample`), merged across processes.

    Below the cap the sample is every frame, however the frames were split over processes.
    Memory: ``max_samples * (D + 4)`` values, preallocated.

    Args:
        num_features: ``D``.
        num_classes: ``C``.
        max_samples: frames kept (per process before the merge).
        seed: seed of the sampling keys.
    """

    def __init__(
        self, num_features: int, num_classes: int, *, max_samples: int = 2000, seed: int = 0, **kwargs: Any
    ) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        if not isinstance(max_samples, int) or max_samples < 2:
            raise ValueError(f"`max_samples` must be an int >= 2, got {max_samples!r}")
        self.max_samples, self.seed = max_samples, seed
        self.add_state("sample_features", torch.zeros(max_samples, num_features), dist_reduce_fx="cat")
        self.add_state("sample_labels", torch.zeros(max_samples, dtype=torch.long), dist_reduce_fx="cat")
        self.add_state("sample_groups", torch.zeros(max_samples, dtype=torch.long), dist_reduce_fx="cat")
        self.add_state("sample_speakers", torch.full((max_samples,), _NO_SPEAKER), dist_reduce_fx="cat")
        # +inf marks an empty slot; real keys are uniform in [0, 1).
        self.add_state("sample_keys", torch.full((max_samples,), float("inf"), dtype=torch.float64), "cat")
        self.add_state("frames_seen", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("groups_seen", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(
        self,
        features: Tensor,
        targets: Tensor,
        lengths: Tensor | None = None,
        mask: Tensor | None = None,
        groups: Tensor | None = None,
        speakers: Tensor | None = None,
    ) -> None:
        """Add labelled frames: ``[N, D]`` with ``[N]`` labels (and ``[N]`` batch-local group
        ids; default: each frame its own group), or ``[B, T, D]`` padded frames (each
        utterance is a group). ``speakers``: ``[N]`` int64 speaker ids (>= 0, the same for
        a speaker in every batch and process) of flat frames; None: unknown."""
        if features.ndim == 3 and groups is None:
            valid = frame_mask(features, lengths, mask)
            groups = torch.arange(features.shape[0], device=valid.device).unsqueeze(1).expand_as(valid)[valid]
        frames, labels = self._labelled_frames(features, targets, lengths, mask)
        count = frames.shape[0]
        if count == 0:
            return
        groups = torch.arange(count, device=frames.device) if groups is None else groups.to(frames.device).long()
        if groups.shape != (count,):
            raise ValueError(f"`groups` must have shape [N]=[{count}], got {tuple(groups.shape)}")
        if speakers is None:
            speakers = torch.full((count,), _NO_SPEAKER, device=frames.device)
        elif features.ndim == 3:
            raise ValueError("`speakers` are given for flat [N, D] frames, not padded [B, T, D] ones")
        else:
            check_speaker_ids(speakers, count)
        _, local = torch.unique(groups, return_inverse=True)
        groups = process_rank() * _GROUP_STRIDE + self.groups_seen + local
        keys = sample_keys(self.seed, 0, int(self.frames_seen), count, frames.device)
        kept = keep_smallest(
            self.max_samples,
            torch.cat([self.sample_keys, keys]),
            torch.cat([self.sample_features, frames.to(self.sample_features.dtype)]),
            torch.cat([self.sample_labels, labels]),
            torch.cat([self.sample_groups, groups]),
            torch.cat([self.sample_speakers, speakers.to(self.sample_speakers)]),
        )
        self.sample_keys, self.sample_features, self.sample_labels, self.sample_groups, self.sample_speakers = kept
        self.frames_seen += count
        self.groups_seen += int(local.max()) + 1

    def sample(self) -> LabelledSample:
        """The sample held now (this process's, unless called inside ``compute()``)."""
        keys, features, labels, groups, speakers = keep_smallest(
            self.max_samples,
            self.sample_keys.reshape(-1),
            self.sample_features.reshape(-1, self.num_features),
            self.sample_labels.reshape(-1),
            self.sample_groups.reshape(-1),
            self.sample_speakers.reshape(-1),
        )
        real = torch.isfinite(keys)
        speakers = speakers[real]
        known = speakers.numel() > 0 and bool((speakers != _NO_SPEAKER).all())
        return LabelledSample(features[real], labels[real], groups[real], speakers if known else None)

    def compute(self) -> LabelledSample:
        return self.sample()


def knn_from_sample(sample: LabelledSample, *, num_classes: int, k: int = 5) -> Tensor:
    """:func:`~lightning_tx.functional.knn_accuracy` of a sample (leave one utterance out)."""
    check_classes_present(torch.bincount(sample.labels, minlength=num_classes).to(torch.float64))
    return knn_accuracy(sample.features, sample.labels, sample.groups, k=k, num_classes=num_classes)


def probe_from_sample(sample: LabelledSample, *, num_classes: int, **kwargs: Any) -> Tensor:
    """:func:`~lightning_tx.functional.ridge_probe_accuracy` of a sample (of pooled vectors)."""
    check_classes_present(torch.bincount(sample.labels, minlength=num_classes).to(torch.float64))
    return ridge_probe_accuracy(sample.features, sample.labels, num_classes=num_classes, **kwargs)


def voice_probe_from_sample(sample: LabelledSample, *, num_classes: int) -> Tensor:
    """:func:`~lightning_tx.functional.voice_probe_accuracy` of a sample (of pooled vectors),
    holding out its speakers (leave-one-out where they are unknown or cannot be held out)."""
    check_classes_present(torch.bincount(sample.labels, minlength=num_classes).to(torch.float64))
    return voice_probe_accuracy(sample.features, sample.labels, sample.speakers, num_classes=num_classes)


def logistic_probe_from_sample(sample: LabelledSample, *, num_classes: int, **kwargs: Any) -> Tensor:
    """:func:`~lightning_tx.functional.logistic_probe_accuracy` of a sample (of pooled vectors),
    holding out its speakers (stratified folds where they are unknown or cannot be held out)."""
    check_classes_present(torch.bincount(sample.labels, minlength=num_classes).to(torch.float64))
    return logistic_probe_accuracy(sample.features, sample.labels, sample.speakers, num_classes=num_classes, **kwargs)


def class_swd_from_sample(sample: LabelledSample, *, num_classes: int, **kwargs: Any) -> Tensor:
    """:func:`~lightning_tx.functional.class_sliced_wasserstein` of a sample."""
    check_classes_present(torch.bincount(sample.labels, minlength=num_classes).to(torch.float64))
    return class_sliced_wasserstein(sample.features, sample.labels, num_classes=num_classes, **kwargs)


class KNNAccuracy(LabelledSampleMetric):
    """Leave-one-utterance-out k-NN accuracy (Renggli et al. 2022) on a uniform sample of at
    most ``max_samples`` frames; in [0, 1], higher is better. See
    :mod:`lightning_tx.functional.knn`."""

    def __init__(self, num_features: int, num_classes: int, *, k: int = 5, **kwargs: Any) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self.k = k

    def compute(self) -> Tensor:
        return knn_from_sample(self.sample(), num_classes=self.num_classes, k=self.k)


class ClassSlicedWasserstein(LabelledSampleMetric):
    """Label-aware optimal transport on the task alone: the mean normalised sliced
    Wasserstein distance between pairs of classes, on a uniform sample of frames; higher is
    better. See :func:`~lightning_tx.functional.class_sliced_wasserstein`."""

    def __init__(
        self, num_features: int, num_classes: int, *, num_projections: int = 50, p: float = 2, **kwargs: Any
    ) -> None:
        super().__init__(num_features, num_classes, **kwargs)
        self.num_projections, self.p = num_projections, p

    def compute(self) -> Tensor:
        return class_swd_from_sample(
            self.sample(), num_classes=self.num_classes, num_projections=self.num_projections, p=self.p
        )
