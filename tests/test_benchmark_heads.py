"""The benchmark's ground-truth heads (benchmarks/probes.py): the lockstep training of every
(learning rate, seed) at once against one run of plain torch.optim.AdamW, and the step budget."""

import importlib.util
import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

HERE = os.path.dirname(__file__)


@pytest.fixture(scope="module")
def probes():
    sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
    spec = importlib.util.spec_from_file_location("probes", os.path.join(HERE, "..", "benchmarks", "probes.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _splits(probes, ctc: bool, counts=(23, 7, 9), dim=5, classes=4, seed=0, steps=12, per_token=3):
    """Random frames [N, T, D] with lengths, and utterance labels or CTC token sequences (one
    token per ``per_token`` frames)."""
    generator = torch.Generator().manual_seed(seed)
    splits = {}
    for name, count in zip(("train", "val", "test"), counts, strict=True):
        lengths = torch.randint(steps // 2, steps, (count,), generator=generator)
        frames = torch.randn(count, steps, dim, generator=generator) * 3 + 1
        frames[torch.arange(steps) >= lengths.unsqueeze(1)] = 0
        labels = torch.randint(0, classes, (count,), generator=generator)
        tokens = [torch.randint(1, classes + 1, (int(n) // per_token,), generator=generator).tolist() for n in lengths]
        splits[name] = probes.SplitFeatures([frames], lengths, None if ctc else labels, tokens if ctc else None)
    return splits


def _one_run(probes, splits, inputs, ctc, rate, seed, recipe, classes):
    """The same head trained alone, written with torch.optim.AdamW and nn.Linear's own update."""
    x, lengths = inputs.x["train"], inputs.lengths["train"]
    valid = x if inputs.pooled else x[probes.lengths_to_mask(lengths, x.shape[1])]
    mean, std = valid.mean(0), valid.std(0).clamp_min(1e-6)
    generator = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(x.shape[-1])
    linear = nn.Linear(x.shape[-1], classes + (1 if ctc else 0))
    with torch.no_grad():
        linear.weight.copy_(
            torch.empty(x.shape[-1], linear.out_features).uniform_(-bound, bound, generator=generator).T
        )
        linear.bias.copy_(torch.empty(linear.out_features).uniform_(-bound, bound, generator=generator))
    optimizer = torch.optim.AdamW(linear.parameters(), lr=rate, weight_decay=recipe.weight_decay)
    train = splits["train"]
    for _ in range(recipe.frozen_epochs(x.shape[0])):
        for rows in torch.randperm(x.shape[0], generator=generator).split(recipe.batch_size):
            if ctc:
                n = lengths[rows]
                log_probs = linear((x[rows, : int(n.max())] - mean) / std).log_softmax(-1)
                targets = [train.tokens[i] for i in rows.tolist()]
                loss = F.ctc_loss(log_probs.transpose(0, 1), torch.tensor([t for s in targets for t in s]), n,
                                  torch.tensor([len(s) for s in targets]), zero_infinity=True)  # fmt: skip
            else:
                loss = F.cross_entropy(linear((x[rows] - mean) / std), train.labels[rows])
            optimizer.zero_grad()
            loss.backward()
            if ctc:
                nn.utils.clip_grad_norm_(linear.parameters(), 5.0)
            optimizer.step()
    return linear, mean, std


@pytest.mark.parametrize("ctc", [False, True], ids=["utterance", "ctc"])
def test_lockstep_heads_match_each_run_trained_alone(probes, ctc):
    classes = 4
    # CTC: long utterances of few tokens, whose gradients the clipping to norm 5 shortens
    splits = _splits(probes, ctc, classes=classes, dim=16, steps=40, per_token=15) if ctc else _splits(probes, ctc)
    inputs = probes.head_inputs(splits, 0, pooled=not ctc)
    recipe = probes.Recipe(steps=12, batch_size=8)
    runs = [(3e-3, 0), (3e-3, 5), (3e-2, 0), (3e-2, 5)]
    weight, bias, _ = probes.train_frozen_heads(splits, inputs, num_outputs=classes, ctc=ctc, runs=runs, recipe=recipe)
    for index, (rate, seed) in enumerate(runs):
        linear, _, _ = _one_run(probes, splits, inputs, ctc, rate, seed, recipe, classes)
        assert torch.allclose(weight[index], linear.weight.detach().T, atol=1e-5), (rate, seed)
        assert torch.allclose(bias[index], linear.bias.detach(), atol=1e-5), (rate, seed)
    # the heads moved far from their initialisation, and the runs differ from each other
    assert float((weight[2] - weight[0]).abs().max()) > 0.05 and float((weight[1] - weight[0]).abs().max()) > 0.05


def test_frozen_heads_evaluate_each_run(probes):
    """frozen_heads' (val, test, test by voice) are each trained head's accuracy, in (rate,
    seed) order."""
    splits = _splits(probes, False)
    splits["test"].speakers = list("abcabcaab")  # per test utterance
    inputs = probes.head_inputs(splits, 0, pooled=True)
    recipe = probes.Recipe(steps=12, batch_size=8)
    results = probes.frozen_heads(
        splits, inputs, num_outputs=4, ctc=False, rates=(3e-3, 3e-2), seeds=(0, 5), recipe=recipe
    )
    weight, bias, features = probes.train_frozen_heads(
        splits, inputs, num_outputs=4, ctc=False, runs=[(3e-3, 0), (3e-3, 5), (3e-2, 0), (3e-2, 5)], recipe=recipe
    )
    for index, (rate, seed) in enumerate([(3e-3, 0), (3e-3, 5), (3e-2, 0), (3e-2, 5)]):
        accuracy = [float(((features[n] @ weight[index] + bias[index]).argmax(-1) == splits[n].labels).float().mean())
                    for n in ("val", "test")]  # fmt: skip
        val, test, by_voice = results[rate][(0, 5).index(seed)]
        assert (val, test) == tuple(accuracy)
        hits = (features["test"] @ weight[index] + bias[index]).argmax(-1) == splits["test"].labels
        speakers = splits["test"].speakers
        assert by_voice == {v: float(hits[[s == v for s in speakers]].float().mean()) for v in ("a", "b", "c")}


def test_lockstep_clipping_clips_each_run_alone(probes):
    """A run whose gradient is huge is clipped to norm 5 without shrinking the others' step."""
    weight = torch.zeros(2, 3, 2, requires_grad=True)
    optimizer = probes._LockstepAdamW([weight], torch.tensor([0.1, 0.1]), 0.0, max_norm=5.0)
    weight.grad = torch.stack([torch.full((3, 2), 100.0), torch.full((3, 2), 0.1)])
    clipped = weight.grad.clone()
    clipped[0] *= 5.0 / float(clipped[0].norm())
    optimizer.step()
    reference = torch.zeros(3, 2, requires_grad=True)
    alone = torch.optim.AdamW([reference], lr=0.1, weight_decay=0.0)
    for run in range(2):
        reference.data.zero_()
        alone.state.clear()
        reference.grad = clipped[run].clone()
        alone.step()
        assert torch.allclose(weight[run].detach(), reference.detach(), atol=1e-6)


@pytest.mark.parametrize("count", [1, 31, 32, 33, 60, 576])
def test_frozen_heads_make_the_step_budget_on_any_training_size(probes, count):
    recipe = probes.Recipe(steps=1500, batch_size=32)
    batches = math.ceil(count / 32)
    epochs = recipe.frozen_epochs(count)
    assert epochs * batches >= 1500 and (epochs - 1) * batches < 1500


def test_ground_truth_reports_each_test_voice(probes):
    """A frozen CTC head's result per test speaker: 1 - phone error rate over that speaker's
    utterances alone, the mean over seeds at the chosen rate; none where speakers are unknown."""
    from torchmetrics.functional.text import word_error_rate

    splits = _splits(probes, True)
    recipe = probes.Recipe(learning_rates=(3e-2,), steps=6, batch_size=8)
    assert "voices" not in probes.ground_truth(splits, 0, num_outputs=4, ctc=True, seeds=(0, 5), recipe=recipe)
    speakers = list("aabbbcccc")
    splits["test"].speakers = speakers
    result = probes.ground_truth(splits, 0, num_outputs=4, ctc=True, seeds=(0, 5), recipe=recipe)
    inputs = probes.head_inputs(splits, 0, pooled=False)
    weight, bias, features = probes.train_frozen_heads(
        splits, inputs, num_outputs=4, ctc=True, runs=[(3e-2, 0), (3e-2, 5)], recipe=recipe
    )
    lengths, tokens = splits["test"].frame_lengths, splits["test"].tokens
    for voice in "abc":
        rows = [i for i, s in enumerate(speakers) if s == voice]
        per_seed = []
        for run in range(2):
            best = (features["test"][rows] @ weight[run] + bias[run]).argmax(-1)
            decoded = [" ".join(str(t) for t in torch.unique_consecutive(best[j, : lengths[i]]).tolist() if t != 0)
                       for j, i in enumerate(rows)]  # fmt: skip
            references = [" ".join(str(t) for t in tokens[i]) for i in rows]
            per_seed.append(1.0 - float(word_error_rate(decoded, references)))
        assert result["voices"][voice] == pytest.approx(sum(per_seed) / 2, abs=1e-6)
    assert len(set(result["voices"].values())) > 1
