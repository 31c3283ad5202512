"""The scoring engine: label space, exact scoring passes, shared per-layer statistics."""

import csv

import pytest
import torch
from conftest import classification_data
from tiny_models import save_hf_ctc_model
from torch.utils.data import DataLoader, TensorDataset

from lightning_tx.data import SpeechDataModule
from lightning_tx.encoders import Filterbank
from lightning_tx.functional import flatten_frames, gbc, hscore, logme
from lightning_tx.metrics import ESTIMATORS
from lightning_tx.scoring import (
    EncoderFrames,
    LayerScorer,
    ModuleFrames,
    ScoringSampler,
    ScoringSession,
    TaskLabels,
    score,
    scoring_loader,
    scoring_loader_like,
    speech_loader,
)


# --------------------------------------------------------------------------- passes
@pytest.mark.parametrize("num_items, batch_size", [(7, 4), (10, 3), (1, 5), (25, 1)])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_every_item_exactly_once_for_any_world_size(num_items, batch_size, world):
    sampler = ScoringSampler(num_items, batch_size, lengths=[(i * 7) % 5 for i in range(num_items)])
    shares = [sampler.batches[rank::world] for rank in range(world)]
    seen = [i for share in shares for batch in share for i in batch]
    assert sorted(seen) == list(range(num_items))
    # The batches themselves do not depend on the world size.
    assert sorted(map(tuple, (b for share in shares for b in share))) == sorted(map(tuple, sampler.batches))


def test_batches_are_sorted_by_length_and_limited_to_a_seeded_subset():
    lengths = [5.0, 1.0, 4.0, 2.0, 3.0, 0.5, 6.0]
    sampler = ScoringSampler(7, 2, lengths=lengths)
    flat = [i for batch in sampler.batches for i in batch]
    assert [lengths[i] for i in flat] == sorted(lengths)
    subset = ScoringSampler(7, 2, lengths=lengths, limit_batches=2, seed=3)
    again = ScoringSampler(7, 2, lengths=lengths, limit_batches=2, seed=3)
    assert len(subset.batches) == 2 and subset.batches == again.batches
    assert len({i for b in subset.batches for i in b}) == 4
    assert len(ScoringSampler(10, 2, limit_batches=0.4).batches) == 2
    with pytest.raises(ValueError, match="limit_batches"):
        ScoringSampler(10, 2, limit_batches=1.5)
    with pytest.raises(ValueError, match="limit_batches"):
        ScoringSampler(10, 2, limit_batches=0)


def test_loader_like_keeps_dataset_collate_and_batch_size():
    features, labels = classification_data(11, 3, 2)
    loader = DataLoader(TensorDataset(features, labels), batch_size=4, shuffle=True)
    scoring = scoring_loader_like(loader)
    batches = list(scoring)
    assert [len(b[0]) for b in batches] == [4, 4, 3]
    assert torch.equal(torch.cat([b[0] for b in batches]), features)  # in order, each once


# --------------------------------------------------------------------------- shared statistics
def test_shared_statistics_equal_each_estimator_alone():
    features, labels = classification_data(900, 10, 4, seed=3)
    hidden = [features.float().view(30, 30, 10), (2 * features + 1).float().view(30, 30, 10)]
    mask = torch.ones(30, 30, dtype=torch.bool)
    mask[::3, 20:] = False
    frame_labels = labels.view(30, 30)
    scorer = LayerScorer([10, 10], ["logme", "hscore", "halpha", "gbc"], 4)
    assert len(scorer.accumulators) == 2 and not scorer.metrics  # one accumulator per layer
    for start in (0, 10, 20):
        rows = slice(start, start + 10)
        scorer.update([h[rows] for h in hidden], mask[rows], frame_labels[rows])
    results = scorer.compute()
    for layer, h in enumerate(hidden):
        frames, y = flatten_frames(h, mask=mask).double(), frame_labels[mask]
        expected = {
            "logme": logme(frames, y, num_classes=4),
            "hscore": hscore(frames, y, num_classes=4),
            "halpha": hscore(frames, y, num_classes=4, shrinkage=True),
            "gbc": gbc(frames, y, num_classes=4),
        }
        for name, value in expected.items():
            assert results[name][layer] == pytest.approx(float(value), rel=1e-10), (name, layer)


