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
    TorchaudioEncoder,
    encoder_from_spec,
)

LENGTHS = torch.tensor([16000, 9100, 4003])


@pytest.fixture(scope="module")
def waveforms():
    g = torch.Generator().manual_seed(0)
    batch = 0.1 * torch.randn(3, 16000, generator=g)
    for row, length in enumerate(LENGTHS):
        batch[row, length:] = 0
    return batch


@pytest.fixture(scope="module")
def hf_encoders(model_dir):
    specs = {
        "wav2vec2": ("wav2vec2", True),
        "wavlm": ("wavlm", True),
        "hubert": ("hubert", False),
        "data2vec": ("data2vec", True),
        "whisper": ("whisper", True),
    }
    return {
        name: HFEncoder(save_hf_audio_model(str(model_dir / name), kind, mask)) for name, (kind, mask) in specs.items()
    }


def _check_output(encoder, waveforms):
    out = encoder(waveforms, LENGTHS)
    assert len(out.hidden_states) == encoder.num_layers == len(encoder.layer_dims)
    steps = out.hidden_states[0].shape[1]
    for hidden, dim in zip(out.hidden_states, encoder.layer_dims, strict=True):
        assert hidden.shape == (3, steps, dim) and hidden.dtype == torch.float32
        assert not hidden.requires_grad
    assert int(out.frame_lengths.max()) == steps
    # The frame arithmetic matches what the model produces for each utterance alone.
    for row, length in enumerate(LENGTHS):
        alone = encoder(waveforms[row : row + 1, :length])
        assert alone.frame_lengths.tolist() == [int(out.frame_lengths[row])]
        if not getattr(encoder, "is_whisper", False):  # Whisper always emits its fixed 30 s window
            assert alone.hidden_states[0].shape[1] == int(out.frame_lengths[row])
    return out


@pytest.mark.parametrize("name", ["wav2vec2", "wavlm", "hubert", "data2vec", "whisper"])
def test_hf_encoders(hf_encoders, waveforms, name):
    encoder = hf_encoders[name]
    out = _check_output(encoder, waveforms)
    assert encoder.sample_rate == 16000 and encoder.frame_rate == 50.0
    assert encoder.num_layers == 3  # input to the transformer + 2 layers
    expected = (LENGTHS + 159) // 160 if name == "whisper" else None
    if expected is not None:
        assert out.frame_lengths.tolist() == ((expected + 1) // 2).tolist()
    else:
        assert out.frame_lengths.tolist() == [49, 28, 12]


@pytest.mark.parametrize("name", ["wav2vec2", "wavlm", "whisper"])
def test_padded_batch_equals_one_at_a_time_for_masked_models(hf_encoders, waveforms, name):
    encoder = hf_encoders[name]
    assert name == "whisper" or encoder.uses_attention_mask
    batch = encoder(waveforms, LENGTHS)
    for row, length in enumerate(LENGTHS):
        alone = encoder(waveforms[row : row + 1, :length])
        frames = int(batch.frame_lengths[row])
        for layer in range(encoder.num_layers):
            torch.testing.assert_close(
                batch.hidden_states[layer][row, :frames],
                alone.hidden_states[layer][0, :frames],
                atol=1e-4,
                rtol=1e-4,
            )


def test_feature_extractor_decides_the_attention_mask(hf_encoders):
    assert hf_encoders["wav2vec2"].uses_attention_mask
    assert not hf_encoders["hubert"].uses_attention_mask


def test_torchaudio_wav2vec2_from_state_dict(tmp_path, waveforms):
    path = save_torchaudio_wav2vec2(str(tmp_path / "w2v.pt"))
    encoder = TorchaudioEncoder("wav2vec2_model", path, TORCHAUDIO_WAV2VEC2)
    out = _check_output(encoder, waveforms)
    assert encoder.num_layers == 3 and encoder.frame_rate == 50.0
    assert out.frame_lengths.tolist() == [49, 28, 12]
    random = TorchaudioEncoder("wav2vec2_model", None, TORCHAUDIO_WAV2VEC2, init_seed=1)
    assert not torch.equal(random(waveforms).hidden_states[0], encoder(waveforms).hidden_states[0])


@pytest.mark.parametrize("kind", ["conformer", "wav2vec2"])
def test_random_weights_come_from_init_seed_alone(kind):
    def build(**kwargs):
        if kind == "conformer":
            return ConformerEncoder(None, **CONFORMER, **kwargs)
        return TorchaudioEncoder("wav2vec2_model", None, TORCHAUDIO_WAV2VEC2, **kwargs)

    torch.manual_seed(5)
    first = build().state_dict()
    state = torch.random.get_rng_state()
    torch.rand(7)  # another global random state: the same network
    second = build().state_dict()
    other = build(init_seed=1).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    torch.manual_seed(5)
    build()
    assert torch.equal(torch.random.get_rng_state(), state)  # building draws nothing from the global state


def test_conformer_from_state_dict(tmp_path, waveforms):
    path = save_conformer(str(tmp_path / "conformer.pt"))
    encoder = ConformerEncoder(path, **CONFORMER)
    out = _check_output(encoder, waveforms)
    assert encoder.num_layers == 3 and encoder.frame_rate == 25.0
    assert out.frame_lengths.tolist() == [26, 15, 7]


@pytest.mark.parametrize("encoder_class", [Filterbank, MFCC])
def test_spectral_baselines_are_exact_under_padding(encoder_class, waveforms):
    encoder = encoder_class()
    out = _check_output(encoder, waveforms)
    assert encoder.frame_rate == 100.0 and encoder.num_layers == 1
    for row, length in enumerate(LENGTHS):
        alone = encoder(waveforms[row : row + 1, :length]).hidden_states[0][0]
        torch.testing.assert_close(out.hidden_states[0][row, : alone.shape[0]], alone)


def test_frozen_encoder_stays_in_eval_mode(tmp_path):
    encoder = ConformerEncoder(save_conformer(str(tmp_path / "c.pt")), **CONFORMER)
    encoder.train()
    assert not encoder.training and not encoder.model.training


def test_specs_and_errors(tmp_path, model_dir):
    assert isinstance(encoder_from_spec("fbank"), Filterbank)
    assert isinstance(encoder_from_spec("mfcc", n_mfcc=13), MFCC)
    assert isinstance(encoder_from_spec(f"hf:{save_hf_audio_model(str(model_dir / 'spec'))}"), HFEncoder)
    with pytest.raises(ValueError, match="unknown encoder spec"):
        encoder_from_spec("resnet")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ConformerEncoder(str(tmp_path / "missing.pt"), **CONFORMER)
    torch.save({"wrong": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(RuntimeError, match="does not match LogMelConformer"):
        ConformerEncoder(str(tmp_path / "wrong.pt"), **CONFORMER)
    with pytest.raises(OSError, match="save_pretrained"):
        HFEncoder(str(tmp_path / "no-model-here"))
    with pytest.raises(ValueError, match=r"lengths.*\[1, 100\]"):
        Filterbank()(torch.zeros(2, 100), torch.tensor([100, 101]))
