"""Ground truth for the ranking-quality benchmark: heads trained on cached frozen features.

Each candidate encodes a task's train, val and test splits once; every layer's frames are
kept in memory, and the heads train on them (the encoder never runs again):

- ``frozen``: a linear head on the layer, the protocol of linear probing (e.g. MAE's: the
  features z-scored with train statistics, as a non-affine BatchNorm does). Utterance tasks
  mean-pool the valid frames and train a softmax classifier (accuracy); phone recognition
  trains a per-frame linear layer with CTC (1 - phone error rate, greedy decoding).
- ``top_n``: partial fine-tuning of a Conformer's last layer together with the head: the
  cached input of that layer (the layer below's frames) goes through a trainable copy of it.

Each head picks its learning rate on the validation split from a small sweep (with the first
seed) and reports the test result at that rate for every seed (head initialisation, batch
order, dropout): the mean and the spread over seeds.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics.functional.text import word_error_rate

from lightning_tx.encoders.base import FrozenEncoder
from lightning_tx.encoders.torchaudio_models import ConformerEncoder, conformer_layer_forward
from lightning_tx.functional.frames import lengths_to_mask
from lightning_tx.scoring import TaskLabels, scoring_loader


@dataclass
class SplitFeatures:
    """One split encoded by one candidate.

    Attributes:
        hidden_states: per layer, ``[N, T, D]`` float32 frames (zero past each length).
        frame_lengths: ``[N]`` valid frames.
        labels: ``[N]`` utterance class ids (utterance tasks).
        tokens: per utterance, the token ids of its transcript (CTC tasks; 1-based, 0 is blank).
    """

    hidden_states: list[Tensor]
    frame_lengths: Tensor
    labels: Tensor | None
    tokens: list[list[int]] | None


def encode_split(
    encoder: FrozenEncoder, dataset, collate, batch_size: int, labels: TaskLabels, ctc: bool
) -> SplitFeatures:
    """Every layer's frames of a split, in dataset order (batches sorted by length)."""
    loader = scoring_loader(dataset, batch_size, collate)
    order, hidden, lengths, utterance_labels, tokens = [], [], [], [], []
    vocabulary = labels.vocabulary
    with torch.inference_mode():
        for batch in loader:
            out = encoder(batch["waveforms"], batch["lengths"])
            order += batch["indices"].tolist()
            hidden.append([h.float() for h in out.hidden_states])
            lengths.append(out.frame_lengths.cpu())
            if ctc:
                for segments in batch["alignments"]:
                    tokens.append([vocabulary[s[2]] + 1 for s in segments if s[2] in vocabulary])
            else:
                utterance_labels.append(batch["labels"])
    steps = max(h[0].shape[1] for h in hidden)
    num_layers = len(hidden[0])
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    layers = []
    for layer in range(num_layers):
        padded = torch.cat([F.pad(h[layer], (0, 0, 0, steps - h[layer].shape[1])) for h in hidden])
        layers.append(padded[inverse].contiguous())
    frame_lengths = torch.cat(lengths)[inverse]
    return SplitFeatures(
        layers,
        frame_lengths,
        None if ctc else torch.cat(utterance_labels)[inverse],
        [tokens[i] for i in inverse.tolist()] if ctc else None,
    )


# --------------------------------------------------------------------------- heads
def _pooled(frames: Tensor, lengths: Tensor) -> Tensor:
    mask = lengths_to_mask(lengths, frames.shape[1]).unsqueeze(-1)
    return (frames * mask).sum(1) / lengths.clamp_min(1).unsqueeze(1)


class _Standardize(nn.Module):
    """z-scores features with fixed statistics (a BatchNorm without affine, frozen)."""

    def __init__(self, mean: Tensor, std: Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std.clamp_min(1e-6))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def _batches(count: int, batch_size: int, generator: torch.Generator):
    order = torch.randperm(count, generator=generator)
    return [order[i : i + batch_size] for i in range(0, count, batch_size)]


def _greedy(log_probs: Tensor, lengths: Tensor) -> list[str]:
    best = log_probs.argmax(-1)
    out = []
    for row, length in enumerate(lengths.tolist()):
        ids = torch.unique_consecutive(best[row, :length]).tolist()
        out.append(" ".join(str(i) for i in ids if i != 0))
    return out


@dataclass
class Recipe:
    """How each head trains (the same for every candidate)."""

    learning_rates: tuple[float, ...] = (1e-3, 3e-3, 1e-2)
    epochs: int = 30
    batch_size: int = 32
    weight_decay: float = 1e-2
    top_n_learning_rates: tuple[float, ...] = (3e-4, 1e-3)
    top_n_epochs: int = 8


