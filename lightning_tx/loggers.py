"""W&B logging that never blocks and never needs an account."""

from __future__ import annotations

import netrc
import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_warn


def wandb_api_key_available() -> bool:
    """Whether this machine has a W&B API key (``WANDB_API_KEY`` or ``~/.netrc``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class TxWandbLogger(WandbLogger):
    """``WandbLogger`` that is offline unless asked for ``online=True`` *and* a key exists.

    Asked for online without a key, it warns and logs offline instead of failing (a run
    can be synced later with ``wandb sync <save_dir>/wandb/offline-run-*``). Online, the run
    starts within ``init_timeout`` seconds (default 20) or falls back to offline with a
    warning: no network never blocks or fails a run. The ``WANDB_MODE`` environment
    variable (``offline``, ``disabled``) always wins. ``group`` and ``job_type`` tie a
    scoring run to its confirming fine-tunes; ``config`` is the run's W&B config.

    Args:
        project: W&B project.
        save_dir: where the run files go (the run directory).
        online: try to log online.
        group, job_type, name: W&B run grouping and name.
        kwargs: passed to ``WandbLogger``.
    """

    def __init__(
        self,
        project: str = "lightning-tx",
        save_dir: str = "runs",
        online: bool = False,
        group: str | None = None,
        job_type: str | None = None,
        name: str | None = None,
        init_timeout: float = 20.0,
        **kwargs: Any,
    ) -> None:
        mode = resolve_wandb_mode(online)
        os.makedirs(save_dir, exist_ok=True)
        kwargs.setdefault("settings", _quiet_settings(init_timeout))
        # Pass the mode to wandb.init rather than `offline=True`: Lightning implements that by
        # setting WANDB_MODE for the whole process, which would override a user's "disabled".
        super().__init__(
            project=project,
            save_dir=save_dir,
            offline=False,
            group=group,
            job_type=job_type,
            name=name,
            mode=mode,
            **kwargs,
        )

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        """The W&B run; an online run that cannot start (no network, a bad key) is retried
        offline, with a warning, instead of failing the command."""
        try:
            return WandbLogger.experiment.fget.__wrapped__(self)
        except Exception as error:  # wandb raises its own CommError, UsageError, TimeoutError...
            if self._wandb_init.get("mode") != "online":
                raise
            rank_zero_warn(f"W&B could not start online ({error}); logging offline instead (`wandb sync` later)")
            self._wandb_init["mode"] = "offline"
            return WandbLogger.experiment.fget.__wrapped__(self)


def resolve_wandb_mode(online: bool) -> str:
    """``WANDB_MODE`` if set; else ``"online"`` when asked for and a key exists; else ``"offline"``."""
    env_mode = os.environ.get("WANDB_MODE")
    if env_mode:
        return "offline" if env_mode == "dryrun" else env_mode
    if online:
        if wandb_api_key_available():
            return "online"
        rank_zero_warn("W&B online logging asked for but no API key found: logging offline instead")
    return "offline"


def _quiet_settings(init_timeout: float) -> Any:
    import wandb

    return wandb.Settings(silent=True, x_disable_stats=True, init_timeout=init_timeout)
