"""Every metric under 2-process DDP (gloo, CPU, uneven shards) equals one process."""

import os
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(__file__))
from conftest import classification_data  # noqa: E402

from lightning_tx.metrics import (  # noqa: E402
    GBC,
    ClassSlicedWasserstein,
    HScore,
    KNNAccuracy,
    LogME,
    SlicedWasserstein,
)

NUM_FEATURES, NUM_CLASSES = 12, 4
SPLIT = 310  # rank 0 gets 310 frames, rank 1 gets 1190: uneven shards


def _metrics():
    return {
        "logme": LogME(NUM_FEATURES, NUM_CLASSES),
        "hscore": HScore(NUM_FEATURES, NUM_CLASSES),
        "halpha": HScore(NUM_FEATURES, NUM_CLASSES, shrinkage=True),
        "gbc": GBC(NUM_FEATURES, NUM_CLASSES),
        "logme_standardized": LogME(NUM_FEATURES, NUM_CLASSES, standardize=True),
        "knn": KNNAccuracy(NUM_FEATURES, NUM_CLASSES, max_samples=2000),
        "class_swd": ClassSlicedWasserstein(NUM_FEATURES, NUM_CLASSES, max_samples=2000),
        "swd": SlicedWasserstein(NUM_FEATURES, max_samples=5000),
        "swd_raw": SlicedWasserstein(NUM_FEATURES, max_samples=5000, normalize=False),
    }


def _data():
    features, labels = classification_data(1500, NUM_FEATURES, NUM_CLASSES, seed=7)
    source = torch.randn(900, NUM_FEATURES, generator=torch.Generator().manual_seed(8), dtype=torch.float64)
    return features, labels, source


def _score(metrics, features, labels, source, batch=128):
    for name, metric in metrics.items():
        for f, y in zip(features.split(batch), labels.split(batch), strict=False):
            if name.startswith("swd"):
                metric.update(f, domain="target")
            else:
                metric.update(f, y)
        if name.startswith("swd"):
            for chunk in source.split(batch):
                metric.update(chunk, domain="source")
    return {name: float(metric.compute()) for name, metric in metrics.items()}


def _worker(rank, world_size, init_file, out_file):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        features, labels, source = _data()
        if rank == 0:
            shard = slice(0, SPLIT)
            source_shard = slice(0, 100)
        else:
            shard = slice(SPLIT, None)
            source_shard = slice(100, None)
        results = _score(_metrics(), features[shard], labels[shard], source[source_shard])
        if rank == 0:
            torch.save(results, out_file)
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_process_gloo_equals_single_process(tmp_path):
    out_file = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(out_file)), nprocs=2, join=True)
    distributed = torch.load(out_file)
    single = _score(_metrics(), *_data())
    for name in ("logme", "hscore", "halpha", "gbc", "logme_standardized", "class_swd"):
        assert distributed[name] == pytest.approx(single[name], rel=1e-10), name
    assert distributed["knn"] == single["knn"]  # below the cap: the same frames, the same votes
    for name in ("swd", "swd_raw"):  # below the cap every frame is kept: identical samples
        assert distributed[name] == pytest.approx(single[name], rel=1e-12), name
