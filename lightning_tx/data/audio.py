"""Reading audio: soundfile (no FFmpeg needed), mono, resampled, capped in length."""

from __future__ import annotations

import os
import re
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


def pad_waveforms(waveforms: list[Tensor]) -> tuple[Tensor, Tensor]:
    """``[S_i]`` waveforms -> zero-padded ``[B, S_max]`` and ``lengths`` ``[B]`` (samples)."""
    lengths = torch.tensor([w.shape[0] for w in waveforms], dtype=torch.long)
    batch = torch.zeros(len(waveforms), int(lengths.max()) if len(waveforms) else 0)
    for row, waveform in enumerate(waveforms):
        batch[row, : waveform.shape[0]] = waveform
    return batch, lengths
