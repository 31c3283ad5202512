"""Dropout and batch statistics while training an encoder under Lightning's Trainer: the
trainable part of the encoder is in train mode at every training step (also after a
validation epoch), the frozen part in eval mode."""

import lightning as L
import pytest
import torch

from lightning_tx.data import SpeechDataModule
from lightning_tx.encoders import ConformerEncoder
from lightning_tx.finetune import FineTuneModule
from lightning_tx.pretraining import SMALL_CONFORMER, MaskedUnitPretraining

TINY = {**SMALL_CONFORMER, "dim": 32, "ffn_dim": 64, "num_layers": 2}


def _training_modes(module, data, epochs: int = 2):
    """Per training step: ``{submodule name: training flag}`` of the encoder."""
    seen = []
    original = module.training_step

    def training_step(batch, batch_idx):
        seen.append({name: m.training for name, m in module.encoder.named_modules() if name})
        return original(batch, batch_idx)

    module.training_step = training_step
    trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_train_batches=2,
                        limit_val_batches=1, num_sanity_val_steps=1)  # fmt: skip
    trainer.fit(module, datamodule=data)
    assert len(seen) == 2 * epochs
    return seen


def _layer_names(encoder, layer_modules):
    ids = {id(m) for layer in layer_modules for m in layer.modules()}
    return {name for name, m in encoder.named_modules() if name and id(m) in ids}


@pytest.mark.parametrize("mode", ["full", "top_n", "frozen"])
def test_finetuning_trains_the_encoder_in_train_mode(tiny_corpus, mode):
    torch.manual_seed(0)
    encoder = ConformerEncoder(None, **TINY)
    module = FineTuneModule(encoder=encoder, layer=-1, mode=mode, top_n=1, learning_rate=0.01)
    steps = _training_modes(module, SpeechDataModule(manifest=tiny_corpus, batch_size=4))
    if mode == "full":
        expected = set(steps[0])
    elif mode == "top_n":
        expected = _layer_names(encoder, encoder.layer_modules()[: encoder.num_layers - 1][-1:])
        assert expected and expected != set(steps[0])
    else:
        expected = set()
    for step in steps:
        assert {name for name, training in step.items() if training} == expected


def test_masked_unit_pretraining_trains_in_train_mode(tiny_corpus):
    torch.manual_seed(0)
    module = MaskedUnitPretraining(ConformerEncoder(None, **TINY), num_units=4)
    for step in _training_modes(module, SpeechDataModule(manifest=tiny_corpus, batch_size=4)):
        assert all(step.values())
