"""CTCForcedAligner: frame-level token labels from a CTC model's forced alignment of transcripts.

A CTC model (e.g. a Hugging Face ``*ForCTC`` checkpoint) gives per-frame token
log-probabilities; ``torchaudio.functional.forced_align`` finds the most likely path that
spells the transcript, and the path's token spans become time segments (seconds) that the
scoring engine turns into frame labels at any encoder's frame rate.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence

import torch
import torchaudio.functional as AF
from torch import Tensor

from lightning_tx.encoders.huggingface import waveform_model_inputs

Segment = tuple[float, float, str]


class CTCForcedAligner:
    """Forced alignment of transcripts with a CTC model, as time segments.

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
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> CTCForcedAligner:
        """A Hugging Face CTC model (``AutoModelForCTC``) and its processor, by hub id or path."""
        from transformers import AutoModelForCTC, AutoProcessor

        processor = AutoProcessor.from_pretrained(os.fspath(name_or_path))
        model = AutoModelForCTC.from_pretrained(os.fspath(name_or_path)).to(device).eval()
        extractor = getattr(processor, "feature_extractor", processor)
        tokenizer = processor.tokenizer
        uses_mask = bool(getattr(extractor, "return_attention_mask", False))
        sample_rate = extractor.sampling_rate

        def emissions(waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
            waveforms, lengths = waveforms.to(device), lengths.to(device)
            values, kwargs = waveform_model_inputs(extractor, waveforms, lengths, uses_mask)
            with torch.inference_mode():
                logits = model(values, **kwargs).logits
            frames = model._get_feat_extract_output_lengths(lengths).long()
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
            (span.start / self.frame_rate, span.end / self.frame_rate, self.token_names(span.token)) for span in spans
        ]

    def align(self, waveforms: Tensor, lengths: Tensor, transcripts: Sequence[str]) -> list[list[Segment]]:
        """Segments (seconds) of every utterance's transcript tokens."""
        log_probs, frames = self.emissions(waveforms, lengths)
        return [
            self.align_emissions(log_probs[i, : int(frames[i])], self.tokenize(text))
            for i, text in enumerate(transcripts)
        ]
