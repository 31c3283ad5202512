"""The main job: rank 14 speech encoders on confusable spoken words and confirm by fine-tuning.

On a CPU, with nothing downloaded:

1. synthesize the task (cached in ``data/demo``): 24 English words, 12 of them minimal pairs
   (bad/bed, ship/sheep, three/tree), spoken by 12 synthetic voices that no candidate was
   trained on; 8 voices train, 1 validates, 3 test, so the task is tested on unseen voices;
2. ``train.py rank``: score every layer of the benchmark's versioned zoo
   (``benchmarks/zoo/candidates.yaml``: log-mel Conformers pre-trained with CTC at three
   budgets, masked units in English and German, speaker classes, German phones, a larger
   and a smaller one, a raw-waveform wav2vec2-style model, untrained networks, filterbank
   and MFCC) with ``configs/rank.yaml``'s estimators (the default first: it orders the
   ranking, the next break its ties), then a few others to compare;
3. ``train.py confirm --all true``: fine-tune a linear head on every scored layer with one
   recipe (frozen, z-scored features, computed once per layer), its learning rate chosen on
   the validation split from a sweep, then the mean test accuracy over 3 seeds; report how
   well each estimator's ranking matches it.

Everything (ranking and confirmation files, plots, the resolved configs, CSV logs and the
offline W&B runs) lands in one run directory, printed at the end.

    python -m lightning_tx.demo [--run-dir runs/demo] [--data-dir data] [--quick]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from datetime import datetime
from pathlib import Path

import yaml

from lightning_tx.cli import main as cli_main
from lightning_tx.data.corpus import CONFUSABLE_WORDS, WORDS, build_corpus

# Compared with them after configs/rank.yaml's chain, which orders the ranking as `train.py rank`
# does with that config: the confirming head's own softmax model, and the ensemble with its members.
# TIH-SWD is not among them: it needs each encoder's own pre-training audio, and one
# ``--source_manifest`` cannot be that for a zoo of several languages and none.
COMPARED_ESTIMATORS = ("pooled_logistic_probe", "pooled_logme", "ensemble")
# The head's learning rates, chosen per candidate on the validation split (features z-scored).
CONFIRM_LEARNING_RATES = (0.01, 0.03, 0.1)
# The zoo pre-trained by benchmarks/ranking_quality.py, versioned with the code (pre-training
# gives other weights on other CPUs); its checkpoint paths are relative to the repository.
REPOSITORY = Path(__file__).resolve().parent.parent
ZOO = REPOSITORY / "benchmarks" / "zoo" / "candidates.yaml"
RANK_CONFIG = REPOSITORY / "configs" / "rank.yaml"
QUICK_ZOO = ("fbank", "mfcc", "untrained", "ctc-en-small")
# Voices drawn with another seed than the benchmark corpus's (0 and 1), whose voices the zoo
# was pre-trained on: same synthesizer, new (voice, variant, pitch, rate) draws.
VOICE_SEED = 2


def demo_estimators(path: Path = RANK_CONFIG) -> list[str]:
    """The estimators of ``configs/rank.yaml`` (the first orders the ranking, the next break
    its exact ties, as ``train.py rank`` does with that config), then
    :data:`COMPARED_ESTIMATORS`."""
    if not path.is_file():
        raise FileNotFoundError(f"the demo ranks with the estimators of {path}, which is missing: run it from a "
                                "checkout of the repository (`make demo`)")  # fmt: skip
    chain = yaml.safe_load(path.read_text(encoding="utf-8"))["model"]["init_args"]["estimators"]
    return list(dict.fromkeys([*chain, *COMPARED_ESTIMATORS]))


def zoo_candidates(path: Path = ZOO, only: tuple[str, ...] | None = None) -> list[dict]:
    """The candidates of a ``train.py rank`` config fragment, checkpoint paths made absolute
    (relative ones are relative to the repository), keeping the names in ``only`` if given."""
    if not path.is_file():
        raise FileNotFoundError(
            f"the demo ranks the zoo described in {path}, which is missing: run it from a checkout "
            "of the repository (`make demo`), where benchmarks/zoo is versioned"
        )
    candidates = yaml.safe_load(path.read_text(encoding="utf-8"))["model"]["init_args"]["candidates"]
    if only is not None:
        missing = sorted(set(only) - {c["name"] for c in candidates})
        if missing:
            raise ValueError(f"{path} has no candidates named {missing}")
        candidates = [c for c in candidates if c["name"] in only]
    for candidate in candidates:
        init_args = candidate["encoder"].get("init_args", {})
        if init_args.get("state_dict"):
            checkpoint = REPOSITORY / init_args["state_dict"]
            if not checkpoint.is_file():
                raise FileNotFoundError(f"{path}: candidate {candidate['name']!r} names {checkpoint}, which is missing")
            init_args["state_dict"] = str(checkpoint)
    return candidates


def build_task(folder: Path, quick: bool = False) -> Path:
    """The demo's task manifest (cached): confusable English words, whole voices held out
    for validation (one) and test (the last ones)."""
    task = folder / "minimal-pairs.csv"
    if task.is_file():
        return task
    voices, test_voices = (6, 2) if quick else (12, 3)
    manifest = build_corpus(
        folder / "corpus",
        languages=("en",),
        speakers_per_language=voices,
        repetitions=2 if quick else 3,
        seed=VOICE_SEED,
        words={"en": WORDS["en"][:6] + CONFUSABLE_WORDS["en"][:6] if quick else WORDS["en"] + CONFUSABLE_WORDS["en"]},
    )
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    speakers = sorted({row["speaker"] for row in rows})
    val, test = speakers[-test_voices - 1], set(speakers[-test_voices:])
    for row in rows:
        row["split"] = "test" if row["speaker"] in test else "val" if row["speaker"] == val else "train"
        for column in ("audio", "alignment"):
            row[column] = f"corpus/{row[column]}"
    with open(task, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return task


def run(run_dir: Path, data_dir: Path, quick: bool = False) -> dict:
    started = time.perf_counter()
    folder = data_dir / ("demo-quick" if quick else "demo")
    if not (folder / "minimal-pairs.csv").is_file():
        print(f"[demo] synthesizing confusable English words by voices no candidate heard -> {folder}")
    task = build_task(folder, quick)
    candidates = zoo_candidates(only=QUICK_ZOO if quick else None)

    run_dir.mkdir(parents=True, exist_ok=True)
    common = {
        "seed_everything": 0,
        "data": {"manifest": str(task), "batch_size": 16, "max_seconds": 5.0},
    }
    rank_config = {
        **common,
        "trainer": {
            "default_root_dir": str(run_dir),
            "accelerator": "cpu",
            "devices": 1,
            "enable_checkpointing": False,
        },
        "model": {
            "class_path": "lightning_tx.ranking.RankingModule",
            "init_args": {
                "estimators": demo_estimators(),
                "frame_labels": "utterance",
                "candidates": candidates,
            },
        },
    }
    confirm_config = {
        **common,
        "trainer": {"default_root_dir": str(run_dir), "accelerator": "cpu", "devices": 1},
        "model": {
            "class_path": "lightning_tx.finetune.FineTuneModule",
            "init_args": {
                "task": "classification",
                "mode": "frozen",
                "learning_rate": 0.01,
            },
        },
    }
    for name, config in (("rank", rank_config), ("confirm", confirm_config)):
        (run_dir / f"{name}.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    cli_main(["rank", "--config", str(run_dir / "rank.yaml")])
    cli_main(
        [
            "confirm",
            "--config",
            str(run_dir / "confirm.yaml"),
            "--ranking",
            str(run_dir / "ranking.json"),
            "--all",
            "true",
            "--max_epochs",
            "2" if quick else "15",
            "--learning_rates",
            str(list(CONFIRM_LEARNING_RATES[::2] if quick else CONFIRM_LEARNING_RATES)),
            "--seeds",
            "[0]" if quick else "[0, 1, 2]",
        ]
    )

    report = json.loads((run_dir / "confirm.json").read_text(encoding="utf-8"))
    title = f"confusable English words, unseen voices, {len(candidates)} encoders, every layer"
    print(f"\n=== lightning-tx demo: {title} ===")
    print((run_dir / "ranking.md").read_text(encoding="utf-8"))
    # confirm has just logged confirm.md (the results and their agreement with the ranking)
    print(f"confirmed by fine-tuning: the tables above the ranking ({run_dir / 'confirm.md'})")
    rows = json.loads((run_dir / "ranking.json").read_text(encoding="utf-8"))["rows"]
    scoring = sum({row["candidate"]: row["seconds"] for row in rows}.values())  # one pass per encoder
    print(
        f"scoring all {len(rows)} (encoder, layer) pairs: {scoring:.0f} s; "
        f"fine-tuning every one of them: {report['finetune_seconds']:.0f} s; "
        f"whole job: {time.perf_counter() - started:.0f} s"
    )
    print(f"run directory: {run_dir.resolve()}")
    return report


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default=None, help="default: runs/demo-<timestamp>")
    parser.add_argument("--data-dir", default="data", help="cache for the synthesized task (data/demo)")
    parser.add_argument("--quick", action="store_true", help="a small corpus and short training (a smoke run)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir or f"runs/demo-{datetime.now():%Y%m%d-%H%M%S}")
    return run(run_dir, Path(args.data_dir), quick=args.quick)


if __name__ == "__main__":
    main()
