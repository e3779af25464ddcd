"""``compare``: every inference method on one model and dataset, measured against HMC.

The paper's central comparison (Izmailov et al. 2021, Sec. 9) at a size that runs on a
laptop: multi-chain full-batch HMC as the reference, then SGD, a deep ensemble, SGLD,
SGHMC, cyclical preconditioned SGHMC and mean-field VI on the *same* NumPyro model. Each
method gets its own run directory under ``dir`` (so each can be resumed, diagnosed or
used as a ``--reference`` on its own); the comparison adds:

* ``compare.json``: per method accuracy, NLL, ECE (regression: RMSE, NLL), agreement and
  total variation to HMC (regression: W2 and W1), training and wall time; HMC's
  function-space R-hat and ESS (``ppl_bnn.diagnostics.diagnose_runs``);
* ``report.md`` with PNG plots: reliability diagrams, agreement/TV bars, histograms of
  the predictive entropy on the test set (regression: distance bars and predictive std).

Defaults target about five minutes on two CPU cores with the embedded ``digits`` data and
a one-hidden-layer MLP (``mlp_regression_small``: 50 ReLU units). HMC at this size is a
short reference: read its R-hat before reading the distances to it.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    load_reference,
    run_predictions,
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
        None, "an existing HMC run directory to compare against instead of running HMC"
    )
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


def _method_configs(cfg: CompareConfig, reference: str | None) -> dict[str, Any]:
    """The configuration of every method, sharing the model, data, prior and temperature."""
    c = lambda name: _common(cfg, name)  # noqa: E731
    mb = {"batch_size": cfg.batch_size, "reference": reference}
    sgmcmc = {
        **mb,
        "num_epochs": cfg.sgmcmc_num_epochs,
        "num_burnin_epochs": cfg.sgmcmc_num_burnin_epochs,
        "ensemble_freq": cfg.sgmcmc_ensemble_freq,
        "num_chains": cfg.sgmcmc_num_chains,
        "eval_freq": cfg.sgmcmc_num_epochs,
        "save_freq": cfg.sgmcmc_num_epochs,
    }
    sgd = {
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
            from ppl_bnn.driver.checkpoint import latest_checkpoint

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
    out = {
        "dataset": ds.name,
        "task": ds.task,
        "model": cfg.model_name,
        "num_parameters": problem.logdensity.num_parameters(),
        "num_train": int(ds.x_train.shape[0]),
        "num_test": int(ds.x_test.shape[0]),
        "reference": reference,
        "hmc_function_space": rhat,
        "methods": {
            k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
            for k, v in results.items()
        },
        "config": dataclasses.asdict(cfg),
    }
    (root / "compare.json").write_text(json.dumps(out, indent=2, default=float))
    table = format_table(out)
    write(table)
    write_report(root, out, results, ds, table)
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
            "(issue 9 found that an independent BlackJAX NUTS run on the same model gives "
            "the same predictive NLL); a short run adds Monte Carlo error: read the R-hat line."
        )
    lines += [
        "",
        "`ppl-bnn reproduce` chooses the prior variance on a validation split carved from "
        "the training data (never the test data), uses that prior for every method, and "
        "reports each of the paper's findings with its uncertainty (docs/findings.md).",
        "",
    ]
    return lines


def write_report(root: Path, out: dict, results: dict, ds, table: str) -> Path:
    """``report.md`` and its PNG plots (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(results)
    figs = []
    if ds.task == "classification":
        fig, ax = plt.subplots(figsize=(5, 5))
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        for name in names:
            c = metrics.calibration_curve(results[name]["_pred"], ds.y_test, 10, equal_mass=False)
            keep = c["proportion"] > 0
            ax.plot(c["confidence"][keep], c["accuracy"][keep], "o-", ms=3, label=name)
        ax.set(xlabel="confidence", ylabel="accuracy", title="reliability (10 equal-width bins)")
        ax.legend(fontsize=8)
        figs.append(("reliability.png", "Reliability diagrams", fig))

        fig, ax = plt.subplots(figsize=(6, 3.5))
        bins = np.linspace(0, np.log(ds.num_classes), 30)
        for name in names:
            ax.hist(
                _entropy(results[name]["_pred"]), bins=bins, histtype="step", lw=1.5, label=name
            )
        ax.set(
            xlabel="predictive entropy (nats)",
            ylabel="test points",
            yscale="log",
            title="predictive entropy on the test set",
        )
        ax.legend(fontsize=8)
        figs.append(("entropy.png", "Predictive entropy", fig))
        keys = [("agreement", "agreement with HMC"), ("total_variation", "total variation to HMC")]
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
            xlabel="predictive std (original units)", ylabel="test points", title="predictive std"
        )
        ax.legend(fontsize=8)
        figs.append(("predictive_std.png", "Predictive standard deviation", fig))
        keys = [("w2", "W2 to HMC"), ("w1", "W1 to HMC")]
    rows = [(n, results[n]) for n in names if keys[0][0] in results[n]]
    if rows:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
        for ax, (key, label) in zip(axes, keys, strict=True):
            values = [r[key] for _, r in rows]
            ax.bar([n for n, _ in rows], values, color="C0")
            if key == "agreement":  # all close to 1: show the differences
                ax.set_ylim(max(0.0, min(values) - 0.05), 1.0)
            ax.set_title(label)
            ax.tick_params(axis="x", rotation=45)
        fig.tight_layout()
        figs.append(("distance_to_hmc.png", "Distance to the HMC reference", fig))
    for fname, _, fig in figs:
        fig.savefig(root / fname, dpi=110, bbox_inches="tight")
        plt.close(fig)
    cfg = out["config"]
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
    for fname, title, _ in figs:
        text += [f"## {title}", "", f"![{title}]({fname})", ""]
    path = root / "report.md"
    path.write_text("\n".join(text))
    return path
