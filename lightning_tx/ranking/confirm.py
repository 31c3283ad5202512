"""Confirmation: fine-tune the best-ranked candidates with one recipe and check the ranking."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import instantiate_class
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from lightning.pytorch.utilities.warnings import PossibleUserWarning

from lightning_tx.data.datamodule import SpeechDataModule
from lightning_tx.encoders.base import FrozenEncoder
from lightning_tx.finetune.cache import CachedFeatureDataModule
from lightning_tx.finetune.module import FineTuneModule
from lightning_tx.loggers import TxWandbLogger
from lightning_tx.ranking.report import write_confirmation
from lightning_tx.ranking.statistics import rank_agreement, result_reliability, result_standard_error
from lightning_tx.scoring.publish import slug

# Trainer settings a confirming fine-tune inherits from the trainer that runs `confirm`.
TRAINER_KEYS = ("accelerator", "devices", "precision", "num_nodes", "strategy")
# what `lightning.pytorch.loops.fit_loop` warns when a module starts training in eval mode
EVAL_MODE_WARNING = r"Found \d+ module\(s\) in eval mode at the start of training"


@dataclass
class ConfirmSettings:
    """What ``confirm`` fine-tunes and how.

    A result users can trust is not one run at one learning rate: a candidate that fails
    with the recipe's rate would read as a bad model. So each candidate trains at every rate
    of ``learning_rates`` with the first seed, keeps the rate with the best validation
    result, trains again at that rate with the other ``seeds``, and reports the mean test
    result over the seeds with its standard deviation.

    Attributes:
        ranking: path of a ``ranking.json`` written by ``rank``.
        top_k: fine-tune the ``top_k`` best-ranked candidates...
        all: ...or all of them.
        only: run just the ``only``-th selected candidate (0-based) and write its result files,
            e.g. one cluster job each; a later ``confirm`` without ``only`` collects them.
        max_epochs: epochs of each fine-tune.
        limit_train_batches: as the ``Trainer`` argument, for each fine-tune.
        cache_features: with a ``mode="frozen"`` recipe, compute each candidate's frames once
            and train the head on them (:class:`~lightning_tx.finetune.CachedFeatureDataModule`).
        learning_rates: the head's learning rates to sweep, chosen on the validation split;
            ``None``: the recipe's ``learning_rate`` alone.
        seeds: each fine-tune is seeded (head initialisation, batch order) with these.
    """

    ranking: str
    top_k: int = 3
    all: bool = False
    only: int | None = None
    max_epochs: int = 5
    limit_train_batches: float | int = 1.0
    cache_features: bool = True
    learning_rates: list[float] | None = None
    seeds: list[int] = field(default_factory=lambda: [0])

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("confirm needs at least one seed (--seeds)")
        if self.learning_rates is not None and (not self.learning_rates or min(self.learning_rates) <= 0):
            raise ValueError(f"--learning_rates must be positive numbers, got {self.learning_rates}")


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
    recipe = {k: v for k, v in model.hparams.items() if k not in ("encoder", "layer") and not k.startswith("_")}
    rates = settings.learning_rates or [recipe.get("learning_rate", 1e-3)]
    if len(rates) > 1:
        datamodule.setup("fit")
        if not datamodule.records("val"):
            raise ValueError(
                f"--learning_rates {rates} are chosen on the validation split, but {datamodule.manifest} has no "
                "'val' rows: add some, or give one learning rate"
            )
    results_dir = run_dir / "confirm"
    results_dir.mkdir(parents=True, exist_ok=True)
    context = _Context(datamodule, settings, run_dir, ranking.get("wandb_group") or slug(ranking_path.parent.name),
                       trainer_kwargs)  # fmt: skip
    selected = range(len(rows)) if settings.only is None else [settings.only]
    confirmed = {i: _confirm_one(i, rows[i], recipe, rates, context) for i in selected}
    if settings.only is not None:
        return {}
    datamodule.setup("test")
    test_utterances = len(datamodule.records("test"))
    return _publish_confirmation(ranking, [confirmed[i] for i in range(len(rows))], run_dir, loggers, test_utterances)


@dataclass
class _Context:
    datamodule: SpeechDataModule
    settings: ConfirmSettings
    run_dir: Path
    group: str
    trainer_kwargs: dict[str, Any]


def _confirm_one(index: int, row: dict, recipe: dict, rates: list[float], context: _Context) -> dict[str, Any]:
    """One candidate: the sweep with the first seed, then the other seeds at the chosen rate;
    each run's result file is reused when it exists. Returns the candidate's summary."""
    settings = context.settings
    data = None  # built on the first run that is not on disk, then shared by the others

    def run(rate: float, seed: int) -> dict[str, Any]:
        nonlocal data
        file = context.run_dir / "confirm" / result_name(row, {**recipe, "learning_rate": rate}, settings, seed)
        if not file.is_file():  # an identical fine-tune (candidate, layer, recipe, seed) is reused
            encoder = instantiate_class((), row["encoder"])
            if data is None:
                data = _finetune_data(context.datamodule, encoder, row["layer"], recipe, settings)
            _finetune_one(index, row, {**recipe, "learning_rate": rate}, seed, encoder, data, file, context)
        return json.loads(file.read_text(encoding="utf-8"))

    first = settings.seeds[0]
    sweep = {rate: run(rate, first) for rate in rates}
    higher = next(iter(sweep.values()))["result_higher_is_better"]
    # the best validation result; ties go to the first rate listed
    best = max(rates, key=lambda rate: (1 if higher else -1) * sweep[rate]["val"])
    runs = [sweep[best]] + [run(best, seed) for seed in settings.seeds[1:]]
    results = [r["result"] for r in runs]
    mean = sum(results) / len(results)
    std = math.sqrt(sum((r - mean) ** 2 for r in results) / (len(results) - 1)) if len(results) > 1 else 0.0
    return {
        "candidate": row["candidate"],
        "layer": row["layer"],
        "scores": row["scores"],
        "result": mean,
        "result_std": std,
        "results": results,
        "seeds": list(settings.seeds),
        "learning_rate": best,
        "val": {str(rate): sweep[rate]["val"] for rate in rates},
        "result_metric": runs[0]["result_metric"],
        "result_higher_is_better": higher,
        "seconds": sum(r["seconds"] for r in [*sweep.values(), *runs[1:]]),
    }


def _defined(statistics: dict[str, float]) -> dict[str, float | None]:
    """Undefined statistics (fewer than 3 candidates, constant results) as None, never NaN."""
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in statistics.items()}


def result_name(row: dict[str, Any], recipe: dict[str, Any], settings: ConfirmSettings, seed: int) -> str:
    """The result file of one fine-tune: named by candidate, layer and a digest of the
    encoder, the recipe (its learning rate included), the epochs and the seed, so another
    recipe never reuses these results."""
    what = {
        "encoder": row["encoder"],
        "layer": row["layer"],
        "recipe": recipe,
        "max_epochs": settings.max_epochs,
        "limit_train_batches": settings.limit_train_batches,
        "seed": seed,
    }
    digest = hashlib.sha1(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{slug(row['candidate'])}-L{row['layer']}-{digest}.json"


def _finetune_data(
    datamodule: SpeechDataModule, encoder: FrozenEncoder, layer: int, recipe: dict, settings: ConfirmSettings
) -> L.LightningDataModule:
    if recipe.get("mode", "frozen") == "frozen" and settings.cache_features:  # the encoder runs once, not per run
        return CachedFeatureDataModule(datamodule, encoder, layer)
    return datamodule.at_sample_rate(encoder.sample_rate)


@contextmanager
def _without_trainer_banner() -> Iterator[None]:
    """Without the info lines a new ``Trainer`` logs (devices, tips): the trainer running
    ``confirm`` said them once, and a sweep builds a trainer for each of its runs."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")  # where rank_zero_info writes
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _finetune_one(
    index: int,
    row: dict,
    recipe: dict,
    seed: int,
    encoder: FrozenEncoder,
    data: L.LightningDataModule,
    result_file: Path,
    context: _Context,
) -> None:
    settings = context.settings
    name = f"{row['candidate']}-L{row['layer']}"
    rate = recipe["learning_rate"]
    rank_zero_info(f"[confirm] fine-tuning {index + 1}: {name}, learning rate {rate:g}, seed {seed}")
    L.seed_everything(seed, verbose=False)
    module = FineTuneModule(encoder=encoder, layer=row["layer"], **recipe)
    run_name = f"{slug(name)}-lr{rate:g}-seed{seed}"
    run_root = context.run_dir / "confirm" / slug(name)
    loggers = [
        CSVLogger(str(run_root), name="csv", version=run_name),
        TxWandbLogger(
            save_dir=str(context.run_dir),
            group=context.group,
            job_type="finetune",
            name=run_name,
            config={
                "candidate": row["candidate"],
                "layer": row["layer"],
                "encoder": row["encoder"],
                "scores": row["scores"],
                "recipe": recipe,
                "seed": seed,
                "max_epochs": settings.max_epochs,
            },
        ),
    ]
    with _without_trainer_banner():
        trainer = L.Trainer(
            **{k: v for k, v in context.trainer_kwargs.items() if k in TRAINER_KEYS},
            max_epochs=settings.max_epochs,
            limit_train_batches=settings.limit_train_batches,
            logger=loggers,
            enable_checkpointing=False,
            enable_model_summary=False,
            default_root_dir=str(run_root),
            num_sanity_val_steps=0,
        )
    started = time.perf_counter()
    with warnings.catch_warnings():
        if module.hparams.mode != "full":
            # Its frozen encoder layers are in eval mode on purpose (fixed features); Lightning
            # would say so once per run of the sweep.
            warnings.filterwarnings("ignore", EVAL_MODE_WARNING, PossibleUserWarning)
        trainer.fit(module, datamodule=data)
    metric = module.result_metric
    # fit validates after every epoch: its last value is the validation result of the final weights
    validated = trainer.callback_metrics.get(f"val/{metric}")
    val = float(validated) if validated is not None else float("nan")
    tested = trainer.test(module, datamodule=data, verbose=False)[0]
    seconds = time.perf_counter() - started
    result = float(tested[f"test/{metric}"])
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.summary.update({f"test/{metric}": result, f"val/{metric}": val})
            logger.experiment.finish()
    if trainer.is_global_zero:
        result_file.write_text(
            json.dumps(
                {
                    "candidate": row["candidate"],
                    "layer": row["layer"],
                    "learning_rate": rate,
                    "seed": seed,
                    "result": result,
                    "val": val,
                    "result_metric": metric,
                    "result_higher_is_better": metric != "per",
                    "seconds": seconds,
                },
                indent=2,
            ),
            encoding="utf-8",
        )


