"""Finding 4: the BMA across prior scales and prior families."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from .plots import _plot_curves
from .registry import Finding, register_finding
from .report import fmt
from .stats import _metrics, _table

if TYPE_CHECKING:
    from .context import Context


def finding_priors(ctx: Context) -> dict[str, Any]:
    d, p = ctx.data, ctx.p
    y = d["y_test"]
    main = ctx.slice(ctx.main_hmc["probs"], "clean").mean((0, 1))
    scale_rows: list[list[Any]] = []
    fam_rows: list[list[Any]] = []
    numbers: dict[str, Any] = {"scales": {}, "families": {}}
    for v in p.prior_variances:
        wd = 1.0 / v
        if math.isclose(wd, ctx.wd):
            probs = main
        else:
            probs = ctx.hmc(
                d["x_train"],
                d["y_train"],
                d["x_test"],
                d["y_test"],
                weight_decay=wd,
                seed_offset=400,
            )["probs"].mean((0, 1))
        m = _metrics(ctx, probs, y, 6)
        numbers["scales"][fmt(v)] = {"prior_variance": v, **m}
        scale_rows.append(["gaussian", v, m["accuracy"], m["nll"], m["nll_se"]])
    for fam in p.families:
        if fam == "gaussian":
            probs = main
        else:
            probs = ctx.hmc(
                d["x_train"],
                d["y_train"],
                d["x_test"],
                d["y_test"],
                weight_decay=ctx.wd,
                family=fam,
                seed_offset=500,
            )["probs"].mean((0, 1))
        m = _metrics(ctx, probs, y, 7)
        numbers["families"][fam] = {"prior_variance": ctx.prior["prior_variance"], **m}
        fam_rows.append([fam, ctx.prior["prior_variance"], m["accuracy"], m["nll"], m["nll_se"]])
        ctx.write(f"  priors: {fam}: NLL {m['nll']:.4f}")

    def spread(group):
        nll = [g["nll"] for g in group.values()]
        acc = [g["accuracy"] for g in group.values()]
        return {
            "nll_spread": max(nll) - min(nll),
            "accuracy_spread": max(acc) - min(acc),
            "nll_mean": float(np.mean(nll)),
        }

    s_sc, s_fam = spread(numbers["scales"]), spread(numbers["families"])
    crit = {"max_relative_nll_spread": 0.1, "max_accuracy_spread": 0.02}
    ok = all(
        s["nll_spread"] <= crit["max_relative_nll_spread"] * s["nll_mean"]
        and s["accuracy_spread"] <= crit["max_accuracy_spread"]
        for s in (s_sc, s_fam)
    )
    numbers.update({"scale_spread": s_sc, "family_spread": s_fam, "criteria": crit})
    _plot_curves(
        ctx,
        "priors",
        {
            "gaussian, prior variance": (
                list(p.prior_variances),
                [numbers["scales"][fmt(v)]["nll"] for v in p.prior_variances],
            )
        },
        "prior variance",
        "test NLL",
        logx=True,
    )
    return {
        "verdict": "reproduced" if ok else "not reproduced at this scale",
        "reason": (
            f"across prior variances: NLL spread {fmt(s_sc['nll_spread'])}, accuracy spread "
            f"{fmt(s_sc['accuracy_spread'])}; across families: NLL spread "
            f"{fmt(s_fam['nll_spread'])}, "
            f"accuracy spread {fmt(s_fam['accuracy_spread'])} (criterion: NLL spread at most "
            f"{fmt(crit['max_relative_nll_spread'])} of the mean NLL, accuracy spread at most "
            f"{fmt(crit['max_accuracy_spread'])})"
        ),
        "numbers": numbers,
        "table": _table(["prior", "variance", "accuracy", "NLL", "NLL SE"], scale_rows + fam_rows),
        "figure": "priors.png",
    }


register_finding(
    Finding(
        4,
        "priors",
        "The BMA is robust to the prior scale and family",
        "BMA performance is robust to the choice of prior scale, and relatively similar for "
        "diagonal Gaussian, mixture of Gaussian, and logistic priors",
        finding_priors,
        ("hmc_cifar10_table3",),
    )
)
