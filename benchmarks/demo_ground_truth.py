"""A second ground truth for a ranking: the benchmark's heads on its rows, against ``confirm``.

``confirm`` fine-tunes with a Lightning recipe; ``benchmarks/probes.py`` trains the
benchmark's frozen heads (z-scored mean-pooled features, a learning-rate sweep on val, the
mean of 3 seeds, 1500 steps, weight decay 1e-2: ``probes.Recipe``). Where the two disagree by more than the
candidates differ, no estimator can be judged on that task. For an utterance-classification
ranking (e.g. the demo's), this prints each row's benchmark result (mean ± sd), the
``confirm`` result beside it when ``confirm.json`` exists, and every estimator's rank
agreement with the benchmark's result.

    .venv/bin/python benchmarks/demo_ground_truth.py runs/demo-<timestamp>
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from lightning.pytorch.cli import instantiate_class

sys.path.insert(0, str(Path(__file__).parent))
from probes import Recipe, encode_split, ground_truth  # noqa: E402

from lightning_tx.data.datamodule import SpeechDataModule, collate_utterances  # noqa: E402
from lightning_tx.ranking.statistics import rank_agreement  # noqa: E402
from lightning_tx.scoring import TaskLabels  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="a run directory holding ranking.json and rank.yaml (e.g. the demo's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    ranking = json.loads((run_dir / "ranking.json").read_text(encoding="utf-8"))
    data_args = _yaml(run_dir / "rank.yaml").get("data", {})
    data = SpeechDataModule(**data_args)
    data.setup("fit")
    labels = TaskLabels.from_datamodule(data, "utterance")
    confirmed = {}
    if (run_dir / "confirm.json").is_file():
        report = json.loads((run_dir / "confirm.json").read_text(encoding="utf-8"))
        confirmed = {(r["candidate"], r["layer"]): r for r in report["runs"]}
    splits_of: dict[str, dict] = {}
    truth = []
    print("| candidate | layer | benchmark heads (mean ± sd) | learning rate | confirm (mean ± sd) |")
    print("|---|---:|---:|---:|---:|")
    for row in ranking["rows"]:
        key = json.dumps(row["encoder"], sort_keys=True)
        if key not in splits_of:
            encoder = instantiate_class((), row["encoder"]).eval()
            source = data.at_sample_rate(encoder.sample_rate)
            splits_of[key] = {
                split: encode_split(encoder, source.dataset(split), collate_utterances, data.batch_size, labels, False)
                for split in ("train", "val", "test")
            }
        result = ground_truth(splits_of[key], row["layer"], num_outputs=data.num_classes, ctc=False,
                              seeds=tuple(args.seeds), recipe=Recipe())  # fmt: skip
        truth.append(result["mean"])
        other = confirmed.get((row["candidate"], row["layer"]))
        beside = f"{other['result']:.3f} ± {other.get('result_std', 0.0):.3f}" if other else "n/a"
        print(f"| {row['candidate']} | {row['layer']} | {result['mean']:.3f} ± {result['std']:.3f} | "
              f"{result['learning_rate']:g} | {beside} |")  # fmt: skip
    pairs = [(t, confirmed[(r["candidate"], r["layer"])]["result"]) for t, r in zip(truth, ranking["rows"], strict=True)
             if (r["candidate"], r["layer"]) in confirmed]  # fmt: skip
    if len(pairs) > 2:
        agreement = rank_agreement(*zip(*pairs, strict=True))
        print(f"\nthe two ground truths agree: Spearman rho {agreement['spearman_rho']:.3f} "
              f"(p {agreement['spearman_p']:.3g}) over {len(pairs)} (candidate, layer) pairs")  # fmt: skip
    print("\n| estimator | Spearman rho (p) | weighted tau | top-1 regret |")
    print("|---|---:|---:|---:|")
    for estimator in ranking["estimators"]:
        scores = [row["scores"][estimator] for row in ranking["rows"]]
        agreement = rank_agreement(scores, truth, higher_is_better=ranking["higher_is_better"][estimator])
        print(f"| {estimator} | {agreement['spearman_rho']:.3f} ({agreement['spearman_p']:.3f}) | "
              f"{agreement['weighted_tau']:.3f} | {agreement['top1_regret']:.3f} |")  # fmt: skip


def _yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
