"""Ground truth for the ranking-quality benchmark: heads trained on cached frozen features.

Each candidate encodes a task's train, val and test splits once; every layer's frames are
kept in memory, and the heads train on them (the encoder never runs again):

- ``frozen``: a linear head on the layer, the protocol of linear probing (e.g. MAE's: the
  features z-scored with train statistics, as a non-affine BatchNorm does). Utterance tasks
  mean-pool the valid frames and train a softmax classifier (accuracy); phone recognition
  trains a per-frame linear layer with CTC (1 - phone error rate, greedy decoding).
- ``top_n``: partial fine-tuning of a Conformer's last layer together with the head: the
  cached input of that layer (the layer below's frames) goes through a trainable copy of it.

Each head picks its learning rate on the validation split from a small sweep and reports the
test result at that rate for every seed (head initialisation, batch order, dropout): the mean
and the spread over seeds. Frozen heads train every (rate, seed) at once, in lockstep, for a
fixed number of steps (:class:`Recipe`), and pick the rate on the mean over seeds; partial
fine-tuning sweeps with the first seed, then runs the other seeds at the chosen rate.
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
        speakers: per utterance, its speaker (voice) id, or None where the manifest has none.
    """

    hidden_states: list[Tensor]
    frame_lengths: Tensor
    labels: Tensor | None
    tokens: list[list[int]] | None
    speakers: list[str | None] | None = None


def encode_split(
    encoder: FrozenEncoder, dataset, collate, batch_size: int, labels: TaskLabels, ctc: bool
) -> SplitFeatures:
    """Every layer's frames of a split, in dataset order (batches sorted by length)."""
    loader = scoring_loader(dataset, batch_size, collate)
    order, hidden, lengths, utterance_labels, tokens, speakers = [], [], [], [], [], []
    vocabulary = labels.vocabulary
    with torch.inference_mode():
        for batch in loader:
            out = encoder(batch["waveforms"], batch["lengths"])
            order += batch["indices"].tolist()
            hidden.append([h.float() for h in out.hidden_states])
            lengths.append(out.frame_lengths.cpu())
            speakers += batch["speakers"]
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
        [speakers[i] for i in inverse.tolist()],
    )


# --------------------------------------------------------------------------- heads
def _pooled(frames: Tensor, lengths: Tensor) -> Tensor:
    mask = lengths_to_mask(lengths, frames.shape[1]).unsqueeze(-1)
    return (frames * mask).sum(1) / lengths.clamp_min(1).unsqueeze(1)


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
    """How each head trains (the same for every candidate).

    A frozen head trains for ``steps`` optimizer steps whatever the size of its training set
    (:meth:`frozen_epochs`: a few-shot task's head trains as long as a large task's), long
    enough to be near its optimum at every rate of the sweep. A linear head under AdamW tends
    to the same weights at any learning rate (the fixed point depends on the weight decay, not
    the rate), so the rate that the validation split (one held-out voice) picks then moves the
    result little. With 30 epochs instead (270 steps on a task of 288 utterances), heads at the
    lower rates were still far from converged, and a layer's result turned on which rate that
    one voice happened to prefer.
    """

    learning_rates: tuple[float, ...] = (3e-3, 1e-2, 3e-2)
    steps: int = 1500
    batch_size: int = 32
    weight_decay: float = 1e-2
    top_n_learning_rates: tuple[float, ...] = (3e-4, 1e-3)
    top_n_epochs: int = 8

    def frozen_epochs(self, count: int) -> int:
        """Epochs over ``count`` training utterances that make at least ``steps`` steps."""
        return max(1, math.ceil(self.steps / math.ceil(count / self.batch_size)))


class _Head(nn.Module):
    """Partial fine-tuning: a trainable top layer, then [pool over frames] -> linear, on
    ``[B, T, D]`` frames."""

    def __init__(self, dim: int, outputs: int, top_layer: nn.Module):
        super().__init__()
        self.top_layer = top_layer
        self.linear = nn.Linear(dim, outputs)

    def forward(self, x: Tensor, lengths: Tensor, pool: bool = False) -> Tensor:
        padding = ~lengths_to_mask(lengths, x.shape[1])
        x = conformer_layer_forward(self.top_layer, x.transpose(0, 1), padding).transpose(0, 1)
        return self.linear(_pooled(x, lengths) if pool else x)


