"""FineTuneModule: an encoder layer plus a head, fine-tuned on a speech task."""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.text import WordErrorRate

from lightning_tx.encoders import encoder_from_spec
from lightning_tx.encoders.base import FrozenEncoder
from lightning_tx.functional.frames import lengths_to_mask

TASKS = ("classification", "ctc")
MODES = ("frozen", "top_n", "full")


class RunningStandardize(nn.Module):
    """z-scores ``[N, D]`` features with the mean and variance of every training row seen.

    In training mode each batch first enters the running sums (float64, no gradient), then is
    standardised with them, so a batch of one row works, unlike BatchNorm's batch statistics.
    After each whole training epoch the statistics are exactly the training split's (an epoch
    repeats the same rows); evaluation uses them as they are (before any training: the
    identity).
    """

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("sum", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("sum_squares", torch.zeros(dim, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            with torch.no_grad():
                rows = x.detach().double()
                self.count += rows.shape[0]
                self.sum += rows.sum(0)
                self.sum_squares += rows.square().sum(0)
        if self.count == 0:  # evaluated before any training (e.g. Lightning's sanity check)
            return x
        mean = self.sum / self.count
        variance = (self.sum_squares / self.count - mean.square()).clamp_min(0)
        return (x - mean.to(x.dtype)) / (variance + self.eps).sqrt().to(x.dtype)


class FineTuneModule(L.LightningModule):
    """Fine-tunes ``encoder`` up to ``layer`` with a task head.

    Tasks:
        ``"classification"``: utterance classes; the layer's valid frames are mean-pooled and
        a linear head predicts the class (cross-entropy; ``accuracy`` logged).
        ``"ctc"``: frame-level CTC over the alignment labels of the data (e.g. phones, with
        ``blank_labels`` such as ``sil`` left out of the targets); ``per`` (token error rate,
        via ``torchmetrics`` ``WordErrorRate`` over space-separated tokens) logged.

    With ``standardize`` (the default) the head's input is z-scored (:class:`RunningStandardize`),
    as in linear probing (MAE's BatchNorm without affine parameters): the head sees features
    of unit scale whatever the encoder's, so one learning rate suits every candidate.

    Modes: ``"frozen"`` (only the head trains), ``"top_n"`` (the ``top_n`` encoder layers below
    ``layer`` train too), ``"full"`` (every encoder parameter trains). Encoders without
    learned weights (fbank, MFCC) only support ``"frozen"``.

    Logged: ``train/loss``, ``val/loss``, ``val/<metric>``, ``test/<metric>``. ``num_classes``
    (classification) and the token vocabulary (CTC) are read from the datamodule in
    :meth:`setup` when not given.
    """

    def __init__(
        self,
        encoder: FrozenEncoder | str | None = None,
        layer: int = -1,
        task: str = "classification",
        mode: str = "frozen",
        top_n: int = 1,
        num_classes: int | None = None,
        learning_rate: float = 1e-3,
        encoder_learning_rate: float = 5e-5,
        weight_decay: float = 0.0,
        blank_labels: list[str] | None = None,
        standardize: bool = True,
    ) -> None:
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"`task` must be one of {TASKS}, got {task!r}")
        if mode not in MODES:
            raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}")
        self.save_hyperparameters(ignore=["encoder"])
        self.encoder = encoder_from_spec(encoder) if isinstance(encoder, str) else encoder
        self.tokens: list[str] | None = None
        self.head: nn.Module | None = None
        self.norm: nn.Module | None = None

    # ---------------------------------------------------------------- setup
    @property
    def result_metric(self) -> str:
        return "accuracy" if self.hparams.task == "classification" else "per"

    def setup(self, stage: str) -> None:
        if self.encoder is None:
            raise ValueError("FineTuneModule needs an `encoder`")
        if self.head is not None:
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        layer = self.hparams.layer % self.encoder.num_layers
        self.layer = layer
        dim = self.encoder.layer_dims[layer]
        if self.hparams.standardize:
            self.norm = RunningStandardize(dim)
        if self.hparams.task == "classification":
            classes = self.hparams.num_classes or (datamodule.num_classes if datamodule is not None else None)
            if not classes:
                raise ValueError("classification needs `num_classes` (or a datamodule that provides it)")
            self.head = nn.Linear(dim, classes)
            self.metrics = nn.ModuleDict({s: MulticlassAccuracy(classes, average="micro") for s in ("val_", "test_")})
        else:
            if datamodule is None or not datamodule.alignment_labels:
                raise ValueError("CTC fine-tuning needs a datamodule whose manifest has alignments")
            blanks = set(self.hparams.blank_labels or [])
            self.tokens = [t for t in datamodule.alignment_labels if t not in blanks]
            self.head = nn.Linear(dim, len(self.tokens) + 1)  # index 0 is the CTC blank
            self.metrics = nn.ModuleDict({s: WordErrorRate() for s in ("val_", "test_")})
        if datamodule is not None and datamodule.sample_rate != self.encoder.sample_rate:
            raise ValueError(
                f"the data is read at {datamodule.sample_rate} Hz but the encoder expects "
                f"{self.encoder.sample_rate} Hz: set data.sample_rate={self.encoder.sample_rate}"
            )
        self._set_trainable()

    def _set_trainable(self) -> None:
        for parameter in self.encoder.parameters():
            parameter.requires_grad_(False)
        if self.hparams.mode == "full":
            for parameter in self.encoder.parameters():
                parameter.requires_grad_(True)
        elif self.hparams.mode == "top_n":
            modules = self._trainable_modules()
            if not modules:
                raise ValueError(f"{type(self.encoder).__name__} has no trainable layers below layer {self.layer}")
            for module in modules:
                for parameter in module.parameters():
                    parameter.requires_grad_(True)
        self.trains_encoder = any(p.requires_grad for p in self.encoder.parameters())
        if self.hparams.mode != "frozen" and not self.trains_encoder:
            raise ValueError(f"{type(self.encoder).__name__} has no weights to fine-tune: use mode='frozen'")

    def train(self, mode: bool = True) -> FineTuneModule:
        """The encoder's trainable layers follow ``mode`` (dropout, batch statistics); its
        frozen layers stay in eval mode, so their outputs are fixed."""
        super().train(mode)
        if mode and getattr(self, "trains_encoder", False):
            trainable = None if self.hparams.mode == "full" else self._trainable_modules()
            self.encoder.train_modules(True, trainable)
        return self

    def on_fit_start(self) -> None:
        # Lightning keeps each module's mode as it finds it rather than calling .train() when
        # training starts, so without this the encoder would fine-tune in eval mode (no dropout).
        self.train(True)

    def on_train_epoch_start(self) -> None:
        self.train(True)  # again: scoring or validation in between puts the encoder in eval mode

    def _trainable_modules(self) -> list[nn.Module]:
        return self.encoder.layer_modules()[: self.layer][-self.hparams.top_n :]

    # ---------------------------------------------------------------- forward
    def features(self, waveforms: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """``([B, T, D]`` frames of the chosen layer, ``frame_lengths [B])``."""
        if self.trains_encoder and self.training:
            output = self.encoder.encode(waveforms, lengths)
            return output.hidden_states[self.layer], output.frame_lengths
        output = self.encoder(waveforms, lengths)
        # Inference-mode tensors cannot enter autograd: clone them outside it.
        return output.hidden_states[self.layer].clone(), output.frame_lengths.clone()

    def forward(self, waveforms: Tensor, lengths: Tensor) -> Tensor:
        return self.head_outputs(*self.features(waveforms, lengths))

    def head_outputs(self, hidden: Tensor, frame_lengths: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """The head on ``[B, T, D]`` frames: class logits ``[B, C]`` (mean-pooled valid
        frames), or CTC ``(log_probs [B, T, V], frame_lengths)``."""
        if self.hparams.task == "classification":
            mask = lengths_to_mask(frame_lengths, hidden.shape[1]).unsqueeze(-1)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1)
            return self.head(pooled if self.norm is None else self.norm(pooled))
        if self.norm is not None:  # z-score the valid frames only: padding must not enter the statistics
            valid = lengths_to_mask(frame_lengths, hidden.shape[1])
            hidden = hidden.masked_scatter(valid.unsqueeze(-1), self.norm(hidden[valid]))
        return self.head(hidden).log_softmax(-1), frame_lengths

    def _ctc_targets(self, batch: dict) -> tuple[Tensor, Tensor, list[str]]:
        index = {t: i + 1 for i, t in enumerate(self.tokens)}
        sequences = []
        for path, segments in zip(batch["paths"], batch["alignments"], strict=True):
            if segments is None:
                raise ValueError(f"no alignment for {path}: CTC fine-tuning reads targets from alignments")
            sequences.append([label for _, _, label in segments if label in index])
        targets = torch.tensor([index[t] for seq in sequences for t in seq], dtype=torch.long)
        lengths = torch.tensor([len(seq) for seq in sequences], dtype=torch.long)
        return targets, lengths, [" ".join(seq) for seq in sequences]

    def _outputs(self, batch: dict) -> Tensor | tuple[Tensor, Tensor]:
        """Head outputs of a speech batch, or of a batch of cached frames (``frames``,
        ``frame_lengths``: see :class:`~lightning_tx.finetune.CachedFeatureDataModule`)."""
        if "frames" in batch:
            if self.trains_encoder:
                raise ValueError("cached frames are for mode='frozen': this recipe trains the encoder")
            return self.head_outputs(batch["frames"], batch["frame_lengths"])
        return self(batch["waveforms"], batch["lengths"])

    def _step(self, batch: dict, stage: str) -> Tensor:
        if self.hparams.task == "classification":
            logits = self._outputs(batch)
            loss = F.cross_entropy(logits, batch["labels"])
            if stage != "train":
                self.metrics[f"{stage}_"].update(logits.argmax(-1), batch["labels"])
        else:
            log_probs, frame_lengths = self._outputs(batch)
            targets, target_lengths, references = self._ctc_targets(batch)
            loss = F.ctc_loss(
                log_probs.transpose(0, 1),
                targets.to(self.device),
                frame_lengths,
                target_lengths.to(self.device),
                blank=0,
                zero_infinity=True,
            )
            if stage != "train":
                self.metrics[f"{stage}_"].update(self._greedy_decode(log_probs, frame_lengths), references)
        batch_size = len(batch["paths"])
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=stage == "train",
            batch_size=batch_size,
            sync_dist=stage != "train",
        )
        if stage != "train":
            self.log(
                f"{stage}/{self.result_metric}",
                self.metrics[f"{stage}_"],
                prog_bar=True,
                batch_size=batch_size,
            )
        return loss

    def _greedy_decode(self, log_probs: Tensor, frame_lengths: Tensor) -> list[str]:
        best = log_probs.argmax(-1).cpu()
        hypotheses = []
        for row, length in enumerate(frame_lengths.tolist()):
            ids = torch.unique_consecutive(best[row, :length])
            hypotheses.append(" ".join(self.tokens[i - 1] for i in ids.tolist() if i != 0))
        return hypotheses

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        groups = [{"params": self.head.parameters(), "lr": self.hparams.learning_rate}]
        encoder_parameters = [p for p in self.encoder.parameters() if p.requires_grad]
        if encoder_parameters:
            groups.append({"params": encoder_parameters, "lr": self.hparams.encoder_learning_rate})
        return torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)
