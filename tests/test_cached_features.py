"""Cached frozen features: the head trains on frames computed once, with the results of
fine-tuning through the encoder every epoch."""

import lightning as L
import pytest
import torch

from lightning_tx.data import SpeechDataModule
from lightning_tx.encoders import Filterbank
from lightning_tx.finetune import CachedFeatureDataModule, FineTuneModule


def _fit(data, task="classification"):
    L.seed_everything(0, verbose=False)
    module = FineTuneModule(encoder=Filterbank(n_mels=24), layer=0, task=task, mode="frozen", learning_rate=0.01,
                            blank_labels=["sil"])  # fmt: skip
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(module, datamodule=data)
    metric = module.result_metric
    return trainer.test(module, datamodule=data, verbose=False)[0][f"test/{metric}"], module


@pytest.mark.parametrize("task", ["classification", "ctc"])
def test_cached_frames_give_the_same_result(tiny_corpus, task):
    uncached, _ = _fit(SpeechDataModule(manifest=tiny_corpus, batch_size=4), task)
    cache = CachedFeatureDataModule(SpeechDataModule(manifest=tiny_corpus, batch_size=4), Filterbank(n_mels=24), 0)
    cached, module = _fit(cache, task)
    assert cached == pytest.approx(uncached, abs=1e-6)
    assert cache.bytes == 4 * 24 * sum(len(item["frames"]) for split in cache.cache.values() for item in split.items)


def test_cache_is_bounded(tiny_corpus):
    cache = CachedFeatureDataModule(SpeechDataModule(manifest=tiny_corpus), Filterbank(n_mels=24), 0, max_bytes=1000)
    with pytest.raises(MemoryError, match="max_bytes=1,000"):
        cache.setup()


def test_cached_frames_are_for_frozen_recipes(tiny_corpus):
    module = FineTuneModule(encoder=Filterbank(), mode="frozen")
    module.trains_encoder = True
    with pytest.raises(ValueError, match="mode='frozen'"):
        module._outputs({"frames": torch.zeros(1, 2, 80), "frame_lengths": torch.tensor([2])})