@dataclass
class HeadInputs:
    """What a head trains and is evaluated on: per split, pooled vectors ``[N, D]`` (frozen
    utterance tasks), or frames ``[N, T, D]`` with lengths."""

    x: dict[str, Tensor]
    lengths: dict[str, Tensor]
    pooled: bool


def head_inputs(splits: dict[str, SplitFeatures], layer: int, pooled: bool) -> HeadInputs:
    """One layer's features of every split: its frames, or their means over each utterance."""
    x = {s: f.hidden_states[layer] for s, f in splits.items()}
    lengths = {s: f.frame_lengths for s, f in splits.items()}
    if pooled:
        x = {s: _pooled(x[s], lengths[s]) for s in x}
    return HeadInputs(x, lengths, pooled)


def _phone_accuracy(log_probs: Tensor, lengths: Tensor, split: SplitFeatures, rows: list[int] | None = None) -> float:
    """1 - phone error rate of greedy CTC decoding of ``[N, T, C + 1]`` log-probabilities
    (over the utterances ``rows``; default all)."""
    if rows is not None:
        log_probs, lengths = log_probs[rows], lengths[rows]
    tokens = split.tokens if rows is None else [split.tokens[i] for i in rows]
    references = [" ".join(str(t) for t in sequence) for sequence in tokens]
    return 1.0 - float(word_error_rate(_greedy(log_probs, lengths), references))


def _result(logits: Tensor, lengths: Tensor, split: SplitFeatures, ctc: bool, rows: list[int] | None = None) -> float:
    """A head's result on a split from its logits (``[N, C]`` pooled, ``[N, T, C + 1]`` CTC):
    accuracy, or 1 - phone error rate; over the utterances ``rows`` (default all)."""
    if ctc:
        return _phone_accuracy(logits.log_softmax(-1), lengths, split, rows)
    labels = split.labels if rows is None else split.labels[rows]
    return float(((logits if rows is None else logits[rows]).argmax(-1) == labels).float().mean())


def _voices(split: SplitFeatures) -> dict[str, list[int]]:
    """The utterances of each speaker of a split (none where its speakers are unknown)."""
    if split.speakers is None or any(s is None for s in split.speakers):
        return {}
    groups: dict[str, list[int]] = {}
    for row, speaker in enumerate(split.speakers):
        groups.setdefault(speaker, []).append(row)
    return groups


