"""Run TransferabilityCallback under strategy='ddp' on 2 CPU processes; rank 0 writes the results."""

import json
import sys

import lightning as L
import torch.distributed as dist
from test_callback import FeatureModule, _feature_data
from torch.utils.data import DataLoader, TensorDataset

from lightning_tx.callbacks import TransferabilityCallback

if __name__ == "__main__":
    out, root = sys.argv[1], sys.argv[2]
    features, labels = _feature_data()  # 240 samples: 120 per rank, no padding by the sampler
    loader = DataLoader(TensorDataset(features, labels), batch_size=40)
    callback = TransferabilityCallback(estimators=["logme", "hscore"], num_classes=3)
    trainer = L.Trainer(
        strategy="ddp",
        accelerator="cpu",
        devices=2,
        max_epochs=1,
        limit_train_batches=1,
        logger=False,
        callbacks=[callback],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    trainer.fit(FeatureModule(), train_dataloaders=loader)
    if trainer.is_global_zero:
        with open(out, "w") as handle:
            json.dump({"world_size": trainer.world_size, **callback.results}, handle)
    if dist.is_initialized():
        dist.destroy_process_group()
