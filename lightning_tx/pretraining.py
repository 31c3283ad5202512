"""Brief pre-training of small encoders by the project's own code (no downloads).

Pre-trains a :class:`~lightning_tx.encoders.LogMelConformer` with CTC phone recognition
on a manifest with alignments (e.g. one language of the built-in corpus), reusing
:class:`~lightning_tx.finetune.FineTuneModule` in ``mode="full"``, and saves the encoder's
state dict for :class:`~lightning_tx.encoders.ConformerEncoder`.

    python -m lightning_tx.pretraining --manifest data/corpus/manifest-de.csv --out data/models/conformer-de.pt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightning_tx.data.datamodule import SpeechDataModule
from lightning_tx.encoders.torchaudio_models import ConformerEncoder
from lightning_tx.finetune.module import FineTuneModule

SMALL_CONFORMER: dict[str, Any] = {
    "n_mels": 40,
    "stack": 2,
    "dim": 64,
    "num_heads": 4,
    "ffn_dim": 128,
    "num_layers": 3,
    "depthwise_conv_kernel_size": 7,
    "dropout": 0.1,
}


def pretrain_conformer(
    manifest: str | os.PathLike,
    out: str | os.PathLike,
    *,
    model_kwargs: dict[str, Any] | None = None,
    max_epochs: int = 15,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    seed: int = 0,
    accelerator: str = "auto",
) -> Path:
    """CTC phone pre-training on ``manifest`` (its alignments); writes the state dict to ``out``.

    Returns ``out``. Deterministic for a seed on one device.
    """
    L.seed_everything(seed, verbose=False)
    model_kwargs = {**SMALL_CONFORMER, **(model_kwargs or {})}
    encoder = ConformerEncoder(None, **model_kwargs)
    module = FineTuneModule(
        encoder=encoder,
        layer=-1,
        task="ctc",
        mode="full",
        learning_rate=learning_rate,
        encoder_learning_rate=learning_rate,
        blank_labels=["sil"],
    )
    data = SpeechDataModule(manifest=manifest, batch_size=batch_size, max_seconds=5.0)
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        gradient_clip_val=5.0,
        default_root_dir=str(Path(out).parent),
    )
    trainer.fit(module, datamodule=data)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(encoder.model.state_dict(), out)
    return out


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Pre-train a small log-mel Conformer with CTC phone recognition.")
    parser.add_argument("--manifest", required=True, help="manifest with an 'alignment' column")
    parser.add_argument("--out", required=True, help="where to save the state dict (.pt)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return pretrain_conformer(args.manifest, args.out, max_epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    main()
