"""Baselines without learned weights: log-mel filterbank and MFCC, one "layer" each."""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor

from lightning_tx.encoders.base import EncoderOutput, FrozenEncoder, frames_per_utterance


class _SpectralEncoder(FrozenEncoder):
    """Frames every ``hop_ms`` of a ``win_ms`` window (centred STFT); each utterance is
    transformed on its own so padding never leaks into its frames."""

    padding_invariant = True  # per-utterance transforms

    def __init__(self, transform: torch.nn.Module, dim: int, sample_rate: int, hop_length: int, n_fft: int) -> None:
        super().__init__()
        self.transform = transform
        self.min_samples = n_fft // 2 + 1  # the centred STFT reflects n_fft / 2 samples at each end
        self.sample_rate = sample_rate
        self.hop_length = hop_length
        self.frame_rate = sample_rate / hop_length
        self.layer_dims = [dim]

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        return torch.div(lengths, self.hop_length, rounding_mode="floor") + 1

    def _features(self, waveform: Tensor) -> Tensor:
        raise NotImplementedError

    def encode(self, waveforms: Tensor, lengths: Tensor) -> EncoderOutput:
        frame_lengths = self.frame_lengths(lengths)
        out = frames_per_utterance(self._features, waveforms, lengths, int(frame_lengths.max()), self.layer_dims[0])
        return EncoderOutput([out], frame_lengths)


class Filterbank(_SpectralEncoder):
    """Log-mel filterbank: ``n_mels`` log energies every 10 ms over 25 ms windows.

    Args:
        n_mels: number of mel bands (the feature width).
        sample_rate: input rate in Hz.
    """

    def __init__(self, n_mels: int = 80, sample_rate: int = 16_000) -> None:
        hop, win = sample_rate // 100, sample_rate * 25 // 1000
        transform = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=512 if sample_rate <= 16_000 else 1024,
            win_length=win,
            hop_length=hop,
            n_mels=n_mels,
        )
        super().__init__(transform, n_mels, sample_rate, hop, transform.n_fft)
        self.n_mels = n_mels
        self.init_args = {"n_mels": n_mels, "sample_rate": sample_rate}

    def _features(self, waveform: Tensor) -> Tensor:
        return torch.log(self.transform(waveform) + 1e-6).T


class MFCC(_SpectralEncoder):
    """MFCC: ``n_mfcc`` cepstral coefficients of a 40-band log-mel spectrum, every 10 ms.

    Args:
        n_mfcc: number of coefficients (the feature width).
        sample_rate: input rate in Hz.
    """

    def __init__(self, n_mfcc: int = 40, sample_rate: int = 16_000) -> None:
        hop, win = sample_rate // 100, sample_rate * 25 // 1000
        transform = torchaudio.transforms.MFCC(
            sample_rate=sample_rate,
            n_mfcc=n_mfcc,
            log_mels=True,
            melkwargs={
                "n_fft": 512 if sample_rate <= 16_000 else 1024,
                "win_length": win,
                "hop_length": hop,
                "n_mels": max(40, n_mfcc),
            },
        )
        super().__init__(transform, n_mfcc, sample_rate, hop, transform.MelSpectrogram.n_fft)
        self.n_mfcc = n_mfcc
        self.init_args = {"n_mfcc": n_mfcc, "sample_rate": sample_rate}

    def _features(self, waveform: Tensor) -> Tensor:
        return self.transform(waveform).T
