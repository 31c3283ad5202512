"""benchmarks/zoo/candidates.yaml: the versioned zoo as `train.py rank` candidates (what the demo ranks)."""

import importlib.util
import sys
from pathlib import Path

import torch
import yaml
from lightning.pytorch.cli import instantiate_class

ROOT = Path(__file__).resolve().parent.parent


def _benchmark():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("ranking_quality", ROOT / "benchmarks" / "ranking_quality.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_candidates_file_is_the_benchmark_zoo_and_builds_the_same_networks(tmp_path, monkeypatch):
    benchmark = _benchmark()
    committed = (ROOT / "benchmarks" / "zoo" / "candidates.yaml").read_text(encoding="utf-8")
    assert benchmark.write_rank_candidates(tmp_path / "candidates.yaml").read_text(encoding="utf-8") == committed
    candidates = yaml.safe_load(committed)["model"]["init_args"]["candidates"]
    zoo = benchmark.build_zoo(benchmark.FULL, Path("unused"), ROOT / "benchmarks" / "zoo")
    assert [c["name"] for c in candidates] == [entry["name"] for entry in zoo] and len(candidates) >= 12
    monkeypatch.chdir(ROOT)  # the file's checkpoint paths are relative to the repository's root
    waveforms = torch.randn(2, 16_000, generator=torch.Generator().manual_seed(0))
    lengths = torch.tensor([16_000, 12_000])
    for candidate, entry in zip(candidates, zoo, strict=True):
        state_dict = candidate["encoder"]["init_args"].get("state_dict")
        assert state_dict is None or (ROOT / state_dict).is_file(), candidate["name"]
        from_config = instantiate_class((), candidate["encoder"])
        expected = benchmark.make_encoder(entry)
        ours, theirs = from_config(waveforms, lengths), expected(waveforms, lengths)
        assert torch.equal(ours.frame_lengths, theirs.frame_lengths), candidate["name"]
        assert len(ours.hidden_states) == len(theirs.hidden_states) == expected.num_layers, candidate["name"]
        for a, b in zip(ours.hidden_states, theirs.hidden_states, strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=candidate["name"])
