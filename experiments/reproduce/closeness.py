"""Finding 6: agreement and total variation of each cheaper method to HMC."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .plots import _plot_bars
from .registry import Finding, register_finding
from .report import fmt
from .stats import _bootstrap_mean, _diff, _table

if TYPE_CHECKING:
    from .context import Context


def finding_closeness(ctx: Context) -> dict[str, Any]:
    hmc = ctx.slice(ctx.main_hmc["probs"], "clean").mean((0, 1))
    B = ctx.p.num_bootstrap
    rows: list[list[Any]] = []
    numbers: dict[str, Any] = {"methods": {}}
    per: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for name, b in ctx.baselines.items():
        pr = ctx.slice(b["members"], "clean").mean(0)
        ag = (pr.argmax(-1) == hmc.argmax(-1)).astype(float)
        tv = 0.5 * np.abs(pr - hmc).sum(-1)
        per[name] = (ag, tv)
        a, ase, _, _ = _bootstrap_mean(ag, B, 11)
        t, tse, _, _ = _bootstrap_mean(tv, B, 12)
        numbers["methods"][name] = {"agreement": a, "agreement_se": ase, "tv": t, "tv_se": tse}
        rows.append([name, a, ase, t, tse])
    de_sgld_tv = _diff(ctx, per["ensemble"][1], per["sgld"][1], 13)
    de_mfvi_tv = _diff(ctx, per["ensemble"][1], per["mfvi"][1], 14)
    de_sgld_ag = _diff(ctx, per["ensemble"][0], per["sgld"][0], 15)
    de_mfvi_ag = _diff(ctx, per["ensemble"][0], per["mfvi"][0], 16)
    numbers.update(
        {
            "tv_ensemble_minus_sgld": de_sgld_tv,
            "tv_ensemble_minus_mfvi": de_mfvi_tv,
            "agreement_ensemble_minus_sgld": de_sgld_ag,
            "agreement_ensemble_minus_mfvi": de_mfvi_ag,
            "criteria": {"ci": 95},
        }
    )
    # "similarly close as SGLD": not significantly farther; "closer than MFVI": significantly
    ok = de_sgld_tv["ci_low"] <= 0 and de_mfvi_tv["ci_high"] < 0
    _plot_bars(
        ctx,
        "closeness",
        list(per),
        [numbers["methods"][k]["tv"] for k in per],
        [numbers["methods"][k]["tv_se"] for k in per],
        "total variation to HMC",
    )
    return {
        "verdict": "reproduced" if ok else "not reproduced at this scale",
        "reason": (
            f"TV to HMC: ensemble minus SGLD {fmt(de_sgld_tv['diff'])} (95% CI "
            f"{fmt(de_sgld_tv['ci_low'])} to {fmt(de_sgld_tv['ci_high'])}), ensemble minus MFVI "
            f"{fmt(de_mfvi_tv['diff'])} (95% CI {fmt(de_mfvi_tv['ci_low'])} to "
            f"{fmt(de_mfvi_tv['ci_high'])})"
        ),
        "numbers": numbers,
        "table": _table(["method", "agreement", "agr. SE", "TV", "TV SE"], rows),
        "figure": "closeness.png",
    }


register_finding(
    Finding(
        6,
        "closeness",
        "Deep ensembles are as close to HMC as SGLD, closer than MFVI",
        "deep ensemble predictive distributions are similarly close to HMC as standard SGLD, "
        "and closer than standard variational inference (agreement, total variation)",
        finding_closeness,
        (
            "hmc_cifar10_table3",
            "deep_ensemble_cifar10",
            "sgld_cifar10_table3",
            "mfvi_cifar10_table3",
        ),
    )
)
