"""TIH frame labels at an encoder's own frame rate.

Every function returns ``(labels [B, T], mask [B, T])``: ``labels`` are class ids (0 where
masked) and ``mask`` is True for frames that carry a label. Frame ``t`` of an encoder with
frame rate ``r`` covers ``[t / r, (t + 1) / r)`` seconds and takes the label of the segment
that contains its centre ``(t + 0.5) / r``.

Sources, best first:

(a) :func:`broadcast_frame_labels`: an utterance label on every valid frame;
(b) :func:`alignment_frame_labels`: time alignments (``start end label``, seconds), e.g. the
    synthesizer's phone timings of the built-in corpus;
(c) :class:`CTCForcedAligner`: a CTC model's forced alignment of the transcript
    (``torchaudio.functional.forced_align``), turned into (b);
(d) :func:`uniform_frame_labels`: the transcript's tokens spread evenly over the valid
    frames; a crude fallback that ignores how long each token really lasts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch
import torchaudio.functional as AF
from torch import Tensor

from lightning_tx.functional.frames import lengths_to_mask

Segment = tuple[float, float, str]


def _valid_mask(frame_lengths: Tensor, steps: int | None) -> Tensor:
    return lengths_to_mask(frame_lengths, int(frame_lengths.max()) if steps is None else steps)


def broadcast_frame_labels(
    labels: Tensor, frame_lengths: Tensor, steps: int | None = None
) -> tuple[Tensor, Tensor]:
    """(a) ``[B]`` utterance class ids on every one of the ``frame_lengths`` valid frames."""
    if labels.shape != frame_lengths.shape:
        raise ValueError(
            f"`labels` {tuple(labels.shape)} and `frame_lengths` {tuple(frame_lengths.shape)} differ"
        )
    mask = _valid_mask(frame_lengths, steps)
    return labels.long().unsqueeze(1).expand_as(mask) * mask, mask


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
                    f"alignment label {label!r} is not in the vocabulary ({len(vocabulary)} labels from "
                    "the train split)"
                )
            inside = (centres >= start) & (centres < end)
            labels[row, inside] = vocabulary[label]
            labelled[row, inside] = True
    mask = mask & labelled.to(mask.device)
    return labels.to(mask.device) * mask, mask


def uniform_frame_labels(
    tokens: Sequence[Sequence[int]], frame_lengths: Tensor, steps: int | None = None
) -> tuple[Tensor, Tensor]:
    """(d) Each utterance's token ids spread evenly over its valid frames (crude fallback)."""
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


