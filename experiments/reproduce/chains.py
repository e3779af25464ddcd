"""Finding 2: one long HMC chain against several shorter chains at equal compute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .plots import _plot_bars
from .registry import Finding, register_finding
from .report import fmt
from .stats import _diff, _metrics, _point_acc, _point_nll, _table

if TYPE_CHECKING:
    from .context import Context


def finding_chains(ctx: Context) -> dict[str, Any]:
    d, p = ctx.data, ctx.p
    y = d["y_test"]
    multi = ctx.slice(ctx.main_hmc["probs"], "clean")
    C = p.num_chains
    # one chain with the same total number of iterations: C (W + S) = W + S_long
    long_samples = C * (p.num_warmup + p.num_samples) - p.num_warmup
    sizes = (1, p.num_warmup, long_samples, p.max_num_doublings)
    r = ctx.hmc(
        d["x_train"],
        d["y_train"],
        d["x_test"],
        d["y_test"],
        weight_decay=ctx.wd,
        sizes=sizes,
        seed_offset=200,
    )
    long = r["probs"]
    pm, pl = multi.mean((0, 1)), long.mean((0, 1))
    mm, ml = _metrics(ctx, pm, y, 1), _metrics(ctx, pl, y, 2)
    dn = _diff(ctx, _point_nll(pl, y), _point_nll(pm, y), 3)
    da = _diff(ctx, _point_acc(pl, y), _point_acc(pm, y), 4)
    agree = float(np.mean(pm.argmax(-1) == pl.argmax(-1)))
    tv = float(np.mean(0.5 * np.abs(pm - pl).sum(-1)))
    # the paper's criterion is "comparable": differences inside the Monte Carlo noise
    ok = dn["ci_low"] <= 0 <= dn["ci_high"] and da["ci_low"] <= 0 <= da["ci_high"]
    numbers = {
        "multi_chain": {**mm, "chains": C, "draws_per_chain": p.num_samples},
        "single_chain": {**ml, "chains": 1, "draws_per_chain": long_samples},
        "nll_long_minus_multi": dn,
        "acc_long_minus_multi": da,
        "agreement": agree,
        "total_variation": tv,
        "single_chain_wall_s": r["wall_s"],
        "multi_chain_wall_s": ctx.main_hmc["wall_s"],
        "criteria": {"ci": 95},
    }
    _plot_bars(
        ctx,
        "chains",
        ["multi-chain", "single long chain"],
        [mm["nll"], ml["nll"]],
        [mm["nll_se"], ml["nll_se"]],
        "test NLL at equal compute",
    )
    return {
        "verdict": "reproduced" if ok else "not reproduced at this scale",
        "reason": (
            f"NLL one long chain minus {C} chains: {fmt(dn['diff'])} (95% CI {fmt(dn['ci_low'])} "
            f"to {fmt(dn['ci_high'])}); accuracy difference {fmt(da['diff'])}; "
            f"agreement {fmt(agree)}"
        ),
        "numbers": numbers,
        "table": _table(
            ["run", "chains", "draws per chain", "accuracy", "NLL", "NLL SE"],
            [
                ["multi-chain", C, p.num_samples, mm["accuracy"], mm["nll"], mm["nll_se"]],
                ["single chain", 1, long_samples, ml["accuracy"], ml["nll"], ml["nll_se"]],
            ],
        ),
        "figure": "chains.png",
    }


register_finding(
    Finding(
        2,
        "chains",
        "One long chain is comparable to several shorter chains",
        "a single long HMC chain can provide a comparable representation of the posterior to "
        "multiple shorter chains",
        finding_chains,
        ("hmc_cifar10_table3",),
    )
)
