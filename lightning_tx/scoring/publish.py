"""Scores to every Lightning logger, under one key scheme for the callback and ``rank``."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger

from lightning_tx.scoring.order import order_key


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def score_key(estimator: str, layer: int, candidate: str | None = None) -> str:
    """``transfer/<estimator>/layer_<k>``, with ``/<candidate>`` after ``transfer`` when several
    candidates are scored (the ``rank`` subcommand)."""
    prefix = "transfer" if candidate is None else f"transfer/{slug(candidate)}"
    return f"{prefix}/{estimator}/layer_{layer}"


def publish_scores(
    loggers: Sequence[Logger],
    rows: Sequence[dict[str, Any]],
    estimators: Sequence[str],
    *,
    step: int | None = None,
    table_key: str = "transfer/scores",
    with_candidate: bool = True,
) -> None:
    """Log every row's scores to every logger; a W&B logger also gets a table and, in its
    summary, the best row by the first estimator (ties broken by the next: :func:`order_key`).

    Args:
        loggers: the trainer's loggers (call on rank zero only: loggers write there).
        rows: ``{"candidate": name, "layer": k, "scores": {estimator: value}}`` each.
        estimators: the estimators, the first one deciding the best row, the next ones its ties.
        step: the step to log at.
        table_key: the W&B table's key.
        with_candidate: put the candidate in the metric keys (see :func:`score_key`).
    """
    metrics = {
        score_key(e, row["layer"], row["candidate"] if with_candidate else None): row["scores"][e]
        for row in rows
        for e in estimators
    }
    primary = estimators[0]
    ranked = [row for row in rows if math.isfinite(row["scores"][primary])]
    best = min(ranked, key=lambda row: order_key(row["scores"], estimators)) if ranked else None
    for logger in loggers:
        logger.log_metrics(metrics, step=step)
        if isinstance(logger, WandbLogger):
            logger.log_table(
                key=table_key,
                columns=["candidate", "layer", *estimators],
                data=[[row["candidate"], row["layer"], *(row["scores"][e] for e in estimators)] for row in rows],
            )
            if best is not None:
                logger.experiment.summary.update(
                    {
                        "transfer/best_candidate": best["candidate"],
                        "transfer/best_layer": best["layer"],
                        f"transfer/best_{primary}": best["scores"][primary],
                    }
                )
        logger.save()
