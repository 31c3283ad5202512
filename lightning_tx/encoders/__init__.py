"""Frozen speech encoders: waveforms in, every layer's frames and frame lengths out."""

from __future__ import annotations

from lightning_tx.encoders.base import EncoderOutput, FrozenEncoder
from lightning_tx.encoders.ctc_aligner import CTCForcedAligner
from lightning_tx.encoders.huggingface import HFEncoder
from lightning_tx.encoders.spectral import MFCC, Filterbank
from lightning_tx.encoders.torchaudio_models import ConformerEncoder, LogMelConformer, TorchaudioEncoder

__all__ = [
    "MFCC",
    "CTCForcedAligner",
    "ConformerEncoder",
    "EncoderOutput",
    "Filterbank",
    "FrozenEncoder",
    "HFEncoder",
    "LogMelConformer",
    "TorchaudioEncoder",
    "encoder_from_spec",
]


def encoder_from_spec(spec: str, **kwargs) -> FrozenEncoder:
    """Build an encoder from a short string (the YAML configs use ``class_path`` instead).

    - ``"fbank"`` / ``"mfcc"``: the spectral baselines;
    - ``"hf:<hub id or local path>"``: :class:`HFEncoder`;
    - ``"torchaudio:<builder>[:<state dict path>]"``: :class:`TorchaudioEncoder`;
    - ``"conformer[:<state dict path>]"``: :class:`ConformerEncoder`.

    ``kwargs`` go to the encoder's constructor.
    """
    kind, _, rest = spec.partition(":")
    if kind == "fbank":
        return Filterbank(**kwargs)
    if kind == "mfcc":
        return MFCC(**kwargs)
    if kind == "hf" and rest:
        return HFEncoder(rest, **kwargs)
    if kind == "torchaudio" and rest:
        builder, _, state_dict = rest.partition(":")
        return TorchaudioEncoder(builder, state_dict or None, **kwargs)
    if kind == "conformer":
        return ConformerEncoder(rest or None, **kwargs)
    raise ValueError(
        f"unknown encoder spec {spec!r}: use 'fbank', 'mfcc', 'hf:<id or path>', "
        "'torchaudio:<builder>[:<state dict>]' or 'conformer[:<state dict>]'"
    )
