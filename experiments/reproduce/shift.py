"""Finding 5: HMC and a deep ensemble on corrupted test images, per severity."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .config import CORRUPTIONS
from .plots import _plot_curves
from .registry import Finding, register_finding
from .report import fmt
from .stats import _diff, _point_acc, _point_nll, _table

if TYPE_CHECKING:
    from .context import Context


def finding_shift(ctx: Context) -> dict[str, Any]:
    d, p = ctx.data, ctx.p
    y = d["y_test"]
    hmc_all = ctx.main_hmc["probs"].mean((0, 1))
    ens_all = ctx.baselines["ensemble"]["members"].mean(0)
    rows: list[list[Any]] = []
    numbers: dict[str, Any] = {"severities": {}}
    curves: dict[str, list[float]] = {"hmc": [], "ensemble": []}
    for s in p.severities:
        per: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for name, allp in (("hmc", hmc_all), ("ensemble", ens_all)):
            nll = np.concatenate([_point_nll(ctx.slice(allp, f"{k}_{s}"), y) for k in CORRUPTIONS])
            acc = np.concatenate([_point_acc(ctx.slice(allp, f"{k}_{s}"), y) for k in CORRUPTIONS])
            per[name] = (nll, acc)
        dn = _diff(ctx, per["ensemble"][0], per["hmc"][0], 8 + s)
        entry: dict[str, Any] = {
            "hmc_nll": float(per["hmc"][0].mean()),
            "ensemble_nll": float(per["ensemble"][0].mean()),
            "hmc_accuracy": float(per["hmc"][1].mean()),
            "ensemble_accuracy": float(per["ensemble"][1].mean()),
            "nll_ensemble_minus_hmc": dn,
        }
        for k in CORRUPTIONS:
            entry[k] = {
                n: float(_point_nll(ctx.slice(a, f"{k}_{s}"), y).mean())
                for n, a in (("hmc", hmc_all), ("ensemble", ens_all))
            }
        numbers["severities"][str(s)] = entry
        curves["hmc"].append(entry["hmc_nll"])
        curves["ensemble"].append(entry["ensemble_nll"])
        rows.append(
            [
                s,
                entry["hmc_accuracy"],
                entry["ensemble_accuracy"],
                entry["hmc_nll"],
                entry["ensemble_nll"],
                dn["diff"],
                dn["ci_low"],
                dn["ci_high"],
            ]
        )
    clean = {
        n: float(_point_nll(ctx.slice(a, "clean"), y).mean())
        for n, a in (("hmc", hmc_all), ("ensemble", ens_all))
    }
    numbers["clean_nll"] = clean
    top = numbers["severities"][str(max(p.severities))]["nll_ensemble_minus_hmc"]
    ok = top["ci_high"] < 0
    numbers["criteria"] = {"ci": 95}
    _plot_curves(
        ctx,
        "shift",
        {k: (list(p.severities), v) for k, v in curves.items()},
        "corruption severity (mean over noise, blur, rotation)",
        "NLL",
    )
    return {
        "verdict": "reproduced" if ok else "not reproduced at this scale",
        "reason": (
            f"at the highest severity the ensemble minus HMC NLL is {fmt(top['diff'])} "
            f"(95% CI {fmt(top['ci_low'])} to {fmt(top['ci_high'])}); clean NLL HMC "
            f"{fmt(clean['hmc'])}, ensemble {fmt(clean['ensemble'])}"
        ),
        "numbers": numbers,
        "table": _table(
            [
                "severity",
                "HMC acc",
                "ens. acc",
                "HMC NLL",
                "ens. NLL",
                "ens. - HMC NLL",
                "CI low",
                "CI high",
            ],
            rows,
        ),
        "figure": "shift.png",
    }


register_finding(
    Finding(
        5,
        "domain_shift",
        "HMC generalises poorly under domain shift",
        "Bayesian neural networks show surprisingly poor generalization under domain shift "
        "(worse than deep ensembles at higher corruption severities)",
        finding_shift,
        ("hmc_cifar10_table3", "deep_ensemble_cifar10"),
    )
)
