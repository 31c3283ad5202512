"""Tiny encoders built from configs and saved to disk, so tests load them by path offline."""

from __future__ import annotations

import json
import os

import torch
import torchaudio

HF_COMMON = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16,) * 7,
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
)


def save_hf_audio_model(
    path: str, kind: str = "wav2vec2", with_mask: bool = True, feat_extract_norm: str | None = None
) -> str:
    """A 2-layer wav2vec2 / hubert / wavlm / data2vec-audio / whisper, saved with save_pretrained.

    ``with_mask`` sets the feature extractor's ``return_attention_mask`` and, unless
    ``feat_extract_norm`` (``"layer"`` or ``"group"``) says otherwise, the feature encoder's
    norm (layer norm with a mask, group norm without); data2vec-audio always uses layer norm.
    """
    import transformers as tf

    torch.manual_seed(0)
    if kind == "whisper":
        config = tf.WhisperConfig(
            d_model=32,
            encoder_layers=2,
            decoder_layers=1,
            encoder_attention_heads=2,
            decoder_attention_heads=2,
            encoder_ffn_dim=64,
            decoder_ffn_dim=64,
            num_mel_bins=80,
            max_source_positions=100,
            max_target_positions=32,
            vocab_size=100,
            pad_token_id=0,
            bos_token_id=1,
            eos_token_id=2,
            decoder_start_token_id=1,
            begin_suppress_tokens=None,
            suppress_tokens=None,
        )
        tf.WhisperModel(config).save_pretrained(path)
        tf.WhisperFeatureExtractor(feature_size=80, chunk_length=2).save_pretrained(path)
        return path
    classes = {
        "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model),
        "hubert": (tf.HubertConfig, tf.HubertModel),
        "wavlm": (tf.WavLMConfig, tf.WavLMModel),
        "data2vec": (tf.Data2VecAudioConfig, tf.Data2VecAudioModel),
    }
    config_class, model_class = classes[kind]
    kwargs = dict(HF_COMMON)
    if kind != "data2vec":
        norm = feat_extract_norm or ("layer" if with_mask else "group")
        kwargs.update(feat_extract_norm=norm, do_stable_layer_norm=with_mask)
    model_class(config_class(**kwargs)).save_pretrained(path)
    tf.Wav2Vec2FeatureExtractor(return_attention_mask=with_mask, do_normalize=True).save_pretrained(path)
    return path


def save_hf_ctc_model(path: str, letters: str = "abcdefghijklmnopqrstuvwxyz'") -> str:
    """A tiny character CTC model with its processor (feature extractor + tokenizer)."""
    import transformers as tf

    torch.manual_seed(0)
    os.makedirs(path, exist_ok=True)
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{c: i + 3 for i, c in enumerate(letters)}}
    with open(os.path.join(path, "vocab.json"), "w") as handle:
        json.dump(vocab, handle)
    tokenizer = tf.Wav2Vec2CTCTokenizer(os.path.join(path, "vocab.json"))
    extractor = tf.Wav2Vec2FeatureExtractor(return_attention_mask=True)
    tf.Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    config = tf.Wav2Vec2Config(
        **HF_COMMON,
        vocab_size=len(vocab),
        pad_token_id=0,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
    )
    tf.Wav2Vec2ForCTC(config).save_pretrained(path)
    return path


TORCHAUDIO_WAV2VEC2 = dict(
    extractor_mode="layer_norm",
    extractor_conv_layer_config=[(16, 10, 5)] + [(16, 3, 2)] * 4 + [(16, 2, 2)] * 2,
    extractor_conv_bias=True,
    encoder_embed_dim=32,
    encoder_projection_dropout=0.0,
    encoder_pos_conv_kernel=16,
    encoder_pos_conv_groups=2,
    encoder_num_layers=3,
    encoder_num_heads=2,
    encoder_attention_dropout=0.0,
    encoder_ff_interm_features=64,
    encoder_ff_interm_dropout=0.0,
    encoder_dropout=0.0,
    encoder_layer_norm_first=True,
    encoder_layer_drop=0.0,
    aux_num_out=None,
)

CONFORMER = dict(n_mels=40, dim=32, num_heads=2, ffn_dim=64, num_layers=2, depthwise_conv_kernel_size=7)


def save_torchaudio_wav2vec2(path: str) -> str:
    torch.manual_seed(0)
    torch.save(torchaudio.models.wav2vec2_model(**TORCHAUDIO_WAV2VEC2).state_dict(), path)
    return path


def save_conformer(path: str) -> str:
    from lightning_tx.encoders import LogMelConformer

    torch.manual_seed(0)
    torch.save(LogMelConformer(**CONFORMER).state_dict(), path)
    return path
