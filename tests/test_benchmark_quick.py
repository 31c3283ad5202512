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
    assert "### model-wise, last layer fine-tuned (top_n=1)" in text
    data = json.loads((tmp_path / "docs" / "benchmark.json").read_text())
    names = {entry["name"] for entry in data["zoo"]}
    assert {"untrained", "units-en", "fbank", "mfcc"} <= names
    candidate = data["tasks"]["phones"]["candidates"]["ctc-en@2"]
    assert set(candidate["scores"]) == set(data["estimators"])
    assert len(candidate["frozen"]["0"]["test"]) == len(data["seeds"]) == 2
    assert candidate["top_n"] is not None and data["tasks"]["phones"]["candidates"]["fbank"]["top_n"] is None
    # --report-only renders the same page from the JSON.
    before = report.read_text()
    benchmark.main(["--report-only", "--out", str(tmp_path / "docs")])
    assert report.read_text() == before


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
