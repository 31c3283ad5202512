"""Confirmation: fine-tune the best-ranked candidates with one recipe and check the ranking."""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import instantiate_class
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from lightning_tx.data.datamodule import SpeechDataModule
from lightning_tx.finetune.cache import CachedFeatureDataModule
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
        cache_features: with a ``mode="frozen"`` recipe, compute each candidate's frames once
            and train the head on them (:class:`~lightning_tx.finetune.CachedFeatureDataModule`).
    """

    ranking: str
    top_k: int = 3
    all: bool = False
    only: int | None = None
    max_epochs: int = 5
    limit_train_batches: float | int = 1.0
    cache_features: bool = True


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
    group = ranking.get("wandb_group") or slug(ranking_path.parent.name)
    selected = range(len(rows)) if settings.only is None else [settings.only]
    files = [results_dir / result_name(row, recipe, settings) for row in rows]
    for i in selected:
        if not files[i].is_file():  # an identical fine-tune (candidate, layer, recipe) is reused
            _finetune_one(i, rows[i], recipe, datamodule, settings, files[i], run_dir, group, trainer_kwargs)
    if settings.only is not None:
        return {}
    runs = [json.loads(file.read_text()) for file in files]
    return _publish_confirmation(ranking, runs, run_dir, loggers)


def _defined(statistics: dict[str, float]) -> dict[str, float | None]:
    """Undefined statistics (fewer than 3 candidates, constant results) as None, never NaN."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in statistics.items()}


def result_name(row: dict[str, Any], recipe: dict[str, Any], settings: ConfirmSettings) -> str:
    """The result file of one fine-tune: named by candidate, layer and a digest of the
    encoder and the recipe (and epochs), so another recipe never reuses these results."""
    what = {
        "encoder": row["encoder"],
        "layer": row["layer"],
        "recipe": recipe,
        "max_epochs": settings.max_epochs,
        "limit_train_batches": settings.limit_train_batches,
    }
    digest = hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{slug(row['candidate'])}-L{row['layer']}-{digest}.json"


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
        TxWandbLogger(
            save_dir=str(run_dir),
            group=group,
            job_type="finetune",
            name=slug(name),
            config={
                "candidate": row["candidate"],
                "layer": row["layer"],
                "encoder": row["encoder"],
                "scores": row["scores"],
                "recipe": recipe,
                "max_epochs": settings.max_epochs,
            },
        ),
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
    started = time.perf_counter()
    if recipe.get("mode", "frozen") == "frozen" and settings.cache_features:  # the encoder runs once, not per epoch
        data = CachedFeatureDataModule(datamodule, encoder, row["layer"])
    else:
        data = datamodule.at_sample_rate(encoder.sample_rate)
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
    if len(runs) < 3:
        rank_zero_warn(
            f"only {len(runs)} fine-tuned candidates: rank correlations need at least 3 (use --top_k 3 or "
            "--all true); reporting the results and top-1 regret alone"
        )
    report = {
        "ranking": ranking.get("manifest"),
        "estimators": estimators,
        "result_metric": runs[0]["result_metric"],
        "runs": runs,
        "agreement": {
            e: _defined(
                rank_agreement([r["scores"][e] for r in runs], results, higher_is_better=ranking["higher_is_better"][e])
            )
            for e in estimators
        },
        "finetune_seconds": sum(r["seconds"] for r in runs),
    }
    paths = write_confirmation(run_dir, report)
    flat = {f"confirm/{e}/{k}": v for e, a in report["agreement"].items() for k, v in a.items() if v is not None}
    metric = report["result_metric"]
    columns = ["candidate", "layer", *estimators, metric]
    data = [[r["candidate"], r["layer"], *(r["scores"][e] for e in estimators), r["result"]] for r in runs]
    for logger in loggers:
        logger.log_metrics(flat)
        if isinstance(logger, WandbLogger):
            import wandb

            table = wandb.Table(columns=columns, data=data)
            charts = {f"confirm/{e}_vs_{metric}": wandb.plot.scatter(table, e, metric, title=f"{e} vs {metric}")
                      for e in estimators}  # fmt: skip
            logger.experiment.log({"confirm/table": table, **charts})
            logger.experiment.summary.update(flat)
        logger.save()
    rank_zero_info("\n" + paths["md"].read_text(encoding="utf-8"))
    return report
