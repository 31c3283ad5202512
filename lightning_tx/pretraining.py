"""Pre-training small speech encoders by the project's own code (no downloads).

Three objectives for a :class:`~lightning_tx.encoders.LogMelConformer`, on any manifest:

- ``"ctc"``: supervised phone recognition with CTC over the manifest's alignments;
- ``"speaker"``: supervised speaker classification (the ``speaker`` column);
- ``"masked_units"``: HuBERT-style self-supervision: k-means units of MFCC frames are the
  targets, spans of input frames are replaced by a learned mask embedding, and the last
  layer predicts the units of the masked frames.

Each saves the encoder's state dict (optionally at several epochs of one run: training
budgets) for :class:`~lightning_tx.encoders.ConformerEncoder`.

    python -m lightning_tx.pretraining --manifest data/corpus/manifest-de.csv --out data/models/conformer-de.pt
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
import torchaudio
from lightning.pytorch.callbacks import Callback
from torch import Tensor, nn

from lightning_tx.data.datamodule import SpeechDataModule
from lightning_tx.encoders.base import FrozenEncoder, frames_per_utterance
from lightning_tx.encoders.torchaudio_models import ConformerEncoder
from lightning_tx.finetune.module import FineTuneModule
from lightning_tx.functional.frames import lengths_to_mask

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
OBJECTIVES = ("ctc", "speaker", "masked_units")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


class SaveEncoderAtEpochs(Callback):
    """Saves ``encoder.model``'s state dict after the given (1-based) epochs."""

    def __init__(self, encoder: ConformerEncoder, paths: dict[int, Path]) -> None:
        self.encoder, self.paths = encoder, paths

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        path = self.paths.get(trainer.current_epoch + 1)
        if path is not None and trainer.is_global_zero:
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(self.encoder.model.state_dict(), path)


def kmeans(points: Tensor, k: int, iterations: int = 25, seed: int = 0) -> Tensor:
    """Lloyd's k-means with k-means++ seeding; returns ``[k, D]`` centroids."""
    g = torch.Generator().manual_seed(seed)
    centroids = points[torch.randint(points.shape[0], (1,), generator=g)]
    for _ in range(1, k):
        distance = torch.cdist(points, centroids).min(1).values ** 2
        centroids = torch.cat([centroids, points[torch.multinomial(distance + 1e-12, 1, generator=g)]])
    for _ in range(iterations):
        assignment = torch.cdist(points, centroids).argmin(1)
        for j in range(k):
            members = points[assignment == j]
            if len(members):
                centroids[j] = members.mean(0)
    return centroids


class MaskedUnitPretraining(L.LightningModule):
    """HuBERT-style masked prediction of k-means units of MFCC frames.

    Args:
        encoder: the :class:`ConformerEncoder` to train (its ``model``).
        num_units: k of the k-means targets.
        mask_start_prob: probability that a frame starts a masked span.
        mask_span: frames per masked span.
        learning_rate: AdamW learning rate.
    """

    def __init__(
        self,
        encoder: ConformerEncoder,
        num_units: int = 50,
        mask_start_prob: float = 0.1,
        mask_span: int = 5,
        learning_rate: float = 2e-3,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.num_units, self.mask_start_prob, self.mask_span = num_units, mask_start_prob, mask_span
        self.learning_rate = learning_rate
        model = encoder.model
        self.mask_embedding = nn.Parameter(torch.randn(model.dim) * 0.1)
        self.head = nn.Linear(model.dim, num_units)
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=model.sample_rate,
            n_mfcc=13,
            melkwargs={
                "n_fft": 512,
                "win_length": model.sample_rate * 25 // 1000,
                "hop_length": model.hop_length,
                "n_mels": 40,
            },
        )
        self.register_buffer("centroids", torch.zeros(num_units, 13))

    def unit_features(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """MFCC frames averaged ``stack`` at a time: ``[B, T, 13]`` at the encoder's frame rate."""
        model = self.encoder.model
        frame_lengths = model.frame_lengths(lengths)
        steps = int(frame_lengths.max()) * model.stack
        out = frames_per_utterance(lambda w: self.mfcc(w).T, waveforms, lengths, steps, 13)
        pooled = out.reshape(out.shape[0], -1, model.stack, 13).mean(2)
        return pooled, frame_lengths

    def on_fit_start(self) -> None:
        """Fit the k-means targets on (up to 50,000) MFCC frames of the train split."""
        frames = []
        for batch in self.trainer.datamodule.train_dataloader():
            features, frame_lengths = self.unit_features(batch["waveforms"], batch["lengths"])
            valid = lengths_to_mask(frame_lengths, features.shape[1])
            frames.append(features[valid])
            if sum(len(f) for f in frames) > 50_000:
                break
        points = torch.cat(frames)
        self.feature_mean, self.feature_std = points.mean(0), points.std(0) + 1e-5
        self.centroids.copy_(kmeans((points - self.feature_mean) / self.feature_std, self.num_units))
        self.train(True)

    def train(self, mode: bool = True) -> MaskedUnitPretraining:
        super().train(mode)
        self.encoder.train_modules(mode)  # dropout and batch statistics while pre-training
        return self

    def on_train_epoch_start(self) -> None:
        self.train(True)  # Lightning does not call .train() itself (see FineTuneModule.on_fit_start)

    def _loss(self, batch: dict) -> Tensor:
        model = self.encoder.model
        waveforms, lengths = batch["waveforms"], batch["lengths"]
        x, frame_lengths = model.embed(waveforms, lengths)
        valid = lengths_to_mask(frame_lengths, x.shape[1])
        starts = torch.rand(valid.shape, device=x.device) < self.mask_start_prob
        masked = F.max_pool1d(starts.float().unsqueeze(1), self.mask_span, stride=1, padding=self.mask_span // 2)
        masked = masked.squeeze(1)[:, : x.shape[1]].bool() & valid
        x = torch.where(masked.unsqueeze(-1), self.mask_embedding.expand_as(x), x)
        logits = self.head(model.encode_frames(x, frame_lengths)[-1])
        with torch.no_grad():
            features, _ = self.unit_features(waveforms, lengths)
            units = torch.cdist((features - self.feature_mean) / self.feature_std, self.centroids.unsqueeze(0)).argmin(
                -1
            )
        if not masked.any():
            return logits.sum() * 0
        return F.cross_entropy(logits[masked], units[masked])

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss = self._loss(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["waveforms"].shape[0])
        return loss

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), batch_size=batch["waveforms"].shape[0])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.learning_rate)


