"""TxTrainer: a Lightning ``Trainer`` with the ``rank`` and ``confirm`` subcommands."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn

from lightning_tx.data.datamodule import SpeechDataModule
from lightning_tx.finetune.module import FineTuneModule
from lightning_tx.metrics.registry import get_estimator
from lightning_tx.ranking.confirm import ConfirmSettings, confirm_ranking
from lightning_tx.ranking.module import RankingModule
from lightning_tx.ranking.report import ranking_markdown, sort_rows, write_ranking
from lightning_tx.scoring import add_ensemble, speech_loader
from lightning_tx.scoring.publish import publish_scores


class TxTrainer(L.Trainer):
    """``lightning.Trainer`` plus the ``rank`` and ``confirm`` subcommands of ``train.py``;
    the work is done by :mod:`lightning_tx.scoring` and :mod:`lightning_tx.ranking.confirm`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._init_kwargs = dict(kwargs)
        super().__init__(*args, **kwargs)

    @property
    def run_dir(self) -> Path:
        return Path(self.default_root_dir)

    def rank(
        self,
        model: RankingModule,
        datamodule: SpeechDataModule,
        split: str = "train",
        source_manifest: str | None = None,
    ) -> dict[str, Any]:
        """Score every candidate's layers on the task's data; write the ranking files.

        Args:
            model: the :class:`RankingModule` (candidates, estimators, how to label frames).
            datamodule: the task's data.
            split: which split to score on.
            source_manifest: source-domain audio (a manifest; labels not needed) for the
                estimators that compare domains (``sliced_wasserstein``).
        """
        if not isinstance(model, RankingModule):
            raise TypeError(f"`rank` needs model: lightning_tx.ranking.RankingModule, got {type(model).__name__}")
        if model.needs_source and source_manifest is None:
            raise ValueError(
                "sliced_wasserstein compares source-domain frames with the task's frames: pass "
                "--source_manifest (audio like the encoders' training data), or drop the estimator"
            )
        if self.limit_val_batches != 1.0:
            rank_zero_warn(
                "trainer.limit_val_batches applies to each process's share of the data, so scores would depend on "
                "the number of devices: use model.init_args.limit_batches to score a subset"
            )
        labels = model.task_labels(datamodule, device=self.strategy.root_device)
        rows = []
        for index, candidate in enumerate(model.candidates):
            name = candidate.display_name()
            rank_zero_info(f"[rank] candidate {index + 1}/{len(model.candidates)}: {name}")
            rate = candidate.encoder.sample_rate
            subset = {"limit_batches": model.limit_batches, "seed": model.seed}
            loaders = [speech_loader(datamodule, sample_rate=rate, split=split, **subset)]
            if model.needs_source:
                loaders.append(
                    speech_loader(source_manifest, sample_rate=rate, batch_size=datamodule.batch_size, **subset)
                )
            session = model.start(candidate, labels, self.strategy.root_device)
            started = time.perf_counter()
            try:
                self.validate(model, dataloaders=loaders, verbose=False)
                results = session.compute()  # collective: every process
            finally:
                model.finish()
            seconds = time.perf_counter() - started
            spec = candidate.encoder.spec()
            for layer in sorted(next(iter(results.values()))):
                rows.append(
                    {
                        "candidate": name,
                        "layer": layer,
                        "encoder": spec,
                        "scores": {e: results[e][layer] for e in results},
                        "undefined": {e: r[layer] for e, r in session.reasons.items() if layer in r},
                        "seconds": seconds,
                        "frame_rate": candidate.encoder.frame_rate,
                    }
                )
        add_ensemble([row["scores"] for row in rows], model.estimators)  # ranks among all candidates
        primary = model.estimators[0]
        ranking = {
            "estimators": model.estimators,
            "primary": primary,
            "higher_is_better": {e: get_estimator(e).higher_is_better for e in model.estimators},
            "frame_labels": model.frame_labels,
            "labels": labels.describe(),
            "num_classes": labels.num_classes,
            "split": split,
            "limit_batches": model.limit_batches,
            "manifest": str(datamodule.manifest or datamodule.folder),
            "wandb_group": next(
                (lg._wandb_init.get("group") for lg in self.loggers if isinstance(lg, WandbLogger)), None
            ),
            "rows": sort_rows(rows, model.estimators),
        }
        self._publish_ranking(ranking)
        return ranking

    @rank_zero_only
    def _publish_ranking(self, ranking: dict[str, Any]) -> None:
        paths = write_ranking(self.run_dir, ranking)
        publish_scores(self.loggers, ranking["rows"], ranking["estimators"], table_key="ranking")
        rank_zero_info("\n" + ranking_markdown(ranking))
        rank_zero_info(f"[rank] wrote {', '.join(str(p) for p in paths.values())}")

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
        cache_features: bool = True,
        learning_rates: list[float] | None = None,
        seeds: list[int] | None = None,
    ) -> dict[str, Any]:
        """Fine-tune the best-ranked candidates with one recipe and check the ranking.

        Args:
            model: the recipe: a :class:`FineTuneModule` whose settings (task, mode, learning
                rates) every fine-tune uses; its own encoder, if any, is ignored.
            datamodule: the task's data (train/val for fine-tuning, test for the result).
            ranking, top_k, all, only, max_epochs, limit_train_batches, cache_features,
                learning_rates, seeds: see :class:`~lightning_tx.ranking.confirm.ConfirmSettings`
                (``seeds`` defaults to ``[0]``).
        """
        settings = ConfirmSettings(
            ranking, top_k, all, only, max_epochs, limit_train_batches, cache_features, learning_rates, seeds or [0]
        )
        return confirm_ranking(model, datamodule, settings, self.run_dir, self._init_kwargs, self.loggers)
