"""Confirmation: fine-tune the best-ranked candidates with one recipe and check the ranking."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import instantiate_class
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lightning_tx.data.datamodule import SpeechDataModule
from lightning_tx.finetune.module import FineTuneModule
from lightning_tx.loggers import TxWandbLogger
from lightning_tx.ranking.report import write_confirmation
from lightning_tx.ranking.statistics import rank_agreement
from lightning_tx.scoring.publish import slug

# Trainer settings a confirming fine-tune inherits from the trainer that runs `confirm`.
TRAINER_KEYS = ("accelerator", "devices", "precision", "num_nodes", "strategy")


@dataclass
class ConfirmSettings:
    """What ``confirm`` fine-tunes and how.

    Attributes:
        ranking: path of a ``ranking.json`` written by ``rank``.
        top_k: fine-tune the ``top_k`` best-ranked candidates...
        all: ...or all of them.
        only: run just the ``only``-th selected candidate (0-based) and write its result file,
            e.g. one cluster job each; a later ``confirm`` without ``only`` collects them.
        max_epochs: epochs of each fine-tune.
        limit_train_batches: as the ``Trainer`` argument, for each fine-tune.
    """

    ranking: str
    top_k: int = 3
    all: bool = False
    only: int | None = None
    max_epochs: int = 5
    limit_train_batches: float | int = 1.0


def confirm_ranking(
    model: FineTuneModule,
    datamodule: SpeechDataModule,
    settings: ConfirmSettings,
    run_dir: Path,
    trainer_kwargs: dict[str, Any],
    loggers: list[Logger],
) -> dict[str, Any]:
    """Fine-tune the selected rows of a ranking with ``model``'s recipe (its own encoder, if
    any, is ignored), test each, and write ``confirm.{json,md,png}``; returns the report
    (empty with ``settings.only``). Result files already written are reused."""
    ranking_path = Path(settings.ranking)
    if not ranking_path.is_file():
        raise FileNotFoundError(f"ranking file {settings.ranking!r} does not exist: run `train.py rank` first")
    ranking = json.loads(ranking_path.read_text(encoding="utf-8"))
    rows = ranking["rows"] if settings.all else ranking["rows"][: settings.top_k]
    if settings.only is not None and not 0 <= settings.only < len(rows):
        raise ValueError(f"--only must be in [0, {len(rows) - 1}], got {settings.only}")
    results_dir = run_dir / "confirm"
    results_dir.mkdir(parents=True, exist_ok=True)
    recipe = {k: v for k, v in model.hparams.items() if k not in ("encoder", "layer") and not k.startswith("_")}
    group = slug(ranking_path.parent.name)
    selected = range(len(rows)) if settings.only is None else [settings.only]
    for i in selected:
        result_file = results_dir / f"{i:03d}.json"
        if not result_file.is_file():
            _finetune_one(i, rows[i], recipe, datamodule, settings, result_file, run_dir, group, trainer_kwargs)
    if settings.only is not None:
        return {}
    runs = [json.loads((results_dir / f"{i:03d}.json").read_text()) for i in range(len(rows))]
    return _publish_confirmation(ranking, runs, run_dir, loggers)


def _finetune_one(
    index: int,
    row: dict,
    recipe: dict,
    datamodule: SpeechDataModule,
    settings: ConfirmSettings,
    result_file: Path,
    run_dir: Path,
    group: str,
    trainer_kwargs: dict[str, Any],
) -> None:
    name = f"{row['candidate']}-L{row['layer']}"
    rank_zero_info(f"[confirm] fine-tuning {index + 1}: {name}")
    encoder = instantiate_class((), row["encoder"])
    module = FineTuneModule(encoder=encoder, layer=row["layer"], **recipe)
    run_root = run_dir / "confirm" / slug(name)
    loggers = [
        CSVLogger(str(run_root), name="csv"),
        TxWandbLogger(save_dir=str(run_dir), group=group, job_type="confirm", name=slug(name)),
    ]
    trainer = L.Trainer(
        **{k: v for k, v in trainer_kwargs.items() if k in TRAINER_KEYS},
        max_epochs=settings.max_epochs,
        limit_train_batches=settings.limit_train_batches,
        logger=loggers,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=str(run_root),
        num_sanity_val_steps=0,
    )
    data = datamodule.at_sample_rate(encoder.sample_rate)
    started = time.perf_counter()
    trainer.fit(module, datamodule=data)
    tested = trainer.test(module, datamodule=data, verbose=False)[0]
    seconds = time.perf_counter() - started
    result = float(tested[f"test/{module.result_metric}"])
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update({f"test/{module.result_metric}": result})
            logger.experiment.finish()
    if trainer.is_global_zero:
        result_file.write_text(
            json.dumps(
                {
                    "candidate": row["candidate"],
                    "layer": row["layer"],
                    "scores": row["scores"],
                    "result": result,
                    "result_metric": module.result_metric,
                    "result_higher_is_better": module.result_metric != "per",
                    "seconds": seconds,
                },
                indent=2,
            ),
            encoding="utf-8",
        )


@rank_zero_only
def _publish_confirmation(ranking: dict, runs: list[dict], run_dir: Path, loggers: list[Logger]) -> dict[str, Any]:
    estimators = ranking["estimators"]
    results = [r["result"] if r["result_higher_is_better"] else -r["result"] for r in runs]
    report = {
        "ranking": ranking.get("manifest"),
        "estimators": estimators,
        "result_metric": runs[0]["result_metric"],
        "runs": runs,
        "agreement": {
            e: rank_agreement([r["scores"][e] for r in runs], results, higher_is_better=ranking["higher_is_better"][e])
            for e in estimators
        },
        "finetune_seconds": sum(r["seconds"] for r in runs),
    }
    paths = write_confirmation(run_dir, report)
    flat = {f"confirm/{e}/{k}": v for e, a in report["agreement"].items() for k, v in a.items()}
    for logger in loggers:
        logger.log_metrics(flat)
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update(flat)
        logger.save()
    rank_zero_info("\n" + paths["md"].read_text(encoding="utf-8"))
    return report
