"""Run TransferabilityCallback under strategy='ddp' on N CPU processes; rank 0 writes the results.

python ddp_callback_script.py features OUT ROOT WORLD          # transfer_features protocol
python ddp_callback_script.py speech OUT ROOT WORLD TASK SOURCE  # encoder + source audio
"""

import json
import sys

import lightning as L
import torch
import torch.distributed as dist
from test_callback import FeatureModule, KeywordClassifier, _feature_data
from torch.utils.data import DataLoader, TensorDataset

from lightning_tx.callbacks import TransferabilityCallback
from lightning_tx.data import SpeechDataModule


def run(mode: str, root: str, world: int, task: str | None = None, source: str | None = None):
    trainer_kwargs = dict(
        strategy="ddp" if world > 1 else "auto",
        accelerator="cpu",
        devices=world,
        max_epochs=1,
        limit_train_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
    )
    torch.manual_seed(0)  # the same module weights in every process and in the one-process run
    if mode == "features":
        features, labels = _feature_data(239)  # odd: a padding sampler would repeat one
        loader = DataLoader(TensorDataset(features, labels), batch_size=40)
        callback = TransferabilityCallback(estimators=["logme", "hscore"], num_classes=3)
        trainer = L.Trainer(callbacks=[callback], **trainer_kwargs)
        trainer.fit(FeatureModule(), train_dataloaders=loader)
    else:
        dm = SpeechDataModule(manifest=task, batch_size=4)
        callback = TransferabilityCallback(
            estimators=["logme", "gbc", "sliced_wasserstein"], source=source, frame_labels="uniform"
        )
        trainer = L.Trainer(callbacks=[callback], **trainer_kwargs)
        trainer.fit(KeywordClassifier(len(set("noupyes"))), datamodule=dm)
    return trainer, callback


if __name__ == "__main__":
    mode, out, root, world = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    trainer, callback = run(mode, root, world, *sys.argv[5:])
    if trainer.is_global_zero:
        with open(out, "w") as handle:
            json.dump({"world_size": trainer.world_size, **callback.results}, handle)
    if dist.is_initialized():
        dist.destroy_process_group()
