"""Every built-in encoder's ``padding_invariant`` tells the truth: an utterance encoded alone
equals its valid frames in a zero-padded batch with longer utterances (to 1e-5, every layer)
exactly when the encoder says so, and differs by more than that when it says it does not."""

import pytest
import torch
from tiny_models import (
    CONFORMER,
    TORCHAUDIO_WAV2VEC2,
    save_conformer,
    save_hf_audio_model,
    save_torchaudio_wav2vec2,
)

from lightning_tx.encoders import (
    MFCC,
    ConformerEncoder,
    Filterbank,
    HFEncoder,
    LogMelConformer,
    TorchaudioEncoder,
)
from lightning_tx.functional.frames import lengths_to_mask

LENGTHS = torch.tensor([16000, 9100, 4003])
TOLERANCE = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def waveforms():
    """``[3, 16000]`` seeded random audio, zero-padded after each of :data:`LENGTHS`."""
    g = torch.Generator().manual_seed(1234)
    batch = 0.1 * torch.randn(3, 16000, generator=g)
    return batch * lengths_to_mask(LENGTHS, 16000)


def _hf(kind: str, with_mask: bool, norm: str | None = None):
    return lambda tmp: HFEncoder(save_hf_audio_model(str(tmp / "hf"), kind, with_mask, norm))


# name: (builder of the encoder from a temporary folder, the padding_invariant it must declare)
ENCODERS = {
    "fbank": (lambda tmp: Filterbank(), True),
    "mfcc": (lambda tmp: MFCC(), True),
    "conformer": (lambda tmp: ConformerEncoder(save_conformer(str(tmp / "c.pt")), **CONFORMER), True),
    "torchaudio-layer-norm": (
        lambda tmp: TorchaudioEncoder(
            "wav2vec2_model", save_torchaudio_wav2vec2(str(tmp / "w.pt")), TORCHAUDIO_WAV2VEC2
        ),
        True,
    ),
    "torchaudio-group-norm": (
        lambda tmp: TorchaudioEncoder("wav2vec2_model", None, {**TORCHAUDIO_WAV2VEC2, "extractor_mode": "group_norm"}),
        False,
    ),
    "hf-wav2vec2-mask": (_hf("wav2vec2", True), True),
    "hf-wavlm-mask": (_hf("wavlm", True), True),
    "hf-hubert-mask": (_hf("hubert", True), True),
    "hf-hubert-group-norm-no-mask": (_hf("hubert", False), False),
    "hf-wav2vec2-layer-norm-no-mask": (_hf("wav2vec2", False, "layer"), False),
    "hf-wav2vec2-group-norm-mask": (_hf("wav2vec2", True, "group"), False),
    "hf-data2vec-audio-mask": (_hf("data2vec", True), False),
    "hf-whisper": (_hf("whisper", True), True),
}


def alone_vs_batched(encoder, waveforms: torch.Tensor) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    """``pairs[row][layer] = (frames in the batch, frames alone)``, valid frames only."""
    batch = encoder(waveforms, LENGTHS)
    pairs = []
    for row, length in enumerate(LENGTHS.tolist()):
        alone = encoder(waveforms[row : row + 1, :length])
        frames = int(batch.frame_lengths[row])
        assert alone.frame_lengths.tolist() == [frames]
        pairs.append(
            [(b[row, :frames], a[0, :frames]) for b, a in zip(batch.hidden_states, alone.hidden_states, strict=True)]
        )
    return pairs


@pytest.mark.parametrize("name", list(ENCODERS))
def test_padding_invariant_attribute_is_true_to_the_encoder(name, waveforms, tmp_path):
    build, declared = ENCODERS[name]
    encoder = build(tmp_path)
    assert encoder.padding_invariant is declared
    pairs = alone_vs_batched(encoder, waveforms)
    if declared:
        for row, layers in enumerate(pairs):
            for layer, (batched, alone) in enumerate(layers):
                where = f"utterance {row}, layer {layer}"
                torch.testing.assert_close(batched, alone, **TOLERANCE, msg=lambda m, where=where: f"{where}: {m}")
    else:
        # At least one utterance (not the longest, which has no padding) really changes.
        differs = [not torch.allclose(b, a, **TOLERANCE) for layers in pairs[1:] for b, a in layers]
        assert any(differs), f"{name} declares padding_invariant=False but batching changed nothing"


def test_conformer_zeroes_padded_frames_of_every_layer(tmp_path, waveforms):
    encoder = ConformerEncoder(save_conformer(str(tmp_path / "c.pt")), **CONFORMER)
    out = encoder(waveforms, LENGTHS)
    padded = ~lengths_to_mask(out.frame_lengths, out.hidden_states[0].shape[1])
    assert padded.any()
    for hidden in out.hidden_states:
        assert torch.all(hidden[padded] == 0)


def test_conformer_matches_torchaudio_without_padding_also_when_training():
    """On an unpadded batch the masked layers are torchaudio's ConformerLayer, dropout included
    (same submodules, same order, same layout, so the same random masks for the same seed)."""
    model = LogMelConformer(**{**CONFORMER, "dropout": 0.3})
    x = torch.randn(2, 11, CONFORMER["dim"])
    lengths = torch.tensor([11, 11])
    for training in (False, True):
        model.train(training)
        torch.manual_seed(7)
        ours = model.encode_frames(x, lengths)
        torch.manual_seed(7)
        y, theirs = x.transpose(0, 1), [x]
        for layer in model.conformer.conformer_layers:
            y = layer(y, torch.zeros(2, 11, dtype=torch.bool))
            theirs.append(y.transpose(0, 1))
        for a, b in zip(ours, theirs, strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_torchaudio_conformer_layers_alone_leak_padding():
    """Why encode_frames masks the conv module: torchaudio's layers with only a key padding
    mask change a short utterance's frames when it is batched with a longer one."""
    model = LogMelConformer(**CONFORMER).eval()
    x = torch.randn(2, 30, CONFORMER["dim"])
    padding = ~lengths_to_mask(torch.tensor([30, 9]), 30)
    with torch.no_grad():
        batched, alone = x.transpose(0, 1), x[1:, :9].transpose(0, 1)
        for layer in model.conformer.conformer_layers:
            batched, alone = layer(batched, padding), layer(alone, padding[1:, :9])
        ours = model.encode_frames(x, torch.tensor([30, 9]))[-1][1, :9]
    assert not torch.allclose(batched[:9, 1], alone[:, 0], **TOLERANCE)
    torch.testing.assert_close(ours, alone[:, 0], **TOLERANCE)
