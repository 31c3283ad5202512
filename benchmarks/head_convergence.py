"""Are the benchmark's frozen heads trained long enough? Test accuracy per learning rate and step budget.

The ground truth of ``benchmarks/ranking_quality.py`` picks each head's learning rate on the
validation split (one held-out voice). That choice is only harmless where the heads have
converged: then every rate gives about the same head. For some utterance tasks of the full
setting, this trains the benchmark's frozen heads (``probes.train_frozen_heads``, 3 seeds)
on every layer of every candidate at several step budgets, and prints per budget:

- the mean test accuracy over all layers at each rate;
- the spread across the rates of ``probes.Recipe`` (max - min test accuracy), averaged over layers;
- how far the result at the rate the validation split picks among those is from the best of
  them at the largest budget (test accuracy, averaged over layers).

The budget ``30 epochs`` is the length of the recipe before ``Recipe.steps`` (its steps vary
with the task's size; that recipe swept 1e-3, 3e-3 and 1e-2).

    .venv/bin/python benchmarks/head_convergence.py [--tasks noisy few-shot-5 minimal-pairs]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import ranking_quality as rq  # noqa: E402
from probes import Recipe, encode_split, frozen_heads, head_inputs  # noqa: E402

from lightning_tx.data import SpeechDataModule  # noqa: E402
from lightning_tx.data.datamodule import collate_utterances  # noqa: E402
from lightning_tx.scoring import TaskLabels  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=["noisy", "few-shot-5", "minimal-pairs"])
    parser.add_argument("--steps", type=int, nargs="+", default=[1500, 3000], help="budgets besides 30 epochs")
    parser.add_argument("--rates", type=float, nargs="+", default=[1e-3, 3e-3, 1e-2, 3e-2])
    parser.add_argument("--work", default="data/benchmark")
    args = parser.parse_args(argv)
    torch.set_num_threads(rq.FULL.threads)
    work = Path(args.work).resolve()
    manifest = rq.build(rq.FULL, work)
    zoo = rq.build_zoo(rq.FULL, manifest, Path(__file__).parent / "zoo")
    recipe, rates, seeds = Recipe(), tuple(args.rates), rq.FULL.seeds
    swept = [r for r in rates if r in recipe.learning_rates]
    out = {}
    for task in rq.make_tasks(rq.FULL, manifest, work):
        if task.name not in args.tasks or task.ctc:
            continue
        started = time.perf_counter()
        dm = SpeechDataModule(manifest=task.manifest, label_column=task.label_column, batch_size=16, max_seconds=5.0)
        dm.setup()
        labels = TaskLabels.from_datamodule(dm, task.frame_labels)
        count = len(dm.dataset("train", sample_rate=16000))
        budgets = {"30 epochs": 30 * math.ceil(count / recipe.batch_size), **{f"{s} steps": s for s in args.steps}}
        layers = []  # per layer: {budget: {rate: (mean val, mean test)}}
        for entry in zoo:
            encoder = rq.make_encoder(entry)
            splits = {s: encode_split(encoder, dm.dataset(s, sample_rate=encoder.sample_rate), collate_utterances, 16,
                                      labels, False) for s in ("train", "val", "test")}  # fmt: skip
            for layer in range(encoder.num_layers):
                inputs = head_inputs(splits, layer, pooled=True)
                results = {}
                for budget, steps in budgets.items():
                    trained = frozen_heads(splits, inputs, num_outputs=labels.num_classes, ctc=False, rates=rates,
                                           seeds=seeds, recipe=dataclasses.replace(recipe, steps=steps))  # fmt: skip
                    results[budget] = {
                        r: tuple(statistics.mean(x) for x in zip(*(run[:2] for run in trained[r]), strict=True))
                        for r in rates
                    }
                layers.append(results)
        last = list(budgets)[-1]
        best_last = [max(layer[last][r][1] for r in swept) for layer in layers]
        seconds = time.perf_counter() - started
        print(f"\n{task.name}: {count} training utterances, {len(layers)} layers ({seconds:.0f} s)")
        print("| budget | steps | " + " | ".join(f"test at {r:g}" for r in rates) + " | spread over "
              + "/".join(f"{r:g}" for r in swept) + " | val-chosen vs best of " + last + " |")  # fmt: skip
        print("|---|---:|" + "---:|" * len(rates) + "---:|---:|")
        rows = {}
        for budget, steps in budgets.items():
            tests = {r: statistics.mean(layer[budget][r][1] for layer in layers) for r in rates}
            spread = statistics.mean(max(la[budget][r][1] for r in swept) - min(la[budget][r][1] for r in swept)
                                     for la in layers)  # fmt: skip
            chosen = [la[budget][max(swept, key=lambda r, la=la: la[budget][r][0])][1] for la in layers]
            error = statistics.mean(abs(c - b) for c, b in zip(chosen, best_last, strict=True))
            rows[budget] = {"tests": tests, "spread": spread, "chosen_error": error}
            print(f"| {budget} | {steps} | " + " | ".join(f"{tests[r]:.3f}" for r in rates)
                  + f" | {spread:.3f} | {error:.3f} |")  # fmt: skip
        out[task.name] = rows
    return out


if __name__ == "__main__":
    main()
