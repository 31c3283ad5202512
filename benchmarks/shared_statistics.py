"""Several estimators for the price of one: the scoring engine's shared per-layer statistics.

LogME, H-score, H_alpha and GBC are all functions of per-class sums and the Gram matrix.
The engine (``lightning_tx.scoring.LayerScorer``) keeps one accumulator per layer for all of
them; the baseline, run in the same process on the same frames, is one standalone metric
per (layer, estimator), each with its own states (each of LogME, H-score and H_alpha then
accumulates its own D x D Gram matrix). Prints the seconds of each (best of 3) and the
ratios to LogME alone (the issue's target: four estimators at most 1.35x LogME alone).

    .venv/bin/python benchmarks/shared_statistics.py           # 6 layers, 19,200 frames, D = 768
    .venv/bin/python benchmarks/shared_statistics.py --quick   # small sizes, seconds
"""

from __future__ import annotations

import argparse
import time

import torch

from lightning_tx.metrics import build_metric
from lightning_tx.scoring import LayerScorer

FOUR = ["logme", "hscore", "halpha", "gbc"]


def batches(layers: int, frames: int, dim: int, classes: int, batch_frames: int = 3200, seed: int = 0):
    """``([B, T, D]`` per layer, mask, labels) batches of padded utterances with class structure."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(layers, classes, dim, generator=g)
    steps = 100
    for _ in range(frames // batch_frames):
        utterances = batch_frames // steps
        labels = torch.randint(0, classes, (utterances,), generator=g)
        hidden = [0.1 * centers[k][labels].unsqueeze(1) + torch.randn(utterances, steps, dim, generator=g)
                  for k in range(layers)]  # fmt: skip
        yield hidden, torch.ones(utterances, steps, dtype=torch.bool), labels.unsqueeze(1).expand(-1, steps)


def timed(run, repeats: int = 3) -> tuple[float, dict]:
    """The best of ``repeats`` wall times (seconds) and the result."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def engine(data, estimators, dim, classes, layers):
    scorer = LayerScorer([dim] * layers, estimators, classes)
    for hidden, mask, labels in data:
        scorer.update(hidden, mask, labels)
    return scorer.compute()


def separate(data, estimators, dim, classes, layers):
    metrics = {(k, e): build_metric(e, dim, classes) for k in range(layers) for e in estimators}
    for hidden, mask, labels in data:
        for (k, _), metric in metrics.items():
            metric.update(hidden[k][mask], labels[mask])
    results = {e: {} for e in estimators}
    for (k, e), metric in metrics.items():
        results[e][k] = float(metric.compute())
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    layers, frames, dim, classes = (2, 6400, 64, 8) if args.quick else (6, 19_200, 768, 40)
    data = list(batches(layers, frames, dim, classes))
    print(f"{layers} layers, {frames:,} frames, D = {dim}, C = {classes}, {torch.get_num_threads()} threads")
    alone, reference = timed(lambda: engine(data, ["logme"], dim, classes, layers))
    four, shared = timed(lambda: engine(data, FOUR, dim, classes, layers))
    baseline, separately = timed(lambda: separate(data, FOUR, dim, classes, layers))
    worst = max(abs(shared[e][k] - separately[e][k]) / max(abs(separately[e][k]), 1e-12)
                for e in FOUR for k in range(layers))  # fmt: skip
    print(f"  LogME alone (engine)                        {alone:7.2f} s")
    print(f"  LogME + H-score + H_alpha + GBC (engine)    {four:7.2f} s   {four / alone:.2f}x LogME alone")
    print(f"  the same, one metric per estimator          {baseline:7.2f} s   {baseline / alone:.2f}x LogME alone")
    print(f"  largest relative difference engine vs separate metrics: {worst:.1e}")
    assert abs(reference["logme"][0] - shared["logme"][0]) <= 1e-12 * abs(shared["logme"][0])


if __name__ == "__main__":
    main()
