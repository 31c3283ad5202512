"""LengthGroupedSampler: shuffled, grouped by length, every index once per epoch, per process."""

import random

import pytest
import torch

from lightning_tx.data import SpeechDataModule
from lightning_tx.data.sampling import LengthGroupedSampler, padding_fraction

_RNG = random.Random(0)
LENGTHS = [_RNG.uniform(0.5, 10.0) for _ in range(203)]


def test_every_index_once_in_a_new_order_each_epoch():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=8, megabatch_factor=4, seed=3)
    first = list(sampler)
    assert sorted(first) == list(range(len(LENGTHS))) and len(sampler) == len(LENGTHS)
    assert list(sampler) == first  # deterministic for a seed and an epoch
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(len(LENGTHS)))


def test_each_mega_batch_is_sorted_longest_first_and_padding_shrinks():
    sampler = LengthGroupedSampler(LENGTHS, batch_size=8, megabatch_factor=4)
    order = list(sampler)
    for start in range(0, len(order), 32):
        chunk = [LENGTHS[i] for i in order[start : start + 32]]
        assert chunk == sorted(chunk, reverse=True)
    shuffled = torch.randperm(len(LENGTHS), generator=torch.Generator().manual_seed(0)).tolist()
    assert padding_fraction(LENGTHS, order, 8) < padding_fraction(LENGTHS, shuffled, 8) / 2


def test_padding_fraction_from_its_definition():
    # batches [3, 1] and [2]: padded to 3 + 3 and 2 -> 1 - 6 / 8
    assert padding_fraction([1.0, 2.0, 3.0], [2, 0, 1], 2) == pytest.approx(0.25)


@pytest.mark.parametrize("processes", [2, 3])
def test_processes_share_one_grouped_order(processes):
    samplers = [
        LengthGroupedSampler(LENGTHS, batch_size=4, megabatch_factor=5, seed=1, num_replicas=processes, rank=r)
        for r in range(processes)
    ]
    shares = [list(s) for s in samplers]
    assert {len(share) for share in shares} == {len(samplers[0])}
    drawn = [i for share in shares for i in share]
    assert set(drawn) == set(range(len(LENGTHS)))  # every index, a few twice to even the shares
    assert len(drawn) - len(LENGTHS) < processes
    order = samplers[0].global_order()
    assert shares[1][:10] == order[1 : 10 * processes : processes]
    for share in shares:  # each process's batches are grouped too
        shuffled = random.Random(2).sample(share, len(share))
        assert padding_fraction(LENGTHS, share, 4) < padding_fraction(LENGTHS, shuffled, 4) / 2


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="batch_size and megabatch_factor"):
        LengthGroupedSampler(LENGTHS, batch_size=0)
    with pytest.raises(ValueError, match="one number per utterance"):
        LengthGroupedSampler([], batch_size=2)


def test_the_datamodule_groups_its_training_batches(tiny_corpus):
    data = SpeechDataModule(manifest=tiny_corpus, batch_size=4, group_by_length=True)
    data.setup("fit")
    loader = data.train_dataloader()
    assert isinstance(loader.sampler, LengthGroupedSampler)
    assert sorted(i for batch in loader for i in batch["indices"].tolist()) == list(range(len(data.records("train"))))
    assert not isinstance(data.val_dataloader().sampler, LengthGroupedSampler)
    plain = SpeechDataModule(manifest=tiny_corpus, batch_size=4)
    plain.setup("fit")
    assert not isinstance(plain.train_dataloader().sampler, LengthGroupedSampler)
    assert plain.num_workers == (0 if not torch.cuda.is_available() else plain.num_workers)
