"""Ranking and confirmation reports: CSV, JSON, Markdown and PNG plots in the run directory."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_tx.metrics.registry import get_estimator
from lightning_tx.scoring.order import order_key


def sort_rows(rows: list[dict[str, Any]], estimators: str | Sequence[str]) -> list[dict[str, Any]]:
    """Rows ordered best first by the first of ``estimators`` (its direction respected), a tie
    broken by the next (:func:`~lightning_tx.scoring.order.order_key`), with ``rank`` set;
    rows whose first score is undefined (NaN) come last."""
    estimators = [estimators] if isinstance(estimators, str) else list(estimators)
    ordered = sorted(rows, key=lambda row: order_key(row["scores"], estimators))
    for rank, row in enumerate(ordered, 1):
        row["rank"] = rank
    return ordered


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def ranking_markdown(ranking: dict[str, Any]) -> str:
    estimators = ranking["estimators"]
    lines = [
        f"| rank | candidate | layer | {' | '.join(estimators)} | seconds |",
        "|---:|---|---:|" + "---:|" * len(estimators) + "---:|",
    ]
    notes = []
    for row in ranking["rows"]:
        scores = " | ".join(_fmt(row["scores"][e]) for e in estimators)
        lines.append(f"| {row['rank']} | {row['candidate']} | {row['layer']} | {scores} | {row['seconds']:.1f} |")
        notes += [f"- {row['candidate']} / L{row['layer']}, {e}: {why}" for e, why in row.get("undefined", {}).items()]
    if notes:
        lines += ["", "Undefined scores (ranked last):", *notes]
    ties = tied_ranks(ranking["rows"], estimators[0])
    if ties and len(estimators) > 1:
        spans = ", ".join(f"{group[0]}-{group[-1]}" for group in ties)
        lines += ["", f"Tied on {estimators[0]} (ordered by the next estimators in turn): ranks {spans}."]
    return "\n".join(lines) + "\n"


def tied_ranks(rows: list[dict[str, Any]], estimator: str) -> list[list[int]]:
    """The ranks of each run of consecutive rows (in ranking order) with the same defined
    ``estimator`` score, two rows or more: the ties that the next estimators ordered."""
    runs: list[list[int]] = []
    previous = None
    for row in rows:
        value = row["scores"][estimator]
        defined = value is not None and not math.isnan(value)
        if defined and value == previous:
            if runs and runs[-1][-1] == row["rank"] - 1:
                runs[-1].append(row["rank"])
            else:
                runs.append([row["rank"] - 1, row["rank"]])
        previous = value if defined else None
    return runs


def write_ranking(run_dir: str | os.PathLike, ranking: dict[str, Any]) -> dict[str, Path]:
    """Write ``ranking.json``, ``ranking.csv``, ``ranking.md`` and ``ranking.png``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: run_dir / f"ranking.{name}" for name in ("json", "csv", "md", "png")}
    paths["json"].write_text(json.dumps(ranking, indent=2, ensure_ascii=False), encoding="utf-8")
    estimators = ranking["estimators"]
    with open(paths["csv"], "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "candidate", "layer", *estimators, "seconds", "encoder"])
        for row in ranking["rows"]:
            writer.writerow(
                [
                    row["rank"],
                    row["candidate"],
                    row["layer"],
                    *(row["scores"][e] for e in estimators),
                    f"{row['seconds']:.3f}",
                    json.dumps(row["encoder"]),
                ]
            )
    paths["md"].write_text(ranking_markdown(ranking), encoding="utf-8")
    _bar_chart(paths["png"], ranking)
    return paths


def _bar_chart(path: Path, ranking: dict[str, Any]) -> None:
    """One panel per estimator: a bar per row, its length the row's margin over the worst
    row (in the estimator's better direction), so the best row has the longest bar whatever
    the sign of the scores; the value is printed on each bar; undefined scores say so."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    estimators = ranking["estimators"]
    rows = ranking["rows"]
    labels = [f"{r['candidate']} / L{r['layer']}" for r in rows]
    height = 0.32 * len(rows) + 1.6
    fig, axes = plt.subplots(1, len(estimators), figsize=(3.6 * len(estimators) + 2.4, height), squeeze=False)
    for ax, estimator in zip(axes[0], estimators, strict=True):
        sign = 1.0 if get_estimator(estimator).higher_is_better else -1.0
        values = [r["scores"][estimator] for r in rows]
        finite = [sign * v for v in values if v is not None and math.isfinite(v)]
        worst, best = (min(finite), max(finite)) if finite else (0.0, 1.0)
        floor = worst - 0.05 * ((best - worst) or 1.0)  # the worst row still gets a visible bar
        lengths = [sign * v - floor if v is not None and math.isfinite(v) else 0.0 for v in values]
        ax.barh(range(len(rows)), lengths, color="tab:blue")
        for y, (value, length) in enumerate(zip(values, lengths, strict=True)):
            ax.text(length, y, f" {_fmt(value)}" if length else " undefined", va="center", fontsize=7)
        ax.set_yticks(range(len(rows)), labels if ax is axes[0][0] else [""] * len(rows), fontsize=8)
        ax.set_xticks([])
        ax.set_xlim(0, max(lengths + [1e-12]) * 1.35)
        ax.invert_yaxis()
        direction = "higher" if sign > 0 else "lower"
        ax.set_title(f"{estimator}\n({direction} is better; bar = margin over the worst)", fontsize=8)
    fig.suptitle(f"ranking by {estimators[0]}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_confirmation(run_dir: str | os.PathLike, report: dict[str, Any]) -> dict[str, Path]:
    """Write ``confirm.json``, ``confirm.md`` and ``confirm.png`` (score vs fine-tuning result)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    paths = {"json": run_dir / "confirm.json", "md": run_dir / "confirm.md", "png": run_dir / "confirm.png"}
    paths["json"].write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    metric = report["result_metric"]
    seeds = report.get("seeds", [0])
    result_header = f"{metric} (mean ± sd, {len(seeds)} seeds)" if len(seeds) > 1 else metric
    lines = [
        f"| candidate | layer | {' | '.join(report['estimators'])} | {result_header} | learning rate | seconds |",
        "|---|---:|" + "---:|" * len(report["estimators"]) + "---:|---:|---:|",
    ]
    for run in report["runs"]:
        scores = " | ".join(_fmt(run["scores"][e]) for e in report["estimators"])
        result = _fmt(run["result"]) + (f" ± {run['result_std']:.4f}" if len(seeds) > 1 else "")
        lines.append(
            f"| {run['candidate']} | {run['layer']} | {scores} | {result} | {run['learning_rate']:g} | "
            f"{run['seconds']:.1f} |"
        )
    lines += [
        "",
        "| estimator | Spearman rho (p) | Kendall tau | weighted tau | top-1 regret |",
        "|---|---:|---:|---:|---:|",
    ]
    for estimator, agreement in report["agreement"].items():
        lines.append(
            f"| {estimator} | {_fmt(agreement['spearman_rho'])} ({_fmt(agreement['spearman_p'])}) | "
            f"{_fmt(agreement['kendall_tau'])} | {_fmt(agreement['weighted_tau'])} | {_fmt(agreement['top1_regret'])} |"
        )
    if report.get("reliability") is not None:
        units = report.get("reliability_test_units")
        seed_count = f"{len(seeds)} seed" + ("s" if len(seeds) != 1 else "")
        basis = f"{units} test utterances and {seed_count}" if units else f"{seed_count} alone"
        lines += [
            "",
            f"Reliability of these results: Spearman rho {_fmt(report['reliability'])} against a re-measurement "
            f"of themselves (given {basis}): about what their exact values would reach, so no estimator is "
            "expected to agree with them better.",
        ]
    paths["md"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    estimators = report["estimators"]
    columns = min(3, len(estimators))
    rows = math.ceil(len(estimators) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 4.2 * rows), squeeze=False)
    results = [run["result"] for run in report["runs"]]
    for ax in axes.flat[len(estimators) :]:
        ax.axis("off")
    for ax, estimator in zip(axes.flat, estimators, strict=False):
        scores = [run["scores"][estimator] for run in report["runs"]]
        ax.errorbar(scores, results, yerr=[run["result_std"] for run in report["runs"]], fmt="o", markersize=4,
                    elinewidth=0.8, capsize=2)  # fmt: skip
        ax.margins(0.2)  # room for the labels inside the axes
        for i, (run, x, y) in enumerate(zip(report["runs"], scores, results, strict=True)):
            offset = (4, 4 + 7 * (i % 3) - 7)  # stagger neighbours' labels
            ax.annotate(f"{run['candidate']}/L{run['layer']}", (x, y), xytext=offset, textcoords="offset points",
                        fontsize=6)  # fmt: skip
        rho = report["agreement"][estimator]["spearman_rho"]
        ax.set_xlabel(estimator)
        ax.set_ylabel(metric)
        ax.set_title(f"Spearman rho = {_fmt(rho)}" if rho is not None else "rho: n/a (fewer than 3)", fontsize=9)
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=100)
    plt.close(fig)
    return paths
