"""Host reads per scoring batch: the operations that would make the CPU wait for a GPU.

On a GPU, reading a value back to the host (``.item()``, ``int(t)``, ``bool(t)``, which run
``aten::_local_scalar_dense``) and ops whose output size depends on the data
(``aten::nonzero``, boolean-mask indexing, ``unique``, ``bincount``) stop the host until the
device catches up, and the device then idles while the host queues the next work. This
script counts those operations with the PyTorch profiler in one ``LayerScorer.update`` of
a large-size configuration (25 layers of 1024, LogME + H-score + GBC by default), on the
CPU: the counts are what the same update would do on a GPU, without needing one.

    .venv/bin/python benchmarks/host_reads.py [--layers 25] [--dim 1024] [--frames 2000]
"""

from __future__ import annotations

import argparse
from collections import Counter

import torch
from torch.profiler import ProfilerActivity, profile

from lightning_tx.scoring import LayerScorer

# Ops that read data back to the host, or whose output shape depends on the data.
HOST_READS = ("aten::_local_scalar_dense", "aten::nonzero", "aten::unique", "aten::_unique2", "aten::bincount")


def count_host_reads(scorer: LayerScorer, hidden: list[torch.Tensor], mask: torch.Tensor, labels: torch.Tensor):
    """Counts of each kind of host read in one ``scorer.update``. ``Tensor.tolist`` copies to
    the host without an aten op on the CPU, so it is counted by wrapping it."""
    counts = Counter()
    tolist = torch.Tensor.tolist

    def counted_tolist(tensor: torch.Tensor):
        counts["Tensor.tolist"] += 1
        return tolist(tensor)

    torch.Tensor.tolist = counted_tolist
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            scorer.update(hidden, mask, labels)
    finally:
        torch.Tensor.tolist = tolist
    for event in prof.events():
        if event.name in HOST_READS:
            counts[event.name] += 1
    return counts


def main(argv: list[str] | None = None) -> Counter:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--frames", type=int, default=2000, help="frames per utterance x utterances, about")
    parser.add_argument("--estimators", nargs="+", default=["logme", "hscore", "gbc"])
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args(argv)
    generator = torch.Generator().manual_seed(0)
    batch, steps = 16, max(2, args.frames // 16)
    hidden = [torch.randn(batch, steps, args.dim, generator=generator) for _ in range(args.layers)]
    lengths = torch.randint(steps // 2, steps + 1, (batch,), generator=generator)
    mask = torch.arange(steps) < lengths[:, None]
    labels = torch.randint(0, args.classes, (batch,), generator=generator)[:, None].expand(batch, steps)
    scorer = LayerScorer([args.dim] * args.layers, args.estimators, args.classes)
    scorer.update(hidden, mask, labels)  # warm-up
    counts = count_host_reads(scorer, hidden, mask, labels)
    total = sum(counts.values())
    print(f"one update: {args.layers} layers of {args.dim}, {int(mask.sum())} frames, {' + '.join(args.estimators)}")
    for name in (*HOST_READS, "Tensor.tolist"):
        print(f"  {name:28s} {counts.get(name, 0):5d}")
    print(f"  {'host reads per batch':28s} {total:5d}   ({total / args.layers:.2f} per layer)")
    return counts


if __name__ == "__main__":
    main()
