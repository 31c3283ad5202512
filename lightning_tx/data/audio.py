"""Reading audio: soundfile (no FFmpeg needed), mono, resampled, capped in length."""

from __future__ import annotations

import io
import os
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF
from torch import Tensor


class AudioError(ValueError):
    """An audio file that cannot be used, with the file named in the message."""


_DECLARED_DATA = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def check_not_truncated(path: str | os.PathLike) -> None:
    """Raise if a RIFF/WAV file holds less audio than its header declares (a copy cut short):
    libsndfile would read what is there and the utterance would silently be shorter."""
    match = _DECLARED_DATA.search(soundfile.info(os.fspath(path)).extra_info)
    if match and int(match.group(1)) > int(match.group(2)):
        raise AudioError(
            f"audio file {os.fspath(path)!r} is truncated: its header declares {match.group(1)} bytes of audio, "
            f"it holds {match.group(2)}"
        )


def load_audio(
    path: str | os.PathLike,
    sample_rate: int,
    *,
    max_seconds: float | None = None,
) -> Tensor:
    """Read ``path`` as a ``[S]`` float32 mono waveform at ``sample_rate`` Hz.

    Multi-channel audio is averaged to mono; other rates are resampled with
    ``torchaudio.functional.resample``; ``max_seconds`` keeps only the start.

    Raises:
        AudioError: the file is missing, unreadable, empty or holds NaN/Inf samples.
    """
    try:
        check_not_truncated(path)
        data, file_rate = soundfile.read(os.fspath(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
        raise AudioError(f"cannot read audio file {os.fspath(path)!r}: {error}") from error
    if data.shape[0] == 0:
        raise AudioError(f"audio file {os.fspath(path)!r} has no samples")
    if not np.isfinite(data).all():
        raise AudioError(f"audio file {os.fspath(path)!r} contains NaN or Inf samples")
    waveform = torch.from_numpy(data.mean(axis=1))
    if file_rate != sample_rate:
        waveform = AF.resample(waveform, file_rate, sample_rate)
    if max_seconds is not None:
        waveform = waveform[: int(round(max_seconds * sample_rate))]
    return waveform.contiguous()


def waveform_from_array(array: Any, sampling_rate: int, sample_rate: int, max_seconds: float | None = None) -> Tensor:
    """An audio array as a ``[S]`` float32 mono waveform at ``sample_rate`` Hz.

    Args:
        array: ``[S]`` samples, or ``[C, S]`` channels first (averaged to mono), at ``sampling_rate`` Hz.
        sampling_rate: the array's rate (Hz); resampled when it is not ``sample_rate``.
        sample_rate: the rate wanted (Hz).
        max_seconds: keep only the first ``max_seconds`` seconds.

    What :func:`load_audio` does after reading a file; both datasets use it for decoded arrays.
    """
    waveform = torch.as_tensor(np.asarray(array, dtype=np.float32))
    if waveform.ndim == 2:
        waveform = waveform.mean(0)
    if sampling_rate != sample_rate:
        waveform = AF.resample(waveform, sampling_rate, sample_rate)
    if max_seconds is not None:
        waveform = waveform[: int(round(max_seconds * sample_rate))]
    return waveform


def hf_audio_samples(audio: Any, where: str, column: str = "audio") -> tuple[np.ndarray, int] | str:
    """A Hugging Face audio value as ``(samples, rate)``, or its file path when it holds only one.

    Accepted, in this order: ``{"array", "sampling_rate"}`` (decoded), ``{"bytes"}`` (an encoded
    file, as ``datasets`` keeps audio with ``decode=False`` or in Parquet; decoded here with
    soundfile), ``{"path"}`` (returned as it is, to be read later), and a torchcodec
    ``AudioDecoder`` (what ``datasets >= 4`` decodes to).

    Args:
        audio: the value of the audio column in one row.
        where: names the row in error messages.
        column: the audio column's name, for error messages.

    Returns:
        ``[S]`` or ``[C, S]`` float32 samples and their rate (Hz), or the path.

    Raises:
        AudioError: bytes that do not decode, or samples that are empty or not finite.
        TypeError: a value of none of these kinds.
    """
    if isinstance(audio, Mapping):
        if audio.get("array") is not None:
            if audio.get("sampling_rate") is None:
                raise TypeError(f"{where}: an audio 'array' needs its 'sampling_rate'")
            array, rate = np.asarray(audio["array"], dtype=np.float32), int(audio["sampling_rate"])
        elif audio.get("bytes") is not None:
            try:
                samples, rate = soundfile.read(io.BytesIO(audio["bytes"]), dtype="float32", always_2d=True)
            except (RuntimeError, OSError, soundfile.LibsndfileError) as error:
                raise AudioError(f"cannot decode the audio bytes of {where}: {error}") from error
            array, rate = samples.T, int(rate)
        elif audio.get("path"):
            return os.fspath(audio["path"])
        else:
            raise TypeError(f"{where}: the audio in column {column!r} has no 'array', 'bytes' or 'path'")
    elif callable(getattr(audio, "get_all_samples", None)):  # a torchcodec AudioDecoder
        samples = audio.get_all_samples()
        array, rate = samples.data.numpy(), int(samples.sample_rate)  # [C, S]
    else:
        raise TypeError(
            f"{where}: column {column!r} must hold an audio dict ({{'array', 'sampling_rate'}}, "
            f"{{'bytes'}} or {{'path'}}) or a torchcodec AudioDecoder, got {type(audio).__name__}"
        )
    if np.size(array) == 0:
        raise AudioError(f"the audio of {where} has no samples")
    if not np.isfinite(array).all():
        raise AudioError(f"the audio of {where} contains NaN or Inf samples")
    return array, rate


def pad_waveforms(waveforms: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``[S_i]`` waveforms -> zero-padded ``[B, S_max]`` and ``lengths`` ``[B]`` (samples)."""
    lengths = torch.tensor([w.shape[0] for w in waveforms], dtype=torch.long)
    batch = torch.zeros(len(waveforms), int(lengths.max()) if len(waveforms) else 0)
    for row, waveform in enumerate(waveforms):
        batch[row, : waveform.shape[0]] = waveform
    return batch, lengths
