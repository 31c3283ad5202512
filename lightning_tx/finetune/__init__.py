"""Fine-tuning an encoder layer with a task head (the ground truth a ranking is checked against)."""

from lightning_tx.finetune.cache import CachedFeatureDataModule, collate_frames
from lightning_tx.finetune.module import FineTuneModule

__all__ = ["CachedFeatureDataModule", "FineTuneModule", "collate_frames"]
