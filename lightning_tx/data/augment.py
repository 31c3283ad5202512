"""Noise and reverberation, for tasks on degraded audio (deterministic for a seed)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF
from torch import Tensor


def _generator(seed: int, *keys: object) -> torch.Generator:
    entropy = [seed] + [int.from_bytes(str(k).encode()[:8].ljust(8, b"\0"), "little") for k in keys]
    return torch.Generator().manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]))


def pink_noise(num_samples: int, generator: torch.Generator) -> Tensor:
    """``[num_samples]`` noise with a 1/f power spectrum (equal energy per octave), unit RMS."""
    spectrum = torch.fft.rfft(torch.randn(num_samples, generator=generator, dtype=torch.float64))
    frequencies = torch.arange(spectrum.shape[0], dtype=torch.float64).clamp_min(1.0)
    noise = torch.fft.irfft(spectrum / frequencies.sqrt(), n=num_samples)
    return (noise / noise.pow(2).mean().sqrt().clamp_min(1e-12)).float()


def add_noise(waveform: Tensor, snr_db: float, generator: torch.Generator) -> Tensor:
    """``[S]`` waveform plus pink noise at ``snr_db`` dB signal-to-noise ratio (by power)."""
    signal_power = waveform.double().pow(2).mean().clamp_min(1e-12)
    noise = pink_noise(waveform.shape[0], generator).double()
    scale = (signal_power / 10 ** (snr_db / 10)).sqrt()
    return (waveform.double() + scale * noise).float()


def reverberate(waveform: Tensor, rt60: float, sample_rate: int, generator: torch.Generator) -> Tensor:
    """``[S]`` waveform convolved with a synthetic room impulse response: exponentially
    decaying noise reaching -60 dB after ``rt60`` seconds, after a unit direct path; the
    result keeps the input's length and peak level."""
    length = max(1, int(rt60 * sample_rate))
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    tail = torch.randn(length, generator=generator, dtype=torch.float64) * torch.exp(-6.9078 * t / rt60)
    response = torch.cat([torch.ones(1, dtype=torch.float64), 0.3 * tail / tail.abs().max().clamp_min(1e-12)])
    wet = AF.fftconvolve(waveform.double(), response)[: waveform.shape[0]]
    peak = waveform.abs().max().double().clamp_min(1e-12)
    return (wet * peak / wet.abs().max().clamp_min(1e-12)).float()


def degrade_manifest(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    snrs_db: tuple[float, ...],
    rt60: float | None = 0.3,
    seed: int = 0,
) -> Path:
    """Write a degraded copy of every utterance of ``manifest`` under ``out`` (as
    ``out/audio/<row>.wav``) and ``out/manifest.csv`` (same columns, plus ``snr_db``)
    pointing at them: each utterance gets reverberation (``rt60`` seconds, None for none)
    and pink noise at one of ``snrs_db`` in turn. Alignments keep pointing at the
    originals (the timing is unchanged); the original files are never touched."""
    manifest, out = Path(manifest), Path(out)
    rows = list(csv.DictReader(open(manifest, newline="", encoding="utf-8")))
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for index, row in enumerate(rows):
        source = manifest.parent / row["audio"]
        audio, rate = soundfile.read(source, dtype="float32")
        waveform = torch.from_numpy(audio if audio.ndim == 1 else audio.mean(1))
        generator = _generator(seed, row["audio"])
        if rt60:
            waveform = reverberate(waveform, rt60, rate, generator)
        snr = snrs_db[index % len(snrs_db)]
        waveform = add_noise(waveform, snr, generator)
        target = out / "audio" / f"{index:06d}.wav"
        target.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(target, waveform.clamp(-1, 1).numpy(), rate, subtype="PCM_16")
        alignment = row.get("alignment")
        written.append(
            {
                **row,
                "audio": os.path.relpath(target, out),
                "alignment": os.path.relpath(manifest.parent / alignment, out) if alignment else "",
                "snr_db": snr,
            }
        )
    path = out / "manifest.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(written[0]))
        writer.writeheader()
        writer.writerows(written)
    return path