def test_layer_selection_and_errors():
    scorer = LayerScorer([4, 4, 6], ["logme"], 3, layers=[0, -1])
    assert scorer.layers == [0, 2] and scorer.accumulators[("statistics", False, 2)].num_features == 6
    with pytest.raises(ValueError, match="layer 3 does not exist"):
        LayerScorer([4, 4, 6], ["logme"], 3, layers=[3])
    with pytest.raises(ValueError, match="num_classes"):
        LayerScorer([4], ["gbc"], None)
    with pytest.raises(ValueError, match="unknown estimator"):
        LayerScorer([4], ["logme", "nope"], 3)


def test_bad_values_are_checked_once_per_batch_and_name_the_layer(monkeypatch):
    from lightning_tx.functional import validation

    estimators = ["logme", "hscore", "gbc", "pooled_logme", "knn", "sliced_wasserstein"]
    scorer = LayerScorer([4, 4, 4], estimators, 3)
    hidden = [torch.randn(2, 5, 4) for _ in range(3)]
    mask = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])
    labels = torch.tensor([[0] * 5, [2] * 5])
    calls = []
    real = validation.torch.aminmax
    monkeypatch.setattr(validation.torch, "aminmax", lambda x: calls.append(1) or real(x))
    scorer.update(hidden, mask, labels)
    scorer.update_source(hidden, mask)
    assert len(calls) == 1  # the labels' range: once for the batch, not per layer and estimator
    hidden[2] = hidden[2].clone()
    hidden[2][1, 3] = float("nan")  # padding: not scored, so not an error
    scorer.update(hidden, mask, labels)
    hidden[1] = hidden[1].clone()
    hidden[1][1, 1] = float("inf")
    with pytest.raises(ValueError, match="layer 1 frames. contains NaN or Inf in 1 of 8 frames"):
        scorer.update(hidden, mask, labels)
    with pytest.raises(ValueError, match="layer 1 frames"):
        scorer.update_source(hidden, mask)
    with pytest.raises(ValueError, match=r"class ids in \[1, 3\] but num_classes=3"):
        scorer.update([torch.randn(2, 5, 4) for _ in range(3)], mask, labels + 1)


def test_values_checked_by_caller_skips_value_checks_only():
    from lightning_tx.functional.validation import check_class_labels, check_features, values_checked_by_caller

    with values_checked_by_caller():
        check_features(torch.tensor([[float("nan")]]))
        check_class_labels(torch.tensor([7]), 3)
        with pytest.raises(ValueError, match="shape"):
            check_features(torch.zeros(3))
    with pytest.raises(ValueError, match="NaN or Inf"):
        check_features(torch.tensor([[float("nan")]]))


# --------------------------------------------------------------------------- labels
def _manifest(tmp_path, tiny_corpus, rows_filter=None):
    rows = list(csv.DictReader(open(tiny_corpus)))
    rows = [r for r in rows if rows_filter is None or rows_filter(r)]
    path = tmp_path / "task.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow(
                {
                    **row,
                    "audio": str(tiny_corpus.parent / row["audio"]),
                    "alignment": str(tiny_corpus.parent / row["alignment"]),
                }
            )
    return path


