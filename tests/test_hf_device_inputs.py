"""HFEncoder prepares its inputs in torch on the waveforms' device: they (and the hidden states
they give) match the Hugging Face feature extractor run on numpy to 1e-5."""

import pytest
import torch
from tiny_models import save_hf_audio_model

from lightning_tx.encoders import HFEncoder
from lightning_tx.encoders.huggingface import waveform_model_inputs, whisper_input_features

# The longest is cut to the tiny Whisper's 2 s window (32000 samples); the batch is wider than it.
LENGTHS = torch.tensor([36000, 16000, 9100, 4003])
WIDTH = 40000
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]
# name: (tiny model kind, with_mask, feature extractor overrides)
MODELS = {
    "wav2vec2-normalize-mask": ("wav2vec2", True, {}),
    "hubert-plain-no-mask": ("hubert", False, {"do_normalize": False}),
    "wav2vec2-padding-value": ("wav2vec2", True, {"padding_value": 0.5}),
    "whisper": ("whisper", True, {}),
}


@pytest.fixture(scope="module")
def waveforms():
    """``[4, WIDTH]`` float32 audio with an offset (so normalising matters) and non-zero samples
    after each length, which the inputs must ignore."""
    g = torch.Generator().manual_seed(7)
    return 0.1 * torch.randn(len(LENGTHS), WIDTH, generator=g) + 0.03


@pytest.fixture(scope="module")
def encoders(tmp_path_factory):
    from transformers import Wav2Vec2FeatureExtractor

    built = {}
    for name, (kind, with_mask, overrides) in MODELS.items():
        path = save_hf_audio_model(str(tmp_path_factory.mktemp(name)), kind, with_mask)
        if overrides:
            options = {"return_attention_mask": with_mask, "do_normalize": True, **overrides}
            Wav2Vec2FeatureExtractor(**options).save_pretrained(path)
        built[name] = HFEncoder(path)
    return built


def reference_inputs(encoder, waveforms):
    """The old path: the feature extractor on each utterance's valid samples, as numpy."""
    utterances = [waveforms[i, : int(length)].numpy() for i, length in enumerate(LENGTHS)]
    extractor = encoder.feature_extractor
    if encoder.is_whisper:
        return extractor(utterances, sampling_rate=16000, return_tensors="pt", padding="max_length")
    return extractor(utterances, sampling_rate=16000, return_tensors="pt", padding=True, return_attention_mask=True)


def new_inputs(encoder, waveforms, device):
    waveforms, lengths = waveforms.to(device), LENGTHS.to(device)
    if encoder.is_whisper:
        return whisper_input_features(encoder.feature_extractor, waveforms, lengths, encoder.mel_filters.to(device)), {}
    return waveform_model_inputs(encoder.feature_extractor, waveforms, lengths, encoder.uses_attention_mask)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(MODELS))
def test_inputs_match_the_feature_extractor(encoders, waveforms, name, device):
    encoder = encoders[name]
    expected = reference_inputs(encoder, waveforms)
    values, kwargs = new_inputs(encoder, waveforms, device)
    reference = expected.input_features if encoder.is_whisper else expected.input_values
    assert values.device.type == device and values.dtype == torch.float32
    assert values.shape == reference.shape
    torch.testing.assert_close(values.cpu(), reference, atol=1e-5, rtol=0)
    if encoder.uses_attention_mask and not encoder.is_whisper:
        assert kwargs["attention_mask"].dtype == torch.long and kwargs["attention_mask"].device.type == device
        assert torch.equal(kwargs["attention_mask"].cpu(), expected.attention_mask.long())
    else:
        assert kwargs == {}


def test_the_extractor_options_are_exercised(encoders):
    extractors = {name: encoder.feature_extractor for name, encoder in encoders.items()}
    assert extractors["wav2vec2-normalize-mask"].do_normalize
    assert encoders["wav2vec2-normalize-mask"].uses_attention_mask
    assert not extractors["hubert-plain-no-mask"].do_normalize
    assert not encoders["hubert-plain-no-mask"].uses_attention_mask
    assert extractors["wav2vec2-padding-value"].padding_value == 0.5
    assert extractors["whisper"].n_samples < WIDTH  # truncation is exercised


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(MODELS))
def test_hidden_states_match_the_feature_extractor_path(encoders, waveforms, name, device):
    encoder = encoders[name].to(device)
    try:
        out = encoder(waveforms.to(device), LENGTHS.to(device))
        inputs = reference_inputs(encoder, waveforms)
        with torch.inference_mode():
            if encoder.is_whisper:
                expected = encoder.model(inputs.input_features.to(device), output_hidden_states=True)
            else:
                kwargs = {"attention_mask": inputs.attention_mask.to(device)} if encoder.uses_attention_mask else {}
                expected = encoder.model(inputs.input_values.to(device), output_hidden_states=True, **kwargs)
    finally:
        encoder.to("cpu")
    steps = int(out.frame_lengths.max())
    assert len(out.hidden_states) == len(expected.hidden_states)
    for hidden, reference in zip(out.hidden_states, expected.hidden_states, strict=True):
        assert hidden.shape[1] == steps
        torch.testing.assert_close(hidden.cpu(), reference[:, :steps].cpu(), atol=1e-5, rtol=0)
