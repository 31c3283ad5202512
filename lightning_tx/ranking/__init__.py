"""Candidates, the rank and confirm subcommands, rank statistics and reports (clients of
:mod:`lightning_tx.scoring`)."""

from lightning_tx.ranking.confirm import ConfirmSettings, confirm_ranking
from lightning_tx.ranking.module import Candidate, RankingModule
from lightning_tx.ranking.statistics import rank_agreement, result_reliability, result_standard_error
from lightning_tx.ranking.trainer import TxTrainer

__all__ = [
    "Candidate",
    "ConfirmSettings",
    "RankingModule",
    "TxTrainer",
    "confirm_ranking",
    "rank_agreement",
    "result_reliability",
    "result_standard_error",
]