def test_task_labels_from_a_speech_datamodule(tiny_corpus):
    dm = SpeechDataModule(manifest=tiny_corpus, batch_size=4)
    words = TaskLabels.from_datamodule(dm)
    assert words.classes == ["no", "up", "yes"] and words.num_classes == 3
    fewer = TaskLabels.from_datamodule(dm, exclude=["up"])
    assert fewer.classes == ["no", "yes"]
    phones = TaskLabels.from_datamodule(dm, "alignment", exclude=["sil"])
    assert "sil" not in phones.classes and phones.num_classes == len(dm.alignment_labels) - 1
    letters = TaskLabels.from_datamodule(dm, "uniform")
    assert letters.classes == sorted(set("noupyes"))
    batch = next(iter(speech_loader(dm, sample_rate=16_000)))
    frame_lengths = torch.tensor([10] * len(batch["paths"]))
    labels, mask = fewer.frame_labels(batch, frame_lengths, 100.0, 12)
    for row, label in enumerate(batch["labels"].tolist()):
        name = dm.labels[label]
        if name == "up":
            assert not mask[row].any()
        else:
            assert mask[row, :10].all() and not mask[row, 10:].any()
            assert set(labels[row, :10].tolist()) == {fewer.classes.index(name)}
    labels, mask = letters.frame_labels(batch, frame_lengths, 100.0, 12)
    for row, text in enumerate(batch["texts"]):
        spelled = [letters.classes[i] for i in torch.unique_consecutive(labels[row, :10]).tolist()]
        assert "".join(spelled) == text


def test_task_labels_from_a_ctc_aligner(tiny_corpus, model_dir):
    dm = SpeechDataModule(manifest=tiny_corpus, batch_size=3)
    labels = TaskLabels.from_datamodule(dm, "ctc", ctc_aligner=save_hf_ctc_model(str(model_dir / "ctc-labels")))
    assert set("noupyes") <= set(labels.classes)
    batch = next(iter(speech_loader(dm, sample_rate=16_000)))
    frame_labels, mask = labels.frame_labels(batch, torch.tensor([20] * len(batch["paths"])), 50.0, 20)
    assert mask.any() and int(frame_labels.max()) < labels.num_classes


def test_task_label_errors(tiny_corpus):
    dm = SpeechDataModule(manifest=tiny_corpus)
    with pytest.raises(ValueError, match="one of"):
        TaskLabels.from_datamodule(dm, "phones")
    with pytest.raises(ValueError, match="ctc_aligner"):
        TaskLabels.from_datamodule(dm, "ctc")
    with pytest.raises(ValueError, match="at least 2 classes"):
        TaskLabels.from_datamodule(dm, exclude=["yes", "no"])


# --------------------------------------------------------------------------- the pass
def test_pass_over_speech_equals_the_functional_on_the_same_frames(tiny_corpus):
    dm = SpeechDataModule(manifest=tiny_corpus, batch_size=4)
    encoder = Filterbank(n_mels=16)
    labels = TaskLabels.from_datamodule(dm)
    session = ScoringSession(EncoderFrames(encoder, labels), ["logme", "gbc"], labels.num_classes)
    results = score(session, speech_loader(dm, sample_rate=16_000))
    frames, frame_labels = [], []
    for batch in DataLoader(
        dm.dataset("train"),
        batch_size=1,
        collate_fn=__import__("lightning_tx.data", fromlist=["collate_utterances"]).collate_utterances,
    ):
        out = encoder(batch["waveforms"], batch["lengths"])
        frames.append(out.hidden_states[0][0, : int(out.frame_lengths[0])])
        frame_labels.append(torch.full((int(out.frame_lengths[0]),), int(batch["labels"][0])))
    frames, frame_labels = torch.cat(frames).double(), torch.cat(frame_labels)
    assert results["logme"][0] == pytest.approx(float(logme(frames, frame_labels, num_classes=3)), rel=1e-9)
    assert results["gbc"][0] == pytest.approx(float(gbc(frames, frame_labels, num_classes=3)), rel=1e-9)


def test_module_frames_leave_out_negative_labels():
    class Module:
        def transfer_features(self, batch):
            x, y = batch
            return [x.unsqueeze(1)], torch.ones(len(x), dtype=torch.long), y

    features, labels = classification_data(60, 5, 3)
    dropped = labels.clone()
    dropped[:10] = -100
    session = ScoringSession(ModuleFrames(Module()), ["logme"], 3)
    results = score(session, scoring_loader(TensorDataset(features, dropped), 16))
    expected = logme(features[10:], labels[10:], num_classes=3)
    assert results["logme"][0] == pytest.approx(float(expected), rel=1e-10)


