"""FrozenEncoder: waveforms in, every layer's frames and the valid frame counts out."""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

_PRECISIONS = {"32": None, "bf16": torch.bfloat16, "16": torch.float16, "fp16": torch.float16}


def frames_per_utterance(transform, waveforms: Tensor, lengths: Tensor, steps: int, dim: int) -> Tensor:
    """``transform([S_i]) -> [T_i, dim]`` applied to each utterance's valid samples alone (so
    padding never leaks into its frames), zero-padded to ``[B, steps, dim]``."""
    out = waveforms.new_zeros(waveforms.shape[0], steps, dim)
    for row in range(waveforms.shape[0]):
        frames = transform(waveforms[row, : int(lengths[row])])
        out[row, : frames.shape[0]] = frames
    return out


def receptive_field(kernels_and_strides: list[tuple[int, int]]) -> int:
    """The fewest input samples that give one output frame through unpadded convolutions
    ``[(kernel, stride), ...]`` (input first)."""
    samples = 1
    for kernel, stride in reversed(kernels_and_strides):
        samples = (samples - 1) * stride + kernel
    return samples


@dataclass
class EncoderOutput:
    """What a frozen encoder returns for a padded batch.

    Attributes:
        hidden_states: one ``[B, T, D_l]`` float32 tensor per layer (``T`` shared by all
            layers of one encoder).
        frame_lengths: ``[B]`` number of valid frames of each utterance.
    """

    hidden_states: list[Tensor]
    frame_lengths: Tensor


class FrozenEncoder(nn.Module, ABC):
    """A speech encoder used only for inference: always in eval mode, no gradients.

    ``forward(waveforms [B, S], lengths [B]) -> EncoderOutput`` runs under
    ``torch.inference_mode()`` (and, on a GPU, optional bf16/fp16 autocast); calling
    ``.train()`` leaves it in eval mode, so a Lightning ``Trainer`` cannot switch dropout on.

    Subclasses set ``sample_rate`` (Hz), ``frame_rate`` (frames per second),
    ``layer_dims`` (the width of each layer, so ``num_layers = len(layer_dims)``) and
    implement :meth:`encode` and :meth:`frame_lengths`.

    ``padding_invariant`` (class attribute, default True; a subclass whose answer depends
    on the loaded model sets it per instance) says whether an utterance's valid frames are
    the same, to float32 round-off, whether it is encoded alone or in a zero-padded batch
    with longer utterances, at every layer. A subclass sets it to False when padding
    changes them (e.g. a group-norm feature encoder normalises over the padded time axis);
    callers then batch utterances of similar length.

    Args:
        precision: ``"32"`` (default), ``"bf16"`` or ``"16"``: autocast dtype on CUDA
            (ignored on the CPU, where encoders always run in float32).
    """

    sample_rate: int
    frame_rate: float
    layer_dims: list[int]
    #: The shortest waveform (samples) the encoder accepts: at least one frame's window.
    min_samples: int = 1
    padding_invariant: bool = True

    def __init__(self, precision: str = "32") -> None:
        super().__init__()
        if precision not in _PRECISIONS:
            raise ValueError(f"`precision` must be one of {sorted(_PRECISIONS)}, got {precision!r}")
        self.precision = precision

    @property
    def num_layers(self) -> int:
        return len(self.layer_dims)

    @property
    def device(self) -> torch.device:
        for tensor in (*self.parameters(), *self.buffers()):
            return tensor.device
        return torch.device("cpu")

    def train(self, mode: bool = True) -> FrozenEncoder:
        """Frozen: stays in eval mode whatever ``mode`` is (see :meth:`train_modules`)."""
        return super().train(False)

    def train_modules(self, mode: bool, modules: list[nn.Module] | None = None) -> None:
        """Put ``modules`` (default: the whole encoder) in train or eval mode, for code that
        does train the encoder (fine-tuning, pre-training): dropout and batch statistics
        then behave as in training. :meth:`forward` always runs in eval mode."""
        for module in [self] if modules is None else modules:
            nn.Module.train(module, mode)

    @abstractmethod
    def encode(self, waveforms: Tensor, lengths: Tensor) -> EncoderOutput:
        """Encode a padded batch already on :attr:`device` (called by :meth:`forward`)."""

    @abstractmethod
    def frame_lengths(self, lengths: Tensor) -> Tensor:
        """``[B]`` valid frames for ``[B]`` valid samples (the model's own arithmetic)."""

    def forward(
        self, waveforms: Tensor, lengths: Tensor | None = None, names: Sequence[str] | None = None
    ) -> EncoderOutput:
        """Encode ``[B, S]`` waveforms at :attr:`sample_rate` with ``[B]`` valid samples each;
        ``names`` (e.g. the files) only label the utterances in error messages."""
        if waveforms.ndim != 2:
            raise ValueError(f"`waveforms` must have shape [B, S], got {tuple(waveforms.shape)}")
        if lengths is None:
            lengths = torch.full((waveforms.shape[0],), waveforms.shape[1], dtype=torch.long)
        if lengths.shape != (waveforms.shape[0],):
            raise ValueError(f"`lengths` must have shape [B]=[{waveforms.shape[0]}], got {tuple(lengths.shape)}")
        if int(lengths.min()) < 1 or int(lengths.max()) > waveforms.shape[1]:
            raise ValueError(
                f"`lengths` must lie in [1, {waveforms.shape[1]}] samples, got "
                f"[{int(lengths.min())}, {int(lengths.max())}]"
            )
        short = (lengths < self.min_samples).nonzero().flatten().tolist()
        if short:
            first = names[short[0]] if names is not None else f"utterance {short[0]} of the batch"
            raise ValueError(
                f"{first} has {int(lengths[short[0]])} samples, fewer than {type(self).__name__} needs "
                f"({self.min_samples} samples, {1000 * self.min_samples / self.sample_rate:.0f} ms at "
                f"{self.sample_rate} Hz); remove such files from the data"
                + (f" ({len(short) - 1} more in this batch)" if len(short) > 1 else "")
            )
        device = self.device
        waveforms = waveforms.to(device=device, dtype=torch.float32)
        lengths = lengths.to(device=device, dtype=torch.long)
        dtype = _PRECISIONS[self.precision]
        autocast = (
            torch.autocast(device_type="cuda", dtype=dtype)
            if dtype is not None and device.type == "cuda"
            else contextlib.nullcontext()
        )
        super().train(False)
        with torch.inference_mode(), autocast:
            output = self.encode(waveforms, lengths)
        output.hidden_states = [h.float() for h in output.hidden_states]
        return output

    def spec(self) -> dict:
        """``{"class_path", "init_args"}`` that rebuilds this encoder (LightningCLI style)."""
        init_args = getattr(self, "init_args", None)
        if init_args is None:
            raise NotImplementedError(f"{type(self).__name__} does not record its init_args")
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(init_args)}

    def layer_modules(self) -> list[nn.Module]:
        """The modules of the layers after layer 0, in order (for partial fine-tuning);
        empty for encoders without learned layers."""
        return []
