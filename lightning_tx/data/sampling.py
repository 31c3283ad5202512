"""Length-grouped training order: batches of utterances of similar length, so less padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler


class LengthGroupedSampler(DistributedSampler):
    """A shuffled order of ``range(len(lengths))`` in which each run of ``batch_size``
    consecutive indices holds utterances of similar length; this process's share of it.

    Each epoch the indices are shuffled, cut into mega-batches of ``batch_size *
    megabatch_factor * num_replicas``, and each mega-batch is sorted by length, longest first
    (as Hugging Face ``Trainer``'s ``group_by_length``): the order stays random at the scale of
    a mega-batch while the padding inside a batch shrinks. The order depends on ``seed`` and
    the epoch (:meth:`set_epoch`, which Lightning calls), never on the global random state.

    With ``num_replicas`` processes, process ``rank`` takes positions ``rank, rank +
    num_replicas, ...`` of that order (neighbours in a sorted mega-batch, so its batches stay
    grouped), the order first padded with its own start to a multiple of ``num_replicas``, as
    ``DistributedSampler`` does: every index is drawn once per epoch, a few twice. Being a
    ``DistributedSampler``, Lightning uses it as it is instead of wrapping it in one that
    would shuffle the positions again.

    Args:
        lengths: per utterance, its length (seconds or samples: only the order matters).
        batch_size: the loader's batch size.
        megabatch_factor: batches per mega-batch and process (default 50); 1 sorts within
            each batch only.
        seed: the base of each epoch's shuffle (the same on every process).
        num_replicas, rank: the number of processes and this one's rank.
    """

    def __init__(
        self,
        lengths: Sequence[float],
        batch_size: int,
        megabatch_factor: int = 50,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if batch_size < 1 or megabatch_factor < 1:
            raise ValueError(f"batch_size and megabatch_factor must be >= 1, got {batch_size}, {megabatch_factor}")
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.float64)
        if self.lengths.dim() != 1 or len(self.lengths) == 0:
            raise ValueError(f"lengths must be one number per utterance, got shape {tuple(self.lengths.shape)}")
        super().__init__(range(len(self.lengths)), num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.batch_size, self.megabatch_factor = batch_size, megabatch_factor

    @classmethod
    def for_trainer(cls, lengths: Sequence[float], batch_size: int, trainer=None) -> LengthGroupedSampler:
        """The sampler of a ``train_dataloader``: seeded with ``seed_everything``'s seed (the
        same on every process), this process's share under ``trainer`` (``None``: one process)."""
        return cls(
            lengths,
            batch_size,
            seed=torch.initial_seed() % 2**31,
            num_replicas=trainer.world_size if trainer is not None else 1,
            rank=trainer.global_rank if trainer is not None else 0,
        )

    def global_order(self) -> list[int]:
        """This epoch's grouped order of every index, before it is shared among processes."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        size = self.batch_size * self.megabatch_factor * self.num_replicas
        grouped = []
        for chunk in order.split(size):
            # stable, so equal lengths keep their shuffled order
            grouped += chunk[torch.sort(self.lengths[chunk], descending=True, stable=True).indices].tolist()
        return grouped

    def __iter__(self) -> Iterator[int]:
        order = self.global_order()
        while len(order) < self.total_size:
            order += order[: self.total_size - len(order)]
        return iter(order[self.rank : self.total_size : self.num_replicas])


def padding_fraction(lengths: Sequence[float], order: Sequence[int], batch_size: int) -> float:
    """The share of a padded batch that is padding, over the batches of ``order``:
    ``1 - sum(lengths) / sum(batch size x longest in batch)``."""
    values = torch.as_tensor(list(lengths), dtype=torch.float64)[torch.as_tensor(list(order))]
    padded = sum(float(chunk.max()) * len(chunk) for chunk in values.split(batch_size))
    return 1.0 - float(values.sum()) / padded if padded else 0.0
