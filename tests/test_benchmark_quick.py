"""The ranking-quality benchmark's quick setting, end to end (the CI run of docs/benchmark.md)."""

import importlib.util
import json
import os
import sys

import pytest

HERE = os.path.dirname(__file__)


@pytest.mark.slow
def test_ranking_quality_quick(tmp_path):
    sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "ranking_quality", os.path.join(HERE, "..", "benchmarks", "ranking_quality.py")
    )
    benchmark = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = benchmark  # dataclasses look their module up there
    spec.loader.exec_module(benchmark)
    report = benchmark.main(["--quick", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "docs")])
    text = report.read_text()
    for task in ("minimal-pairs", "phones"):
        assert f"## Task: {task}" in text and (tmp_path / "docs" / f"benchmark-{task}.png").is_file()
    assert "| *random order* |" in text and "## Cost" in text and "Wilcoxon" in text
    assert "| *reliability (exact results)* |" in text and "| *test-voice halves* |" in text
    assert "| *fine-tuned, val split* |" in text
    assert "### model-wise, last layer fine-tuned (top_n=1)" in text
    assert "| ranking order |" in text and "Goals for the ranking order" in text
    data = json.loads((tmp_path / "docs" / "benchmark.json").read_text())
    assert data["rank_estimators"] == benchmark.rank_estimators()
    assert data["tasks"]["minimal-pairs"]["test_units"] == data["tasks"]["minimal-pairs"]["utterances"]["test"]
    assert data["tasks"]["phones"]["test_units"] > data["tasks"]["phones"]["utterances"]["test"]  # phones
    names = {entry["name"] for entry in data["zoo"]}
    assert {"untrained", "units-en", "fbank", "mfcc"} <= names
    candidate = data["tasks"]["phones"]["candidates"]["ctc-en@2"]
    assert set(candidate["scores"]) == set(data["estimators"])
    assert len(candidate["frozen"]["0"]["test"]) == len(data["seeds"]) == 2
    assert list(candidate["frozen"]["0"]["voices"]) == ["en-05"]  # the quick setting's one test voice
    assert candidate["top_n"] is not None and data["tasks"]["phones"]["candidates"]["fbank"]["top_n"] is None
    # --report-only renders the same page from the JSON.
    before = report.read_text()
    benchmark.main(["--report-only", "--out", str(tmp_path / "docs")])
    assert report.read_text() == before
    # benchmarks/scoring_cost.py on the same corpus and zoo: every candidate with weights, none without.
    path = os.path.join(HERE, "..", "benchmarks", "scoring_cost.py")
    spec = importlib.util.spec_from_file_location("scoring_cost", path)
    cost = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cost)
    rows = cost.main(["--quick", "--work", str(tmp_path / "work"), "--estimator", "pooled_logistic_probe"])
    assert set(rows) == {"untrained", "ctc-en@2", "units-en"}
    assert all(row[k] > 0 for row in rows.values() for k in ("default", "rank", "epoch"))


def test_selection_check_reproduces_its_document():
    """benchmarks/selection_check.py on docs/benchmark.json gives the numbers docs/estimator-selection.md quotes."""
    sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
    spec = importlib.util.spec_from_file_location(
        "selection_check", os.path.join(HERE, "..", "benchmarks", "selection_check.py")
    )
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    means = check.main([])
    document = open(os.path.join(HERE, "..", "docs", "estimator-selection.md"), encoding="utf-8").read()
    quoted = f"best single estimator {means['single']:.3f}, best ensemble of <= 3 {means['ensemble']:.3f}"
    assert quoted in document


def _task(means, seeds_by_candidate, test_units):
    candidates = {
        f"c{i}": {"frozen": {"0": {"mean": m, "test": seeds}}}
        for i, (m, seeds) in enumerate(zip(means, seeds_by_candidate, strict=True))
    }
    return {"candidates": candidates, "test_units": test_units, "utterances": {"test": test_units}}


