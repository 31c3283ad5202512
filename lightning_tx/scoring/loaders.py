"""Scoring passes that see every utterance exactly once, however many processes share them.

A training sampler under DDP repeats items to even out the shards; scoring must not (a
repeated utterance is counted twice). :class:`ScoringSampler` forms the pass's batches
once, the same on every process, and deals whole batches to the processes: batch ``b``
goes to rank ``b % world_size``. So the batches, and hence the frames every encoder sees,
do not depend on the number of processes (which also makes encoders that are not
padding-invariant give the same scores), and a process may get no batch at all.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset


def process_rank_and_count() -> tuple[int, int]:
    """``(rank, world_size)`` of this process (``(0, 1)`` outside torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ScoringSampler(DistributedSampler):
    """Yields this process's batches of a scoring pass, as lists of dataset indices.

    The pass: all items in order (or, with ``limit_batches``, a random subset drawn with
    ``seed``), sorted by length when ``lengths`` are given (less padding, and batches that
    do not depend on the dataset's order), cut into batches of ``batch_size``. Rank and
    world size are read when iterating, so a sampler built before the processes start
    works in each of them. A ``DistributedSampler`` subclass, so Lightning leaves it in place.

    Args:
        num_items: the dataset's length.
        batch_size: items per batch.
        lengths: one length per item (any unit), to sort by.
        limit_batches: score only this many batches (int) or this fraction of them (float
            in (0, 1]) of the whole pass, shared among the processes.
        seed: seed of the random subset.
    """

    def __init__(
        self,
        num_items: int,
        batch_size: int,
        *,
        lengths: Sequence[float] | None = None,
        limit_batches: int | float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(range(num_items), num_replicas=1, rank=0, shuffle=False)
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be >= 1, got {batch_size}")
        if lengths is not None and len(lengths) != num_items:
            raise ValueError(f"{len(lengths)} lengths for {num_items} items")
        self.num_items, self.batch_size = num_items, batch_size
        self.lengths, self.seed = lengths, seed
        self.batches = self._global_batches(limit_batches)

    def _global_batches(self, limit_batches: int | float | None) -> list[list[int]]:
        total = math.ceil(self.num_items / self.batch_size)
        indices = list(range(self.num_items))
        if limit_batches is not None:
            if isinstance(limit_batches, float):
                if not 0 < limit_batches <= 1:
                    raise ValueError(f"a fractional `limit_batches` must lie in (0, 1], got {limit_batches}")
                count = max(1, int(total * limit_batches))
            elif isinstance(limit_batches, int) and limit_batches >= 1:
                count = min(limit_batches, total)
            else:
                raise ValueError(f"`limit_batches` must be an int >= 1 or a float in (0, 1], got {limit_batches!r}")
            if count < total:
                generator = torch.Generator().manual_seed(self.seed)
                indices = sorted(
                    torch.randperm(self.num_items, generator=generator)[: count * self.batch_size].tolist()
                )
        if self.lengths is not None:
            indices.sort(key=lambda i: (self.lengths[i], i))
        return [indices[start : start + self.batch_size] for start in range(0, len(indices), self.batch_size)]

    def __iter__(self):
        rank, world = process_rank_and_count()
        return iter(self.batches[rank::world])

    def __len__(self) -> int:
        rank, world = process_rank_and_count()
        return len(self.batches[rank::world])


class _CollatedBatches(Dataset):
    """``dataset[[i, j, ...]]`` -> ``collate_fn([dataset[i], dataset[j], ...])``."""

    def __init__(self, dataset: Any, collate_fn: Callable[[list], Any]) -> None:
        self.dataset, self.collate_fn = dataset, collate_fn

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: list[int]) -> Any:
        return self.collate_fn([self.dataset[i] for i in indices])


def _as_is(batch: Any) -> Any:
    return batch


def scoring_loader(
    dataset: Any,
    batch_size: int,
    collate_fn: Callable[[list], Any] | None = None,
    *,
    limit_batches: int | float | None = None,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> DataLoader:
    """A ``DataLoader`` of this process's share of a scoring pass over a map-style ``dataset``.

    Utterances are sorted by length when the dataset has ``durations()`` (e.g.
    :class:`~lightning_tx.data.SpeechDataset`); see :class:`ScoringSampler`.
    """
    from torch.utils.data import default_collate

    if len(dataset) == 0:
        raise ValueError("the dataset to score is empty")
    lengths = dataset.durations() if hasattr(dataset, "durations") else None
    sampler = ScoringSampler(len(dataset), batch_size, lengths=lengths, limit_batches=limit_batches, seed=seed)
    return DataLoader(
        _CollatedBatches(dataset, collate_fn or default_collate),
        batch_size=None,
        sampler=sampler,
        collate_fn=_as_is,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
    )


def scoring_loader_like(loader: DataLoader, *, limit_batches: int | float | None = None, seed: int = 0) -> DataLoader:
    """The scoring pass over an existing loader's dataset, batch size, collate function and
    workers (its sampler, which may repeat or weight items, is not used).

    A loader over an ``IterableDataset`` cannot be re-dealt: it is returned as it is, so its
    own sharding decides what each process sees (``limit_batches`` then counts this
    process's batches).
    """
    if not isinstance(loader, DataLoader):
        raise TypeError(f"expected a torch DataLoader, got {type(loader).__name__}")
    if isinstance(loader.dataset, IterableDataset):
        return loader
    batch_size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", None)
    if not batch_size:
        raise ValueError("cannot tell the loader's batch size: give its DataLoader a `batch_size`")
    return scoring_loader(
        loader.dataset,
        batch_size,
        loader.collate_fn,
        limit_batches=limit_batches,
        seed=seed,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


def speech_loader(
    data: Any,
    *,
    sample_rate: int,
    batch_size: int = 16,
    split: str = "train",
    limit_batches: int | float | None = None,
    seed: int = 0,
) -> DataLoader:
    """A scoring pass over speech batches from a manifest path, a
    :class:`~lightning_tx.data.SpeechDataModule` or
    :class:`~lightning_tx.data.StreamingSpeechDataModule` (its ``split``, read at ``sample_rate``), any
    other ``LightningDataModule`` (its train dataloader) or a ``DataLoader``.

    A manifest needs only the ``audio`` column (e.g. unlabelled source-domain audio).
    """
    if isinstance(data, DataLoader):
        return scoring_loader_like(data, limit_batches=limit_batches, seed=seed)
    if isinstance(data, (str, os.PathLike)):
        from lightning_tx.data.datamodule import SpeechDataModule  # only when a manifest is given

        data = SpeechDataModule(manifest=data, batch_size=batch_size, shuffle=False, require_targets=False)
    if callable(getattr(data, "dataset", None)):  # a SpeechDataModule or a StreamingSpeechDataModule
        from lightning_tx.data.datamodule import collate_utterances

        data.setup("validate")
        dataset = data.dataset(split, sample_rate=sample_rate)
        if isinstance(dataset, IterableDataset):  # a stream deals its own rows among the processes
            loader = DataLoader(dataset, batch_size=data.batch_size, num_workers=data.num_workers,
                                collate_fn=collate_utterances)  # fmt: skip
            return scoring_loader_like(loader, limit_batches=limit_batches, seed=seed)
        return scoring_loader(
            dataset,
            data.batch_size,
            collate_utterances,
            limit_batches=limit_batches,
            seed=seed,
            num_workers=data.num_workers,
            pin_memory=getattr(data, "pin_memory", False),
        )
    if hasattr(data, "train_dataloader"):
        data.setup("fit")
        return scoring_loader_like(data.train_dataloader(), limit_batches=limit_batches, seed=seed)
    raise TypeError(
        f"speech to score must be a manifest path, a LightningDataModule or a DataLoader, got {type(data).__name__}"
    )
