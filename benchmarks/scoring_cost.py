"""Scoring cost against the fine-tuning it replaces, on the benchmark's corpus, zoo and tasks.

For every candidate of the benchmark's zoo that has weights to fine-tune, on one task's
training split, in this process:

- **scoring**: the frozen pass that scores every layer, once with the default estimator
  alone (the first of ``configs/rank.yaml``, or ``--estimator``'s) and once with all of ``configs/rank.yaml``'s
  estimators, through the scoring engine as ``train.py rank`` runs it;
- **one epoch of fine-tuning**: ``FineTuneModule(mode="full")`` on the same split through
  Lightning's ``Trainer`` (the head on the last layer, every encoder weight training), the
  work a fine-tune repeats every epoch.

The fine-tuning that a ranking replaces is ``configs/confirm.yaml``'s sweep for every
candidate: each learning rate with the first seed, then the other seeds at the best rate,
``max_epochs`` each, so ``(rates + seeds - 1) x max_epochs`` epochs per candidate. The
script prints the measured times and the ratio of scoring to that sweep, counting one
fine-tune per encoder (not one per layer, which is what the ranking compares), so the
ratio is an upper bound.

    .venv/bin/python benchmarks/scoring_cost.py                  # minimal-pairs, whole zoo (about 5 min)
    .venv/bin/python benchmarks/scoring_cost.py --task phones
    .venv/bin/python benchmarks/scoring_cost.py --estimator pooled_logistic_probe   # another one alone
    .venv/bin/python benchmarks/scoring_cost.py --quick          # the quick setting's corpus and zoo

The corpus and zoo are the benchmark's (``benchmarks/ranking_quality.py``), built or reused
from the same caches.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import lightning as L
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))  # the benchmark's own modules

import ranking_quality as benchmark  # noqa: E402
from quality_report import rank_estimators  # noqa: E402

from lightning_tx.data import SpeechDataModule  # noqa: E402
from lightning_tx.finetune import FineTuneModule  # noqa: E402
from lightning_tx.metrics import get_estimator  # noqa: E402
from lightning_tx.scoring import EncoderFrames, ScoringSession, TaskLabels, speech_loader  # noqa: E402
from lightning_tx.scoring import score as score_pass  # noqa: E402

CONFIGS = Path(__file__).parent.parent / "configs"


def confirm_epochs(path: Path = CONFIGS / "confirm.yaml") -> tuple[int, dict]:
    """Epochs of fine-tuning per candidate in ``configs/confirm.yaml``'s sweep, and its settings."""
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    rates, seeds = len(config.get("learning_rates") or [None]), len(config.get("seeds") or [0])
    return (rates + seeds - 1) * config["max_epochs"], {
        "learning rates": rates,
        "seeds": seeds,
        "epochs": config["max_epochs"],
    }


def scoring_seconds(encoder, dm: SpeechDataModule, labels: TaskLabels, estimators: list[str]) -> float:
    started = time.perf_counter()
    session = ScoringSession(EncoderFrames(encoder, labels), estimators, labels.num_classes)
    score_pass(session, speech_loader(dm, sample_rate=encoder.sample_rate))
    return time.perf_counter() - started


def epoch_seconds(encoder, dm: SpeechDataModule, num_classes: int) -> float:
    """Wall time of one training epoch of full fine-tuning (no validation)."""
    L.seed_everything(0, verbose=False)
    module = FineTuneModule(encoder=encoder, layer=-1, mode="full", num_classes=num_classes)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    started = time.perf_counter()
    trainer.fit(module, train_dataloaders=dm.train_dataloader())
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="minimal-pairs", choices=benchmark.ALL_TASKS)
    parser.add_argument("--quick", action="store_true", help="the quick setting's corpus and zoo")
    parser.add_argument("--estimator", default=None, help="the estimator timed alone (default: rank.yaml's first)")
    parser.add_argument("--work", default=None, help="the benchmark's cache (default: data/benchmark[-quick])")
    args = parser.parse_args(argv)
    setting = benchmark.QUICK if args.quick else benchmark.FULL
    if args.task not in setting.tasks:
        parser.error(f"--task {args.task} is not in this setting's tasks {setting.tasks}")
    torch.set_num_threads(setting.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # one Trainer per candidate
    work = Path(args.work or ("data/benchmark-quick" if args.quick else "data/benchmark")).resolve()
    manifest = benchmark.build(setting, work)
    models = work / "models" if args.quick else Path(__file__).parent / "zoo"
    zoo = benchmark.build_zoo(setting, manifest, models)
    task = next(t for t in benchmark.make_tasks(setting, manifest, work) if t.name == args.task)
    if task.ctc:
        parser.error("the fine-tuning epoch here is a classification head: pick an utterance task")

    estimators = rank_estimators()
    epochs, sweep = confirm_epochs()
    dm = SpeechDataModule(manifest=task.manifest, label_column=task.label_column, batch_size=16, max_seconds=5.0)
    dm.setup()
    labels = TaskLabels.from_datamodule(dm, task.frame_labels)
    print(f"task {task.name}: {len(dm.records('train'))} training utterances, {labels.num_classes} classes; "
          f"{torch.get_num_threads()} threads")  # fmt: skip
    alone = args.estimator or estimators[0]
    get_estimator(alone)  # an unknown name fails here, before any pass
    role = "default" if alone == estimators[0] else "alone"
    print(f"{role} estimator: {alone}; configs/rank.yaml: {', '.join(estimators)}")
    print(f"fine-tuning replaced: configs/confirm.yaml's sweep, {sweep} -> {epochs} epochs per candidate\n")
    print(f"{'candidate':>14} {'layers':>6} {role + ' s':>9} {'rank.yaml s':>11} {'1 epoch s':>9}")
    rows: dict[str, dict[str, float]] = {}
    for entry in zoo:
        encoder = benchmark.make_encoder(entry)
        if not any(p.numel() for p in encoder.parameters()):
            continue  # fbank, MFCC: nothing to fine-tune, so no fine-tuning to replace
        row = {
            "default": scoring_seconds(encoder, dm, labels, [alone]),
            "rank": scoring_seconds(encoder, dm, labels, estimators),
            "epoch": epoch_seconds(encoder, dm, labels.num_classes),
        }
        rows[entry["name"]] = row
        print(f"{entry['name']:>14} {encoder.num_layers:>6} {row['default']:9.2f} {row['rank']:11.2f} "
              f"{row['epoch']:9.2f}", flush=True)  # fmt: skip
    total = {key: sum(row[key] for row in rows.values()) for key in ("default", "rank", "epoch")}
    replaced = total["epoch"] * epochs
    print(f"\n{len(rows)} candidates: scoring {total['default']:.1f} s ({alone}), "
          f"{total['rank']:.1f} s (configs/rank.yaml); one epoch of fine-tuning each {total['epoch']:.1f} s, "
          f"the sweep {replaced:.0f} s")  # fmt: skip
    print(f"scoring / one epoch of fine-tuning: {total['default'] / total['epoch']:.2f} ({alone}), "
          f"{total['rank'] / total['epoch']:.2f} (configs/rank.yaml)")  # fmt: skip
    print(f"scoring / the fine-tuning sweep it replaces: {100 * total['default'] / replaced:.1f}% ({alone}), "
          f"{100 * total['rank'] / replaced:.1f}% (configs/rank.yaml)")  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