def pretrain(
    objective: str,
    manifest: str | os.PathLike,
    out: str | os.PathLike | dict[int, str | os.PathLike],
    *,
    model_kwargs: dict[str, Any] | None = None,
    max_epochs: int = 15,
    include: dict[str, list[str]] | None = None,
    batch_size: int = 16,
    learning_rate: float = 2e-3,
    seed: int = 0,
    accelerator: str = "auto",
    encoder: FrozenEncoder | None = None,
) -> dict[int, Path]:
    """Pre-train an encoder with ``objective`` on ``manifest`` (rows matching ``include``):
    a :class:`~lightning_tx.encoders.LogMelConformer` built from ``model_kwargs``, or any
    ``encoder`` whose ``model`` is what gets saved (``"masked_units"`` needs a Conformer).
    ``out`` is one path (saved after the last epoch) or ``{epoch: path}`` to keep several
    training budgets of the run. Returns ``{epoch: path}``."""
    if objective not in OBJECTIVES:
        raise ValueError(f"`objective` must be one of {OBJECTIVES}, got {objective!r}")
    L.seed_everything(seed, verbose=False)
    paths = {int(e): Path(p) for e, p in out.items()} if isinstance(out, dict) else {max_epochs: Path(out)}
    if max(paths) > max_epochs:
        raise ValueError(f"a checkpoint epoch ({max(paths)}) is beyond max_epochs={max_epochs}")
    if encoder is None:
        encoder = ConformerEncoder(None, **{**SMALL_CONFORMER, **(model_kwargs or {})})
    if objective == "masked_units" and not isinstance(encoder, ConformerEncoder):
        raise ValueError("masked_units pre-training needs a ConformerEncoder")
    data = SpeechDataModule(
        manifest=manifest,
        batch_size=batch_size,
        max_seconds=5.0,
        include=include,
        label_column="speaker" if objective == "speaker" else "label",
    )
    if objective == "masked_units":
        module = MaskedUnitPretraining(encoder, learning_rate=learning_rate)
    else:
        module = FineTuneModule(
            encoder=encoder,
            layer=-1,
            task="ctc" if objective == "ctc" else "classification",
            mode="full",
            learning_rate=learning_rate,
            encoder_learning_rate=learning_rate,
            blank_labels=["sil"],
            standardize=False,
        )
    trainer = L.Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        gradient_clip_val=5.0,
        callbacks=[SaveEncoderAtEpochs(encoder, paths)],
        default_root_dir=str(next(iter(paths.values())).parent),
    )
    trainer.fit(module, datamodule=data)
    return paths


def main(argv: list[str] | None = None) -> dict[int, Path]:
    parser = argparse.ArgumentParser(description="Pre-train a small log-mel Conformer.")
    parser.add_argument("--manifest", required=True)
    parser.add_argument("--out", required=True, help="where to save the state dict (.pt)")
    parser.add_argument("--objective", choices=OBJECTIVES, default="ctc")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    return pretrain(args.objective, args.manifest, args.out, max_epochs=args.epochs, seed=args.seed)


if __name__ == "__main__":
    main()