def train_top_n_head(
    splits: dict[str, SplitFeatures],
    inputs: HeadInputs,
    *,
    num_outputs: int,
    ctc: bool,
    learning_rate: float,
    seed: int,
    recipe: Recipe,
    top_layer: nn.Module,
) -> tuple[float, float]:
    """Partial fine-tuning: a trainable copy of ``top_layer`` (a Conformer layer) under a
    linear head, fed with the cached frames of the layer below; ``(val, test)`` results
    (accuracy, or 1 - phone error rate)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    train, x, lengths = splits["train"], inputs.x["train"], inputs.lengths["train"]
    head = _Head(x.shape[-1], num_outputs + (1 if ctc else 0), copy.deepcopy(top_layer))
    optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=recipe.weight_decay)
    for _ in range(recipe.top_n_epochs):
        head.train()
        for rows in _batches(x.shape[0], recipe.batch_size, generator):
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
    head.eval()
    with torch.no_grad():
        val, test = (_result(head(inputs.x[n], inputs.lengths[n], pool=not ctc), inputs.lengths[n], splits[n], ctc)
                     for n in ("val", "test"))  # fmt: skip
    return val, test


class _LockstepAdamW:
    """``torch.optim.AdamW``'s update for parameters stacked over R runs (``[R, ...]``), one
    learning rate per run, with each run's gradient clipped to a norm of ``max_norm`` (as
    ``clip_grad_norm_`` would clip that run alone); None: no clipping."""

    def __init__(self, parameters: list[Tensor], rates: Tensor, weight_decay: float, max_norm: float | None):
        self.parameters, self.rates, self.weight_decay, self.max_norm = parameters, rates, weight_decay, max_norm
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in parameters]
        self.betas, self.eps, self.count = (0.9, 0.999), 1e-8, 0

    @torch.no_grad()
    def step(self) -> None:
        self.count += 1
        if self.max_norm is not None:
            norms = torch.stack([p.grad.flatten(1).pow(2).sum(1) for p in self.parameters]).sum(0).sqrt()  # [R]
            scale = (self.max_norm / (norms + 1e-6)).clamp(max=1.0)
            for parameter in self.parameters:
                parameter.grad.mul_(scale.view((-1,) + (1,) * (parameter.dim() - 1)))
        (beta1, beta2), count = self.betas, self.count
        for parameter, (first, second) in zip(self.parameters, self.moments, strict=True):
            rate = self.rates.view((-1,) + (1,) * (parameter.dim() - 1))
            parameter.mul_(1 - rate * self.weight_decay)
            first.mul_(beta1).add_(parameter.grad, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(parameter.grad, parameter.grad, value=1 - beta2)
            denominator = (second / (1 - beta2**count)).sqrt().add_(self.eps)
            parameter.sub_(rate * first / (1 - beta1**count) / denominator)
            parameter.grad = None


def _linear_runs(runs: list[tuple[float, int]], dim: int, outputs: int) -> tuple[Tensor, Tensor, dict]:
    """Stacked ``nn.Linear`` initialisations ``[R, D, C]``, ``[R, C]`` (each run's seed), and
    a generator per seed for its batch order."""
    bound = 1 / math.sqrt(dim)
    weights, biases, orders = [], [], {}
    for _, seed in runs:
        generator = torch.Generator().manual_seed(seed)
        weights.append(torch.empty(dim, outputs).uniform_(-bound, bound, generator=generator))
        biases.append(torch.empty(outputs).uniform_(-bound, bound, generator=generator))
        orders.setdefault(seed, generator)
    return torch.stack(weights).requires_grad_(), torch.stack(biases).requires_grad_(), orders


def train_frozen_heads(
    splits: dict[str, SplitFeatures],
    inputs: HeadInputs,
    *,
    num_outputs: int,
    ctc: bool,
    runs: list[tuple[float, int]],
    recipe: Recipe,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Linear heads on z-scored frozen features (train statistics, as a non-affine frozen
    BatchNorm), one per ``(learning rate, seed)`` of ``runs``, stacked into batched weights and
    trained in lockstep with AdamW (:class:`_LockstepAdamW`), each run with its seed's
    initialisation and batch order, for ``recipe.frozen_epochs``. Utterance tasks: a softmax
    classifier on pooled vectors. CTC tasks: a per-frame layer over the phones and a blank,
    its gradient clipped to norm 5 per run.

    Returns:
        weight ``[R, D, C]`` (``C + 1`` with CTC's blank), bias ``[R, C]``, and every split's
        z-scored features.
    """
    x, lengths = inputs.x["train"], inputs.lengths["train"]
    valid = x if inputs.pooled else x[lengths_to_mask(lengths, x.shape[1])]
    mean, std = valid.mean(0), valid.std(0).clamp_min(1e-6)
    features = {name: (value - mean) / std for name, value in inputs.x.items()}
    count = x.shape[0]
    weight, bias, orders = _linear_runs(runs, x.shape[-1], num_outputs + (1 if ctc else 0))
    rates = torch.tensor([r for r, _ in runs])
    optimizer = _LockstepAdamW([weight, bias], rates, recipe.weight_decay, 5.0 if ctc else None)
    train = splits["train"]
    for _ in range(recipe.frozen_epochs(count)):
        batches = {seed: _batches(count, recipe.batch_size, generator) for seed, generator in orders.items()}
        for b in range(len(next(iter(batches.values())))):
            rows = torch.stack([batches[seed][b] for _, seed in runs])  # [R, B]
            if not ctc:
                logits = torch.bmm(features["train"][rows], weight) + bias.unsqueeze(1)
                loss = F.cross_entropy(logits.flatten(0, 1), train.labels[rows].flatten(), reduction="none")
                loss.view(len(runs), -1).mean(1).sum().backward()
            else:
                n = lengths[rows]  # [R, B]
                frames = features["train"][rows, : int(n.max())]  # [R, B, T, D]
                logits = torch.einsum("rbtd,rdc->rbtc", frames, weight) + bias[:, None, None, :]
                targets = [train.tokens[i] for i in rows.flatten().tolist()]
                target_lengths = torch.tensor([len(seq) for seq in targets])
                loss = F.ctc_loss(
                    logits.log_softmax(-1).flatten(0, 1).transpose(0, 1),  # [T, R * B, C + 1]
                    torch.tensor([t for seq in targets for t in seq], dtype=torch.long),
                    n.flatten(),
                    target_lengths,
                    reduction="none",
                    zero_infinity=True,
                )
                # F.ctc_loss's "mean" per run: each sequence's loss over its length, averaged
                (loss / target_lengths.clamp_min(1)).view(len(runs), -1).mean(1).sum().backward()
            optimizer.step()
    return weight.detach(), bias.detach(), features


def frozen_heads(
    splits: dict[str, SplitFeatures],
    inputs: HeadInputs,
    *,
    num_outputs: int,
    ctc: bool,
    rates: tuple[float, ...],
    seeds: tuple[int, ...],
    recipe: Recipe,
) -> dict[float, list[tuple[float, float, dict[str, float]]]]:
    """:func:`train_frozen_heads` for every (learning rate, seed) at once, evaluated: accuracy
    (utterance tasks) or 1 - phone error rate (CTC, greedy decoding). Returns ``{rate: [(val,
    test, test by voice) per seed]}``, the last ``{speaker: result on their test utterances}``."""
    runs = [(rate, seed) for rate in rates for seed in seeds]
    weight, bias, features = train_frozen_heads(
        splits, inputs, num_outputs=num_outputs, ctc=ctc, runs=runs, recipe=recipe
    )
    voices = _voices(splits["test"])
    out: dict[float, list[tuple[float, float, dict[str, float]]]] = {r: [] for r in rates}
    for index, (r, _) in enumerate(runs):
        logits = {name: features[name] @ weight[index] + bias[index] for name in ("val", "test")}
        val, test = (_result(logits[n], inputs.lengths[n], splits[n], ctc) for n in ("val", "test"))
        by_voice = {v: _result(logits["test"], inputs.lengths["test"], splits["test"], ctc, rows)
                    for v, rows in voices.items()}  # fmt: skip
        out[r].append((val, test, by_voice))
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
    "mean", "std"}``; frozen heads add ``"voices"``, each test speaker's result (the mean over
    seeds) where the test split names its speakers."""
    voices: dict[str, float] = {}
    if top_layer is None:  # frozen: every rate and seed at once, the rate chosen on the mean over seeds
        rates = recipe.learning_rates
        inputs = head_inputs(splits, layer, pooled=not ctc)
        results = frozen_heads(
            splits, inputs, num_outputs=num_outputs, ctc=ctc, rates=rates, seeds=seeds, recipe=recipe
        )
        best = max(rates, key=lambda rate: sum(run[0] for run in results[rate]))
        runs = [run[:2] for run in results[best]]
        by_voice = [run[2] for run in results[best]]
        voices = {v: sum(seed[v] for seed in by_voice) / len(by_voice) for v in by_voice[0]}
    else:  # partial fine-tuning: the sweep with the first seed, then the other seeds at the chosen rate
        rates = recipe.top_n_learning_rates
        inputs = head_inputs(splits, layer, pooled=False)
        common = {"num_outputs": num_outputs, "ctc": ctc, "recipe": recipe, "top_layer": top_layer}
        sweep = {rate: train_top_n_head(splits, inputs, learning_rate=rate, seed=seeds[0], **common) for rate in rates}
        best = max(rates, key=lambda rate: sweep[rate][0])
        runs = [sweep[best]] + [
            train_top_n_head(splits, inputs, learning_rate=best, seed=s, **common) for s in seeds[1:]
        ]
    tests = [t for _, t in runs]
    mean = sum(tests) / len(tests)
    std = math.sqrt(sum((t - mean) ** 2 for t in tests) / max(1, len(tests) - 1))
    val = sum(v for v, _ in runs) / len(runs)
    return {
        "learning_rate": best,
        "val": val,
        "test": tests,
        "mean": mean,
        "std": std,
        **({"voices": voices} if voices else {}),
    }


def top_layer_of(encoder: FrozenEncoder) -> nn.Module | None:
    """The last Conformer layer (partial fine-tuning), or None for other encoders."""
    if isinstance(encoder, ConformerEncoder):
        return encoder.model.conformer.conformer_layers[-1]
    return None
