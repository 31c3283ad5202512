"""Candidates, the scoring loop, rank statistics and reports."""

from lightning_tx.ranking.module import Candidate, RankingModule
from lightning_tx.ranking.scoring import LayerScorer
from lightning_tx.ranking.statistics import rank_agreement
from lightning_tx.ranking.trainer import ConfirmSettings, TxTrainer

__all__ = ["Candidate", "ConfirmSettings", "LayerScorer", "RankingModule", "TxTrainer", "rank_agreement"]
