"""The main job: rank speech encoders on a keyword-spotting task and confirm by fine-tuning.

On a CPU, with nothing downloaded:

1. synthesize the built-in corpus (English and German spoken keywords; cached in ``data/``)
   and a noisy copy of the English half (reverberation, pink noise at 5, 0 and -5 dB);
2. pre-train three small log-mel Conformers on the German half (cached), one per objective
   (CTC phones, speaker classes, masked units), so that the candidates differ as hub
   checkpoints do;
3. ``train.py rank``: score every layer of six encoders (log-mel filterbank, MFCC, the
   Conformer untrained, the three pre-trained Conformers) on English keyword spotting in
   noise with the benchmark's default estimator first (it orders the ranking), then
   the others for comparison (German audio as TIH-SWD's source domain);
4. ``train.py confirm --all true``: fine-tune a linear head on every scored layer with one
   recipe (frozen, z-scored features, computed once per layer), its learning rate chosen on
   the validation split from a sweep, then the mean test accuracy over 3 seeds; report how
   well each estimator's ranking matches it.

Everything (ranking and confirmation files, plots, the resolved configs, CSV logs and the
offline W&B runs) lands in one run directory, printed at the end.

    python -m lightning_tx.demo [--run-dir runs/demo] [--data-dir data] [--quick]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime
from pathlib import Path

import yaml

from lightning_tx.cli import main as cli_main
from lightning_tx.data.augment import degrade_manifest
from lightning_tx.data.corpus import build_corpus
from lightning_tx.pretraining import SMALL_CONFORMER, pretrain

# The benchmark's default first (it orders the ranking), then the others for comparison.
DEMO_ESTIMATORS = [
    "pooled_voice_probe",
    "pooled_logistic_probe",
    "pooled_logme_standardized",
    "pooled_logme",
    "ensemble",
    "logme",
    "halpha",
    "gbc",
    "sliced_wasserstein",
]
# The head's learning rates, chosen per candidate on the validation split (features z-scored).
CONFIRM_LEARNING_RATES = (0.01, 0.03, 0.1)
# Noise makes the task discriminate: on clean synthetic keywords most candidates reach 100%.
NOISE_SNRS_DB = (5.0, 0.0, -5.0)


# name -> (pre-training objective, what it learns); all on the German half, same budget
PRETRAINED = {
    "conformer-de-ctc": ("ctc", "German phones"),
    "conformer-de-speaker": ("speaker", "German speakers"),
    "conformer-de-units": ("masked_units", "masked units of German audio"),
}


def _candidates(pretrained: dict[str, Path]) -> list[dict]:
    conformer = "lightning_tx.encoders.ConformerEncoder"
    return [
        {"name": "fbank", "encoder": {"class_path": "lightning_tx.encoders.Filterbank", "init_args": {"n_mels": 40}}},
        {"name": "mfcc", "encoder": {"class_path": "lightning_tx.encoders.MFCC", "init_args": {"n_mfcc": 20}}},
        {
            "name": "conformer-untrained",
            "encoder": {"class_path": conformer, "init_args": {"state_dict": None, **SMALL_CONFORMER}},
        },
    ] + [
        {"name": name, "encoder": {"class_path": conformer, "init_args": {"state_dict": str(path), **SMALL_CONFORMER}}}
        for name, path in pretrained.items()
    ]


def run(run_dir: Path, data_dir: Path, quick: bool = False) -> dict:
    started = time.perf_counter()
    corpus = data_dir / ("corpus-quick" if quick else "corpus")
    if not (corpus / "manifest.csv").is_file():
        print(f"[demo] synthesizing the built-in corpus into {corpus}")
        build_corpus(
            corpus,
            speakers_per_language=3 if quick else 8,
            words_per_language=6 if quick else 12,
            repetitions=4 if quick else 5,
        )
    task = corpus / "noisy-en" / "manifest.csv"
    if not task.is_file():
        print(f"[demo] adding reverberation and pink noise (SNR {NOISE_SNRS_DB} dB) to the English half -> {task}")
        degrade_manifest(corpus / "manifest-en.csv", task.parent, NOISE_SNRS_DB, rt60=0.4, seed=0)
    pretrained = {}
    for name, (objective, what) in PRETRAINED.items():
        path = pretrained[name] = data_dir / "models" / f"{name}{'-quick' if quick else ''}.pt"
        if not path.is_file():
            print(f"[demo] pre-training a small Conformer on {what} -> {path}")
            pretrain(objective, corpus / "manifest-de.csv", path, max_epochs=3 if quick else 20)

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
                "estimators": DEMO_ESTIMATORS,
                "frame_labels": "utterance",
                "candidates": _candidates(pretrained),
                "metric_kwargs": {"sliced_wasserstein": {"max_samples": 20000}},
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

    cli_main(["rank", "--config", str(run_dir / "rank.yaml"), "--source_manifest", str(corpus / "manifest-de.csv")])
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
    print("\n=== lightning-tx demo: English keyword spotting in noise, 6 encoders, every layer ===")
    print((run_dir / "ranking.md").read_text(encoding="utf-8"))
    print((run_dir / "confirm.md").read_text(encoding="utf-8"))
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
    parser.add_argument("--data-dir", default="data", help="cache for the corpus and pre-trained models")
    parser.add_argument("--quick", action="store_true", help="a small corpus and short training (a smoke run)")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir or f"runs/demo-{datetime.now():%Y%m%d-%H%M%S}")
    return run(run_dir, Path(args.data_dir), quick=args.quick)


if __name__ == "__main__":
    main()
