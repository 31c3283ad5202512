"""TransferabilityCallback: score every layer of a model's encoder before training starts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from tqdm.auto import tqdm

from lightning_tx.encoders.base import EncoderOutput
from lightning_tx.functional.frames import lengths_to_mask
from lightning_tx.metrics.registry import get_estimator
from lightning_tx.ranking.scoring import LayerScorer, batch_labels


class TransferabilityCallback(Callback):
    """Scores how well each layer of the model's encoder suits the task, once, at the start
    of training (``on_train_start``: the distributed sampler exists and loggers are ready).

    One frozen pass over (``limit_batches`` of) the train dataloader, under
    ``torch.inference_mode()`` with the module in eval mode (train mode is restored after),
    feeds every estimator for every layer. Under DDP each rank scores its shard and the
    metric states are summed across ranks, so every rank gets the same results. Results go
    to :attr:`results` (``{estimator: {layer: score}}``), to every logger as
    ``transfer/<estimator>/layer_<k>``, to a W&B table when a ``WandbLogger`` is attached,
    and into the callback's ``state_dict`` so a resumed run does not score again. The
    metrics live on the callback, never inside the user's module.

    Where the frames come from (the protocol), first match wins:

    1. ``pl_module.transfer_features(batch) -> (hidden_states, frame_lengths, labels)``:
       a list of ``[B, T, D]`` tensors, ``[B]`` valid frames, and ``[B]`` utterance or
       ``[B, T]`` frame class ids; full control for any batch format.
    2. An encoder (the ``encoder`` argument, else ``pl_module.transfer_encoder``): a
       :class:`~lightning_tx.encoders.FrozenEncoder`-like callable
       ``(waveforms, lengths) -> EncoderOutput`` with ``frame_rate``, applied to
       :class:`~lightning_tx.data.SpeechDataModule` batches (``waveforms``, ``lengths``,
       ``labels`` / ``alignments``).

    Args:
        estimators: estimator names; the first decides ``select_layer`` and ``stop_if_below``.
        num_classes: the task's classes (default: ``pl_module.num_classes``, else the
            datamodule's ``num_classes``).
        limit_batches: batches per rank to score (int), a fraction of the loader (float),
            or None for all.
        frame_labels: ``"utterance"`` or ``"alignment"`` for the encoder path.
        vocabulary: label -> id for ``frame_labels="alignment"`` (default: the datamodule's
            alignment vocabulary).
        encoder: an encoder to use instead of ``pl_module.transfer_encoder``.
        select_layer: ``"best"`` calls ``pl_module.select_layer(k)`` with the best layer.
        stop_if_below: stop the run when the best score of the first estimator is worse than
            this (below it, or above it for distances).
        metric_kwargs: per-estimator keyword arguments.
    """

    def __init__(
        self,
        estimators: Sequence[str] = ("logme",),
        num_classes: int | None = None,
        limit_batches: int | float | None = None,
        frame_labels: str = "utterance",
        vocabulary: dict[str, int] | None = None,
        encoder: Any = None,
        select_layer: str | None = None,
        stop_if_below: float | None = None,
        metric_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        self.estimators = [get_estimator(name).name for name in estimators]
        if any(get_estimator(n).needs_source for n in self.estimators):
            raise ValueError(
                "TransferabilityCallback scores the task's data alone: use the `rank` subcommand "
                "(with a source manifest) for sliced_wasserstein"
            )
        if select_layer not in (None, "best"):
            raise ValueError(f"`select_layer` must be None or 'best', got {select_layer!r}")
        if frame_labels not in ("utterance", "alignment"):
            raise ValueError(f"`frame_labels` must be 'utterance' or 'alignment', got {frame_labels!r}")
        self.num_classes, self.limit_batches = num_classes, limit_batches
        self.frame_labels, self.vocabulary, self.encoder = frame_labels, vocabulary, encoder
        self.select_layer, self.stop_if_below = select_layer, stop_if_below
        self.metric_kwargs = metric_kwargs or {}
        self.results: dict[str, dict[int, float]] | None = None
        self.best_layer: int | None = None

    # ------------------------------------------------------------------ hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.results is None:  # a resumed run restored them from the checkpoint
            self.score(trainer, pl_module)
            self._log(trainer)
        self._act(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"results": self.results, "best_layer": self.best_layer}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        results = state_dict.get("results")
        self.results = None if results is None else {e: {int(k): v for k, v in r.items()} for e, r in results.items()}
        self.best_layer = state_dict.get("best_layer")

    # ------------------------------------------------------------------ work
    def score(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, dict[int, float]]:
        """One frozen pass over the train dataloader; sets and returns :attr:`results`.

        Collective under DDP: every rank must call it.
        """
        loader = trainer.train_dataloader
        if loader is None:
            raise RuntimeError("TransferabilityCallback.score needs the trainer's train dataloader")
        limit = self._limit(loader)
        num_classes = self._num_classes(trainer, pl_module)
        vocabulary = self._vocabulary(trainer)
        was_training = pl_module.training
        pl_module.eval()
        scorer = None
        try:
            with torch.inference_mode():
                progress = tqdm(total=limit, desc="transferability", disable=not trainer.is_global_zero, leave=False)
                for index, batch in enumerate(loader):
                    if index >= limit:
                        break
                    batch = trainer.strategy.batch_to_device(batch)
                    output, labels, mask = self._frames(pl_module, batch, vocabulary)
                    if scorer is None:
                        dims = [h.shape[-1] for h in output.hidden_states]
                        scorer = LayerScorer(dims, self.estimators, num_classes, metric_kwargs=self.metric_kwargs)
                        scorer.to(pl_module.device)
                    scorer.update(output, labels, mask)
                    progress.update(1)
                progress.close()
            if scorer is None:
                raise ValueError("the train dataloader yielded no batches to score")
            self.results = scorer.compute()
        finally:
            pl_module.train(was_training)
        primary = self.estimators[0]
        sign = 1.0 if get_estimator(primary).higher_is_better else -1.0
        self.best_layer = max(self.results[primary], key=lambda k: sign * self.results[primary][k])
        return self.results

    def _limit(self, loader: Any) -> int:
        total = len(loader) if hasattr(loader, "__len__") else math.inf
        if self.limit_batches is None:
            return total
        if isinstance(self.limit_batches, float) and 0 < self.limit_batches <= 1:
            return max(1, int(total * self.limit_batches))
        return min(int(self.limit_batches), total)

    def _num_classes(self, trainer: L.Trainer, pl_module: L.LightningModule) -> int:
        if self.frame_labels == "alignment":
            return len(self._vocabulary(trainer))
        for source in (
            self.num_classes,
            getattr(pl_module, "num_classes", None),
            getattr(trainer.datamodule, "num_classes", None) if trainer.datamodule else None,
        ):
            if isinstance(source, int):
                return source
        raise ValueError("TransferabilityCallback needs `num_classes` (or pl_module.num_classes, or a datamodule's)")

    def _vocabulary(self, trainer: L.Trainer) -> dict[str, int] | None:
        if self.frame_labels != "alignment":
            return None
        if self.vocabulary is None:
            self.vocabulary = getattr(trainer.datamodule, "alignment_label_to_id", None)
        if not self.vocabulary:
            raise ValueError("frame_labels='alignment' needs a `vocabulary` (or a SpeechDataModule with alignments)")
        return self.vocabulary

    def _frames(self, pl_module: L.LightningModule, batch: Any, vocabulary: dict[str, int] | None):
        if hasattr(pl_module, "transfer_features"):
            hidden, frame_lengths, labels = pl_module.transfer_features(batch)
            output = EncoderOutput(list(hidden), frame_lengths)
            steps = output.hidden_states[0].shape[1]
            mask = lengths_to_mask(frame_lengths, steps)
            if labels.ndim == 1:
                labels = labels.unsqueeze(1).expand(-1, steps)
            return output, labels * mask, mask
        encoder = self.encoder if self.encoder is not None else getattr(pl_module, "transfer_encoder", None)
        if encoder is None:
            raise AttributeError(
                "TransferabilityCallback needs frames: give it `encoder=`, or give the LightningModule a "
                "`transfer_encoder` attribute or a `transfer_features(batch)` method"
            )
        if hasattr(encoder, "to") and self.encoder is not None:
            encoder.to(pl_module.device)
        output = encoder(batch["waveforms"], batch["lengths"])
        labels, mask = batch_labels(batch, output, encoder.frame_rate, source=self.frame_labels, vocabulary=vocabulary)
        return output, labels, mask

    # ------------------------------------------------------------------ results
    def _log(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        flat = {f"transfer/{e}/layer_{k}": v for e, scores in self.results.items() for k, v in scores.items()}
        layers = sorted(next(iter(self.results.values())))
        for logger in trainer.loggers:
            logger.log_metrics(flat, step=trainer.global_step)
            if isinstance(logger, WandbLogger):
                logger.log_table(
                    key="transfer/layers",
                    columns=["layer", *self.estimators],
                    data=[[k, *(self.results[e][k] for e in self.estimators)] for k in layers],
                )
        table = "\n".join(
            f"  layer {k:>3}: " + "  ".join(f"{e}={self.results[e][k]:.4f}" for e in self.estimators) for k in layers
        )
        rank_zero_info(f"[transferability] best layer by {self.estimators[0]}: {self.best_layer}\n{table}")

    def _act(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.select_layer == "best":
            if not hasattr(pl_module, "select_layer"):
                raise AttributeError(
                    "select_layer='best' needs a `select_layer(layer: int)` method on the LightningModule"
                )
            pl_module.select_layer(self.best_layer)
        if self.stop_if_below is not None:
            primary = self.estimators[0]
            best = self.results[primary][self.best_layer]
            worse = best < self.stop_if_below if get_estimator(primary).higher_is_better else best > self.stop_if_below
            if worse:
                rank_zero_warn(
                    f"stopping: the best {primary} ({best:.4f}, layer {self.best_layer}) is worse than "
                    f"stop_if_below={self.stop_if_below}"
                )
                trainer.should_stop = True
