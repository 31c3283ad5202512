"""The README's callback snippet runs as written (on a small built-in corpus)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _snippet(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_callback_snippet_runs_as_written(tmp_path):
    from lightning_tx.data.corpus import build_corpus

    build_corpus(tmp_path / "data" / "corpus", speakers_per_language=2, words_per_language=3, repetitions=3,
                 workers=1, progress=False)  # fmt: skip
    (tmp_path / "snippet.py").write_text(_snippet("### A callback for the trainer you already have"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled"}
    out = subprocess.run(
        [sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    results, best = out.stdout.strip().splitlines()[-2:]
    assert "'logme': {0:" in results and "'sliced_wasserstein': {0:" in results and "3:" in results
    assert best.startswith("training on layer ")


def test_streaming_snippet_runs_as_written(tmp_path):
    pytest.importorskip("datasets")
    (tmp_path / "snippet.py").write_text(_snippet("**Streamed data.**"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3 and lines[0].startswith("torch.Size([4, ")  # 10 utterances in batches of 4
