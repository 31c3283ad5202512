"""Cached frozen features: a frozen encoder runs once per utterance, not once per epoch.

With ``mode="frozen"`` the encoder never changes, so fine-tuning a head only needs each
utterance's frames of one layer. :class:`CachedFeatureDataModule` computes them once from a
:class:`~lightning_tx.data.SpeechDataModule` (train, val and test) and serves batches of
frames that :class:`~lightning_tx.finetune.FineTuneModule` trains on directly.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from lightning_tx.data.datamodule import SpeechDataModule, collate_utterances
from lightning_tx.data.sampling import LengthGroupedSampler
from lightning_tx.encoders.base import FrozenEncoder
from lightning_tx.scoring import scoring_loader

SPLITS = ("train", "val", "test")


class CachedFrames(Dataset):
    """One split's cached frames: items are the utterance's dict (labels, alignments, ...)
    with ``frames [T_i, D]`` in place of its waveform."""

    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.items[index]


def collate_frames(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Pad frames to ``[B, T_max, D]`` with ``frame_lengths [B]``; labels to ``[B]``; the rest as lists."""
    lengths = torch.tensor([item["frames"].shape[0] for item in items])
    frames = items[0]["frames"].new_zeros(len(items), int(lengths.max()), items[0]["frames"].shape[1])
    for row, item in enumerate(items):
        frames[row, : item["frames"].shape[0]] = item["frames"]
    batch: dict[str, Any] = {"frames": frames, "frame_lengths": lengths}
    for key in ("index", "path", "text", "speaker", "alignment"):
        batch[f"{key}s" if key != "index" else "indices"] = [item[key] for item in items]
    if "label" in items[0]:
        batch["labels"] = torch.tensor([item["label"] for item in items], dtype=torch.long)
    return batch


class CachedFeatureDataModule(L.LightningDataModule):
    """A :class:`SpeechDataModule`'s utterances as one encoder layer's frames, computed once.

    :meth:`setup` encodes every utterance of the train, val and test splits (the frozen
    encoder in eval mode, in batches sorted by length) and keeps layer ``layer``'s valid
    frames in memory as float32; batches are then dicts with ``frames [B, T, D]`` and
    ``frame_lengths [B]`` instead of waveforms, plus the labels, alignments and paths. Memory:
    ``4 * D * (frames of all splits)`` bytes, checked against ``max_bytes`` as it fills (a
    clear error beyond it; then fine-tune without the cache).

    Args:
        datamodule: the task's data (its batch size, shuffling and ``group_by_length`` are kept).
        encoder: the frozen encoder.
        layer: the layer whose frames are cached.
        max_bytes: the most memory the cache may take (default 4 GiB).
        device: where the encoder runs while caching (default: where it is).
    """

    def __init__(
        self,
        datamodule: SpeechDataModule,
        encoder: FrozenEncoder,
        layer: int,
        *,
        max_bytes: int = 4 << 30,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.source = datamodule.at_sample_rate(encoder.sample_rate)
        self.encoder, self.layer, self.max_bytes, self.device = encoder, layer, max_bytes, device
        self.batch_size, self.shuffle = datamodule.batch_size, datamodule.shuffle
        self.group_by_length = datamodule.group_by_length
        self.num_classes = datamodule.num_classes if datamodule.labels else 0
        self.alignment_labels = datamodule.alignment_labels
        self.sample_rate = encoder.sample_rate
        self.cache: dict[str, CachedFrames] | None = None
        self.bytes = 0

    def setup(self, stage: str | None = None) -> None:
        if self.cache is not None:
            return
        self.source.setup(stage)
        self.num_classes, self.alignment_labels = self.source.num_classes, self.source.alignment_labels
        if self.device is not None:
            self.encoder.to(self.device)
        # Iterating a DataLoader draws from the global generator: keep it untouched, so a seeded
        # fine-tune sees the same head initialisation and batch order with or without the cache.
        with torch.random.fork_rng(devices=[]):
            self.cache = {split: self._encode(split) for split in SPLITS if self.source.records(split)}

    def _encode(self, split: str) -> CachedFrames:
        dataset = self.source.dataset(split)
        items: list[dict[str, Any] | None] = [None] * len(dataset)
        layer = self.layer % self.encoder.num_layers
        with torch.inference_mode():
            for batch in scoring_loader(dataset, self.source.batch_size, collate_utterances):
                output = self.encoder(batch["waveforms"], batch["lengths"])
                hidden = output.hidden_states[layer].float().cpu()
                for row, index in enumerate(batch["indices"].tolist()):
                    frames = hidden[row, : int(output.frame_lengths[row])].clone()
                    self.bytes += frames.numel() * frames.element_size()
                    if self.bytes > self.max_bytes:
                        raise MemoryError(
                            f"the cached frames of layer {layer} pass max_bytes={self.max_bytes:,} in the {split} "
                            "split: raise max_bytes, or fine-tune without the cache"
                        )
                    item = {key: batch[f"{key}s"][row] for key in ("path", "text", "speaker", "alignment")}
                    item.update(index=index, frames=frames)
                    if "labels" in batch:
                        item["label"] = int(batch["labels"][row])
                    items[index] = item
        return CachedFrames(items)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        if self.cache is None:
            self.setup()
        sampler = None
        if shuffle and self.group_by_length:  # the uncached order: the same lengths, seed and sampler
            sampler = LengthGroupedSampler.for_trainer(
                self.source.dataset(split).durations(), self.batch_size, self.trainer
            )
        return DataLoader(
            self.cache[split],
            batch_size=self.batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            collate_fn=collate_frames,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.shuffle)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)