class _Head(nn.Module):
    """[trainable top layer] -> [pool over frames] -> [z-score] -> linear, on ``[B, T, D]``
    frames, or on ``[B, D]`` vectors already pooled."""

    def __init__(self, dim: int, outputs: int, standardize: _Standardize | None, top_layer: nn.Module | None):
        super().__init__()
        self.standardize, self.top_layer = standardize, top_layer
        self.linear = nn.Linear(dim, outputs)

    def forward(self, x: Tensor, lengths: Tensor | None = None, pool: bool = False) -> Tensor:
        if self.top_layer is not None:
            padding = ~lengths_to_mask(lengths, x.shape[1])
            x = conformer_layer_forward(self.top_layer, x.transpose(0, 1), padding).transpose(0, 1)
        if pool:
            x = _pooled(x, lengths)
        if self.standardize is not None:
            x = self.standardize(x)
        return self.linear(x)


@dataclass
class _Inputs:
    """What a head trains and is evaluated on: per split, pooled vectors ``[N, D]`` (frozen
    utterance tasks), or frames ``[N, T, D]`` with lengths."""

    x: dict[str, Tensor]
    lengths: dict[str, Tensor]
    pooled: bool


def _inputs(splits: dict[str, SplitFeatures], layer: int, pooled: bool) -> _Inputs:
    x = {s: f.hidden_states[layer] for s, f in splits.items()}
    lengths = {s: f.frame_lengths for s, f in splits.items()}
    if pooled:
        x = {s: _pooled(x[s], lengths[s]) for s in x}
    return _Inputs(x, lengths, pooled)


def _evaluate(head: _Head, inputs: _Inputs, split: SplitFeatures, name: str, ctc: bool) -> float:
    head.eval()
    with torch.no_grad():
        x, lengths = inputs.x[name], inputs.lengths[name]
        if not ctc:
            logits = head(x) if inputs.pooled else head(x, lengths, pool=True)
            return float((logits.argmax(-1) == split.labels).float().mean())
        hypotheses = _greedy(head(x, lengths).log_softmax(-1), lengths)
        references = [" ".join(str(t) for t in tokens) for tokens in split.tokens]
        return 1.0 - float(word_error_rate(hypotheses, references))


def train_head(
    splits: dict[str, SplitFeatures],
    inputs: _Inputs,
    *,
    num_outputs: int,
    ctc: bool,
    learning_rate: float,
    seed: int,
    recipe: Recipe,
    top_layer: nn.Module | None = None,
) -> tuple[float, float]:
    """Train one head; ``(val, test)`` results (accuracy, or 1 - phone error rate). With
    ``top_layer`` (a Conformer layer), a trainable copy of it sits under the head, fed with
    the cached frames of the layer below (partial fine-tuning)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    train, x, lengths = splits["train"], inputs.x["train"], inputs.lengths["train"]
    standardize = None
    if top_layer is None:  # frozen: z-score with train statistics
        valid = x if inputs.pooled else x[lengths_to_mask(lengths, x.shape[1])]
        standardize = _Standardize(valid.mean(0), valid.std(0))
    trainable = copy.deepcopy(top_layer) if top_layer is not None else None
    head = _Head(x.shape[-1], num_outputs + (1 if ctc else 0), standardize, trainable)
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=recipe.weight_decay)
    epochs = recipe.top_n_epochs if top_layer is not None else recipe.epochs
    for _ in range(epochs):
        head.train()
        for rows in _batches(x.shape[0], recipe.batch_size, generator):
            if inputs.pooled:
                loss = F.cross_entropy(head(x[rows]), train.labels[rows])
            else:
                n = lengths[rows]
                frames = x[rows, : int(n.max())]
                if ctc:
                    log_probs = head(frames, n).log_softmax(-1)
                    targets = [train.tokens[i] for i in rows.tolist()]
                    loss = F.ctc_loss(
                        log_probs.transpose(0, 1),
                        torch.tensor([t for seq in targets for t in seq], dtype=torch.long),
                        n,
                        torch.tensor([len(seq) for seq in targets]),
                        zero_infinity=True,
                    )
                else:
                    loss = F.cross_entropy(head(frames, n, pool=True), train.labels[rows])
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(head.parameters(), 5.0)
            optimizer.step()
    return _evaluate(head, inputs, splits["val"], "val", ctc), _evaluate(head, inputs, splits["test"], "test", ctc)


def pooled_heads(
    splits: dict[str, SplitFeatures],
    inputs: _Inputs,
    *,
    num_outputs: int,
    rates: tuple[float, ...],
    seeds: tuple[int, ...],
    recipe: Recipe,
) -> dict[float, list[tuple[float, float]]]:
    """Linear heads on pooled, z-scored vectors for every (learning rate, seed) at once: the
    runs are stacked into batched weights ``[R, D, C]`` and trained in lockstep with AdamW
    (the same update as ``torch.optim.AdamW``, one learning rate per run), each run with its
    seed's initialisation and batch order. Returns ``{rate: [(val, test) per seed]}``."""
    x = inputs.x["train"]
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    features = {name: (value - mean) / std for name, value in inputs.x.items()}
    runs = [(rate, seed) for rate in rates for seed in seeds]
    count, dim = x.shape
    bound = 1 / math.sqrt(dim)  # nn.Linear's initialisation
    weights, biases, orders = [], [], {}
    for _, seed in runs:
        generator = torch.Generator().manual_seed(seed)
        weights.append(torch.empty(dim, num_outputs).uniform_(-bound, bound, generator=generator))
        biases.append(torch.empty(num_outputs).uniform_(-bound, bound, generator=generator))
        orders.setdefault(seed, generator)
    weight = torch.stack(weights).requires_grad_()
    bias = torch.stack(biases).requires_grad_()
    rate = torch.tensor([r for r, _ in runs])
    moments = [(torch.zeros_like(weight), torch.zeros_like(weight)), (torch.zeros_like(bias), torch.zeros_like(bias))]
    betas, eps, step = (0.9, 0.999), 1e-8, 0
    labels = splits["train"].labels
    for _ in range(recipe.epochs):
        batches = {seed: _batches(count, recipe.batch_size, generator) for seed, generator in orders.items()}
        for b in range(len(next(iter(batches.values())))):
            rows = torch.stack([batches[seed][b] for _, seed in runs])  # [R, B]
            logits = torch.bmm(features["train"][rows], weight) + bias.unsqueeze(1)
            loss = F.cross_entropy(logits.flatten(0, 1), labels[rows].flatten(), reduction="none")
            loss.view(len(runs), -1).mean(1).sum().backward()
            step += 1
            with torch.no_grad():
                for parameter, (first, second) in zip((weight, bias), moments, strict=True):
                    shape = (-1,) + (1,) * (parameter.dim() - 1)
                    parameter.mul_(1 - rate.view(shape) * recipe.weight_decay)
                    first.mul_(betas[0]).add_(parameter.grad, alpha=1 - betas[0])
                    second.mul_(betas[1]).addcmul_(parameter.grad, parameter.grad, value=1 - betas[1])
                    denominator = (second / (1 - betas[1] ** step)).sqrt().add_(eps)
                    parameter.sub_(rate.view(shape) * first / (1 - betas[0] ** step) / denominator)
                    parameter.grad = None
    out: dict[float, list[tuple[float, float]]] = {r: [] for r in rates}
    with torch.no_grad():
        for index, (r, _) in enumerate(runs):
            scores = []
            for name in ("val", "test"):
                predicted = (features[name] @ weight[index] + bias[index]).argmax(-1)
                scores.append(float((predicted == splits[name].labels).float().mean()))
            out[r].append((scores[0], scores[1]))
    return out


