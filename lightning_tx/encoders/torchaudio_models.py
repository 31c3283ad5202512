"""torchaudio encoders: the wav2vec2 / HuBERT / WavLM builders, and a Conformer over log-mel
frames, each loaded from a state-dict file."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from lightning_tx.encoders.base import EncoderOutput, FrozenEncoder, frames_per_utterance, receptive_field
from lightning_tx.functional.frames import lengths_to_mask

_WAV2VEC2_BUILDERS = (
    "wav2vec2_model",
    "wav2vec2_base",
    "wav2vec2_large",
    "wav2vec2_large_lv60k",
    "wav2vec2_xlsr_300m",
    "hubert_base",
    "hubert_large",
    "hubert_xlarge",
    "wavlm_model",
    "wavlm_base",
    "wavlm_large",
)


def _load_state_dict(module: nn.Module, path: str | os.PathLike | None) -> None:
    if path is None:
        return
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"state-dict file {path!r} does not exist")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    try:
        module.load_state_dict(state)
    except RuntimeError as error:
        raise RuntimeError(f"state-dict file {path!r} does not match {type(module).__name__}: {error}") from error


class TorchaudioEncoder(FrozenEncoder):
    """A ``torchaudio.models`` wav2vec2-family model (wav2vec2, HuBERT, WavLM).

    Layer ``k`` (``k = 0 .. L-1``) is the output of transformer layer ``k + 1`` (torchaudio's
    ``extract_features``). Frame lengths follow the convolutional feature encoder.

    :attr:`padding_invariant` is True only for a layer-norm feature encoder
    (``extractor_mode="layer_norm"``, e.g. the large models): the group norm of the
    ``"group_norm"`` mode (the base models) normalises each channel over the whole padded
    time axis, so padding changes every frame.

    Args:
        builder: a ``torchaudio.models`` builder name, e.g. ``"wav2vec2_base"``,
            ``"hubert_base"``, ``"wavlm_base"`` or the fully configurable
            ``"wav2vec2_model"`` / ``"wavlm_model"``.
        state_dict: path of a ``torch.save``-d state dict for that model (None: random
            weights, an untrained baseline).
        builder_kwargs: keyword arguments of the builder.
        sample_rate: rate the model expects (Hz).
        init_seed: the seed of the random weights (the global random state is left as it is), so
            an untrained candidate is the same network wherever it is built (``rank``,
            ``confirm``, every process).
        device, precision: see :class:`FrozenEncoder`.
    """

    def __init__(
        self,
        builder: str = "wav2vec2_base",
        state_dict: str | os.PathLike | None = None,
        builder_kwargs: dict[str, Any] | None = None,
        sample_rate: int = 16_000,
        device: str | torch.device | None = None,
        precision: str = "32",
        init_seed: int = 0,
    ) -> None:
        super().__init__(precision)
        if builder not in _WAV2VEC2_BUILDERS:
            raise ValueError(f"`builder` must be one of {_WAV2VEC2_BUILDERS}, got {builder!r}")
        self.init_args = {
            "builder": builder,
            "state_dict": None if state_dict is None else os.fspath(state_dict),
            "builder_kwargs": builder_kwargs,
            "sample_rate": sample_rate,
            "precision": precision,
            "init_seed": init_seed,
        }
        with seeded(init_seed):
            self.model = getattr(torchaudio.models, builder)(**(builder_kwargs or {}))
        _load_state_dict(self.model, state_dict)
        self.model.eval()
        self.sample_rate = sample_rate
        stride = 1
        for layer in self.model.feature_extractor.conv_layers:
            stride *= layer.stride
        self.frame_rate = sample_rate / stride
        self.min_samples = receptive_field(
            [(layer.kernel_size, layer.stride) for layer in self.model.feature_extractor.conv_layers]
        )
        dim = self.model.encoder.feature_projection.projection.out_features
        self.layer_dims = [dim] * len(self.model.encoder.transformer.layers)
        # Decided from the built model: "group_norm" mode puts a GroupNorm (statistics over
        # time) after the first conv layer; the transformer masks padded frames either way.
        self.padding_invariant = not any(
            isinstance(layer.layer_norm, nn.GroupNorm) for layer in self.model.feature_extractor.conv_layers
        )
        if device is not None:
            self.to(device)

    def layer_modules(self) -> list[nn.Module]:
        return list(self.model.encoder.transformer.layers)[1:]

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        for layer in self.model.feature_extractor.conv_layers:
            lengths = torch.div(lengths - layer.kernel_size, layer.stride, rounding_mode="floor") + 1
        return lengths.clamp_min(0)

    def encode(self, waveforms: Tensor, lengths: Tensor) -> EncoderOutput:
        hidden, _ = self.model.extract_features(waveforms, lengths)
        return EncoderOutput(list(hidden), self.frame_lengths(lengths))


def conformer_layer_forward(layer: nn.Module, x: Tensor, padding: Tensor) -> Tensor:
    """One ``torchaudio.models.conformer.ConformerLayer`` over time-first ``x [T, B, D]``
    (torchaudio's layout) that never lets padded frames reach valid ones.

    torchaudio's own ``forward`` masks padded keys in self-attention, but the depthwise conv
    of its convolution module reads the padded frames, which are non-zero after LayerNorm,
    the pointwise conv and GLU: a valid frame near the end of a short utterance changes with
    the length of the longest utterance in its batch. Here the same submodules run in the
    same order on the same layout (so state dicts, dropout and the result on an unpadded
    batch are torchaudio's), with the GLU output zeroed at padded frames right before the
    depthwise conv; those zeros are exactly the conv's own zero padding when the utterance
    is encoded alone. The output is zeroed at padded frames as well.

    Args:
        layer: a ``ConformerLayer``.
        x: ``[T, B, D]`` input frames.
        padding: ``[B, T]`` bool, True at padded frames (``key_padding_mask`` convention).

    Returns:
        ``[T, B, D]``, zero at padded frames.
    """
    padded = padding.T.unsqueeze(-1)  # [T, B, 1]

    def convolution(x: Tensor) -> Tensor:
        conv = layer.conv_module
        y = conv.layer_norm(x.transpose(0, 1)).transpose(1, 2)  # [B, D, T]
        y = conv.sequential[:2](y)  # pointwise conv + GLU
        y = y.masked_fill(padding.unsqueeze(1), 0.0)
        y = conv.sequential[2:](y)  # depthwise conv, norm, SiLU, pointwise conv, dropout
        return x + y.permute(2, 0, 1)

    x = layer.ffn1(x) * 0.5 + x
    if layer.convolution_first:
        x = convolution(x)
    y = layer.self_attn_layer_norm(x)
    y, _ = layer.self_attn(query=y, key=y, value=y, key_padding_mask=padding, need_weights=False)
    x = layer.self_attn_dropout(y) + x
    if not layer.convolution_first:
        x = convolution(x)
    x = layer.ffn2(x) * 0.5 + x
    return layer.final_layer_norm(x).masked_fill(padded, 0.0)


class LogMelConformer(nn.Module):
    """``torchaudio.models.Conformer`` over log-mel frames, stacked ``stack`` at a time.

    Log-mel every 10 ms (25 ms windows), ``stack`` consecutive frames concatenated and
    projected to ``dim`` (so the frame rate is ``100 / stack`` Hz), then the Conformer
    layers. :meth:`forward` returns the projection's output and every layer's output.
    The project's own pre-training trains this module; :class:`ConformerEncoder` loads it.
    """

    def __init__(
        self,
        n_mels: int = 80,
        stack: int = 4,
        dim: int = 144,
        num_heads: int = 4,
        ffn_dim: int = 576,
        num_layers: int = 4,
        depthwise_conv_kernel_size: int = 15,
        dropout: float = 0.1,
        sample_rate: int = 16_000,
    ) -> None:
        super().__init__()
        self.sample_rate, self.hop_length, self.stack = sample_rate, sample_rate // 100, stack
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=512,
            win_length=sample_rate * 25 // 1000,
            hop_length=self.hop_length,
            n_mels=n_mels,
        )
        self.n_mels, self.dim = n_mels, dim
        self.projection = nn.Linear(n_mels * stack, dim)
        self.conformer = torchaudio.models.Conformer(
            input_dim=dim,
            num_heads=num_heads,
            ffn_dim=ffn_dim,
            num_layers=num_layers,
            depthwise_conv_kernel_size=depthwise_conv_kernel_size,
            dropout=dropout,
        )

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        mel = torch.div(lengths, self.hop_length, rounding_mode="floor") + 1
        return torch.div(mel + self.stack - 1, self.stack, rounding_mode="floor")

    def log_mel(self, waveforms: Tensor, lengths: Tensor) -> Tensor:
        """``[B, T_mel, n_mels]`` log-mel frames, each utterance transformed on its own."""
        mel_lengths = torch.div(lengths, self.hop_length, rounding_mode="floor") + 1
        steps = int(mel_lengths.max())
        steps += (-steps) % self.stack
        return frames_per_utterance(lambda w: torch.log(self.mel(w) + 1e-6).T, waveforms, lengths, steps, self.n_mels)

    def embed(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``([B, T, dim]`` projected stacked log-mel frames, ``frame_lengths [B])``: layer 0."""
        mel = self.log_mel(waveforms, lengths)
        batch, steps, _ = mel.shape
        stacked = mel.reshape(batch, steps // self.stack, self.stack * self.n_mels)
        return self.projection(stacked), self.frame_lengths(lengths)

    def encode_frames(self, x: Tensor, frame_lengths: Tensor) -> list[Tensor]:
        """Conformer layers over layer-0 frames ``x [B, T, dim]`` with ``frame_lengths [B]``
        valid frames each: every layer's ``[B, T, dim]`` output, layer 0 first.

        Padding-invariant (see :func:`conformer_layer_forward`): an utterance's valid frames
        are the same alone or in a zero-padded batch, and every output, layer 0 included, is
        zero at padded frames.
        """
        padding = ~lengths_to_mask(frame_lengths, x.shape[1])  # [B, T], True at padded frames
        x = x.masked_fill(padding.unsqueeze(-1), 0.0)
        outputs = [x]
        x = x.transpose(0, 1)
        for layer in self.conformer.conformer_layers:
            x = conformer_layer_forward(layer, x, padding)
            outputs.append(x.transpose(0, 1))
        return outputs

    def forward(self, waveforms: Tensor, lengths: Tensor) -> tuple[list[Tensor], Tensor]:
        """Returns ``([B, T, dim]`` for the projection and each layer, ``frame_lengths [B])``."""
        x, frame_lengths = self.embed(waveforms, lengths)
        return self.encode_frames(x, frame_lengths), frame_lengths


@contextlib.contextmanager
def seeded(seed: int):
    """Draw random numbers (CPU generator) from ``seed`` inside the block, leaving the
    global random state as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


class ConformerEncoder(FrozenEncoder):
    """A :class:`LogMelConformer` loaded from a state-dict file; layer 0 is the input
    projection, layer ``k`` the output of Conformer layer ``k``.

    Args:
        state_dict: path of the saved ``LogMelConformer`` state dict (None: random weights).
        init_seed: the seed of the random weights (see :class:`TorchaudioEncoder`).
        device, precision: see :class:`FrozenEncoder`.
        model_kwargs: the ``LogMelConformer`` architecture (must match the state dict).
    """

    padding_invariant = True  # LogMelConformer.encode_frames keeps padded frames out of valid ones

    def __init__(
        self,
        state_dict: str | os.PathLike | None = None,
        *,
        device: str | torch.device | None = None,
        precision: str = "32",
        init_seed: int = 0,
        **model_kwargs: Any,
    ) -> None:
        super().__init__(precision)
        self.init_args = {
            "state_dict": None if state_dict is None else os.fspath(state_dict),
            "precision": precision,
            "init_seed": init_seed,
            **model_kwargs,
        }
        with seeded(init_seed):
            self.model = LogMelConformer(**model_kwargs)
        _load_state_dict(self.model, state_dict)
        self.model.eval()
        self.sample_rate = self.model.sample_rate
        self.min_samples = self.model.mel.n_fft // 2 + 1  # the centred STFT of the log-mel front end
        self.frame_rate = self.sample_rate / (self.model.hop_length * self.model.stack)
        self.layer_dims = [self.model.dim] * (len(self.model.conformer.conformer_layers) + 1)
        if device is not None:
            self.to(device)

    def layer_modules(self) -> list[nn.Module]:
        return list(self.model.conformer.conformer_layers)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        return self.model.frame_lengths(lengths)

    def encode(self, waveforms: Tensor, lengths: Tensor) -> EncoderOutput:
        hidden, frame_lengths = self.model(waveforms, lengths)
        return EncoderOutput(hidden, frame_lengths)
