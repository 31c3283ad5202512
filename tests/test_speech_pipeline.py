"""Built-in corpus audio through three encoder kinds: frames and frame labels line up."""

import math

import pytest
import torch
from tiny_models import CONFORMER, save_conformer, save_hf_audio_model

from lightning_tx.data import SpeechDataModule
from lightning_tx.encoders import ConformerEncoder, Filterbank, HFEncoder
from lightning_tx.metrics import LogME
from lightning_tx.scoring import TaskLabels


@pytest.mark.slow
def test_corpus_through_three_encoder_kinds(tiny_corpus, model_dir):
    encoders = {
        "hf": HFEncoder(save_hf_audio_model(str(model_dir / "pipeline-hf"))),
        "conformer": ConformerEncoder(save_conformer(str(model_dir / "pipeline-conformer.pt")), **CONFORMER),
        "fbank": Filterbank(),
    }
    dm = SpeechDataModule(manifest=tiny_corpus, batch_size=6, shuffle=False)
    dm.setup()
    word_labels, phone_labels = TaskLabels.from_datamodule(dm), TaskLabels.from_datamodule(dm, "alignment")
    for name, encoder in encoders.items():
        assert encoder.sample_rate == dm.sample_rate
        word_metrics = [LogME(d, dm.num_classes) for d in encoder.layer_dims]
        phone_metrics = [LogME(d, len(dm.alignment_labels)) for d in encoder.layer_dims]
        for batch in dm.train_dataloader():
            out = encoder(batch["waveforms"], batch["lengths"])
            steps = out.hidden_states[0].shape[1]
            words, word_mask = word_labels.frame_labels(batch, out.frame_lengths, encoder.frame_rate, steps)
            phones, phone_mask = phone_labels.frame_labels(batch, out.frame_lengths, encoder.frame_rate, steps)
            for layer, hidden in enumerate(out.hidden_states):
                assert hidden.shape[:2] == words.shape == phones.shape == (len(batch["paths"]), steps), name
                word_metrics[layer].update(hidden, words, mask=word_mask)
                phone_metrics[layer].update(hidden, phones, mask=phone_mask)
            # Every valid frame has a word label; phone labels cover (almost) all of them too.
            assert torch.equal(word_mask.sum(1), out.frame_lengths)
            assert phone_mask.sum() >= 0.9 * word_mask.sum()
        for metric in word_metrics:
            assert math.isfinite(float(metric.compute())), name
        # The phone vocabulary comes from the train alignments, so every phone has frames.
        assert bool((phone_metrics[0].target_sq > 0).all())
        assert all(math.isfinite(float(m.compute())) for m in phone_metrics), name
