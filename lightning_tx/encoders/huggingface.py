"""Hugging Face audio encoders: wav2vec2, HuBERT, WavLM, data2vec-audio, Whisper encoder."""

from __future__ import annotations

import math
import os

import torch
from torch import Tensor

from lightning_tx.encoders.base import EncoderOutput, FrozenEncoder, receptive_field


def waveform_model_inputs(
    extractor, waveforms: Tensor, lengths: Tensor, uses_attention_mask: bool
) -> tuple[Tensor, dict[str, Tensor]]:
    """What a ``Wav2Vec2FeatureExtractor`` gives for each utterance's valid samples, computed in
    torch on the waveforms' device: ``(input_values [B, max(lengths)] float32, model kwargs)``,
    with ``attention_mask`` (``[B, max(lengths)]`` long, 1 = valid sample) only when
    ``uses_attention_mask``.

    As the extractor does with a mask: when ``do_normalize``, each utterance becomes
    ``(x - mean) / sqrt(var + 1e-7)`` over its own samples (population variance); padded
    samples are ``padding_value`` either way."""
    steps = int(lengths.max())
    mask = torch.arange(steps, device=waveforms.device) < lengths.to(waveforms.device).unsqueeze(1)
    values = torch.where(mask, waveforms[:, :steps].float(), 0.0)
    if extractor.do_normalize:
        count = mask.sum(1, keepdim=True)
        mean = values.sum(1, keepdim=True) / count
        var = torch.where(mask, values - mean, 0.0).square().sum(1, keepdim=True) / count
        values = (values - mean) / torch.sqrt(var + 1e-7)
    values = values.masked_fill(~mask, extractor.padding_value)
    return values, {"attention_mask": mask.long()} if uses_attention_mask else {}


def whisper_input_features(extractor, waveforms: Tensor, lengths: Tensor, mel_filters: Tensor) -> Tensor:
    """What a ``WhisperFeatureExtractor`` (torch path, ``padding="max_length"``) gives for each
    utterance's valid samples, computed on the waveforms' device: ``[B, n_mels, n_samples // hop_length]``
    float32 log-mel frames of every utterance cut or padded (``padding_value``) to ``n_samples``
    (``chunk_length`` seconds). ``mel_filters`` is ``extractor.mel_filters`` (``[n_fft/2 + 1, n_mels]``)
    as a tensor on that device."""
    n_samples = extractor.n_samples
    mask = torch.arange(waveforms.shape[1], device=waveforms.device) < lengths.to(waveforms.device).unsqueeze(1)
    audio = torch.where(mask, waveforms.float(), extractor.padding_value)[:, :n_samples]
    audio = torch.nn.functional.pad(audio, (0, n_samples - audio.shape[1]), value=extractor.padding_value)
    if getattr(extractor, "dither", 0.0):
        audio = audio + extractor.dither * torch.randn_like(audio)
    with torch.autocast(audio.device.type, enabled=False):  # float32, as the extractor computes it
        window = torch.hann_window(extractor.n_fft, device=audio.device)
        stft = torch.stft(audio, extractor.n_fft, extractor.hop_length, window=window, return_complex=True)
        log_spec = (mel_filters.float().T @ stft[..., :-1].abs().square()).clamp(min=1e-10).log10()
    log_spec = torch.maximum(log_spec, log_spec.amax(dim=(1, 2), keepdim=True) - 8.0)  # per utterance
    return (log_spec + 4.0) / 4.0


