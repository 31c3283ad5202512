"""A user's own training script, not lightning-tx's: a LightningCLI over their keyword model.

python user_lightning_cli.py fit --config theirs.yaml --config callbacks/transferability.yaml
"""

import lightning as L
import torch
from lightning.pytorch.cli import LightningCLI
from torch import nn

from lightning_tx.data import SpeechDataModule
from lightning_tx.encoders import Filterbank


class KeywordModel(L.LightningModule):
    """A frozen log-mel front end (the callback scores it) and a linear head on pooled frames."""

    def __init__(self, num_classes: int = 3, n_mels: int = 24) -> None:
        super().__init__()
        self.transfer_encoder = Filterbank(n_mels=n_mels)
        self.head = nn.Linear(n_mels, num_classes)

    def training_step(self, batch, batch_idx):
        frames = self.transfer_encoder(batch["waveforms"], batch["lengths"]).hidden_states[0].clone()
        return nn.functional.cross_entropy(self.head(frames.mean(1)), batch["labels"])

    def configure_optimizers(self):
        return torch.optim.SGD(self.head.parameters(), lr=0.01)


if __name__ == "__main__":
    LightningCLI(KeywordModel, SpeechDataModule)