@rank_zero_only
def _publish_confirmation(
    ranking: dict, runs: list[dict], run_dir: Path, loggers: list[Logger], test_utterances: int
) -> dict[str, Any]:
    estimators = ranking["estimators"]
    results = [r["result"] if r["result_higher_is_better"] else -r["result"] for r in runs]
    # an accuracy is a mean over test utterances; phone error rate's errors cluster within them
    test_units = test_utterances if runs[0]["result_metric"] == "accuracy" and test_utterances else None
    errors = [result_standard_error(r["result"], r["result_std"], len(r["results"]), test_units) for r in runs]
    reliability = result_reliability(results, errors)
    if len(runs) < 3:
        rank_zero_warn(
            f"only {len(runs)} fine-tuned candidates: rank correlations need at least 3 (use --top_k 3 or "
            "--all true); reporting the results and top-1 regret alone"
        )
    report = {
        "ranking": ranking.get("manifest"),
        "estimators": estimators,
        "result_metric": runs[0]["result_metric"],
        "seeds": runs[0]["seeds"],
        "runs": runs,
        "agreement": {
            e: _defined(
                rank_agreement([r["scores"][e] for r in runs], results, higher_is_better=ranking["higher_is_better"][e])
            )
            for e in estimators
        },
        "reliability": None if math.isnan(reliability) else reliability,
        "reliability_test_units": test_units,
        "finetune_seconds": sum(r["seconds"] for r in runs),
    }
    paths = write_confirmation(run_dir, report)
    flat = {f"confirm/{e}/{k}": v for e, a in report["agreement"].items() for k, v in a.items() if v is not None}
    if report["reliability"] is not None:
        flat["confirm/reliability"] = report["reliability"]
    metric = report["result_metric"]
    columns = ["candidate", "layer", *estimators, metric, f"{metric}_std", "learning_rate"]
    data = [
        [r["candidate"], r["layer"], *(r["scores"][e] for e in estimators), r["result"], r["result_std"],
         r["learning_rate"]]
        for r in runs
    ]  # fmt: skip
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
