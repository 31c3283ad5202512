"""TIH-SWD speed: ``functional.sliced_wasserstein`` against POT on the same frames.

Both compute the sliced Wasserstein distance between two clouds of N frames of width D over
L random directions, with the same directions (our default ones are POT's for a seed).
Our input is float32 frames, as encoders produce them; POT gets the same frames in float64
(converted before timing), its exact path: on float32 input POT computes in float32 and is
off by about 4e-4 relative at this size (``--pot-float32`` times that path too). POT gets
its directions 100 at a time (its own for the seed; at once it needs over 20 GiB at L = 500). Prints
the values, their relative difference, the seconds of each (best of ``--repeats``) and the
speed-up, for each L.

    .venv/bin/python benchmarks/swd_speed.py            # N = 200,000 per side, D = 768, L = 50 and 500
    .venv/bin/python benchmarks/swd_speed.py --quick    # N = 20,000, seconds
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import torch

from lightning_tx.functional import sliced_wasserstein


def best_of(repeats: int, function):
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = function()
        times.append(time.perf_counter() - start)
    return min(times), value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200_000, help="N, frames per side")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--directions", type=int, nargs="+", default=[50, 500])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="N = 20,000")
    parser.add_argument("--pot-float32", action="store_true", help="also time POT on the float32 frames")
    args = parser.parse_args(argv)
    n = 20_000 if args.quick else args.frames
    g = torch.Generator().manual_seed(0)
    source = torch.randn(n, args.dim, generator=g)
    target = 1.5 * torch.randn(n, args.dim, generator=g) + 0.2
    source64, target64 = source.double().numpy(), target.double().numpy()
    print(f"N = {n:,} frames per side, D = {args.dim}, float32 frames, {torch.get_num_threads()} threads")
    for directions in args.directions:

        def ours(d=directions):
            return float(sliced_wasserstein(source, target, num_projections=d))

        def pot(d=directions, a=source64, b=target64):
            # POT holds several [N, L] float64 arrays at once (over 20 GiB at L = 500): give it
            # the same directions (POT's own for seed 42) 100 at a time, SW^2 being their mean.
            directions = ot.sliced.get_random_projections(a.shape[1], d, seed=42)
            squares = [
                ot.sliced_wasserstein_distance(a, b, projections=directions[:, i : i + 100]) ** 2 * min(100, d - i)
                for i in range(0, d, 100)
            ]
            return float(np.sqrt(sum(squares) / d))

        ours_s, ours_value = best_of(args.repeats, ours)
        pot_s, pot_value = best_of(args.repeats, pot)
        print(
            f"L = {directions:>4}: ours {ours_value:.10f} in {ours_s:6.2f} s | POT (float64) {pot_value:.10f} in "
            f"{pot_s:6.2f} s | relative difference {abs(ours_value - pot_value) / abs(pot_value):.1e} | "
            f"speed-up {pot_s / ours_s:.1f}x"
        )
        if args.pot_float32:
            pot32_s, pot32 = best_of(args.repeats, lambda d=directions: pot(d, source.numpy(), target.numpy()))
            print(
                f"          POT (float32) {pot32:.10f} in {pot32_s:6.2f} s | its relative error "
                f"{abs(pot32 - pot_value) / abs(pot_value):.1e} | our speed-up {pot32_s / ours_s:.1f}x"
            )


if __name__ == "__main__":
    main()
