"""Padding in training batches: shuffled vs length-grouped (``group_by_length=True``).

For one epoch of a manifest's train split, prints the share of each padded batch that is
padding and the padded audio-seconds the encoder processes, for a plain shuffle and for
:class:`~lightning_tx.data.sampling.LengthGroupedSampler`, and their ratio (mean and spread
over seeds). Reads durations from the file headers only.

    .venv/bin/python benchmarks/padding.py [--manifest data/corpus/manifest.csv] [--batch-size 16]

The default manifest is the built-in corpus (``lightning_tx.data.corpus``, 960 utterances),
synthesized into ``data/corpus`` on first use.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from lightning_tx.data import SpeechDataModule
from lightning_tx.data.corpus import build_corpus
from lightning_tx.data.sampling import LengthGroupedSampler, padding_fraction

DEFAULT_MANIFEST = "data/corpus/manifest.csv"


def padded_seconds(lengths: list[float], order: list[int], batch_size: int) -> float:
    values = torch.tensor(lengths, dtype=torch.float64)[torch.tensor(order)]
    return sum(float(chunk.max()) * len(chunk) for chunk in values.split(batch_size))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default=DEFAULT_MANIFEST)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=10.0)
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args(argv)
    if args.manifest == DEFAULT_MANIFEST and not Path(DEFAULT_MANIFEST).is_file():
        build_corpus(Path(DEFAULT_MANIFEST).parent)
    data = SpeechDataModule(manifest=args.manifest, batch_size=args.batch_size, max_seconds=args.max_seconds)
    data.setup("fit")
    lengths = data.dataset("train").durations()
    print(f"{args.manifest}: {len(lengths)} train utterances, {sum(lengths):.0f} s of audio, "
          f"{min(lengths):.2f}-{max(lengths):.2f} s each; batches of {args.batch_size}")  # fmt: skip
    rows = {"shuffled": [], "grouped": []}
    for seed in range(args.seeds):
        shuffled = torch.randperm(len(lengths), generator=torch.Generator().manual_seed(seed)).tolist()
        grouped = list(LengthGroupedSampler(lengths, args.batch_size, seed=seed))
        for name, order in (("shuffled", shuffled), ("grouped", grouped)):
            rows[name].append((padding_fraction(lengths, order, args.batch_size),
                               padded_seconds(lengths, order, args.batch_size)))  # fmt: skip
    print("| order | padding share of a batch | padded audio-seconds per epoch |")
    print("|---|---:|---:|")
    for name, values in rows.items():
        shares, seconds = zip(*values, strict=True)
        print(f"| {name} | {statistics.mean(shares):.3f} ± {statistics.pstdev(shares):.3f} | "
              f"{statistics.mean(seconds):.0f} ± {statistics.pstdev(seconds):.0f} |")  # fmt: skip
    ratio = [s / g for (_, s), (_, g) in zip(rows["shuffled"], rows["grouped"], strict=True)]
    print(f"padded audio-seconds, shuffled / grouped: {statistics.mean(ratio):.2f}x "
          f"(± {statistics.pstdev(ratio):.2f} over {args.seeds} seeds)")  # fmt: skip


if __name__ == "__main__":
    main()
