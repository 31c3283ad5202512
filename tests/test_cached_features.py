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


@pytest.mark.parametrize("task, group_by_length", [("classification", False), ("ctc", False), ("classification", True)])
def test_cached_frames_give_the_same_result(tiny_corpus, task, group_by_length):
    def data():
        return SpeechDataModule(manifest=tiny_corpus, batch_size=4, group_by_length=group_by_length)

    uncached, _ = _fit(data(), task)
    cache = CachedFeatureDataModule(data(), Filterbank(n_mels=24), 0)
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


def test_cached_frames_keep_the_length_grouped_order(tiny_corpus):
    """group_by_length: the cached training batches are the uncached ones, utterance for utterance."""
    data = SpeechDataModule(manifest=tiny_corpus, batch_size=2, group_by_length=True)
    data.setup()
    cache = CachedFeatureDataModule(data, Filterbank(n_mels=24), 0)
    cache.setup()
    L.seed_everything(3, verbose=False)
    uncached = [batch["indices"].tolist() for batch in data.train_dataloader()]
    L.seed_everything(3, verbose=False)
    cached = [list(batch["indices"]) for batch in cache.train_dataloader()]
    assert cached == uncached and len(uncached) > 1
    durations = data.dataset("train").durations()
    order = sum(uncached, [])
    assert all(durations[a] >= durations[b] for a, b in zip(order, order[1:], strict=False))  # one mega-batch
