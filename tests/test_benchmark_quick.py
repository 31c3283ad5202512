"""The ranking-quality benchmark's quick setting, end to end (the CI run of docs/benchmark.md)."""

import importlib.util
import json
import os
import sys

import pytest

HERE = os.path.dirname(__file__)


@pytest.mark.slow
def test_ranking_quality_quick(tmp_path):
    spec = importlib.util.spec_from_file_location(
        "ranking_quality", os.path.join(HERE, "..", "benchmarks", "ranking_quality.py")
    )
    benchmark = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = benchmark  # dataclasses look their module up there
    spec.loader.exec_module(benchmark)
    report = benchmark.main(["--quick", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "docs")])
    text = report.read_text()
    for task in ("keywords", "speakers", "phones"):
        assert f"## Task: {task}" in text and (tmp_path / "docs" / f"benchmark-{task}.png").is_file()
    assert "| random order |" in text and "| parameters |" in text and "## Cost" in text
    data = json.loads((tmp_path / "docs" / "benchmark.json").read_text())
    names = {entry["name"] for entry in data["zoo"]}
    assert len(names) >= 10 and {"untrained", "units-en", "speaker-en", "ctc-de", "fbank", "mfcc"} <= names
    scores = data["tasks"]["phones"]["scores"]["ctc-en@3"]["scores"]
    assert set(scores) == {"logme", "hscore", "halpha", "gbc", "sliced_wasserstein"}
