"""TransferabilityCallback: score every layer of a model's encoder before training starts."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from lightning_tx.metrics.registry import get_estimator
from lightning_tx.scoring import (
    FRAME_LABEL_SOURCES,
    Results,
    TaskLabels,
    add_layer_ensemble,
    best_layer,
    expand_estimators,
    score_module,
)
from lightning_tx.scoring.publish import publish_scores


class TransferabilityCallback(Callback):
    """Scores how well each layer of the model's encoder suits the task, once, when training
    starts (``on_train_start``), like Lightning's ``LearningRateFinder``: :meth:`score` does
    the work (through :mod:`lightning_tx.scoring`), the hook only decides when.

    One frozen pass (eval mode, ``torch.inference_mode()``, train mode restored after) over
    the train dataloader's dataset, each item exactly once however many processes share it
    (and, for estimators that compare domains, over ``source``), feeds every estimator of
    every layer; under DDP the metric states are summed, so every process gets the result
    of one process. Results go to :attr:`results` (``{estimator: {layer: score}}``), to
    every logger as ``transfer/<estimator>/layer_<k>`` (plus a W&B table), and into
    checkpoints: a resumed run scores only what it does not have.

    Frames come from ``pl_module.transfer_features(batch) -> (hidden_states, frame_lengths,
    labels)`` when the module has it (any batch format), else from ``encoder`` (or
    ``pl_module.transfer_encoder``) applied to speech batches (``waveforms``, ``lengths``,
    labels) of a :class:`~lightning_tx.data.SpeechDataModule`.

    Args:
        estimators: estimator names; the first decides ``select_layer`` (its exact ties broken by
            the next) and ``stop_if_below``.
        source: source-domain audio for ``sliced_wasserstein``: a manifest path, a
            ``LightningDataModule`` or a ``DataLoader`` of speech batches.
        limit_batches: score a random subset of this many batches (int) or this fraction
            (float) of the pass, shared among processes (default: everything).
        frame_labels: ``"utterance"``, ``"alignment"``, ``"ctc"`` or ``"uniform"`` (see
            :class:`~lightning_tx.scoring.TaskLabels`); the encoder path only.
        exclude: labels left out of the task (e.g. ``["sil"]``).
        ctc_aligner: a Hugging Face ``*ForCTC`` checkpoint, for ``frame_labels="ctc"``.
        num_classes: the task's classes (default: the datamodule's, else ``pl_module.num_classes``).
        encoder: an encoder to use instead of ``pl_module.transfer_encoder``.
        layers: the layers to score (default: all).
        select_layer: ``"best"`` calls ``pl_module.select_layer(k)`` with the best layer.
        stop_if_below: stop the run when the best score of the first estimator is worse.
        metric_kwargs: per-estimator keyword arguments.
        seed: seed of the ``limit_batches`` subset.
    """

    def __init__(
        self,
        estimators: Sequence[str] = ("pooled_logme_standardized",),
        *,
        source: str | os.PathLike | Any | None = None,
        limit_batches: int | float | None = None,
        frame_labels: str = "utterance",
        exclude: Sequence[str] = (),
        ctc_aligner: str | None = None,
        num_classes: int | None = None,
        encoder: Any = None,
        layers: Sequence[int] | None = None,
        select_layer: str | None = None,
        stop_if_below: float | None = None,
        metric_kwargs: dict[str, dict[str, Any]] | None = None,
        seed: int = 0,
    ) -> None:
        self.estimators = expand_estimators(estimators)
        if any(get_estimator(n).needs_source for n in self.estimators) and source is None:
            raise ValueError("sliced_wasserstein compares domains: give `source=` (source-domain audio)")
        if frame_labels not in FRAME_LABEL_SOURCES:
            raise ValueError(f"`frame_labels` must be one of {FRAME_LABEL_SOURCES}, got {frame_labels!r}")
        if select_layer not in (None, "best"):
            raise ValueError(f"`select_layer` must be None or 'best', got {select_layer!r}")
        self.source, self.limit_batches, self.seed = source, limit_batches, seed
        self.frame_labels, self.exclude, self.ctc_aligner = frame_labels, list(exclude), ctc_aligner
        self.num_classes, self.encoder, self.layers = num_classes, encoder, layers
        self.select_layer, self.stop_if_below = select_layer, stop_if_below
        self.metric_kwargs = metric_kwargs or {}
        self.results: Results | None = None
        self.best_layer: int | None = None

    @property
    def state_key(self) -> str:
        source = self.source
        if source is not None:
            source = os.fspath(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__
        return self._generate_state_key(
            estimators=self.estimators,
            frame_labels=self.frame_labels,
            exclude=self.exclude,
            layers=self.layers,
            limit_batches=self.limit_batches,
            source=source,
            seed=self.seed,
        )

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        missing = [e for e in self.estimators if e not in (self.results or {})]
        if missing:
            self.score(trainer, pl_module, missing)
            self._report(trainer)
        self._act(trainer, pl_module)

    def state_dict(self) -> dict[str, Any]:
        return {"results": self.results, "best_layer": self.best_layer, "estimators": self.estimators}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        saved = state_dict.get("results") or {}
        wanted = None if self.layers is None else set(self.layers)
        self.results = {
            e: {int(k): v for k, v in scores.items()}
            for e, scores in saved.items()
            if e in self.estimators and (wanted is None or wanted <= {int(k) for k in scores})
        } or None
        primary_saved = self.results is not None and self.estimators[0] in self.results
        self.best_layer = best_layer(self.results, self.estimators) if primary_saved else None

    def score(
        self, trainer: L.Trainer, pl_module: L.LightningModule, estimators: Sequence[str] | None = None
    ) -> Results:
        """One frozen pass; merges into and returns :attr:`results` (collective under DDP)."""
        labels = TaskLabels.for_module(
            pl_module,
            trainer.datamodule,
            self.frame_labels,
            num_classes=self.num_classes,
            exclude=self.exclude,
            ctc_aligner=self.ctc_aligner,
            device=pl_module.device,
        )
        results = score_module(
            pl_module,
            trainer.train_dataloader,
            estimators or self.estimators,
            labels,
            encoder=self.encoder,
            source=self.source,
            layers=self.layers,
            metric_kwargs=self.metric_kwargs,
            limit_batches=self.limit_batches,
            seed=self.seed,
            to_device=trainer.strategy.batch_to_device,
            progress=trainer.is_global_zero and trainer.progress_bar_callback is not None,
        )
        self.results = {**(self.results or {}), **results}
        add_layer_ensemble(self.results, self.estimators)  # ranks this model's layers
        self.best_layer = best_layer(self.results, self.estimators)
        return self.results

    def _report(self, trainer: L.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        layers = sorted(next(iter(self.results.values())))
        rows = [
            {"candidate": None, "layer": k, "scores": {e: self.results[e][k] for e in self.estimators}} for k in layers
        ]
        publish_scores(trainer.loggers, rows, self.estimators, step=trainer.global_step, with_candidate=False)
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
