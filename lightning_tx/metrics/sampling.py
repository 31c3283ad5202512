"""Bounded uniform samples of a stream of frames, mergeable across processes (bottom-k).

Every frame gets a random key; a sample keeps the frames with the ``max_samples`` smallest
keys. Samples of disjoint streams merge by keeping the smallest keys of their union, which
is again a uniform sample of all the frames: so a sample per process, gathered at
``compute()``, equals a sample drawn from everything (and, below the cap, holds every frame
whatever the split).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor


def process_rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def sample_keys(seed: int, stream: int, seen: int, count: int, device: torch.device | str = "cpu") -> Tensor:
    """``[count]`` float64 keys, uniform in [0, 1), for the frames ``seen .. seen + count`` of
    one process's stream ``stream``: they depend on (seed, stream, process rank, frames
    seen), never on how the frames were batched."""
    entropy = [seed, stream, process_rank(), seen]
    generator = torch.Generator()
    generator.manual_seed(int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]))
    return torch.rand(count, generator=generator, dtype=torch.float64).to(device)


def keep_smallest(max_samples: int, keys: Tensor, *columns: Tensor) -> tuple[Tensor, ...]:
    """The ``max_samples`` rows with the smallest ``keys`` (rows of every column kept alike)."""
    if keys.numel() <= max_samples:
        return (keys, *columns)
    keys, order = torch.topk(keys, max_samples, largest=False, sorted=False)
    return (keys, *(column[order] for column in columns))