def test_estimators_that_compare_domains_need_source_audio():
    features, labels = classification_data(40, 4, 2)

    class Module:
        def transfer_features(self, batch):
            return [batch[0].unsqueeze(1)], torch.ones(len(batch[0]), dtype=torch.long), batch[1]

    session = ScoringSession(ModuleFrames(Module()), ["logme", "sliced_wasserstein"], 2)
    with pytest.raises(ValueError, match="source-domain"):
        score(session, scoring_loader(TensorDataset(features, labels), 8))
    assert set(ESTIMATORS["pooled_logme"].statistics) == {"gram"}


def test_ties_of_the_first_estimator_are_broken_by_the_next(tmp_path, monkeypatch):
    """Held-out accuracies tie exactly; the next listed estimator orders the tied rows (in its
    own direction), whatever order the candidates came in, and every consumer of the order
    agrees: the ranking's rows, the best layer and the W&B summary's best row."""
    from lightning_tx.loggers import TxWandbLogger
    from lightning_tx.ranking.report import ranking_markdown, sort_rows, tied_ranks
    from lightning_tx.scoring import best_layer, order_key
    from lightning_tx.scoring.publish import publish_scores

    nan = float("nan")
    estimators = ["pooled_voice_probe", "sliced_wasserstein"]  # higher is better; a distance, lower is
    rows = [
        {"candidate": "a", "layer": 0, "scores": {"pooled_voice_probe": 0.75, "sliced_wasserstein": 0.3}},
        {"candidate": "b", "layer": 1, "scores": {"pooled_voice_probe": nan, "sliced_wasserstein": 0.0}},
        {"candidate": "c", "layer": 2, "scores": {"pooled_voice_probe": 0.75, "sliced_wasserstein": 0.1}},
        {"candidate": "d", "layer": 3, "scores": {"pooled_voice_probe": 0.5, "sliced_wasserstein": 0.0}},
    ]
    for order in (rows, rows[::-1]):
        ranked = sort_rows([dict(r) for r in order], estimators)
        assert [r["candidate"] for r in ranked] == ["c", "a", "d", "b"] and [r["rank"] for r in ranked] == [1, 2, 3, 4]
    assert [r["candidate"] for r in sort_rows([dict(r) for r in rows], "pooled_voice_probe")][-1] == "b"
    ranking = {"estimators": estimators, "rows": [{**r, "seconds": 1.0} for r in ranked]}
    tied = "Tied on pooled_voice_probe (ordered by the next estimators in turn): ranks 1-2."
    assert tied in ranking_markdown(ranking)
    values = [3, 2, 2, 2, 1, nan, nan]  # undefined scores never tie
    assert tied_ranks([{"rank": i + 1, "scores": {"e": v}} for i, v in enumerate(values)], "e") == [[2, 3, 4]]
    assert order_key(rows[2]["scores"], estimators) < order_key(rows[0]["scores"], estimators)

    results = {e: {r["layer"]: r["scores"][e] for r in rows} for e in estimators}
    assert best_layer(results, estimators) == 2
    assert best_layer(results, estimators[:1]) in (0, 2) and best_layer(results, "pooled_voice_probe") in (0, 2)
    assert best_layer({"pooled_voice_probe": results["pooled_voice_probe"]}, estimators) in (0, 2)
    with pytest.raises(ValueError, match="no layer has a finite pooled_voice_probe"):
        best_layer({"pooled_voice_probe": {0: nan}}, estimators)

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    logger = TxWandbLogger(save_dir=str(tmp_path), online=False)
    publish_scores([logger], rows, estimators, table_key="ranking")
    assert logger.experiment.summary["transfer/best_candidate"] == "c"
    assert logger.experiment.summary["transfer/best_layer"] == 2
    logger.experiment.finish()
