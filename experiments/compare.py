"""``compare``: every inference method on one model and dataset, measured against HMC.

The paper's central comparison (Izmailov et al. 2021, Sec. 9) at a size that runs on a
laptop: multi-chain full-batch HMC as the reference, then SGD, a deep ensemble, SGLD,
SGHMC, cyclical preconditioned SGHMC and mean-field VI on the *same* NumPyro model. Each
method gets its own run directory under ``dir`` (so each can be resumed, diagnosed or
used as a ``--reference`` on its own); the comparison adds:

* ``compare.json``: per method accuracy, NLL, ECE (regression: RMSE, NLL), agreement and
  total variation to HMC (regression: W2 and W1), training and wall time; HMC's
  function-space R-hat and ESS (``ppl_bnn.diagnostics.diagnose_runs``);
* ``report.md`` with PNG plots, each titled and labelled with its units:
  ``metrics.png``, accuracy and NLL per method (regression: RMSE and NLL) with 95%
  bootstrap intervals over test points; ``distance_to_hmc.png``, agreement and total
  variation to HMC (regression: W2) with bootstrap intervals and the HMC-vs-HMC floor (one
  half of HMC's chains against the other) as a band; ``reliability.png``, one reliability
  diagram per method with equal-mass bins, the count of test points per bin and binomial
  intervals; ``entropy.png``, histograms of the predictive entropy on the test set
  (regression: ``predictive_std.png``, of the predictive standard deviation).

``--reference`` takes an HMC run directory, a predictions file, or
``hmc-reference:cifar10`` / ``hmc-reference:imdb``: the HMC predictive probabilities the
NeurIPS 2021 competition published (``ppl-bnn download hmc-reference``), so a run on
CIFAR-10 or IMDB is measured against the paper's HMC without running HMC.

Defaults target about five minutes on two CPU cores with the embedded ``digits`` data and
a one-hidden-layer MLP (``mlp_regression_small``: 50 ReLU units). HMC at this size is a
short reference: read its R-hat before reading the distances to it.

One module (about 700 lines) on purpose: the comparison's runs, metrics, bootstrap
intervals, figures and report all read one ``compare.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from ppl_bnn.config import (
    CommonConfig,
    EnsembleConfig,
    HMCConfig,
    SGDConfig,
    SGMCMCConfig,
    VIConfig,
)
from ppl_bnn.evaluation import metrics
from ppl_bnn.evaluation.predictive import evaluate
from ppl_bnn.evaluation.reference import (
    bayes_average,
    compare_to_reference,
    half_vs_half,
    load_reference,
    per_point_distances,
    run_predictions,
    run_predictions_by_chain,
)

__all__ = ["ALL_METHODS", "CompareConfig", "format_table", "run_compare"]

ALL_METHODS = ("hmc", "sgd", "ensemble", "sgld", "sghmc", "sghmc-clr-prec", "mfvi")


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class CompareConfig:
    """Flags of ``ppl-bnn compare``: shared model/data settings and a size per method."""

    dir: str = _f(
        "", "folder for the runs (one subfolder per method) and the report", required=True
    )
    dataset_name: str = _f("digits", "dataset (see `ppl-bnn models`)")
    model_name: str = _f("mlp_regression_small", "architecture (default: one hidden layer of 50)")
    weight_decay: float = _f(1.0, "prior precision: prior variance = 1 / weight_decay")
    temperature: float = _f(1.0, "posterior temperature, the same for every method")
    seed: int = _f(0, "random seed (method i of an ensemble / chain i uses seed + i)")
    subset_train_to: int | None = _f(None, "keep only the first N training examples")
    data_dir: str | None = _f(None, "folder with datasets (UCI)")
    use_float64: bool = _f(False, "compute in float64")
    methods: str = _f(
        ",".join(ALL_METHODS), "comma-separated methods to run, from: " + ", ".join(ALL_METHODS)
    )
    reference: str | None = _f(
        None,
        "compare against this instead of running HMC: an HMC run directory, a predictions "
        ".npy/.csv, or hmc-reference:cifar10 / hmc-reference:imdb (the published HMC "
        "predictive probabilities; `ppl-bnn download hmc-reference`)",
    )
    bootstrap: int = _f(1000, "bootstrap resamples of the test points for the error bars")
    batch_size: int = _f(80, "minibatch size of every minibatch method")
    hmc_num_chains: int = _f(3, "HMC chains")
    hmc_num_iterations: int = _f(400, "HMC iterations per chain (burn-in included)")
    hmc_num_burn_in_iterations: int = _f(100, "HMC burn-in iterations")
    hmc_step_size: float = _f(0.01, "HMC step size")
    hmc_trajectory_len: float = _f(1.5, "HMC trajectory length")
    sgd_num_epochs: int = _f(100, "epochs of SGD and of each ensemble member")
    sgd_step_size: float = _f(1e-4, "initial SGD step size (cosine schedule)")
    ensemble_size: int = _f(5, "deep ensemble members")
    sgmcmc_num_epochs: int = _f(500, "SG-MCMC epochs (burn-in included)")
    sgmcmc_num_burnin_epochs: int = _f(100, "SG-MCMC burn-in epochs")
    sgmcmc_ensemble_freq: int = _f(10, "SG-MCMC: take a sample every this many epochs")
    sgmcmc_num_chains: int = _f(2, "SG-MCMC chains")
    sgld_step_size: float = _f(1e-4, "SGLD step size (constant after a cosine burn-in)")
    sghmc_step_size: float = _f(1e-5, "SGHMC step size")
    sghmc_momentum: float = _f(0.9, "SGHMC momentum decay")
    clr_step_size: float = _f(
        1e-3, "cyclical preconditioned SGHMC: initial step size of each cycle"
    )
    clr_momentum: float = _f(0.95, "cyclical preconditioned SGHMC: momentum decay")
    vi_num_epochs: int = _f(100, "MFVI epochs")
    vi_step_size: float = _f(1e-3, "MFVI initial Adam step size (cosine schedule)")
    vi_sigma_init: float = _f(1e-2, "MFVI initial standard deviation")
    vi_ensemble_size: int = _f(20, "MFVI predictive samples")


def _common(cfg: CompareConfig, name: str) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(CommonConfig)}
    base = {k: v for k, v in dataclasses.asdict(cfg).items() if k in fields}
    return {**base, "dir": str(Path(cfg.dir) / name), "tabulate_freq": 1000}


class _MinibatchArgs(TypedDict):
    """What every minibatch method shares."""

    batch_size: int
    reference: str | None


class _SGDArgs(_MinibatchArgs):
    """SGD's and each ensemble member's schedule."""

    num_epochs: int
    init_step_size: float
    eval_freq: int
    save_freq: int


class _SGMCMCArgs(_MinibatchArgs):
    """What the SG-MCMC variants share."""

    num_epochs: int
    num_burnin_epochs: int
    ensemble_freq: int
    num_chains: int
    eval_freq: int
    save_freq: int


def _method_configs(cfg: CompareConfig, reference: str | None) -> dict[str, Any]:
    """The configuration of every method, sharing the model, data, prior and temperature."""
    c = lambda name: _common(cfg, name)  # noqa: E731
    mb: _MinibatchArgs = {"batch_size": cfg.batch_size, "reference": reference}
    sgmcmc: _SGMCMCArgs = {
        **mb,
        "num_epochs": cfg.sgmcmc_num_epochs,
        "num_burnin_epochs": cfg.sgmcmc_num_burnin_epochs,
        "ensemble_freq": cfg.sgmcmc_ensemble_freq,
        "num_chains": cfg.sgmcmc_num_chains,
        "eval_freq": cfg.sgmcmc_num_epochs,
        "save_freq": cfg.sgmcmc_num_epochs,
    }
    sgd: _SGDArgs = {
        **mb,
        "num_epochs": cfg.sgd_num_epochs,
        "init_step_size": cfg.sgd_step_size,
        "eval_freq": cfg.sgd_num_epochs,
        "save_freq": cfg.sgd_num_epochs,
    }
    return {
        "hmc": (
            "hmc",
            HMCConfig(
                **c("hmc"),
                step_size=cfg.hmc_step_size,
                trajectory_len=cfg.hmc_trajectory_len,
                num_iterations=cfg.hmc_num_iterations,
                num_burn_in_iterations=cfg.hmc_num_burn_in_iterations,
                num_chains=cfg.hmc_num_chains,
                max_num_leapfrog_steps=100_000,
            ),
        ),
        "sgd": ("sgd", SGDConfig(**c("sgd"), **sgd)),
        "ensemble": (
            "ensemble",
            EnsembleConfig(**c("ensemble"), **sgd, ensemble_size=cfg.ensemble_size),
        ),
        "sgld": (
            "sgmcmc",
            SGMCMCConfig(
                **c("sgld"), **sgmcmc, init_step_size=cfg.sgld_step_size, momentum_decay=0.0
            ),
        ),
        "sghmc": (
            "sgmcmc",
            SGMCMCConfig(
                **c("sghmc"),
                **sgmcmc,
                init_step_size=cfg.sghmc_step_size,
                momentum_decay=cfg.sghmc_momentum,
            ),
        ),
        "sghmc-clr-prec": (
            "sgmcmc",
            SGMCMCConfig(
                **c("sghmc-clr-prec"),
                **sgmcmc,
                init_step_size=cfg.clr_step_size,
                momentum_decay=cfg.clr_momentum,
                step_size_schedule="cyclical",
                step_size_cycle_length_epochs=cfg.sgmcmc_ensemble_freq,
                preconditioner="RMSprop",
            ),
        ),
        "mfvi": (
            "vi",
            VIConfig(
                **c("mfvi"),
                **mb,
                num_epochs=cfg.vi_num_epochs,
                init_step_size=cfg.vi_step_size,
                vi_sigma_init=cfg.vi_sigma_init,
                vi_ensemble_size=cfg.vi_ensemble_size,
                eval_freq=cfg.vi_num_epochs,
                save_freq=cfg.vi_num_epochs,
            ),
        ),
    }


def _methods(cfg: CompareConfig) -> list[str]:
    names = [m.strip() for m in cfg.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in ALL_METHODS]
    if unknown or not names:
        raise ValueError(f"unknown --methods {unknown}; choose from {', '.join(ALL_METHODS)}")
    if cfg.reference and "hmc" in names:
        names.remove("hmc")
    return names


def _hmc_diagnostics(run_dir: Path) -> dict[str, Any]:
    """Function-space R-hat / ESS of an HMC run (needs at least two chains or draws)."""
    from ppl_bnn.diagnostics import diagnose_runs

    try:
        with warnings.catch_warnings():  # constant probabilities give 0/0 inside ArviZ
            warnings.simplefilter("ignore", RuntimeWarning)
            report = diagnose_runs([run_dir])
    except ValueError as e:
        return {"unavailable": str(e)}
    entry = report.entries.get("test_prob") or report.entries.get("test_mean")
    return {
        "num_chains": report.num_chains,
        "num_draws": report.num_draws,
        "max_rhat": entry["max_rhat"],
        "median_rhat": entry["median_rhat"],
        "frac_rhat_gt_1.1": entry["frac_rhat_gt_1.1"],
        "min_ess": entry["min_ess"],
    }


def run_compare(
    cfg: CompareConfig, *, argv: list[str] | None = None, write=print
) -> dict[str, Any]:
    """Run every method (resuming finished ones), compare them, write the report."""
    from ppl_bnn.declare.problem import build_problem
    from ppl_bnn.driver import RUNNERS

    if not cfg.dir:
        raise ValueError("--dir is required")
    names = _methods(cfg)
    root = Path(cfg.dir)
    reference = cfg.reference or (str(root / "hmc") if "hmc" in names else None)
    configs = _method_configs(cfg, reference)
    problem = build_problem(configs[names[0]][1])
    ds = problem.dataset
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        runner, mcfg = configs[name]
        if name == "mfvi" and "sgd" in names:
            from ppl_bnn.store.checkpoint import latest_checkpoint

            mcfg = dataclasses.replace(
                mcfg, mean_init_checkpoint=str(latest_checkpoint(root / "sgd" / "checkpoints"))
            )
        write(f"== {name} ==")
        t0 = time.perf_counter()
        summary = RUNNERS[runner][1](mcfg, problem=problem, argv=argv, progress=False)
        wall = time.perf_counter() - t0
        train_time = summary.get("wall_time_training", summary.get("wall_time_sampling"))
        results[name] = {"run_dir": str(mcfg.dir), "wall_time": wall, "train_time": train_time}
    ref = load_reference(reference, ds) if reference else None
    for name in names:
        # every method saves the test predictions it averages as draws: posterior draws,
        # ensemble members or variational samples
        members = run_predictions(results[name]["run_dir"])
        pred = bayes_average(members, ds.task)
        row = results[name]
        row.update(evaluate(pred, ds, "test"))
        row["num_members"] = int(members.shape[0])
        if ref is not None:
            row.update(compare_to_reference(members, ref, ds, seed=cfg.seed))
        row["_pred"] = pred
        row["_members"] = members
    hmc_dir = Path(reference) if reference else None
    rhat = _hmc_diagnostics(hmc_dir) if hmc_dir is not None and hmc_dir.is_dir() else None
    floor: dict[str, Any] | None = None
    if ref is not None and hmc_dir is not None and hmc_dir.is_dir():
        halves = half_vs_half(run_predictions_by_chain(hmc_dir), ds, seed=cfg.seed)
        if halves is not None:
            floor = {"how": halves[1], "_per_point": halves[0]}
            floor.update({k: float(v.mean()) for k, v in halves[0].items()})
    for name in names:
        if ref is not None:
            results[name]["_distances"] = per_point_distances(
                results[name]["_members"], ref, ds, seed=cfg.seed
            )
    out = {
        "dataset": ds.name,
        "task": ds.task,
        "model": cfg.model_name,
        "num_parameters": problem.logdensity.num_parameters(),
        "num_train": int(ds.x_train.shape[0]),
        "num_test": int(ds.x_test.shape[0]),
        "reference": reference,
        "hmc_function_space": rhat,
        "hmc_half_vs_half": None
        if floor is None
        else {k: v for k, v in floor.items() if not k.startswith("_")},
        "methods": {
            k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
            for k, v in results.items()
        },
        "config": dataclasses.asdict(cfg),
    }
    (root / "compare.json").write_text(json.dumps(out, indent=2, default=float))
    table = format_table(out)
    write(table)
    write_report(root, out, results, ds, table, floor=floor)
    return out


def _columns(task: str, with_ref: bool) -> list[tuple[str, str]]:
    if task == "classification":
        cols = [("accuracy", "accuracy"), ("nll", "NLL"), ("ece", "ECE")]
        if with_ref:
            cols += [("agreement", "agreement"), ("total_variation", "TV")]
    else:
        cols = [("rmse", "RMSE"), ("nll", "NLL")]
        if with_ref:
            cols += [("w2", "W2"), ("w1", "W1")]
    return cols + [("train_time", "train s"), ("wall_time", "wall s")]


def format_table(result: dict[str, Any]) -> str:
    """The comparison as a Markdown table (also readable in a terminal)."""
    methods = result["methods"]
    with_ref = any("agreement" in m or "w2" in m for m in methods.values())
    cols = _columns(result["task"], with_ref)
    lines = ["| method | " + " | ".join(h for _, h in cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in methods.items():
        cells = []
        for key, _ in cols:
            v = row.get(key)
            cells.append("-" if v is None else (f"{v:.1f}" if key.endswith("time") else f"{v:.4f}"))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    floor = result.get("hmc_half_vs_half")
    if floor:
        keys = [k for k in ("agreement", "total_variation", "w2") if k in floor]
        lines += [
            "",
            "HMC-vs-HMC floor ("
            + floor["how"]
            + "): "
            + ", ".join(f"{k.replace('_', ' ')} {floor[k]:.4f}" for k in keys)
            + "; distances to HMC within this are Monte Carlo noise of the reference.",
        ]
    rhat = result.get("hmc_function_space")
    if rhat and "unavailable" in rhat:
        lines += ["", f"HMC function-space R-hat unavailable: {rhat['unavailable']}"]
    elif rhat:
        lines.append("")
        lines.append(
            f"HMC function-space R-hat over {rhat['num_chains']} chains x "
            f"{rhat['num_draws']} draws: "
            f"max {rhat['max_rhat']:.3f}, median {rhat['median_rhat']:.3f}, "
            f"{100 * rhat['frac_rhat_gt_1.1']:.1f}% of "
            f"{'test points x classes' if result['task'] == 'classification' else 'test points'}"
            " above 1.1; "
            f"lowest ESS {rhat['min_ess']:.1f}"
        )
    return "\n".join(lines)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -np.sum(p * np.log(np.clip(p, 1e-12, 1.0)), -1)


def _hmc_reading(out: dict) -> list[str]:
    """Why HMC's row reads as it does: the T = 1 posterior under this prior, not a tuned
    predictor; where to find a prior chosen on validation data."""
    methods, cfg = out["methods"], out["config"]
    if "hmc" not in methods:
        return []
    key = "nll"
    best = min(methods, key=lambda m: methods[m].get(key, float("inf")))
    hmc = methods["hmc"].get(key)
    lines = ["## Reading the HMC row", ""]
    if best == "hmc":
        lines.append(f"HMC's Bayesian model average has the lowest test NLL here ({hmc:.4f}).")
    else:
        lines.append(
            f"HMC's test NLL ({hmc:.4f}) is not the lowest ({best}: "
            f"{methods[best][key]:.4f}). That is what this posterior predicts, not a "
            "sampler failure: HMC samples the tempered posterior at temperature "
            f"{cfg['temperature']:g} under a Gaussian prior of variance "
            f"{1 / cfg['weight_decay']:g} (weight decay {cfg['weight_decay']:g}), and its "
            "average is only as good as that prior, which was not chosen for this data "
            "(an independent BlackJAX NUTS run on the same model gives the same predictive "
            "NLL); a short run adds Monte Carlo error: read the R-hat line."
        )
    lines += [
        "",
        "`ppl-bnn reproduce` chooses the prior variance on a validation split carved from "
        "the training data (never the test data), uses that prior for every method, and "
        "reports each of the paper's findings with its uncertainty (docs/findings.md).",
        "",
    ]
    return lines


def _bootstrap_ci(
    stat, n: int, num: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """95% percentile intervals of ``stat(index)`` over ``num`` resamples of ``n`` test
    points; ``stat`` maps an index array to a vector of values (one per method)."""
    idx = rng.integers(0, n, size=(num, n))
    draws = np.array([stat(i) for i in idx])
    return np.percentile(draws, 2.5, axis=0), np.percentile(draws, 97.5, axis=0)


def _dot_panel(ax, names, values, lo, hi, xlabel: str, title: str) -> None:
    """Methods on the y axis, one point each with its interval as a horizontal error bar."""
    y = np.arange(len(names))[::-1]
    values, lo, hi = map(np.asarray, (values, lo, hi))
    ax.errorbar(
        values,
        y,
        xerr=[values - lo, hi - values],
        fmt="o",
        color="C0",
        ecolor="C0",
        capsize=3,
        label="95% bootstrap interval",
    )
    ax.set_yticks(y, names)
    ax.set(xlabel=xlabel, title=title)
    ax.grid(axis="x", alpha=0.3)


TITLES = {"accuracy": "accuracy", "nll": "NLL", "rmse": "RMSE"}
DISTANCE_TITLES = {
    "agreement": "agreement with HMC",
    "total_variation": "total variation to HMC",
    "w2": "W2 to HMC",
}


def _metric_figure(plt, names, results, ds, num_boot, rng):
    """Accuracy and NLL (regression: RMSE and NLL) per method, bootstrap intervals."""
    n = ds.x_test.shape[0]
    preds = [results[m]["_pred"] for m in names]
    if ds.task == "classification":
        specs = [
            ("accuracy", lambda p, i: metrics.accuracy(p[i], ds.y_test[i]), "accuracy (fraction)"),
            ("nll", lambda p, i: metrics.nll(p[i], ds.y_test[i]), "NLL (nats per test point)"),
        ]
    else:
        reg = lambda p, i: metrics.regression_metrics(p[i], ds.y_test[i], ds.y_scale)  # noqa: E731
        specs = [
            ("rmse", lambda p, i: reg(p, i)["rmse"], "RMSE (original units of y)"),
            ("nll", lambda p, i: reg(p, i)["nll"], "NLL (nats per test point)"),
        ]
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.45 * len(names) + 1.8), sharey=True)
    everything = np.arange(n)
    for ax, (key, f, label) in zip(axes, specs, strict=True):
        point = [f(p, everything) for p in preds]
        lo, hi = _bootstrap_ci(lambda i: [f(p, i) for p in preds], n, num_boot, rng)  # noqa: B023
        _dot_panel(ax, names, point, lo, hi, label, f"test {TITLES[key]}")
    fig.suptitle(
        f"Test metrics per method on {ds.name} ({n} test points; bars: 95% intervals from "
        f"{num_boot} bootstrap resamples of the test points)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _distance_figure(plt, names, results, ds, floor, num_boot, rng):
    """Agreement and TV (regression: W2) to HMC per method, with the HMC-vs-HMC band."""
    keys = (
        [("agreement", "agreement with HMC (fraction of test points)"),
         ("total_variation", "total variation to HMC (0 to 1)")]
        if ds.task == "classification"
        else [("w2", "W2 to HMC (original units of y)")]
    )  # fmt: skip
    rows = [m for m in names if m != "hmc" and "_distances" in results[m]]
    n = ds.x_test.shape[0]
    fig, axes = plt.subplots(
        1, len(keys), figsize=(5 * len(keys), 0.45 * max(len(rows), 1) + 2.0), squeeze=False
    )
    for ax, (key, label) in zip(axes[0], keys, strict=True):
        per = [results[m]["_distances"][key] for m in rows]
        if rows:
            point = [float(v.mean()) for v in per]
            lo, hi = _bootstrap_ci(lambda i: [v[i].mean() for v in per], n, num_boot, rng)  # noqa: B023
            _dot_panel(ax, rows, point, lo, hi, label, DISTANCE_TITLES[key])
        if floor is not None:
            fp = floor["_per_point"][key]
            flo, fhi = _bootstrap_ci(lambda i: [fp[i].mean()], n, num_boot, rng)  # noqa: B023
            ax.axvspan(flo[0], fhi[0], color="C1", alpha=0.25, label="HMC vs HMC (95% interval)")
            ax.axvline(float(fp.mean()), color="C1", lw=1.5, label="HMC vs HMC floor")
        else:
            ax.text(
                0.02, 0.02, "no HMC-vs-HMC floor: the reference has no chains to split",
                transform=ax.transAxes, fontsize=7, color="0.4",
            )  # fmt: skip
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    how = f"; floor: HMC {floor['how']}" if floor is not None else ""
    fig.suptitle(f"Distance of each method's predictive distribution to HMC's{how}", fontsize=10)
    fig.tight_layout()
    return fig


def _reliability_bins(n: int) -> int:
    """Equal-mass bins with at least ~30 test points each, between 3 and 10."""
    return int(np.clip(n // 30, 3, 10))


def _reliability_figure(plt, names, results, ds):
    """One reliability diagram per method: equal-mass bins, counts, binomial intervals."""
    n = ds.x_test.shape[0]
    bins = _reliability_bins(n)
    cols = min(4, len(names))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 3.2 * rows + 0.6), sharex=True, sharey=True,
        squeeze=False,
    )  # fmt: skip
    for ax in axes.flat[len(names) :]:
        ax.set_visible(False)
    for ax, name in zip(axes.flat, names, strict=False):
        pred = results[name]["_pred"]
        c = metrics.calibration_curve(pred, ds.y_test, bins, equal_mass=True)
        count = np.round(c["proportion"] * n).astype(int)
        keep = count > 0
        conf, acc, k = c["confidence"][keep], c["accuracy"][keep], count[keep]
        half = 1.96 * np.sqrt(np.maximum(acc * (1 - acc), 1e-12) / k)
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.errorbar(conf, acc, yerr=half, fmt="o-", ms=3, capsize=2, lw=1)
        per_bin = (
            f"{k.min()} test points per bin"
            if k.min() == k.max()
            else f"{k.min()}-{k.max()} test points per bin"
        )
        ax.text(0.97, 0.03, per_bin, transform=ax.transAxes, ha="right", fontsize=7,
                color="0.3")  # fmt: skip
        if k.max() - k.min() > 1:  # uneven bins (ties): say which has how many
            for x, yv, kk in zip(conf, acc, k, strict=True):
                ax.annotate(str(kk), (x, yv), textcoords="offset points", xytext=(0, 6),
                            ha="center", fontsize=6, color="0.3")  # fmt: skip
        ece = metrics.ece(pred, ds.y_test, bins, equal_mass=True)
        ax.set_title(f"{name} (ECE {ece:.3f})", fontsize=9)
        ax.set_xlim(0, 1.02)
        ax.set_ylim(0, 1.08)
        ax.grid(alpha=0.3)
    fig.supxlabel("mean confidence in the bin (top-class probability)", fontsize=9)
    fig.supylabel("accuracy in the bin (fraction correct)", fontsize=9)
    fig.suptitle(
        f"Reliability on {ds.name}: {bins} equal-mass bins of the {n} test points, one marker "
        "per bin (bars: 95% binomial intervals; dotted: perfect calibration)",
        fontsize=9,
    )
    fig.tight_layout()
    return fig


def write_report(
    root: Path, out: dict, results: dict, ds, table: str, *, floor: dict | None = None
) -> Path:
    """``report.md`` and its PNG plots (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    cfg = out["config"]
    num_boot = int(cfg.get("bootstrap") or 1000)
    rng = np.random.default_rng(cfg.get("seed", 0))
    figs = [
        (
            "metrics.png",
            "Test metrics with bootstrap intervals",
            "Each method's test accuracy and NLL with a 95% bootstrap interval over test "
            "points: methods whose intervals overlap are not distinguishable on this test set."
            if ds.task == "classification"
            else "Each method's test RMSE and NLL with a 95% bootstrap interval over test "
            "points: methods whose intervals overlap are not distinguishable on this test set.",
            _metric_figure(plt, names, results, ds, num_boot, rng),
        )
    ]
    if any("_distances" in results[m] for m in names if m != "hmc"):
        figs.append(
            (
                "distance_to_hmc.png",
                "Distance to the HMC reference",
                "How close each method's predictive distribution is to HMC's, with 95% "
                "bootstrap intervals over test points; "
                + (
                    "the orange band is the HMC-vs-HMC floor (one half of the chains against "
                    "the other), the distance at which a method is as close to HMC as HMC is "
                    "to itself."
                    if floor is not None
                    else "the reference has no chains to split, so no HMC-vs-HMC floor is drawn."
                ),
                _distance_figure(plt, names, results, ds, floor, num_boot, rng),
            )
        )
    if ds.task == "classification":
        figs.append(
            (
                "reliability.png",
                "Reliability diagrams",
                "Accuracy against confidence in equal-mass bins (each panel gives the number "
                "of test points per bin): points on the diagonal are calibrated, below it "
                "over-confident, above it under-confident.",
                _reliability_figure(plt, names, results, ds),
            )
        )
        fig, ax = plt.subplots(figsize=(6, 3.5))
        bins = np.linspace(0, np.log(ds.num_classes), 30)
        for name in names:
            # matplotlib's stub types bins as int | Sequence[float] | str, though hist takes
            # any array-like (an ndarray is not a typing.Sequence)
            ax.hist(
                _entropy(results[name]["_pred"]),
                bins=bins,  # type: ignore[arg-type]
                histtype="step",
                lw=1.5,
                label=name,
            )
        ax.set(
            xlabel="predictive entropy (nats)",
            ylabel="test points",
            yscale="log",
            title="Predictive entropy on the test set",
        )
        ax.legend(fontsize=8)
        figs.append(
            (
                "entropy.png",
                "Predictive entropy",
                "How uncertain each method's averaged prediction is on the test points "
                "(0: certain; log C: uniform over the classes).",
                fig,
            )
        )
    else:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for name in names:
            ax.hist(
                results[name]["_pred"][:, 1] * ds.y_scale,
                bins=30,
                histtype="step",
                lw=1.5,
                label=name,
            )
        ax.set(
            xlabel="predictive std (original units of y)",
            ylabel="test points",
            title="Predictive standard deviation on the test set",
        )
        ax.legend(fontsize=8)
        figs.append(
            (
                "predictive_std.png",
                "Predictive standard deviation",
                "The spread of each method's predictive distribution over the test points.",
                fig,
            )
        )
    for fname, _, _, fig in figs:
        fig.savefig(root / fname, dpi=110, bbox_inches="tight")
        plt.close(fig)
    reference = f"Reference: `{out['reference']}`." if out["reference"] else "No HMC reference."
    text = [
        f"# Inference methods compared on {out['dataset']} ({out['model']}, "
        f"{out['num_parameters']} parameters)",
        "",
        f"{out['num_train']} training and {out['num_test']} test examples; the same NumPyro "
        f"model, prior (weight decay {cfg['weight_decay']}) and temperature "
        f"({cfg['temperature']}) for every method. Predictions are Bayesian model averages "
        f"over each method's draws or members. {reference}",
        "",
        table,
        "",
    ]
    text += _hmc_reading(out)
    for fname, title, caption, _ in figs:
        text += [f"## {title}", "", caption, "", f"![{title}]({fname})", ""]
    path = root / "report.md"
    path.write_text("\n".join(text))
    return path
