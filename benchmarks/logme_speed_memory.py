"""LogME: streamed metric vs a straightforward numpy implementation of the reference.

Speed: N = 200,000 frames, D = 768, C = 40. Ours streams batches of 4,096 frames into
``lightning_tx.metrics.LogME`` (float64 sufficient statistics) and computes once; the
baseline holds the whole [N, D] float64 matrix, takes its thin SVD and loops over classes
with the reference fixed-point iteration (thuml/LogME's algorithm, in numpy). Both run in
this process on the same frames; the script prints both scores, their relative
difference and the speed ratio.

Memory: peak resident memory of a fresh process that streams N = 100,000 and then
N = 1,000,000 frames (generated batch by batch) through the metric: it must stay flat.

    .venv/bin/python benchmarks/logme_speed_memory.py            # full sizes (about 2-3 min)
    .venv/bin/python benchmarks/logme_speed_memory.py --quick    # small sizes, seconds
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import torch

from lightning_tx.metrics import LogME

BATCH = 4096


def frame_batches(num_frames: int, dim: int, num_classes: int, seed: int = 0):
    """Float32 frames with class structure, generated batch by batch (never all at once)."""
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_classes, dim, generator=g)
    mixing = torch.randn(dim, dim, generator=g) / dim**0.5
    for start in range(0, num_frames, BATCH):
        n = min(BATCH, num_frames - start)
        labels = torch.randint(0, num_classes, (n,), generator=g)
        noise = torch.randn(n, dim, generator=g) @ mixing
        yield 0.3 * centers[labels] + noise + 2.0, labels


def ours(batches, dim: int, num_classes: int) -> float:
    """Stream ``(features [n, D], labels [n])`` batches into the metric, then compute."""
    metric = LogME(dim, num_classes)
    for features, labels in batches:
        metric.update(features, labels)
    return float(metric.compute())


def baseline(features: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """The reference algorithm: thin SVD of the [N, D] matrix, one fixed point per class."""
    n, d = features.shape
    u, s, _ = np.linalg.svd(features, full_matrices=False)
    keep = s > 1e-10
    u, sigma = u[:, keep], s[keep] ** 2
    evidences = []
    for c in range(num_classes):
        y = (labels == c).astype(np.float64)
        x2 = (u.T @ y) ** 2
        res_x2 = y @ y - x2.sum()
        alpha = beta = 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = (sigma / (sigma + t)).sum()
            m2 = (sigma * x2 / (t + sigma) ** 2).sum()
            res2 = (x2 / (1 + sigma / t) ** 2).sum() + res_x2
            alpha, beta = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (
            d / 2 * np.log(alpha)
            + n / 2 * np.log(beta)
            - 0.5 * np.log(alpha + beta * sigma).sum()
            - beta / 2 * res2
            - alpha / 2 * m2
            - n / 2 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))


def peak_memory_child(num_frames: int, dim: int, num_classes: int) -> None:
    ours(frame_batches(num_frames, dim, num_classes), dim, num_classes)
    # VmHWM: this process's own peak; ru_maxrss would inherit the parent's peak across exec.
    with open("/proc/self/status") as status:
        peak_kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    print(peak_kib)


def peak_memory(num_frames: int, dim: int, num_classes: int) -> float:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--memory-child",
            str(num_frames),
            "--dim",
            str(dim),
            "--classes",
            str(num_classes),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(out.strip().splitlines()[-1]) / 1024  # MiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--classes", type=int, default=40)
    parser.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child is not None:
        peak_memory_child(args.memory_child, args.dim, args.classes)
        return
    dim, classes = (64, 8) if args.quick else (args.dim, args.classes)
    speed_n, memory_ns = (20_000, (10_000, 100_000)) if args.quick else (200_000, (100_000, 1_000_000))

    print(f"torch {torch.__version__}, numpy {np.__version__}, threads {torch.get_num_threads()}")
    print("LogME peak memory (fresh process, streamed):")
    peaks = [peak_memory(n, dim, classes) for n in memory_ns]
    for n, peak in zip(memory_ns, peaks, strict=False):
        print(f"  N={n:>9,}  peak RSS {peak:8.1f} MiB")
    print(f"  ratio {peaks[1] / peaks[0]:.3f} for {memory_ns[1] // memory_ns[0]}x the frames")
    print(f"LogME speed: N={speed_n:,} frames, D={dim}, C={classes}, batches of {BATCH}")
    batches = list(frame_batches(speed_n, dim, classes))  # generated up front, not timed
    start = time.perf_counter()
    score_ours = ours(batches, dim, classes)
    time_ours = time.perf_counter() - start

    features = torch.cat([f for f, _ in batches]).double().numpy()
    labels = torch.cat([y for _, y in batches]).numpy()
    del batches
    start = time.perf_counter()
    score_base = baseline(features, labels, classes)
    time_base = time.perf_counter() - start
    del features

    rel = abs(score_ours - score_base) / abs(score_base)
    print(f"  ours (streamed metric)        {time_ours:8.2f} s   score {score_ours:.10f}")
    print(f"  numpy reference (thin SVD)    {time_base:8.2f} s   score {score_base:.10f}")
    print(f"  relative difference {rel:.2e};  speed-up {time_base / time_ours:.1f}x")


if __name__ == "__main__":
    main()