class HFEncoder(FrozenEncoder):
    """Any Hugging Face audio model with ``output_hidden_states``, by hub id or local path.

    The inputs are what the model's feature extractor gives, computed in torch on the
    waveforms' device (:func:`waveform_model_inputs`, :func:`whisper_input_features`).
    wav2vec2-style models (wav2vec2, HuBERT, WavLM, data2vec-audio) take raw waveforms; the
    feature extractor normalises each utterance over its own samples and ``attention_mask``
    is passed only when the feature extractor asks for it (``return_attention_mask``:
    models with group-norm feature encoders were trained without one). Frame lengths come
    from the model's convolution arithmetic. Layer 0 is the input to the first transformer
    layer; layer ``k`` the output of transformer layer ``k``.

    The Whisper encoder takes 30 s (``chunk_length``) of log-mel frames: every utterance is
    padded to it, and only the frames that cover real audio are counted as valid
    (``ceil(ceil(S / hop) / 2)``).

    :attr:`padding_invariant` is True for Whisper (each utterance gets its own window) and
    for wav2vec2 / HuBERT / WavLM with a layer-norm feature encoder when the feature
    extractor passes ``attention_mask``; False for group-norm feature encoders (the group
    norm spans the padded time axis), without an attention mask (the transformer attends
    to padded frames), for data2vec-audio (see the comment in ``__init__``) and for other
    model types, which are not verified.

    Args:
        name_or_path: a hub id (``"facebook/hubert-base-ls960"``) or a local folder written by
            ``save_pretrained`` (model and feature extractor).
        revision: hub revision.
        device: where to run (default: CPU; move later with ``.to()``).
        precision: ``"32"``, ``"bf16"`` or ``"16"`` (CUDA autocast).
    """

    def __init__(
        self,
        name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        device: str | torch.device | None = None,
        precision: str = "32",
    ) -> None:
        super().__init__(precision)
        from transformers import AutoFeatureExtractor, AutoModel

        self.name_or_path = os.fspath(name_or_path)
        self.init_args = {"name_or_path": self.name_or_path, "revision": revision, "precision": precision}
        try:
            self.feature_extractor = AutoFeatureExtractor.from_pretrained(self.name_or_path, revision=revision)
            model = AutoModel.from_pretrained(self.name_or_path, revision=revision)
        except OSError as error:
            raise OSError(
                f"cannot load a Hugging Face audio model from {self.name_or_path!r}: a hub id needs "
                "network access (or a cached copy); a local folder needs the files written by "
                f"save_pretrained (model and feature extractor). Original error: {error}"
            ) from error
        config = model.config
        self.is_whisper = config.model_type == "whisper"
        self.model = model.get_encoder() if self.is_whisper else model
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        if self.is_whisper:
            self.hop_length = int(self.feature_extractor.hop_length)
            mel_filters = torch.as_tensor(self.feature_extractor.mel_filters, dtype=torch.float32)
            self.register_buffer("mel_filters", mel_filters, persistent=False)  # moves with .to(device)
            self.frame_rate = self.sample_rate / (2 * self.hop_length)
            num_layers = config.encoder_layers
            width = config.d_model
        else:
            if not hasattr(self.model, "_get_feat_extract_output_lengths"):
                raise ValueError(
                    f"{self.name_or_path!r} ({config.model_type}) is not a supported audio encoder: "
                    "expected a wav2vec2-style model or Whisper"
                )
            stride = math.prod(config.conv_stride)
            self.frame_rate = self.sample_rate / stride
            self.min_samples = receptive_field(list(zip(config.conv_kernel, config.conv_stride, strict=True)))
            num_layers = config.num_hidden_layers
            width = config.hidden_size
        self.layer_dims = [width] * (num_layers + 1)
        self.uses_attention_mask = bool(getattr(self.feature_extractor, "return_attention_mask", False))
        # Verified in tests/test_padding_invariance.py. data2vec-audio is never invariant, even
        # with an attention mask: the mask zeroes padded frames only before its positional
        # embedding, a stack of `num_conv_pos_embeddings` convs each followed by a per-frame
        # LayerNorm and GELU, so from the second conv on the padded frames are non-zero and
        # leak into the valid frames near the end of a short utterance.
        self.padding_invariant = self.is_whisper or (
            self.uses_attention_mask
            and config.model_type in ("wav2vec2", "hubert", "wavlm")
            and getattr(config, "feat_extract_norm", "group") == "layer"
        )
        self.model.eval()
        if device is not None:
            self.to(device)

    def layer_modules(self) -> list[torch.nn.Module]:
        return list(self.model.layers if self.is_whisper else self.model.encoder.layers)

    def frame_lengths(self, lengths: Tensor) -> Tensor:
        if self.is_whisper:
            mel = torch.div(lengths + self.hop_length - 1, self.hop_length, rounding_mode="floor")
            frames = torch.div(mel + 1, 2, rounding_mode="floor")
            return frames.clamp_max(self.model.config.max_source_positions)
        return self.model._get_feat_extract_output_lengths(lengths).long()

    def encode(self, waveforms: Tensor, lengths: Tensor) -> EncoderOutput:
        if self.is_whisper:
            features = whisper_input_features(self.feature_extractor, waveforms, lengths, self.mel_filters)
            outputs = self.model(features, output_hidden_states=True)
        else:
            values, kwargs = waveform_model_inputs(self.feature_extractor, waveforms, lengths, self.uses_attention_mask)
            outputs = self.model(values, output_hidden_states=True, **kwargs)
        frame_lengths = self.frame_lengths(lengths)
        steps = int(frame_lengths.max())
        hidden = [h[:, :steps] for h in outputs.hidden_states]
        return EncoderOutput(hidden, frame_lengths)
