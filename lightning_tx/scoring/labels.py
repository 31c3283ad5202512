"""The task's label space, resolved once: which classes exist and how each frame gets one."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from lightning_tx.encoders.ctc_aligner import CTCForcedAligner
from lightning_tx.scoring.frame_labels import alignment_frame_labels, broadcast_frame_labels, uniform_frame_labels

FRAME_LABEL_SOURCES = ("utterance", "alignment", "ctc", "uniform")


def _characters(text: str) -> list[str]:
    return [character for character in text if not character.isspace()]


@dataclass
class TaskLabels:
    """What a frame's class is, for one task: shared by every candidate of a ranking.

    Sources (``source``):

    - ``"utterance"``: the utterance's class (``batch["labels"]``) on each of its frames;
    - ``"alignment"``: the label of the alignment segment under each frame (``batch["alignments"]``);
    - ``"ctc"``: a CTC model's forced alignment of the transcript (``batch["texts"]``), tokens
      of its tokenizer;
    - ``"uniform"``: the transcript's characters (whitespace dropped) spread evenly over the
      frames, a crude fallback when nothing better exists.

    Build it with :meth:`from_datamodule` (the classes come from the train split of a
    :class:`~lightning_tx.data.SpeechDataModule`) or :meth:`from_count` (class ids given by
    the data, e.g. a module's own ``transfer_features``).

    Attributes:
        source: one of :data:`FRAME_LABEL_SOURCES`.
        classes: class names in id order (None when only their number is known).
        num_classes: the number of classes every estimator sees.
        exclude: labels whose frames are left out (e.g. ``("sil",)``); they are not classes.
        aligner: the CTC aligner of ``source="ctc"``.
        data_labels: for ``"utterance"``, the names of the ids found in ``batch["labels"]``
            (the datamodule's vocabulary), when they differ from ``classes`` because of
            ``exclude``.
        unseen_speakers: the task is tested on voices its train split lacks (every utterance
            names its speaker, and no val or test speaker is in train): estimators that hold
            out a speaker at a time (``pooled_voice_probe``) then get the speakers.
    """

    source: str
    num_classes: int
    classes: list[str] | None = None
    exclude: tuple[str, ...] = ()
    aligner: CTCForcedAligner | None = None
    data_labels: list[str] | None = None
    unseen_speakers: bool = False
    _remap: Tensor | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.source not in FRAME_LABEL_SOURCES:
            raise ValueError(f"frame labels must come from one of {FRAME_LABEL_SOURCES}, got {self.source!r}")
        if not isinstance(self.num_classes, int) or self.num_classes < 2:
            raise ValueError(
                f"a task needs at least 2 classes, got {self.num_classes!r}"
                + (f" ({self.classes})" if self.classes is not None else "")
            )
        if self.source == "ctc" and self.aligner is None:
            raise ValueError("frame labels from 'ctc' need an `aligner` (a CTCForcedAligner)")
        if self.data_labels is not None and self.classes is not None:
            ids = {name: i for i, name in enumerate(self.classes)}
            self._remap = torch.tensor([ids.get(name, -1) for name in self.data_labels])

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_count(cls, num_classes: int) -> TaskLabels:
        """Utterance (or frame) class ids in ``[0, num_classes)`` given by the data itself."""
        return cls("utterance", num_classes)

    @classmethod
    def from_datamodule(
        cls,
        datamodule: Any,
        source: str = "utterance",
        *,
        exclude: Sequence[str] = (),
        ctc_aligner: str | os.PathLike | CTCForcedAligner | None = None,
        device: str | torch.device = "cpu",
    ) -> TaskLabels:
        """The classes of a :class:`~lightning_tx.data.SpeechDataModule`'s train split.

        Args:
            datamodule: the task's data (``setup()`` is called when needed).
            source: see the class docstring.
            exclude: labels left out of the task.
            ctc_aligner: for ``source="ctc"``: a Hugging Face ``*ForCTC`` checkpoint (hub id or
                path) or a :class:`~lightning_tx.encoders.CTCForcedAligner`.
            device: where the CTC aligner runs.
        """
        if source not in FRAME_LABEL_SOURCES:
            raise ValueError(f"frame labels must come from one of {FRAME_LABEL_SOURCES}, got {source!r}")
        if getattr(datamodule, "labels", None) is None:
            datamodule.setup("validate")
        excluded = tuple(exclude)
        aligner = None
        if source == "utterance":
            names = list(datamodule.labels or [])
            if not names:
                raise ValueError(
                    f"frame labels from utterance labels need a {datamodule.label_column!r} column in "
                    f"{datamodule.manifest or datamodule.folder}"
                )
        elif source == "alignment":
            names = list(datamodule.alignment_labels or [])
            if not names:
                raise ValueError(
                    "frame labels from 'alignment' need an 'alignment' column in "
                    f"{datamodule.manifest or datamodule.folder}"
                )
        else:
            texts = [record.text for record in datamodule.records("train")]
            missing = sum(text is None for text in texts)
            if missing:
                raise ValueError(
                    f"frame labels from {source!r} need transcripts: {missing} train utterances have no 'text'"
                )
            if source == "ctc":
                if ctc_aligner is None:
                    raise ValueError("frame labels from 'ctc' need `ctc_aligner`: a Hugging Face *ForCTC checkpoint")
                aligner = (
                    ctc_aligner
                    if isinstance(ctc_aligner, CTCForcedAligner)
                    else CTCForcedAligner.from_pretrained(ctc_aligner, device=device)
                )
                names = sorted({aligner.token_names(t) for text in texts for t in aligner.tokenize(text)})
            else:
                names = sorted({character for text in texts for character in _characters(text)})
        classes = [name for name in names if name not in excluded]
        return cls(
            source,
            len(classes),
            classes=classes,
            exclude=excluded,
            aligner=aligner,
            data_labels=names if source == "utterance" and len(classes) != len(names) else None,
            unseen_speakers=tests_unseen_speakers(datamodule),
        )

    @classmethod
    def for_module(
        cls,
        module: Any,
        datamodule: Any = None,
        source: str = "utterance",
        *,
        num_classes: int | None = None,
        exclude: Sequence[str] = (),
        ctc_aligner: str | os.PathLike | CTCForcedAligner | None = None,
        device: str | torch.device = "cpu",
    ) -> TaskLabels:
        """The label space of a LightningModule's task: from a speech datamodule's train split
        (:meth:`from_datamodule`) unless the module labels its own frames
        (``transfer_features``) or ``num_classes`` is given; else the number of classes of
        ``num_classes``, ``module.num_classes`` or ``datamodule.num_classes``, first found."""
        own_labels = hasattr(module, "transfer_features") or num_classes is not None
        if hasattr(datamodule, "records") and not own_labels:
            return cls.from_datamodule(datamodule, source, exclude=exclude, ctc_aligner=ctc_aligner, device=device)
        for count in (num_classes, getattr(module, "num_classes", None), getattr(datamodule, "num_classes", None)):
            if isinstance(count, int):
                return cls.from_count(count)
        raise ValueError(
            "cannot tell the task's number of classes: give `num_classes`, a `num_classes` attribute on the "
            "LightningModule, or a datamodule that has one"
        )

    # ------------------------------------------------------------------ use
    @property
    def vocabulary(self) -> dict[str, int] | None:
        """Class name -> id (None when only the number of classes is known)."""
        return None if self.classes is None else {name: i for i, name in enumerate(self.classes)}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for reports."""
        return {
            "source": self.source,
            "num_classes": self.num_classes,
            "classes": self.classes,
            "exclude": list(self.exclude),
        }

    def frame_labels(self, batch: dict, frame_lengths: Tensor, frame_rate: float, steps: int) -> tuple[Tensor, Tensor]:
        """``(labels [B, T], mask [B, T])`` of a speech batch at an encoder's ``frame_rate``,
        for ``frame_lengths [B]`` valid frames padded to ``steps``; on ``frame_lengths``' device."""
        if self.source == "utterance":
            if "labels" not in batch:
                raise ValueError("frame labels from utterance labels need a 'label' column in the data")
            labels = batch["labels"].to(frame_lengths.device)
            if self._remap is not None:
                labels = self._remap.to(labels.device)[labels]
            return broadcast_frame_labels(labels, frame_lengths, steps)
        texts = batch.get("texts")
        if self.source in ("ctc", "uniform") and (texts is None or any(text is None for text in texts)):
            raise ValueError(f"frame labels from {self.source!r} need transcripts ('text' column) in every utterance")
        if self.source == "uniform":
            vocabulary = self.vocabulary
            tokens = []
            for path, text in zip(batch["paths"], texts, strict=True):
                unknown = sorted({c for c in _characters(text) if c not in vocabulary and c not in self.exclude})
                if unknown:
                    raise ValueError(f"{path}: transcript characters {unknown} are not in the task's classes")
                tokens.append([vocabulary[c] for c in _characters(text) if c in vocabulary])
            return uniform_frame_labels(tokens, frame_lengths, steps)
        if self.source == "alignment":
            missing = [p for p, a in zip(batch["paths"], batch["alignments"], strict=True) if a is None]
            if missing:
                raise ValueError(
                    f"no alignment for {missing[0]} (and {len(missing) - 1} more): add an 'alignment' column"
                )
            segments = batch["alignments"]
        else:
            segments = self.aligner.align(batch["waveforms"], batch["lengths"], texts)
        return alignment_frame_labels(
            segments, frame_lengths, frame_rate, self.vocabulary, steps=steps, exclude=self.exclude
        )


def tests_unseen_speakers(datamodule: Any) -> bool:
    """Whether a datamodule's val and test utterances are all by speakers its train split
    lacks (False when any utterance has no speaker, or the module cannot list its records)."""
    try:
        speakers = {split: [r.speaker for r in datamodule.records(split)] for split in ("train", "val", "test")}
    except (AttributeError, RuntimeError, KeyError):
        return False
    everyone = [s for names in speakers.values() for s in names]
    if not speakers["train"] or not (speakers["val"] or speakers["test"]) or any(not s for s in everyone):
        return False
    return not set(speakers["train"]) & set(speakers["val"] + speakers["test"])
