"""TxTrainer: a Lightning ``Trainer`` with the ``rank`` and ``confirm`` subcommands."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.cli import instantiate_class
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only

from lightning_tx.data.datamodule import SpeechDataModule
from lightning_tx.finetune.module import FineTuneModule
from lightning_tx.loggers import TxWandbLogger
from lightning_tx.metrics.registry import get_estimator
from lightning_tx.ranking.module import RankingModule
from lightning_tx.ranking.report import ranking_markdown, sort_rows, write_confirmation, write_ranking
from lightning_tx.ranking.statistics import rank_agreement

_TRAINER_KEYS = ("accelerator", "devices", "precision", "num_nodes", "strategy")


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


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


class TxTrainer(L.Trainer):
    """``lightning.Trainer`` plus the ``rank`` and ``confirm`` subcommands of ``train.py``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._init_kwargs = dict(kwargs)
        super().__init__(*args, **kwargs)

    @property
    def run_dir(self) -> Path:
        return Path(self.default_root_dir)

    # ------------------------------------------------------------------ rank
    def rank(
        self,
        model: RankingModule,
        datamodule: SpeechDataModule,
        split: str = "train",
        source_manifest: str | None = None,
    ) -> dict[str, Any]:
        """Score every candidate's layers on the task's data; write the ranking files.

        Args:
            model: the :class:`RankingModule` (candidates and estimators).
            datamodule: the task's data.
            split: which split to score on.
            source_manifest: source-domain audio (a manifest; labels not needed) for the
                optimal-transport estimators.
        """
        if not isinstance(model, RankingModule):
            raise TypeError(f"`rank` needs model: lightning_tx.ranking.RankingModule, got {type(model).__name__}")
        datamodule.setup("validate")
        num_classes, vocabulary = self._task_labels(model, datamodule)
        model.prepare_labels(num_classes, vocabulary)
        source = None
        if model.needs_source:
            if source_manifest is None:
                raise ValueError(
                    "sliced_wasserstein compares source-domain frames with the task's frames: pass "
                    "--source_manifest (audio like the encoders' training data), or drop the estimator"
                )
            source = SpeechDataModule(
                manifest=source_manifest,
                batch_size=datamodule.batch_size,
                max_seconds=datamodule.max_seconds,
                shuffle=False,
                require_targets=False,
            )
            source.setup("validate")
        rows = []
        for index, candidate in enumerate(model.candidates):
            name = candidate.display_name()
            rank_zero_info(f"[rank] candidate {index + 1}/{len(model.candidates)}: {name}")
            datamodule.sample_rate = candidate.encoder.sample_rate
            loaders = [datamodule._loader(split, shuffle=False)]
            if source is not None:
                source.sample_rate = candidate.encoder.sample_rate
                loaders.append(source._loader("train", shuffle=False))
            model.active = index
            self.validate(model, dataloaders=loaders, verbose=False)
            spec = candidate.encoder.spec()
            for layer in sorted(next(iter(model.results.values()))):
                rows.append(
                    {
                        "candidate": name,
                        "layer": layer,
                        "encoder": spec,
                        "scores": {e: model.results[e][layer] for e in model.estimators},
                        "seconds": model.seconds,
                        "frame_rate": candidate.encoder.frame_rate,
                    }
                )
        primary = model.estimators[0]
        ranking = {
            "estimators": model.estimators,
            "primary": primary,
            "higher_is_better": {e: get_estimator(e).higher_is_better for e in model.estimators},
            "frame_labels": model.frame_labels,
            "num_classes": num_classes,
            "split": split,
            "manifest": str(datamodule.manifest or datamodule.folder),
            "rows": sort_rows(rows, primary),
        }
        self._publish_ranking(ranking)
        return ranking

    @staticmethod
    def _task_labels(model: RankingModule, datamodule: SpeechDataModule) -> tuple[int, dict[str, int] | None]:
        if model.frame_labels in ("utterance", "uniform"):
            return datamodule.num_classes, None
        if model.frame_labels == "alignment":
            labels = [lab for lab in datamodule.alignment_labels or [] if lab not in model.exclude_labels]
            if not labels:
                raise ValueError("frame_labels='alignment' but the train split has no alignment labels")
            return len(labels), {lab: i for i, lab in enumerate(labels)}
        aligner = model.aligner()
        tokens = sorted(
            {aligner.token_names(t) for r in datamodule.records("train") if r.text for t in aligner.tokenize(r.text)}
        )
        return len(tokens), {t: i for i, t in enumerate(tokens)}

    @rank_zero_only
    def _publish_ranking(self, ranking: dict[str, Any]) -> None:
        paths = write_ranking(self.run_dir, ranking)
        estimators = ranking["estimators"]
        columns = ["rank", "candidate", "layer", *estimators, "seconds"]
        data = [
            [r["rank"], r["candidate"], r["layer"], *(r["scores"][e] for e in estimators), r["seconds"]]
            for r in ranking["rows"]
        ]
        for logger in self.loggers:
            logger.log_metrics(
                {
                    f"transfer/{_slug(r['candidate'])}/layer_{r['layer']}/{e}": r["scores"][e]
                    for r in ranking["rows"]
                    for e in estimators
                }
            )
            if isinstance(logger, WandbLogger):
                logger.log_table(key="ranking", columns=columns, data=data)
                best = ranking["rows"][0]
                logger.experiment.summary.update({"best_candidate": best["candidate"], "best_layer": best["layer"]})
            logger.save()
        rank_zero_info("\n" + ranking_markdown(ranking))
        rank_zero_info(f"[rank] wrote {', '.join(str(p) for p in paths.values())}")

    # ------------------------------------------------------------------ confirm
    def confirm(
        self,
        model: FineTuneModule,
        datamodule: SpeechDataModule,
        ranking: str,
        top_k: int = 3,
        all: bool = False,
        only: int | None = None,
        max_epochs: int = 5,
        limit_train_batches: float | int = 1.0,
    ) -> dict[str, Any]:
        """Fine-tune the best-ranked candidates with one recipe and check the ranking.

        Args:
            model: the recipe: a :class:`FineTuneModule` whose settings (task, mode, learning
                rates) every fine-tune uses; its own encoder, if any, is ignored.
            datamodule: the task's data (train/val for fine-tuning, test for the result).
            ranking, top_k, all, only, max_epochs, limit_train_batches: see :class:`ConfirmSettings`.
        """
        confirm = ConfirmSettings(ranking, top_k, all, only, max_epochs, limit_train_batches)
        ranking_path = Path(confirm.ranking)
        if not ranking_path.is_file():
            raise FileNotFoundError(f"ranking file {confirm.ranking!r} does not exist: run `train.py rank` first")
        ranking = json.loads(ranking_path.read_text(encoding="utf-8"))
        rows = ranking["rows"] if confirm.all else ranking["rows"][: confirm.top_k]
        if confirm.only is not None and not 0 <= confirm.only < len(rows):
            raise ValueError(f"--confirm.only must be in [0, {len(rows) - 1}], got {confirm.only}")
        results_dir = self.run_dir / "confirm"
        results_dir.mkdir(parents=True, exist_ok=True)
        recipe = {k: v for k, v in model.hparams.items() if k not in ("encoder", "layer") and not k.startswith("_")}
        group = _slug(f"{ranking_path.parent.name}")
        selected = range(len(rows)) if confirm.only is None else [confirm.only]
        for i in selected:
            result_file = results_dir / f"{i:03d}.json"
            if result_file.is_file():
                continue
            self._finetune_one(i, rows[i], recipe, datamodule, confirm, result_file, group)
        if confirm.only is not None:
            return {}
        runs = [json.loads((results_dir / f"{i:03d}.json").read_text()) for i in range(len(rows))]
        return self._publish_confirmation(ranking, runs)

    def _finetune_one(
        self,
        index: int,
        row: dict,
        recipe: dict,
        datamodule: SpeechDataModule,
        confirm: ConfirmSettings,
        result_file: Path,
        group: str,
    ) -> None:
        name = f"{row['candidate']}-L{row['layer']}"
        rank_zero_info(f"[confirm] fine-tuning {index + 1}: {name}")
        encoder = instantiate_class((), row["encoder"])
        module = FineTuneModule(encoder=encoder, layer=row["layer"], **recipe)
        datamodule.sample_rate = encoder.sample_rate
        run_root = self.run_dir / "confirm" / _slug(name)
        loggers = [
            CSVLogger(str(run_root), name="csv"),
            TxWandbLogger(save_dir=str(self.run_dir), group=group, job_type="confirm", name=_slug(name)),
        ]
        trainer = L.Trainer(
            **{k: v for k, v in self._init_kwargs.items() if k in _TRAINER_KEYS},
            max_epochs=confirm.max_epochs,
            limit_train_batches=confirm.limit_train_batches,
            logger=loggers,
            enable_checkpointing=False,
            enable_model_summary=False,
            default_root_dir=str(run_root),
            num_sanity_val_steps=0,
        )
        started = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        tested = trainer.test(module, datamodule=datamodule, verbose=False)[0]
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
    def _publish_confirmation(self, ranking: dict, runs: list[dict]) -> dict[str, Any]:
        estimators = ranking["estimators"]
        results = [r["result"] if r["result_higher_is_better"] else -r["result"] for r in runs]
        report = {
            "ranking": ranking.get("manifest"),
            "estimators": estimators,
            "result_metric": runs[0]["result_metric"],
            "runs": runs,
            "agreement": {
                e: rank_agreement(
                    [r["scores"][e] for r in runs], results, higher_is_better=ranking["higher_is_better"][e]
                )
                for e in estimators
            },
            "finetune_seconds": sum(r["seconds"] for r in runs),
        }
        paths = write_confirmation(self.run_dir, report)
        for logger in self.loggers:
            flat = {f"confirm/{e}/{k}": v for e, a in report["agreement"].items() for k, v in a.items()}
            logger.log_metrics(flat)
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(flat)
            logger.save()
        rank_zero_info("\n" + paths["md"].read_text(encoding="utf-8"))
        return report
