"""The Gram-matrix kernel inside a frozen pass: torch ``addmm`` against SciPy's BLAS ``dsyrk``.

Frame-level LogME, H-score and H_alpha add ``F^T F`` of every batch's frames to a float64
accumulator (``lightning_tx.functional.linalg.add_gram_``). On its own, ``dsyrk`` does half
the flops of a matrix product; inside a pass, SciPy's BLAS threads and torch's threads take
turns between the encoder's ops and the statistics, and each pool's threads spin for a while
after their work and slow the other's. This script times the same frozen pass (one of the
benchmark's zoo encoders on one task's training split, every layer, frame-level LogME)
with the current kernel and with the previous one (``dsyrk`` through SciPy after a cast
through numpy, defined here as the baseline), alternating them in this process, and prints
the times, their ratio and the largest relative difference between the two passes' scores.

    .venv/bin/python benchmarks/gram_threads.py                      # four of the zoo (about 2 min)
    .venv/bin/python benchmarks/gram_threads.py --candidates fbank --repeats 5

The corpus and zoo are the benchmark's (``benchmarks/ranking_quality.py``), built or reused
from the same caches.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from scipy.linalg import blas

sys.path.insert(0, str(Path(__file__).parent))  # the benchmark's own modules

import ranking_quality as benchmark  # noqa: E402

import lightning_tx.metrics.class_statistics as class_statistics_metrics  # noqa: E402
import lightning_tx.metrics.logme as logme_metrics  # noqa: E402
from lightning_tx.data import SpeechDataModule  # noqa: E402
from lightning_tx.scoring import EncoderFrames, ScoringSession, TaskLabels, speech_loader  # noqa: E402
from lightning_tx.scoring import score as score_pass  # noqa: E402

KERNEL_USERS = (logme_metrics, class_statistics_metrics)  # the modules that call add_gram_


def dsyrk_add_gram_(gram_upper: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """The previous CPU kernel (the baseline): the upper triangle of ``gram_upper`` += ``F^T F``
    by one BLAS ``dsyrk`` on numpy views, after a cast to float64 through numpy."""
    rows = features.detach().contiguous().numpy().astype(np.float64)
    if rows.shape[0] == 0:
        return gram_upper
    target = gram_upper.numpy().T  # Fortran-ordered view: its lower triangle is our upper one
    result = blas.dsyrk(1.0, rows.T, beta=1.0, c=target, trans=0, lower=1, overwrite_c=1)
    if not np.shares_memory(result, target):
        target[...] = result
    return gram_upper


@contextmanager
def gram_kernel(kernel):
    """Every metric module that imported ``add_gram_`` calls ``kernel`` inside the block."""
    saved = [module.add_gram_ for module in KERNEL_USERS]
    for module in KERNEL_USERS:
        module.add_gram_ = kernel
    try:
        yield
    finally:
        for module, original in zip(KERNEL_USERS, saved, strict=True):
            module.add_gram_ = original


def timed_pass(encoder, dm, labels, estimators) -> tuple[float, dict]:
    started = time.perf_counter()
    session = ScoringSession(EncoderFrames(encoder, labels), estimators, labels.num_classes)
    scores = score_pass(session, speech_loader(dm, sample_rate=encoder.sample_rate))
    return time.perf_counter() - started, scores


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="minimal-pairs", choices=benchmark.ALL_TASKS)
    parser.add_argument("--candidates", nargs="+", default=["ctc-en-large", "ctc-en@12", "ctc-en-small", "w2v-ctc-en"])
    parser.add_argument("--estimators", nargs="+", default=["logme"])
    parser.add_argument("--repeats", type=int, default=3, help="passes per kernel, alternating")
    parser.add_argument("--work", default=None, help="the benchmark's cache (default: data/benchmark)")
    args = parser.parse_args(argv)
    setting = benchmark.FULL
    torch.set_num_threads(setting.threads)
    work = Path(args.work or "data/benchmark").resolve()
    manifest = benchmark.build(setting, work)
    zoo = {entry["name"]: entry for entry in benchmark.build_zoo(setting, manifest, Path(__file__).parent / "zoo")}
    unknown = sorted(set(args.candidates) - set(zoo))
    if unknown:
        parser.error(f"--candidates {unknown} are not in the zoo {sorted(zoo)}")
    task = next(t for t in benchmark.make_tasks(setting, manifest, work) if t.name == args.task)
    dm = SpeechDataModule(manifest=task.manifest, label_column=task.label_column, batch_size=16, max_seconds=5.0)
    dm.setup()
    labels = TaskLabels.from_datamodule(dm, task.frame_labels, exclude=("sil",) if task.ctc else ())
    print(f"task {task.name}: {len(dm.records('train'))} training utterances; {torch.get_num_threads()} threads; "
          f"estimators {args.estimators}; {args.repeats} passes per kernel, alternating\n")  # fmt: skip
    print(f"{'candidate':>14} {'layers':>6} {'width':>5} {'addmm s':>8} {'dsyrk s':>8} {'dsyrk / addmm':>13} "
          f"{'max rel diff':>12}")  # fmt: skip
    ratios = {}
    for name in args.candidates:
        encoder = benchmark.make_encoder(zoo[name])
        timed_pass(encoder, dm, labels, args.estimators)  # warm-up: caches, allocator, thread pools
        times: dict[str, list[float]] = {"addmm": [], "dsyrk": []}
        scores = {}
        for _ in range(args.repeats):
            seconds, scores["addmm"] = timed_pass(encoder, dm, labels, args.estimators)
            times["addmm"].append(seconds)
            with gram_kernel(dsyrk_add_gram_):
                seconds, scores["dsyrk"] = timed_pass(encoder, dm, labels, args.estimators)
            times["dsyrk"].append(seconds)
        difference = max(
            abs(scores["addmm"][e][k] - scores["dsyrk"][e][k]) / max(abs(scores["dsyrk"][e][k]), 1e-300)
            for e in args.estimators
            for k in scores["dsyrk"][e]
        )
        new, old = statistics.median(times["addmm"]), statistics.median(times["dsyrk"])
        ratios[name] = old / new
        print(f"{name:>14} {encoder.num_layers:>6} {max(encoder.layer_dims):>5} {new:8.2f} {old:8.2f} "
              f"{old / new:13.2f} {difference:12.1e}", flush=True)  # fmt: skip
    print("\nmedian of each kernel's passes; 'dsyrk / addmm' > 1: the previous kernel was slower")
    return ratios


if __name__ == "__main__":
    main()
