"""The ``train.py`` command line: LightningCLI with ``rank``, ``fit`` and ``confirm``.

python train.py rank    --config configs/rank.yaml --data.manifest my_task/manifest.csv
python train.py fit     --config configs/fit.yaml
python train.py confirm --config configs/confirm.yaml --confirm.ranking runs/demo/ranking.json --confirm.top_k 3
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
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
        ``trainer.default_root_dir``; the W&B run's config is the resolved command config, its
        job type the subcommand, and its group ties a ranking to its confirmations (see
        :meth:`wandb_group`)."""
        config = self._get(self.config_init, "trainer", default={})
        if config.get("logger") in (None, True):
            root = config.get("default_root_dir") or os.getcwd()
            resolved = self.config.get(self.subcommand) if self.subcommand else self.config
            kwargs["logger"] = [
                CSVLogger(root, name="csv"),
                TxWandbLogger(
                    save_dir=root,
                    group=self.wandb_group(root),
                    job_type=self.subcommand or "run",
                    config=resolved.clone().as_dict() if resolved is not None else None,
                ),
            ]
        return super().instantiate_trainer(**kwargs)

    def wandb_group(self, root: str) -> str:
        """A new group per ranking (the run directory's name and the time), which ``confirm``
        joins by reading it from the ranking file."""
        if self.subcommand == "confirm":
            ranking = self._get(self.config, "ranking", default=None)
            if ranking and os.path.isfile(ranking):
                group = json.loads(Path(ranking).read_text(encoding="utf-8")).get("wandb_group")
                if group:
                    return group
        return f"{os.path.basename(os.path.normpath(root))}-{datetime.now():%Y%m%d-%H%M%S}"

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


# Errors that mean the input is wrong (a config value, a file, the data), not the code: the
# CLI prints their message alone. Anything else keeps its traceback.
USER_ERRORS = (ValueError, TypeError, FileNotFoundError, OSError)


def user_error_message(error: BaseException) -> str | None:
    """The message to show for a user error, or None when ``error`` is not one.

    jsonargparse reports a class that fails to build as a union mismatch listing every
    alternative it tried; the builder's own message is the line that matters.
    """
    if not isinstance(error, USER_ERRORS):
        return None
    text = str(error)
    if "Errors:" in text:
        listed = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
        useful = [line for line in listed if not line.startswith(("Expected a", "Not a valid subclass"))]
        if useful:
            return useful[0]
    return text.splitlines()[0] if text else type(error).__name__


def main(args: list[str] | None = None) -> TxCLI:
    """Run ``train.py``. A user error (a bad config value, a missing file, unusable data)
    prints one line with what to fix and exits with status 2; ``LIGHTNING_TX_DEBUG=1`` shows
    the full traceback instead."""
    try:
        return TxCLI(
            model_class=None,
            datamodule_class=SpeechDataModule,
            trainer_class=TxTrainer,
            save_config_kwargs={"overwrite": True},
            seed_everything_default=0,
            args=args,
        )
    except Exception as error:
        message = user_error_message(error)
        if message is None or os.environ.get("LIGHTNING_TX_DEBUG"):
            raise
        print(f"error: {message}\n(set LIGHTNING_TX_DEBUG=1 for the full traceback)", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
