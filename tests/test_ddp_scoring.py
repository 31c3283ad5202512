"""Scores do not depend on how the work is split: 1, 2 and 3 CPU processes (gloo), an odd
number of utterances, and a process that gets none, through the CLI and the callback."""

import csv
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from tiny_models import CONFORMER, save_conformer

from lightning_tx.cli import main

HERE = os.path.dirname(__file__)
ROOT = os.path.dirname(HERE)
ENV = {
    **os.environ,
    "PYTHONPATH": HERE + os.pathsep + ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
    "WANDB_MODE": "disabled",
    "HF_HUB_OFFLINE": "1",
    # One thread everywhere: float32 kernels sum in a thread-count-dependent order, which is
    # not what these tests are about (the split of the data is).
    "OMP_NUM_THREADS": "1",
}


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def odd_task(tmp_path_factory, tiny_corpus):
    """7 train utterances (4 + 3 in batches of 4: with 3 processes one gets none), and a
    source-domain manifest of 6 other utterances."""
    root = tmp_path_factory.mktemp("odd")
    rows = list(csv.DictReader(open(tiny_corpus)))
    for row in rows:
        row["audio"] = str(tiny_corpus.parent / row["audio"])
        row["alignment"] = str(tiny_corpus.parent / row["alignment"])
    train = [r for r in rows if r["split"] == "train"] + [r for r in rows if r["split"] == "val"][:1]
    rest = [r for r in rows if r["split"] == "val"][1:] + [r for r in rows if r["split"] == "test"][:1]
    source = [{**r, "split": "train"} for r in rows if r["split"] == "test"]
    paths = {}
    for name, subset in (("task", [{**r, "split": "train"} for r in train] + rest), ("source", source)):
        paths[name] = root / f"{name}.csv"
        with open(paths[name], "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(subset)
    assert len(train) == 7
    paths["conformer"] = save_conformer(str(root / "conformer.pt"))
    return paths


def _rank_config(path, odd_task, frame_labels="utterance"):
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "enable_checkpointing": False, "enable_progress_bar": False},
        "model": {
            "class_path": "lightning_tx.ranking.RankingModule",
            "init_args": {
                "estimators": [
                    "logme",
                    "hscore",
                    "gbc",
                    "pooled_voice_probe",
                    "pooled_logistic_probe",
                    "sliced_wasserstein",
                ],
                "frame_labels": frame_labels,
                "candidates": [
                    {"encoder": {"class_path": "lightning_tx.encoders.Filterbank", "init_args": {"n_mels": 24}}},
                    {
                        "name": "conformer",
                        "encoder": {
                            "class_path": "lightning_tx.encoders.ConformerEncoder",
                            "init_args": {"state_dict": str(odd_task["conformer"]), **CONFORMER},
                        },
                    },
                ],
            },
        },
        "data": {"manifest": str(odd_task["task"]), "batch_size": 4},
    }
    path.write_text(yaml.safe_dump(config))
    return path


def _scores(run_dir):
    ranking = json.loads((run_dir / "ranking.json").read_text())
    return {(r["candidate"], r["layer"], e): v for r in ranking["rows"] for e, v in r["scores"].items()}


def _assert_same(distributed, single):
    assert distributed.keys() == single.keys()
    for key, value in single.items():
        assert distributed[key] == pytest.approx(value, rel=1e-9, abs=1e-12, nan_ok=True), key  # NaN: undefined
    worst = max(abs(distributed[k] - v) / max(abs(v), 1e-12) for k, v in single.items() if v == v)
    print(f"{len(single)} scores, largest relative difference to one process: {worst:.1e}")  # shown with -s


@pytest.mark.slow
def test_rank_on_1_2_and_3_processes(tmp_path, odd_task, one_thread):
    config = _rank_config(tmp_path / "rank.yaml", odd_task)
    common = ["rank", "--config", str(config), "--source_manifest", str(odd_task["source"])]
    main([*common, "--trainer.default_root_dir", str(tmp_path / "w1")])
    single = _scores(tmp_path / "w1")
    for world in (2, 3):
        subprocess.run(
            [sys.executable, os.path.join(ROOT, "train.py"), *common, "--trainer.default_root_dir",
             str(tmp_path / f"w{world}"), "--trainer.devices", str(world), "--trainer.strategy", "ddp"],
            check=True, env=ENV, cwd=ROOT, timeout=600,
        )  # fmt: skip
        _assert_same(_scores(tmp_path / f"w{world}"), single)


def test_rank_with_uniform_frame_labels(tmp_path, odd_task):
    config = _rank_config(tmp_path / "rank.yaml", odd_task, frame_labels="uniform")
    main(["rank", "--config", str(config), "--source_manifest", str(odd_task["source"]),
          "--trainer.default_root_dir", str(tmp_path)])  # fmt: skip
    ranking = json.loads((tmp_path / "ranking.json").read_text())
    assert ranking["labels"]["classes"] == sorted(set("noupyes")) and ranking["num_classes"] == 7
    assert len(ranking["rows"]) == 4


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["features", "speech"])
def test_callback_on_1_2_and_3_processes(tmp_path, odd_task, mode, one_thread):
    from ddp_callback_script import run

    extra = [str(odd_task["task"]), str(odd_task["source"])] if mode == "speech" else []
    _, callback = run(mode, str(tmp_path / "w1"), 1, *extra)
    single = {(e, k): v for e, scores in callback.results.items() for k, v in scores.items()}
    for world in (2, 3):
        out = tmp_path / f"w{world}.json"
        subprocess.run(
            [sys.executable, os.path.join(HERE, "ddp_callback_script.py"), mode, str(out),
             str(tmp_path / f"w{world}"), str(world), *extra],
            check=True, env=ENV, cwd=ROOT, timeout=600,
        )  # fmt: skip
        results = json.loads(out.read_text())
        assert results.pop("world_size") == world
        _assert_same({(e, int(k)): v for e, scores in results.items() for k, v in scores.items()}, single)
