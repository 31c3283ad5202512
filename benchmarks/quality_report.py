"""The ranking-quality report: rank agreement of every estimator with the ground truth,
per task, view (model-wise, all pairs, layer-wise; frozen head and partial fine-tuning) and
seed, baselines, a significance test across tasks and seeds, cost, and plots."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

from lightning_tx.metrics import get_estimator
from lightning_tx.ranking.statistics import rank_agreement, result_reliability, result_standard_error
from lightning_tx.scoring import order_key, rank_average

ENSEMBLE = "ensemble"
# The order `train.py rank` gives with configs/rank.yaml's estimators: its first estimator,
# exact ties broken by the next ones (lightning_tx.scoring.order_key). Not an estimator that
# can be put first, so never the report's default.
ORDER = "ranking order"
RANK_CONFIG = Path(__file__).parent.parent / "configs" / "rank.yaml"
GOALS = {"spearman_rho": 0.9, "weighted_tau": 0.8, "top1_regret": 0.01}
# The baseline of fine-tuning itself: every layer's frozen heads ranked by their accuracy on
# the task's validation split (the mean over seeds at the learning rate chosen there), as a
# team that fine-tunes every candidate and keeps the best on its validation split would.
VALIDATION = "fine-tuned, val split"
BASELINES = ("parameters", VALIDATION, "random order")


def _sign(estimator: str) -> float:
    return 1.0 if estimator in (ENSEMBLE, ORDER, "parameters") or get_estimator(estimator).higher_is_better else -1.0


def _best_layer_score(scores: dict[str, float], estimator: str) -> float:
    values = [v for v in scores.values() if v is not None and math.isfinite(v)]
    return _sign(estimator) * max(_sign(estimator) * v for v in values) if values else math.nan


def rank_estimators() -> list[str]:
    """The estimators of ``configs/rank.yaml``: the first orders rankings, the next break ties
    (read once per process: the report asks for them per task and view)."""
    return list(_rank_estimators())


def ranking_chain(data: dict[str, Any]) -> list[str]:
    """The estimators whose order the report's ranking order is: those the benchmark run
    recorded (``configs/rank.yaml``'s when it ran), so that re-rendering its results gives
    the same page whatever the checkout's config says now; the config's for a file from
    before runs recorded them."""
    return list(data.get("rank_estimators", rank_estimators()))


@functools.cache
def _rank_estimators() -> tuple[str, ...]:
    config = yaml.safe_load(RANK_CONFIG.read_text(encoding="utf-8"))
    return tuple(config["model"]["init_args"]["estimators"])


def order_scores(
    task: dict[str, Any], estimators: list[str], configured: list[str] | None = None
) -> dict[str, dict[str, float]] | None:
    """Per candidate and layer, a score whose order is the ranking order (:data:`ORDER`) of
    every (candidate, layer) pair of ``task``: the number of distinct places at or below the
    pair's, so pairs tied on every estimator of the chain share a score. None where the
    benchmark lacks the chain's first estimator; later ones it lacks are left out. The chain
    is ``configured`` (default: ``configs/rank.yaml``'s estimators)."""
    configured = rank_estimators() if configured is None else configured
    chain = [e for e in configured if e in estimators]
    if not chain or chain[0] != configured[0]:
        return None
    candidates = task["candidates"]
    keys = {(n, k): order_key({e: candidates[n]["scores"][e][k] for e in chain}, chain)
            for n in candidates for k in candidates[n]["frozen"]}  # fmt: skip
    places = sorted(set(keys.values()))  # best first
    place = {key: len(places) - i for i, key in enumerate(places)}
    out: dict[str, dict[str, float]] = {n: {} for n in candidates}
    for (n, k), key in keys.items():
        out[n][k] = float(place[key])
    return out


# --------------------------------------------------------------------------- views
def views(
    task: dict[str, Any], estimators: list[str], seeds: list[int], chain: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Per view: the items ranked, their scores per estimator (and the ranking order of
    ``chain``, default ``configs/rank.yaml``'s) and their ground truth (mean over seeds, and
    per seed)."""
    candidates = task["candidates"]
    names = list(candidates)

    def frozen(name: str, layer: str, seed: int | None) -> float:
        result = candidates[name]["frozen"][layer]
        return result["mean"] if seed is None else result["test"][seed]

    out = {}
    # Model-wise: each candidate at its best layer, by the estimator and by the ground truth.
    out["model-wise, frozen head"] = {
        "items": names,
        "scores": {e: [_best_layer_score(candidates[n]["scores"][e], e) for n in names] for e in estimators},
        "truth": [max(frozen(n, k, None) for k in candidates[n]["frozen"]) for n in names],
        "truth_by_seed": [
            [max(frozen(n, k, s) for k in candidates[n]["frozen"]) for n in names] for s in range(len(seeds))
        ],
        "parameters": [float(candidates[n]["parameters"]) for n in names],
    }
    pairs = [(n, k) for n in names for k in candidates[n]["frozen"]]
    out["all (candidate, layer) pairs, frozen head"] = {
        "items": [f"{n}/L{k}" for n, k in pairs],
        "scores": {e: [candidates[n]["scores"][e][k] for n, k in pairs] for e in estimators},
        "truth": [frozen(n, k, None) for n, k in pairs],
        "truth_by_seed": [[frozen(n, k, s) for n, k in pairs] for s in range(len(seeds))],
    }
    if all("val" in r for n in names for r in candidates[n]["frozen"].values()):
        out["model-wise, frozen head"][VALIDATION] = [
            max(r["val"] for r in candidates[n]["frozen"].values()) for n in names
        ]
        out["all (candidate, layer) pairs, frozen head"][VALIDATION] = [
            candidates[n]["frozen"][k]["val"] for n, k in pairs
        ]
    tuned = [n for n in names if candidates[n]["top_n"]]
    if len(tuned) >= 3:
        last = {n: str(candidates[n]["num_layers"] - 1) for n in tuned}
        out["model-wise, last layer fine-tuned (top_n=1)"] = {
            "items": tuned,
            "scores": {e: [candidates[n]["scores"][e][last[n]] for n in tuned] for e in estimators},
            "truth": [candidates[n]["top_n"]["mean"] for n in tuned],
            "truth_by_seed": [[candidates[n]["top_n"]["test"][s] for n in tuned] for s in range(len(seeds))],
            "parameters": [float(candidates[n]["parameters"]) for n in tuned],
        }
    ordered = order_scores(task, estimators, chain)
    if ordered is not None:
        out["model-wise, frozen head"]["scores"][ORDER] = [max(ordered[n].values()) for n in names]
        out["all (candidate, layer) pairs, frozen head"]["scores"][ORDER] = [ordered[n][k] for n, k in pairs]
        if "model-wise, last layer fine-tuned (top_n=1)" in out:
            out["model-wise, last layer fine-tuned (top_n=1)"]["scores"][ORDER] = [ordered[n][last[n]] for n in tuned]
    for view in out.values():
        if ENSEMBLE not in view["scores"]:
            members = get_estimator(ENSEMBLE).members
            rows = [{m: view["scores"][m][i] for m in members} for i in range(len(view["items"]))]
            view["scores"][ENSEMBLE] = rank_average(rows, members)
    return out


def layerwise(task: dict[str, Any], estimators: list[str], chain: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Per candidate with 3 or more layers whose ground truth varies: layers ranked."""
    out = {}
    ordered = order_scores(task, estimators, chain)
    for name, candidate in task["candidates"].items():
        layers = sorted(candidate["frozen"], key=int)
        truth = [candidate["frozen"][k]["mean"] for k in layers]
        if len(layers) < 3 or max(truth) - min(truth) < 1e-9:
            continue
        scores = {e: [candidate["scores"][e][k] for k in layers] for e in estimators}
        members = get_estimator(ENSEMBLE).members
        scores[ENSEMBLE] = rank_average([{m: scores[m][i] for m in members} for i in range(len(layers))], members)
        if ordered is not None:
            scores[ORDER] = [ordered[name][k] for k in layers]
        out[name] = {"items": layers, "scores": scores, "truth": truth}
    return out


def reliability(task: dict[str, Any], draws: int = 2000) -> float:
    """How well the model-wise frozen-head ground truth agrees with a re-measurement of itself
    (:func:`~lightning_tx.ranking.statistics.result_reliability`): each candidate's best layer,
    with its seeds' standard error and the binomial error of its test units (test utterances;
    reference phones for 1 - phone error rate, whose errors cluster within utterances, and
    the noisy task's utterances each heard at every SNR, whose errors cluster across levels:
    there the binomial error is a lower bound). A task whose reliability is below a goal
    cannot show an estimator meeting it."""
    units = task.get("test_units", task["utterances"]["test"])
    results, errors = [], []
    for candidate in task["candidates"].values():
        best = max(candidate["frozen"].values(), key=lambda r: r["mean"])
        seeds = np.asarray(best["test"], dtype=float)
        spread = float(seeds.std(ddof=1)) if len(seeds) > 1 else 0.0
        results.append(best["mean"])
        errors.append(result_standard_error(best["mean"], spread, len(seeds), units))
    return result_reliability(results, errors, draws=draws)


def voice_halves(task: dict[str, Any]) -> float:
    """Spearman rho between the model-wise frozen-head ground truth measured on one half of
    the test voices and on the other (alternate voices in sorted order; each candidate's best
    layer by the mean of its seeds' results per voice, averaged over the half's voices): how
    far the ranking depends on which voices the test set has, which the reliability does not
    count. NaN where the results name fewer than 2 test voices."""
    layers = [candidate["frozen"].values() for candidate in task["candidates"].values()]
    voices = sorted(set.intersection(*(set(r.get("voices", {})) for results in layers for r in results)))
    if len(voices) < 2:
        return math.nan
    halves = [[max(np.mean([r["voices"][v] for v in half]) for r in results) for results in layers]
              for half in (voices[0::2], voices[1::2])]  # fmt: skip
    return float(stats.spearmanr(*halves).statistic)


def agreement(scores: list[float], truth: list[float], estimator: str) -> dict[str, float]:
    keep = [i for i, v in enumerate(scores) if v is not None and math.isfinite(v)]
    if len(keep) < 3:
        return {"spearman_rho": math.nan, "spearman_p": math.nan, "kendall_tau": math.nan, "weighted_tau": math.nan,
                "top1_regret": math.nan, "n": len(keep)}  # fmt: skip
    return rank_agreement([scores[i] for i in keep], [truth[i] for i in keep], higher_is_better=_sign(estimator) > 0)


def reported(data: dict[str, Any]) -> list[str]:
    """The report's rows: the benchmark's estimators, the ensemble and, where the benchmark
    has the estimator that orders rankings, the ranking order."""
    return [*data["estimators"], ENSEMBLE, *([ORDER] if ranking_chain(data)[0] in data["estimators"] else [])]


def analyse(data: dict[str, Any]) -> dict[str, Any]:
    """Every agreement number of the report."""
    estimators = reported(data)
    seeds = data["seeds"]
    chain = ranking_chain(data)  # the run's, read once
    analysis: dict[str, Any] = {"tasks": {}}
    for task_name, task in data["tasks"].items():
        task_views = views(task, data["estimators"], seeds, chain)
        result = {}
        for view_name, view in task_views.items():
            rows = {}
            for e in estimators:
                a = agreement(view["scores"][e], view["truth"], e)
                per_seed = [agreement(view["scores"][e], t, e)["spearman_rho"] for t in view["truth_by_seed"]]
                a["rho_by_seed"] = per_seed
                rows[e] = a
            for baseline in ("parameters", VALIDATION):
                if baseline in view:
                    rows[baseline] = agreement(view[baseline], view["truth"], "parameters")
                    rows[baseline]["rho_by_seed"] = [
                        agreement(view[baseline], t, "parameters")["spearman_rho"] for t in view["truth_by_seed"]
                    ]
            rng = np.random.default_rng(0)
            random_rhos = [
                agreement(list(rng.permutation(len(view["truth"])).astype(float)), view["truth"], "parameters")
                for _ in range(1000)
            ]
            rows["random order"] = {
                "spearman_rho": float(np.nanmean([r["spearman_rho"] for r in random_rhos])),
                "spearman_rho_std": float(np.nanstd([r["spearman_rho"] for r in random_rhos])),
                "top1_regret": float(np.mean([r["top1_regret"] for r in random_rhos])),
            }
            truth = np.array(view["truth"])
            result[view_name] = {
                "rows": rows,
                "spread": float(truth.max() - truth.min()),
                "range": [float(truth.min()), float(truth.max())],
                "n": len(truth),
            }
        layer_views = layerwise(task, data["estimators"], chain)
        result["layer-wise, frozen head (mean over models)"] = {
            "rows": {
                e: {
                    "spearman_rho": float(np.nanmean([agreement(v["scores"][e], v["truth"], e)["spearman_rho"]
                                                      for v in layer_views.values()])) if layer_views else math.nan,
                    "per_model": {m: agreement(v["scores"][e], v["truth"], e)["spearman_rho"]
                                  for m, v in layer_views.items()},
                }
                for e in estimators
            },
            "n": len(layer_views),
        }  # fmt: skip
        result["model-wise, frozen head"]["reliability"] = reliability(task)
        result["model-wise, frozen head"]["voice_halves"] = voice_halves(task)
        analysis["tasks"][task_name] = result
    headline = "model-wise, frozen head"

    def mean_rho(view: str, e: str) -> float:
        """Mean over tasks; a task the estimator cannot score (n/a) counts as 0."""
        values = [t[view]["rows"][e]["spearman_rho"] for t in analysis["tasks"].values() if view in t]
        return float(np.mean([np.nan_to_num(v, nan=0.0) for v in values]))

    means = {e: mean_rho(headline, e) for e in estimators}
    analysis["mean_rho"] = means
    analysis["mean_rho_pairs"] = {e: mean_rho("all (candidate, layer) pairs, frozen head", e) for e in estimators}
    analysis["default"] = max(
        (e for e in means if e != ORDER), key=lambda e: -math.inf if math.isnan(means[e]) else means[e]
    )
    analysis["significance"] = _significance(analysis, estimators, headline)
    return analysis


def _significance(analysis: dict[str, Any], estimators: list[str], view: str) -> dict[str, dict[str, float]]:
    """The default against each estimator, and against the fine-tuned heads ranked on the
    validation split where every task has them: paired Spearman rho over (task, seed), Wilcoxon."""
    default = analysis["default"]
    if all(VALIDATION in t[view]["rows"] for t in analysis["tasks"].values()):
        estimators = [*estimators, VALIDATION]

    def units(e: str) -> list[float]:
        return [r for t in analysis["tasks"].values() for r in t[view]["rows"][e]["rho_by_seed"]]

    out = {}
    base = units(default)
    for e in estimators:
        if e == default:
            continue
        other = units(e)
        pairs = [(a, b) for a, b in zip(base, other, strict=True) if math.isfinite(a) and math.isfinite(b)]
        differences = [a - b for a, b in pairs]
        p = math.nan
        if len(pairs) >= 3 and any(abs(d) > 1e-12 for d in differences):
            p = float(stats.wilcoxon(differences).pvalue)
        out[e] = {"mean_difference": float(np.mean(differences)) if differences else math.nan, "p": p, "n": len(pairs)}
    return out


# --------------------------------------------------------------------------- markdown
def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _table(rows: dict[str, dict[str, Any]], order: list[str]) -> list[str]:
    lines = [
        "| estimator | Spearman rho (p) | rho per seed: mean ± sd | Kendall tau | weighted tau | top-1 regret | n |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for e in order:
        if e not in rows:
            continue
        a = rows[e]
        if e == "random order":
            lines.append(f"| random order | {_f(a['spearman_rho'])} ± {_f(a['spearman_rho_std'])} | | | | "
                         f"{_f(a['top1_regret'])} | |")  # fmt: skip
            continue
        seeds = [r for r in a["rho_by_seed"] if math.isfinite(r)]
        by_seed = f"{_f(float(np.mean(seeds)))} ± {_f(float(np.std(seeds)))}" if seeds else "n/a"
        lines.append(
            f"| {e} | {_f(a['spearman_rho'])} ({_f(a['spearman_p'], 3)}) | {by_seed} | {_f(a['kendall_tau'])} | "
            f"{_f(a['weighted_tau'])} | {_f(a['top1_regret'])} | {a['n']} |"
        )
    return lines


def write_report(out: Path, data: dict[str, Any]) -> Path:
    analysis = analyse(data)
    estimators = reported(data)
    default = analysis["default"]
    order = sorted(estimators, key=lambda e: -np.nan_to_num(analysis["mean_rho"][e], nan=-9))
    headline = "model-wise, frozen head"
    quick = data["setting"] == "quick"
    lines = [
        "# Ranking-quality benchmark",
        "",
        f"Generated by `.venv/bin/python benchmarks/ranking_quality.py{' --quick' if quick else ''}` "
        f"({data['setting']} setting, {data['total_seconds'] / 60:.1f} min on {data['threads']} CPU threads; "
        f"ground truth: mean of seeds {data['seeds']}). Raw numbers: `benchmark.json`; "
        "`--report-only` re-renders this page from them. The zoo, the tasks and the protocol are described "
        "in the docstrings of `benchmarks/ranking_quality.py` and `benchmarks/probes.py`.",
        "",
        "## Summary",
        "",
        f"Spearman rho between each estimator and the frozen-head ground truth, model-wise (each candidate at "
        f"its best layer by the estimator, against its best layer by fine-tuning), per task; n/a where the "
        f"estimator has no value (it counts 0 in the mean). The last column is the mean over tasks of the "
        f"same rho over every (candidate, layer) pair. The default estimator (best mean) is **{default}**.",
        "",
        "| estimator | " + " | ".join(data["tasks"]) + " | mean | mean, all pairs |",
        "|---|" + "---:|" * (len(data["tasks"]) + 2),
    ]
    for e in order:
        cells = [_f(analysis["tasks"][t][headline]["rows"][e]["spearman_rho"]) for t in data["tasks"]]
        lines.append(f"| {e} | " + " | ".join(cells) + f" | {_f(analysis['mean_rho'][e])} | "
                     f"{_f(analysis['mean_rho_pairs'][e])} |")  # fmt: skip
    for baseline in BASELINES:
        if any(baseline not in analysis["tasks"][t][headline]["rows"] for t in data["tasks"]):
            continue
        cells = [_f(analysis["tasks"][t][headline]["rows"][baseline]["spearman_rho"]) for t in data["tasks"]]
        lines.append(f"| *{baseline}* | " + " | ".join(cells) + " | | |")
    cells = [_f(analysis["tasks"][t][headline]["reliability"]) for t in data["tasks"]]
    lines.append("| *reliability (exact results)* | " + " | ".join(cells) + " | | |")
    cells = [_f(analysis["tasks"][t][headline]["voice_halves"]) for t in data["tasks"]]
    lines.append("| *test-voice halves* | " + " | ".join(cells) + " | | |")
    lines += [
        "",
        "*Reliability* is the rho that the exact results would reach against this ground truth, "
        "given its test sets' size and its seeds' spread (`reliability` in `benchmarks/quality_report.py`): "
        "the ground truth is a measurement too, and no estimator can be expected to agree with it better. "
        "*Test-voice halves* is the rho between the ground truth measured on half the test voices and on "
        "the other half (`voice_halves`): how much the ranking depends on which voices test it, which the "
        "reliability does not count (each half has half the voices, so the whole test set agrees better). "
        f"*{VALIDATION}* ranks the ground truth's own frozen heads (every layer, {len(data['seeds'])} seeds, "
        "the learning-rate sweep) by their accuracy on the task's validation split (the mean over seeds at the "
        "learning rate chosen there, so a little optimistic): what fine-tuning every candidate and keeping the "
        "best on a validation split of that size tells, the work the estimators replace. It sees other voices "
        "than the training split the estimators score, and on most tasks fewer utterances (each task's sizes "
        "are in its section).",
    ]
    for e in [default, *([ORDER] if ORDER in estimators else [])]:
        lines += _goal_lines(analysis, e, default, ranking_chain(data))
    lines += ["", f"Significance: {default} against each estimator and the fine-tuned heads ranked on the val "
              "split, Spearman rho of the model-wise frozen view paired over (task, seed), Wilcoxon signed-rank "
              "test.", "",
              "| estimator | mean rho difference | p | pairs |", "|---|---:|---:|---:|"]  # fmt: skip
    for e, s in sorted(analysis["significance"].items(), key=lambda kv: -np.nan_to_num(kv[1]["mean_difference"])):
        lines.append(f"| {e} | {_f(s['mean_difference'])} | {_f(s['p'], 4)} | {s['n']} |")
    lines += _zoo_lines(data) + _cost_lines(data)
    for task_name, task in data["tasks"].items():
        result = analysis["tasks"][task_name]
        lines += ["", f"## Task: {task_name}", "", f"{task['description']}; {task['num_classes']} classes; "
                  f"{task['utterances']['train']} / {task['utterances']['val']} / {task['utterances']['test']} "
                  f"train / val / test utterances; ground truth: {task['metric']}; its reliability "
                  f"{_f(result[headline]['reliability'])}, test-voice halves "
                  f"{_f(result[headline]['voice_halves'])}.", ""]  # fmt: skip
        lines += _ground_truth_lines(task)
        for view_name, view in result.items():
            if view_name.startswith("layer-wise"):
                lines += ["", f"### {view_name}: {view['n']} models", "",
                          "| estimator | mean Spearman rho over layers | per model |", "|---|---:|---|"]  # fmt: skip
                for e in order:
                    per_model = ", ".join(f"{m} {_f(r, 2)}" for m, r in view["rows"][e]["per_model"].items())
                    lines.append(f"| {e} | {_f(view['rows'][e]['spearman_rho'])} | {per_model} |")
                continue
            lines += ["", f"### {view_name}: {view['n']} items, ground truth from {_f(view['range'][0])} to "
                      f"{_f(view['range'][1])} (spread {_f(view['spread'])})", ""]  # fmt: skip
            lines += _table(view["rows"], [*order, *BASELINES])
        plot = _plot(out, task_name, task, data, [default, "logme", "pooled_logme", "sliced_wasserstein"])
        lines += ["", f"![{task_name}]({plot.name})"]
    lines += _failure_lines(analysis, data, default)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "benchmark.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _zoo_lines(data: dict[str, Any]) -> list[str]:
    lines = ["", "## Zoo", "", "| candidate | pre-training | epochs | parameters | layers | pre-training s |",
             "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    first = next(iter(data["tasks"].values()))["candidates"]
    for entry in data["zoo"]:
        lines.append(f"| {entry['name']} | {entry['objective']} | {entry['epochs']} | {entry['parameters']:,} | "
                     f"{first[entry['name']]['num_layers']} | {entry['pretrain_seconds']:.0f} |")  # fmt: skip
    return lines


def _cost_lines(data: dict[str, Any]) -> list[str]:
    total = {k: 0.0 for k in ("score", "encode", "frozen", "top_n")}
    for task in data["tasks"].values():
        for candidate in task["candidates"].values():
            for k in total:
                total[k] += candidate["seconds"][k]
    pretraining = sum(entry["pretrain_seconds"] for entry in data["zoo"])
    finetuning = total["encode"] + total["frozen"] + total["top_n"]
    return [
        "",
        "## Cost",
        "",
        f"Scoring every layer of every candidate with every estimator, on every task: {total['score']:.0f} s. "
        f"The ground truth it replaces: {finetuning:.0f} s (encoding train/val/test once per candidate and task, "
        f"{total['encode']:.0f} s; frozen heads on every layer, {len(data['seeds'])} seeds x the learning-rate "
        f"sweep, {total['frozen']:.0f} s; partial fine-tuning, {total['top_n']:.0f} s), even with every head "
        f"trained on cached features: scoring costs {100 * total['score'] / max(finetuning, 1e-9):.1f}% of it. "
        f"Pre-training the zoo took {pretraining:.0f} s (cached between runs). Fine-tuning through the encoder "
        f"costs far more than these heads: against `configs/confirm.yaml`'s sweep of full fine-tunes, scoring "
        f"with the default estimator is measured by `benchmarks/scoring_cost.py` (`docs/speed.md`).",
    ]


def _ground_truth_lines(task: dict[str, Any]) -> list[str]:
    lines = ["| candidate | frozen head per layer (mean ± sd over seeds) | best | top_n=1 |", "|---|---|---:|---:|"]
    for name, c in sorted(task["candidates"].items(), key=lambda kv: -max(r["mean"] for r in kv[1]["frozen"].values())):
        per_layer = ", ".join(
            f"L{k} {r['mean']:.3f}±{r['std']:.3f}" for k, r in sorted(c["frozen"].items(), key=lambda kv: int(kv[0]))
        )
        best = max(r["mean"] for r in c["frozen"].values())
        top_n = f"{c['top_n']['mean']:.3f}±{c['top_n']['std']:.3f}" if c["top_n"] else "n/a"
        lines.append(f"| {name} | {per_layer} | {best:.3f} | {top_n} |")
    return lines


def _goal_lines(analysis: dict[str, Any], estimator: str, default: str, chain: list[str]) -> list[str]:
    """The goals table of one row of the report: the default, or the ranking order."""
    headline = "model-wise, frozen head"
    who = (f"the default ({default})" if estimator == default else
           f"the ranking order (configs/rank.yaml's estimators: {', '.join(chain)}; each breaks the exact "
           f"ties of those before it, as `train.py rank` orders its rows)")  # fmt: skip
    lines = ["", f"Goals for {who}, per task: Spearman >= 0.9, weighted tau >= 0.8, top-1 regret <= 0.01 (where "
             "several candidates tie for the best score, the mean of their regrets), and at least 0.3 above "
             "parameter count and random order.", "",
             "| task | rho | weighted tau | top-1 regret | rho - parameters | rho - random | met | reliability |",
             "|---|---:|---:|---:|---:|---:|---|---:|"]  # fmt: skip
    for t, result in analysis["tasks"].items():
        rows = result[headline]["rows"]
        a = rows[estimator]
        above_params = a["spearman_rho"] - rows["parameters"]["spearman_rho"]
        above_random = a["spearman_rho"] - rows["random order"]["spearman_rho"]
        met = (a["spearman_rho"] >= 0.9 and a["weighted_tau"] >= 0.8 and a["top1_regret"] <= 0.01
               and above_params >= 0.3 and above_random >= 0.3)  # fmt: skip
        lines.append(f"| {t} | {_f(a['spearman_rho'])} | {_f(a['weighted_tau'])} | {_f(a['top1_regret'])} | "
                     f"{_f(above_params)} | {_f(above_random)} | {'yes' if met else 'no'} | "
                     f"{_f(result[headline]['reliability'])} |")  # fmt: skip
    return lines


def _failure_lines(analysis: dict[str, Any], data: dict[str, Any], default: str) -> list[str]:
    headline = "model-wise, frozen head"
    lines = ["", "## Which estimator for which task, and where each fails", ""]
    for task_name, result in analysis["tasks"].items():
        rows = result[headline]["rows"]
        ranked = sorted((e for e in rows if e not in (*BASELINES, ORDER)),
                        key=lambda e: -np.nan_to_num(rows[e]["spearman_rho"], nan=-9))  # fmt: skip
        best = ranked[0]
        worst = [e for e in ranked if np.nan_to_num(rows[e]["spearman_rho"], nan=-9) < 0.5]
        lines.append(
            f"- **{task_name}**: best {best} (rho {_f(rows[best]['spearman_rho'])}); default {default} "
            f"{_f(rows[default]['spearman_rho'])}" + (f"; below 0.5: {', '.join(worst)}" if worst else "") + "."
        )
    lines += [
        "- TIH-SWD (all three forms) needs each model's own source-domain audio: fbank, MFCC and the untrained "
        "models have none, so it ranks only the pre-trained models, and it measures domain distance, not how "
        "well the task's classes separate.",
        "- Frame-level estimators on utterance tasks score every frame with its utterance's label (TIH); a head on "
        "pooled features sees one vector per utterance, which the pooled_ estimators score.",
    ]
    return lines


def _plot(out: Path, task_name: str, task: dict[str, Any], data: dict[str, Any], estimators: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    view = views(task, data["estimators"], data["seeds"], ranking_chain(data))["model-wise, frozen head"]
    shown = list(dict.fromkeys(estimators))
    fig, axes = plt.subplots(1, len(shown), figsize=(3.6 * len(shown), 3.4), squeeze=False)
    for ax, e in zip(axes[0], shown, strict=True):
        xs = view["scores"][e]
        ax.scatter(xs, view["truth"], s=14)
        for name, x, y in zip(view["items"], xs, view["truth"], strict=True):
            if x is not None and math.isfinite(x):
                ax.annotate(name, (x, y), fontsize=5.5)
        ax.set_xlabel(f"{e} (best layer)", fontsize=8)
        ax.set_ylabel(f"fine-tuned {task['metric']}", fontsize=7)
    fig.suptitle(f"{task_name}: score vs frozen-head result, each candidate at its best layer", fontsize=9)
    fig.tight_layout()
    path = out / f"benchmark-{task_name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
