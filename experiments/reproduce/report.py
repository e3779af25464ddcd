"""The report's number format and ``report.md``, rendered from the JSON files of a run."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np


def fmt(v: Any) -> str:
    """The one number format of the report (the tests parse it back)."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int | np.integer):
        return str(int(v))
    v = float(v)
    if not math.isfinite(v):
        return str(v)
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        return f"{v:.3e}"
    return f"{v:.4f}"


def _pm(mean: float, se: float) -> str:
    return f"{fmt(mean)} ± {fmt(se)}"


def _fmt_cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return fmt(v)


def render_report(out: str | os.PathLike) -> str:
    """``report.md`` from the per-finding JSON files and ``run.json`` of one invocation."""
    out = Path(out)
    run = json.loads((out / "run.json").read_text())
    lines = [
        "# The paper's findings, reproduced at laptop scale",
        "",
        f"Run `{run['run_id']}`, profile `{run['profile']}`: `{run['command']}`. "
        f"Total wall time {fmt(run['wall_s'])} s, CPU time {fmt(run.get('cpu_s', 0.0))} s; "
        f"load average before {fmt(run['load_before'])}, "
        f"after {fmt(run['load_after'])} on {fmt(run['cpu_count'])} CPUs.",
        "",
        f"Setting: scikit-learn's digits images, a one-hidden-layer MLP of "
        f"{fmt(run['hidden_units'])} ReLU units, full-batch NUTS "
        "(window adaptation) for HMC, the project's SGD / ensemble / SGLD / SGHMC / MFVI "
        "runners for the baselines. Every number below is read from the JSON files of this "
        "run (`<finding>/result.json`). Uncertainties are bootstrap standard errors and 95% "
        "intervals over test points (Monte Carlo error of the test metric, paired between "
        "methods).",
        "",
    ]
    if run.get("prior"):
        pr = run["prior"]
        lines += [
            "## Prior chosen on validation data",
            "",
            f"Gaussian prior, variance chosen by HMC's validation NLL on a validation part of the "
            f"training set (test data never used): prior variance {fmt(pr['prior_variance'])} "
            f"(weight decay {fmt(pr['weight_decay'])}), the same prior for every method.",
            "",
            "| weight decay | prior variance | validation NLL | validation accuracy |",
            "|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {fmt(g['weight_decay'])} | {fmt(g['prior_variance'])} | {fmt(g['val_nll'])} | "
            f"{fmt(g['val_accuracy'])} |"
            for g in pr["grid"]
        ]
        lines.append("")
    lines += ["## Verdicts", "", "| finding | verdict |", "|---|---|"]
    for name in run["findings"]:
        r = json.loads((out / name / "result.json").read_text())
        lines.append(f"| [{r['index']}. {r['title']}](#{_anchor(r)}) | {r['verdict']} |")
    lines.append("")
    for name in run["findings"]:
        r = json.loads((out / name / "result.json").read_text())
        t = r["table"]
        lines += [
            f"## {r['index']}. {r['title']}",
            "",
            f"Paper: {r['paper']}.",
            "",
            f"**Verdict: {r['verdict']}**: {r['reason']}.",
            "",
            "| " + " | ".join(t["columns"]) + " |",
            "|" + "---|" * len(t["columns"]),
        ]
        lines += ["| " + " | ".join(_fmt_cell(c) for c in row) + " |" for row in t["rows"]]
        lines += [
            "",
            f"![{r['title']}]({name}/{r['figure']})",
            "",
            f"Numbers: [`{name}/result.json`]({name}/result.json); wall time {fmt(r['wall_s'])} s.",
            "",
        ]
    return "\n".join(lines)


def _anchor(r: dict) -> str:
    text = f"{r['index']}. {r['title']}".lower()
    text = re.sub(r"[^\w\s-]", "", text)
    return re.sub(r"\s+", "-", text.strip())


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x