class CTCForcedAligner:
    """(c) Forced alignment of transcripts with a CTC model, as time segments.

    Args:
        emissions: ``(waveforms [B, S], lengths [B]) -> (log_probs [B, T, V], frame_lengths [B])``.
        frame_rate: the CTC model's frames per second.
        tokenize: transcript -> token ids (no blanks).
        token_names: id -> label name (for the returned segments).
        blank: the blank token id.

    :meth:`from_pretrained` builds one from a Hugging Face ``*ForCTC`` checkpoint.
    """

    def __init__(
        self,
        emissions: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
        frame_rate: float,
        tokenize: Callable[[str], list[int]],
        token_names: Callable[[int], str],
        blank: int = 0,
    ) -> None:
        self.emissions, self.frame_rate = emissions, frame_rate
        self.tokenize, self.token_names, self.blank = tokenize, token_names, blank

    @classmethod
    def from_pretrained(
        cls, name_or_path: str | os.PathLike, device: str | torch.device = "cpu"
    ) -> CTCForcedAligner:
        """A Hugging Face CTC model (``AutoModelForCTC``) and its processor, by hub id or path."""
        import math

        from transformers import AutoModelForCTC, AutoProcessor

        from lightning_tx.encoders.huggingface import waveform_model_inputs

        processor = AutoProcessor.from_pretrained(os.fspath(name_or_path))
        model = AutoModelForCTC.from_pretrained(os.fspath(name_or_path)).to(device).eval()
        extractor = getattr(processor, "feature_extractor", processor)
        tokenizer = processor.tokenizer
        uses_mask = bool(getattr(extractor, "return_attention_mask", False))
        sample_rate = extractor.sampling_rate

        def emissions(waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
            values, kwargs = waveform_model_inputs(extractor, waveforms, lengths, uses_mask, device)
            with torch.inference_mode():
                logits = model(values, **kwargs).logits
            frames = model._get_feat_extract_output_lengths(lengths.to(device)).long()
            return torch.log_softmax(logits.float(), dim=-1), frames

        def tokenize(text: str) -> list[int]:
            return [t for t in tokenizer(text).input_ids if t != tokenizer.pad_token_id]

        frame_rate = sample_rate / math.prod(model.config.conv_stride)
        return cls(emissions, frame_rate, tokenize, tokenizer.convert_ids_to_tokens, tokenizer.pad_token_id)

    def align_emissions(self, log_probs: Tensor, targets: list[int]) -> list[Segment]:
        """Segments of one utterance from its ``[T, V]`` log-probabilities and target ids."""
        if not targets:
            return []
        if len(targets) > log_probs.shape[0]:
            raise ValueError(
                f"cannot align {len(targets)} tokens to {log_probs.shape[0]} CTC frames: the audio is too "
                "short for its transcript"
            )
        path, scores = AF.forced_align(
            log_probs.unsqueeze(0).float().cpu(), torch.tensor([targets], dtype=torch.int32), blank=self.blank
        )
        spans = AF.merge_tokens(path[0], scores[0].exp(), blank=self.blank)
        return [
            (span.start / self.frame_rate, span.end / self.frame_rate, self.token_names(span.token))
            for span in spans
        ]

    def align(self, waveforms: Tensor, lengths: Tensor, transcripts: Sequence[str]) -> list[list[Segment]]:
        """Segments (seconds) of every utterance's transcript tokens."""
        log_probs, frames = self.emissions(waveforms, lengths)
        return [
            self.align_emissions(log_probs[i, : int(frames[i])], self.tokenize(text))
            for i, text in enumerate(transcripts)
        ]


FRAME_LABEL_SOURCES = ("utterance", "alignment", "ctc", "uniform")


def batch_frame_labels(
    batch: dict,
    frame_lengths: Tensor,
    frame_rate: float,
    *,
    source: str = "utterance",
    steps: int | None = None,
    vocabulary: dict[str, int] | None = None,
    exclude: Sequence[str] = (),
    aligner: CTCForcedAligner | None = None,
    tokenize: Callable[[str], list[int]] | None = None,
) -> tuple[Tensor, Tensor]:
    """Frame labels ``[B, T]`` and mask for a :class:`~lightning_tx.data.SpeechDataModule`
    batch, at an encoder's ``frame_rate`` with its ``frame_lengths`` (and padded length ``steps``).

    ``source``: ``"utterance"`` (broadcast ``batch["labels"]``), ``"alignment"``
    (``batch["alignments"]`` through ``vocabulary``), ``"ctc"`` (``aligner`` on the batch's
    audio and ``texts``, then through ``vocabulary``) or ``"uniform"`` (``tokenize`` each text).
    """
    if source not in FRAME_LABEL_SOURCES:
        raise ValueError(f"`source` must be one of {FRAME_LABEL_SOURCES}, got {source!r}")
    frame_lengths = frame_lengths.cpu()
    if source == "utterance":
        if "labels" not in batch:
            raise ValueError("frame labels from utterance labels need a 'label' column in the data")
        return broadcast_frame_labels(batch["labels"].cpu(), frame_lengths, steps)
    if source == "uniform":
        if tokenize is None or any(t is None for t in batch["texts"]):
            raise ValueError(
                "uniform frame labels need transcripts ('text' column) and a `tokenize` function"
            )
        return uniform_frame_labels([tokenize(t) for t in batch["texts"]], frame_lengths, steps)
    if vocabulary is None:
        raise ValueError(f"frame labels from source {source!r} need the label `vocabulary`")
    if source == "alignment":
        missing = [p for p, a in zip(batch["paths"], batch["alignments"], strict=True) if a is None]
        if missing:
            raise ValueError(
                f"no alignment for {missing[0]} (and {len(missing) - 1} more): add an 'alignment' column"
            )
        segments = batch["alignments"]
    else:
        if aligner is None or any(t is None for t in batch["texts"]):
            raise ValueError("CTC frame labels need transcripts ('text' column) and an `aligner`")
        segments = aligner.align(batch["waveforms"], batch["lengths"], batch["texts"])
    return alignment_frame_labels(
        segments, frame_lengths, frame_rate, vocabulary, steps=steps, exclude=exclude
    )