def ground_truth(
    splits: dict[str, SplitFeatures],
    layer: int,
    *,
    num_outputs: int,
    ctc: bool,
    seeds: tuple[int, ...],
    recipe: Recipe,
    top_layer: nn.Module | None = None,
) -> dict:
    """One head on ``layer``: the learning rate with the best validation result, and the
    test results of every seed at that rate: ``{"learning_rate", "val", "test": [per seed],
    "mean", "std"}``."""
    rates = recipe.top_n_learning_rates if top_layer is not None else recipe.learning_rates
    inputs = _inputs(splits, layer, pooled=top_layer is None and not ctc)
    if inputs.pooled:  # cheap: every rate and seed at once, the rate chosen on the mean over seeds
        results = pooled_heads(splits, inputs, num_outputs=num_outputs, rates=rates, seeds=seeds, recipe=recipe)
        best = max(rates, key=lambda rate: sum(v for v, _ in results[rate]))
        runs = results[best]
    else:  # frames: the sweep with the first seed, then the other seeds at the chosen rate
        common = {"num_outputs": num_outputs, "ctc": ctc, "recipe": recipe, "top_layer": top_layer}
        sweep = {rate: train_head(splits, inputs, learning_rate=rate, seed=seeds[0], **common) for rate in rates}
        best = max(rates, key=lambda rate: sweep[rate][0])
        runs = [sweep[best]] + [train_head(splits, inputs, learning_rate=best, seed=s, **common) for s in seeds[1:]]
    tests = [t for _, t in runs]
    mean = sum(tests) / len(tests)
    std = math.sqrt(sum((t - mean) ** 2 for t in tests) / max(1, len(tests) - 1))
    return {"learning_rate": best, "val": sum(v for v, _ in runs) / len(runs), "test": tests, "mean": mean, "std": std}


def top_layer_of(encoder: FrozenEncoder) -> nn.Module | None:
    """The last Conformer layer (partial fine-tuning), or None for other encoders."""
    if isinstance(encoder, ConformerEncoder):
        return encoder.model.conformer.conformer_layers[-1]
    return None