def test_reliability_of_the_ground_truth():
    """The benchmark's ground truth against a re-measurement of itself: 1 without noise, lower
    with fewer test units or noisier seeds (the statistic itself: tests/test_cli.py)."""
    sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
    from quality_report import reliability

    means = [0.30, 0.35, 0.40, 0.45, 0.50, 0.55]
    steady = [[m] * 3 for m in means]
    exact = reliability(_task(means, steady, 10**12))
    assert exact == pytest.approx(1.0, abs=1e-9)
    large, small = reliability(_task(means, steady, 2000)), reliability(_task(means, steady, 40))
    assert 0.9 < large < 1.0 and 0.0 < small < large
    noisy_seeds = [[m - 0.1, m, m + 0.1] for m in means]
    assert reliability(_task(means, noisy_seeds, 2000)) < large


def test_noisy_task_tests_every_utterance_at_every_snr(tmp_path):
    """The noisy task's test rows, degraded, hold each test utterance once at each SNR, while
    train and val rows keep one level each, in turn."""
    import csv

    import numpy as np
    import soundfile

    sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
    from ranking_quality import _test_at_every_snr

    from lightning_tx.data.augment import degrade_manifest

    rows = []
    for i, split in enumerate(["train"] * 4 + ["val"] * 2 + ["test"] * 3):
        soundfile.write(tmp_path / f"{i}.wav", np.random.default_rng(i).normal(0, 0.1, 1600), 16000)
        rows.append({"audio": f"{i}.wav", "label": "a", "speaker": "s", "split": split})
    rows = _test_at_every_snr(rows, 3)
    with open(tmp_path / "task.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    degraded = degrade_manifest(tmp_path / "task.csv", tmp_path / "noisy", (10.0, 5.0, 0.0), rt60=None)
    written = list(csv.DictReader(open(degraded, encoding="utf-8")))
    test: dict[str, list[float]] = {r["audio"]: [] for r in rows if r["split"] == "test"}
    for row, original in zip(written, rows, strict=True):
        if original["split"] == "test":
            test[original["audio"]].append(float(row["snr_db"]))
    assert {audio: sorted(snrs) for audio, snrs in test.items()} == {f"{i}.wav": [0.0, 5.0, 10.0] for i in (6, 7, 8)}
    assert [float(r["snr_db"]) for r in written[:6]] == [10.0, 5.0, 0.0, 10.0, 5.0, 0.0]
    assert len({r["audio"] for r in written}) == len(written)  # every degraded copy is its own file


def test_voice_halves_of_the_ground_truth():
    """The ground truth on alternate test voices against the rest: 1 where both halves rank the
    candidates alike, -1 where they reverse them, NaN without per-voice results."""
    sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
    from quality_report import voice_halves

    def task(per_voice):  # candidate -> layer -> {voice: result}
        return {"candidates": {c: {"frozen": {str(k): {"voices": v} for k, v in enumerate(layers)}}
                               for c, layers in per_voice.items()}}  # fmt: skip

    alike = {f"c{i}": [{"a": 0.1 * i, "b": 0.1 * i + 0.05, "c": 0.2, "d": 0.1 * i}, {"a": 0.0, "b": 0.0, "c": 0.0,
             "d": 0.0}] for i in range(4)}  # fmt: skip
    assert voice_halves(task(alike)) == pytest.approx(1.0)
    reversed_ = {f"c{i}": [{"a": 0.1 * i, "b": 0.5 - 0.1 * i, "c": 0.1 * i, "d": 0.5 - 0.1 * i}] for i in range(4)}
    assert voice_halves(task(reversed_)) == pytest.approx(-1.0)
    # the best layer is chosen per half: c3 is best on a and c by its first layer, on b and d by its second
    per_half = {f"c{i}": [{"a": 0.1 * i, "b": 0.0, "c": 0.1 * i, "d": 0.0}, {"a": 0.0, "b": 0.1 * i, "c": 0.0,
                "d": 0.1 * i}] for i in range(4)}  # fmt: skip
    assert voice_halves(task(per_half)) == pytest.approx(1.0)
    single = {f"c{i}": [{"a": 0.1 * i}] for i in range(4)}
    assert voice_halves(task(single)) != voice_halves(task(single))  # NaN: one voice has no halves
    unknown = {"candidates": {f"c{i}": {"frozen": {"0": {"mean": 0.1 * i}}} for i in range(4)}}
    assert voice_halves(unknown) != voice_halves(unknown)


def test_tasks_test_on_extra_voices(tmp_path):
    """Voices that only the test splits hear, English and Spanish: they join each task's test
    split after its own test voices, and leave every train and val split and the
    speaker-identification task as they were."""
    import csv

    sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
    import ranking_quality as rq

    rows = [{"audio": f"{s}/{w}_{r}.wav", "alignment": f"{s}/{w}_{r}.txt", "label": w, "text": w, "speaker": s,
             "language": s[:2]}
            for s in [f"en-{i:02d}" for i in range(8)] + [f"es-{i:02d}" for i in range(5)]
            for w in (rq.WORDS["en"][:2] if s.startswith("en") else rq.WORDS["es"][:2]) for r in range(3)]  # fmt: skip
    manifest = tmp_path / "corpus" / "manifest.csv"
    rq._write(manifest, rows)
    common = dict(en_speakers=6, pretrain_speakers=2, other_speakers=3, repetitions=3, model={}, large_model={},
                  small_model={}, epochs=1, budgets=(1,), seeds=(0,), recipe=rq.Recipe(), test_voices=1,
                  tasks=("minimal-pairs", "spanish", "speakers"), speaker_test_utterances=2)  # fmt: skip
    tasks = {}
    for extra in (0, 2):
        setting = rq.Setting(**common, extra_test_voices=extra, extra_spanish_test_voices=extra)
        made = rq.make_tasks(setting, manifest, tmp_path / "work")
        tasks[extra] = {t.name: list(csv.DictReader(open(t.manifest, encoding="utf-8"))) for t in made}

    def voices(task_rows, split):
        return sorted({r["speaker"] for r in task_rows if r["split"] == split})

    expected = {"minimal-pairs": (["en-02", "en-03"], "en-04", "en-05", ["en-06", "en-07"]),
                "spanish": (["es-00"], "es-01", "es-02", ["es-03", "es-04"])}  # fmt: skip
    for name, (train, val, test, test_only) in expected.items():
        fewer, more = tasks[0][name], tasks[2][name]
        assert voices(more, "train") == voices(fewer, "train") == train
        assert voices(more, "val") == voices(fewer, "val") == [val]
        assert [r for r in more if r["split"] != "test"] == [r for r in fewer if r["split"] != "test"]
        assert voices(fewer, "test") == [test] and voices(more, "test") == [test, *test_only]
        tests = [r for r in more if r["split"] == "test"]
        assert tests[:6] == [r for r in fewer if r["split"] == "test"]
    assert tasks[2]["speakers"] == tasks[0]["speakers"]
    assert {r["speaker"] for r in tasks[2]["speakers"]} == {"en-02", "en-03", "en-04", "en-05", "es-00", "es-01",
                                                            "es-02"}  # fmt: skip


def test_ranking_order_breaks_the_first_estimators_ties_by_the_next():
    """The report's ranking order: configs/rank.yaml's first estimator, its exact ties broken
    by the second (in its direction), pairs equal on the whole chain sharing a place; each
    candidate at its best pair model-wise; never the report's default."""
    sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
    from quality_report import ORDER, analyse, order_scores, rank_estimators, views

    from lightning_tx.metrics import get_estimator

    first, second, *_ = rank_estimators()
    assert first == "pooled_voice_probe" and second == "pooled_logme_standardized"
    estimators = list(dict.fromkeys([*rank_estimators(), *get_estimator("ensemble").members]))

    def candidate(pairs):  # [(first, second)] per layer
        scores = {e: {str(k): 0.0 for k in range(len(pairs))} for e in estimators}
        for k, (a, b) in enumerate(pairs):
            scores[first][str(k)], scores[second][str(k)] = a, b
        frozen = {str(k): {"mean": 0.5, "test": [0.5]} for k in range(len(pairs))}
        return {"scores": scores, "frozen": frozen, "top_n": None, "parameters": 1}

    task = {"candidates": {"a": candidate([(0.75, -1.0), (0.5, 9.0)]), "b": candidate([(0.75, 2.0)]),
                           "c": candidate([(0.75, -1.0)])}}  # fmt: skip
    places = order_scores(task, estimators)
    assert places["b"]["0"] > places["a"]["0"] == places["c"]["0"] > places["a"]["1"]
    assert order_scores(task, [second]) is None  # without the estimator that orders rankings
    view = views(task, estimators, [0])["model-wise, frozen head"]
    assert view["scores"][ORDER] == [places["a"]["0"], places["b"]["0"], places["c"]["0"]]

    # Model-wise truths that the order gets right and the first estimator alone ties on.
    for name, truth in (("a", 0.3), ("b", 0.9), ("c", 0.2)):
        for k in task["candidates"][name]["frozen"]:
            task["candidates"][name]["frozen"][k] = {"mean": truth, "test": [truth]}
    task.update(description="", metric="accuracy", num_classes=2, utterances={"test": 10}, test_units=10)
    data = {"estimators": estimators, "seeds": [0], "tasks": {"t": task}}
    analysis = analyse(data)
    rows = analysis["tasks"]["t"]["model-wise, frozen head"]["rows"]
    assert rows[ORDER]["top1_regret"] == 0 and rows[first]["top1_regret"] > 0
    assert analysis["default"] != ORDER
    # The chain a benchmark run recorded, not the checkout's config, orders its report.
    reversed_places = order_scores(task, estimators, [second, first])
    assert reversed_places["a"]["1"] > reversed_places["b"]["0"] and places["a"]["1"] < places["b"]["0"]
    data["rank_estimators"] = [second, first]
    assert analyse(data)["tasks"]["t"]["model-wise, frozen head"]["rows"][ORDER]["top1_regret"] > 0


def test_fine_tuned_heads_ranked_on_the_val_split_are_a_baseline():
    """The baseline of fine-tuning itself: each candidate at its layer with the best
    validation result, against its best test result; every pair by its validation result;
    compared with the default in the significance test; absent where a result has no
    validation value (older benchmark files)."""
    sys.path.insert(0, os.path.join(HERE, "..", "benchmarks"))
    from quality_report import VALIDATION, analyse, views

    from lightning_tx.metrics import get_estimator

    estimators = ["pooled_voice_probe", *get_estimator("ensemble").members]

    def candidate(results):  # [(val, test)] per layer
        scores = {e: {str(k): float(k) for k in range(len(results))} for e in estimators}
        frozen = {str(k): {"val": v, "mean": t, "test": [t]} for k, (v, t) in enumerate(results)}
        return {"scores": scores, "frozen": frozen, "top_n": None, "parameters": 1}

    # The validation split orders a, b, c (by their best layers: 0.9, 0.5, 0.4); the test split c, b, a.
    candidates = {"a": candidate([(0.9, 0.1), (0.2, 0.2)]), "b": candidate([(0.5, 0.5)]),
                  "c": candidate([(0.1, 0.3), (0.4, 0.8)])}  # fmt: skip
    task = {"candidates": candidates, "description": "", "metric": "accuracy", "num_classes": 2}
    task.update(utterances={"test": 10}, test_units=10)
    model_wise = views(task, estimators, [0])["model-wise, frozen head"]
    assert model_wise[VALIDATION] == [0.9, 0.5, 0.4]
    assert views(task, estimators, [0])["all (candidate, layer) pairs, frozen head"][VALIDATION] == [
        0.9, 0.2, 0.5, 0.1, 0.4
    ]  # fmt: skip
    analysis = analyse({"estimators": estimators, "seeds": [0], "tasks": {"t": task}})
    row = analysis["tasks"]["t"]["model-wise, frozen head"]["rows"][VALIDATION]
    assert row["spearman_rho"] == pytest.approx(-1.0) and row["rho_by_seed"] == [pytest.approx(-1.0)]
    assert VALIDATION in analysis["significance"] and VALIDATION not in analysis["mean_rho"]

    del task["candidates"]["b"]["frozen"]["0"]["val"]
    assert VALIDATION not in views(task, estimators, [0])["model-wise, frozen head"]
    assert VALIDATION not in analyse({"estimators": estimators, "seeds": [0], "tasks": {"t": task}})["tasks"]["t"][
        "model-wise, frozen head"]["rows"]  # fmt: skip
