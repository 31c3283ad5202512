"""Does choosing the default estimator on the benchmark generalise to a task it has not seen?

The default estimator is the one with the best mean Spearman rho across the benchmark's
tasks, and rank-average ensembles of a chosen subset could score higher still. Either
choice is fitted to these tasks. This script checks how well each way of choosing does on
a task left out of the choice (leave one task out): for each task it picks the best
estimator, or the best rank-average ensemble of 2 or 3 estimators from ``POOL``, by
mean model-wise rho on the other tasks, then reports that pick's rho on the held-out
task. A way of choosing that fits the benchmark more than it estimates better loses on
held-out tasks. Reads ``docs/benchmark.json`` (no training; a few seconds).

    .venv/bin/python benchmarks/selection_check.py [--benchmark docs/benchmark.json]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import sys
from pathlib import Path

from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).parent))
from quality_report import rank_estimators, views  # noqa: E402

from lightning_tx.scoring.ensemble import rank_average  # noqa: E402

# The estimators ensembles are drawn from: the best of each family in docs/benchmark.md.
POOL = (
    "pooled_logistic_probe",
    "pooled_voice_probe",
    "pooled_logme_standardized",
    "pooled_logme",
    "pooled_halpha",
    "pooled_hscore",
    "pooled_probe",
    "knn",
    "logme",
    "halpha",
    "hscore",
    "gbc",
    "class_swd",
)
VIEW = "model-wise, frozen head"


def default_estimator() -> str:
    """The estimator that orders rankings: the first of ``configs/rank.yaml``."""
    return rank_estimators()[0]


def spearman(scores: list[float], truth: list[float]) -> float:
    """rho over the items with a score (0 with fewer than 3, as the benchmark counts n/a)."""
    keep = [i for i, s in enumerate(scores) if s is not None and math.isfinite(s)]
    if len(keep) < 3:
        return 0.0
    return float(spearmanr([scores[i] for i in keep], [truth[i] for i in keep]).statistic)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default=str(Path(__file__).parent.parent / "docs" / "benchmark.json"))
    args = parser.parse_args(argv)
    data = json.loads(Path(args.benchmark).read_text(encoding="utf-8"))
    tasks = list(data["tasks"])
    estimators = [e for e in data["estimators"] if e != "ensemble"]
    view = {t: views(data["tasks"][t], estimators, data["seeds"])[VIEW] for t in tasks}

    def rho(task: str, members: tuple[str, ...]) -> float:
        scores = view[task]["scores"]
        if len(members) == 1:
            values = scores[members[0]]
        else:
            rows = [{m: math.nan if scores[m][i] is None else scores[m][i] for m in members}
                    for i in range(len(view[task]["items"]))]  # fmt: skip
            values = rank_average(rows, members)
        return spearman(values, view[task]["truth"])

    singles = [(e,) for e in POOL]
    subsets = singles + [c for size in (2, 3) for c in itertools.combinations(POOL, size)]
    table = {c: {t: rho(t, c) for t in tasks} for c in subsets}
    held_out = {}
    print(f"{len(tasks)} tasks, {VIEW}; picks chosen on the other {len(tasks) - 1} tasks\n")
    print("| held-out task | best single estimator | its rho | best ensemble of <= 3 | its rho |")
    print("|---|---|---:|---|---:|")
    for task in tasks:
        others = [t for t in tasks if t != task]
        picks = [max(space, key=lambda c: statistics.mean(table[c][t] for t in others)) for space in (singles, subsets)]
        held_out[task] = [table[pick][task] for pick in picks]
        single, subset = picks
        chosen = " + ".join(subset)
        print(f"| {task} | {single[0]} | {table[single][task]:.3f} | {chosen} | {table[subset][task]:.3f} |")
    means = [statistics.mean(values[i] for values in held_out.values()) for i in (0, 1)]
    best_fit = max(subsets, key=lambda c: statistics.mean(table[c].values()))
    print(f"\nmean held-out rho: best single estimator {means[0]:.3f}, best ensemble of <= 3 {means[1]:.3f}")
    default = default_estimator()
    print(f"fitted on all {len(tasks)} tasks (in-sample): {' + '.join(best_fit)} "
          f"{statistics.mean(table[best_fit].values()):.3f}; {default} (configs/rank.yaml's first) "
          f"{statistics.mean(table[(default,)].values()):.3f}")  # fmt: skip
    return {"single": means[0], "ensemble": means[1]}


if __name__ == "__main__":
    main()
