"""Finding 1: HMC's Bayesian model average against SGD, ensembles, SGLD, SGHMC, MFVI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .plots import _plot_bars
from .registry import Finding, register_finding
from .report import _pm, fmt
from .stats import _diff, _metrics, _point_acc, _point_nll, _table

if TYPE_CHECKING:
    from .context import Context


def finding_bma(ctx: Context) -> dict[str, Any]:
    d = ctx.data
    y = d["y_test"]
    hmc = ctx.slice(ctx.main_hmc["probs"], "clean").mean((0, 1))
    preds = {"hmc": hmc}
    for name, b in ctx.baselines.items():
        preds[name] = ctx.slice(b["members"], "clean").mean(0)
    rows: list[list[Any]] = []
    numbers: dict[str, Any] = {"methods": {}}
    for i, (name, pr) in enumerate(preds.items()):
        m: dict[str, Any] = _metrics(ctx, pr, y, seed=i)
        if name != "hmc":
            m["nll_minus_hmc"] = _diff(ctx, _point_nll(pr, y), _point_nll(hmc, y), seed=i)
            m["acc_minus_hmc"] = _diff(ctx, _point_acc(pr, y), _point_acc(hmc, y), seed=i)
        numbers["methods"][name] = m
        rows.append(
            [
                name,
                m["accuracy"],
                m["accuracy_se"],
                m["nll"],
                m["nll_se"],
                m["ece"],
                m.get("nll_minus_hmc", {}).get("diff"),
                m.get("nll_minus_hmc", {}).get("ci_low"),
                m.get("nll_minus_hmc", {}).get("ci_high"),
            ]
        )
    base = {k: v for k, v in numbers["methods"].items() if k != "hmc"}
    nll_better = all(v["nll_minus_hmc"]["ci_low"] > 0 for v in base.values())
    acc_ok = all(v["acc_minus_hmc"]["ci_low"] <= 0 for v in base.values())
    worst = min(base, key=lambda k: base[k]["nll_minus_hmc"]["diff"])
    w = base[worst]["nll_minus_hmc"]
    reproduced = nll_better and acc_ok
    hm = numbers["methods"]["hmc"]
    reason = (
        f"HMC BMA NLL {_pm(hm['nll'], hm['nll_se'])}; "
        f"closest baseline {worst}: NLL difference {fmt(w['diff'])} "
        f"(95% CI {fmt(w['ci_low'])} to {fmt(w['ci_high'])})"
    )
    numbers["criteria"] = {"ci": 95}
    _plot_bars(
        ctx,
        "bma",
        preds.keys(),
        [numbers["methods"][k]["nll"] for k in preds],
        [numbers["methods"][k]["nll_se"] for k in preds],
        "test NLL (lower is better)",
    )
    return {
        "verdict": "reproduced" if reproduced else "not reproduced at this scale",
        "reason": reason,
        "numbers": numbers,
        "table": _table(
            [
                "method",
                "accuracy",
                "acc SE",
                "NLL",
                "NLL SE",
                "ECE",
                "NLL - HMC",
                "CI low",
                "CI high",
            ],
            rows,
        ),
        "figure": "bma.png",
    }


register_finding(
    Finding(
        1,
        "bma",
        "HMC's Bayesian model average beats the cheaper methods",
        "BNNs (full-batch HMC) achieve significant performance gains over standard training "
        "(SGD), deep ensembles, SGLD/SGHMC and MFVI, in accuracy and NLL",
        finding_bma,
        (
            "hmc_cifar10_table3",
            "sgd_cifar10",
            "deep_ensemble_cifar10",
            "sgld_cifar10_table3",
            "mfvi_cifar10_table3",
        ),
    )
)
