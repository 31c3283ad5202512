"""The ``train.py`` command line: LightningCLI with ``rank``, ``fit`` and ``confirm``.

python train.py rank    --config configs/rank.yaml --data.manifest my_task/manifest.csv
python train.py fit     --config configs/fit.yaml
python train.py confirm --config configs/confirm.yaml --confirm.ranking runs/demo/ranking.json --confirm.top_k 3
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from lightning_tx.data.datamodule import SpeechDataModule
from lightning_tx.loggers import TxWandbLogger
from lightning_tx.ranking.trainer import TxTrainer


class TxCLI(LightningCLI):
    """LightningCLI whose model is any LightningModule (``RankingModule`` for ``rank``,
    ``FineTuneModule`` for ``fit``/``confirm``) and whose data is a ``SpeechDataModule``."""

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Without a ``trainer.logger`` in the config, log to CSV and (offline) W&B inside
        ``trainer.default_root_dir``, with the run directory's name as the W&B group and the
        subcommand as its job type."""
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):
            root = config.get("default_root_dir") or os.getcwd()
            group = os.path.basename(os.path.normpath(root))
            kwargs["logger"] = [
                CSVLogger(root, name="csv"),
                TxWandbLogger(save_dir=root, group=group, job_type=self.subcommand or "run"),
            ]
        return super().instantiate_trainer(**kwargs)

    def _finish_wandb(self) -> None:
        """Close this command's W&B runs, so a later command in the same process starts its own."""
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and logger._experiment is not None:
                logger.experiment.finish()

    def after_rank(self) -> None:
        self._finish_wandb()

    def after_confirm(self) -> None:
        self._finish_wandb()

    def after_fit(self) -> None:
        self._finish_wandb()

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {
            **LightningCLI.subcommands(),
            "rank": {"model", "datamodule"},
            "confirm": {"model", "datamodule"},
        }


def main(args: list[str] | None = None) -> TxCLI:
    return TxCLI(
        model_class=None,
        datamodule_class=SpeechDataModule,
        trainer_class=TxTrainer,
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,
        args=args,
    )


if __name__ == "__main__":
    main()
