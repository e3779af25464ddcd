"""``uci-benchmark``: full-batch MCMC on the 20 standard splits of the UCI regression sets.

The protocol (one split at a time, resumable):

1. read split ``i`` (``index_train_i.txt`` / ``index_test_i.txt``) of a dataset in the
   standard layout (``<data_dir>/<name>/data.txt``, ...);
2. carve a validation set (``val_fraction`` of the training rows, a permutation seeded by
   the split index) from the training rows; standardise inputs and targets with the
   statistics of the remaining rows;
3. for every setting of the grid -- prior variance ``1 / weight_decay`` for each
   ``weight_decays`` entry, and likelihood ``homoscedastic`` (one noise scale, learned
   as a latent variable) or ``heteroscedastic`` (the original code's two-output head) --
   sample the posterior (short chains) and score the Bayesian model average on the
   validation rows (log-likelihood per point);
4. with the best setting, standardise with the full training split, sample again (longer
   chains) and score the test rows: log-likelihood per point and RMSE, both in the
   target's **original units**. The test rows are read only in this step.

The sampler needs no per-dataset step size: ``ppl_bnn.infer(method="nuts")``, the
library's NUTS with Stan's window adaptation (step size by dual averaging per chain,
diagonal mass matrix from the warmup draws), several chains vectorised, run in memory as
compiled scans (:mod:`ppl_bnn.experiments.sampling`); ``--method`` picks another exact
sampler (``hmc``, ``mams``, ``chees``).

Every split writes ``<out>/<dataset>/split_<i>.json`` (the chosen setting, every
validation score, the test metrics, diagnostics and wall / CPU time); a rerun skips splits
whose file exists. :func:`summarise` reads the files back into the table of mean +-
standard error over splits next to the published figures (:data:`PUBLISHED`).

One module (about 600 lines) on purpose: the protocol (split, validation grid, refit,
scoring in original units) and the summary that sets its results beside the published
figures read and write the same per-split files.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PUBLISHED",
    "SAMPLER",
    "STANDARD_DATASETS",
    "UCIBenchmarkConfig",
    "best_published",
    "format_summary",
    "gaussian_mixture_ll",
    "list_datasets",
    "run_benchmark",
    "run_split",
    "summarise",
]

#: the default ``ppl_bnn.infer`` method of every fit (``--method``), in memory as
#: compiled scans.
SAMPLER = "nuts"

#: Published test log-likelihood per point and RMSE (mean +- the spread each paper printed
#: over the splits: 20, protein 5, year-prediction-msd 1, printed "± NA" and stored as NaN),
#: original units, for the ten datasets of the protocol. Sources, and how each figure was
#: checked: docs/uci.md.
#:   PBP: Hernandez-Lobato & Adams (2015), "Probabilistic Backpropagation for Scalable
#:     Learning of Bayesian Neural Networks", ICML, tables of average test RMSE and test
#:     log-likelihood; the two-decimal figures here are those reprinted in Table 1 of the
#:     deep-ensembles paper below.
#:   MC dropout: Gal & Ghahramani (2016), "Dropout as a Bayesian Approximation", ICML,
#:     Table 1 (the "original" columns of the authors' repository README, identical).
#:   Deep ensembles: Lakshminarayanan, Pritzel & Blundell (2017), "Simple and Scalable
#:     Predictive Uncertainty Estimation using Deep Ensembles", NeurIPS, Table 1 (printed as
#:     NLL; the LL is its negative).
PUBLISHED: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "pbp": {
        "test_ll": {
            "boston-housing": (-2.57, 0.09),
            "concrete": (-3.16, 0.02),
            "energy": (-2.04, 0.02),
            "kin8nm": (0.9, 0.01),
            "naval-propulsion-plant": (3.73, 0.01),
            "power-plant": (-2.84, 0.01),
            "protein-tertiary-structure": (-2.97, 0.0),
            "wine-quality-red": (-0.97, 0.01),
            "yacht": (-1.63, 0.02),
            "year-prediction-msd": (-3.6, math.nan),
        },
        "rmse": {
            "boston-housing": (3.01, 0.18),
            "concrete": (5.67, 0.09),
            "energy": (1.8, 0.05),
            "kin8nm": (0.1, 0.0),
            "naval-propulsion-plant": (0.01, 0.0),
            "power-plant": (4.12, 0.03),
            "protein-tertiary-structure": (4.73, 0.01),
            "wine-quality-red": (0.64, 0.01),
            "yacht": (1.02, 0.05),
            "year-prediction-msd": (8.88, math.nan),
        },
    },
    "mc_dropout": {
        "test_ll": {
            "boston-housing": (-2.46, 0.25),
            "concrete": (-3.04, 0.09),
            "energy": (-1.99, 0.09),
            "kin8nm": (0.95, 0.03),
            "naval-propulsion-plant": (3.8, 0.05),
            "power-plant": (-2.8, 0.05),
            "protein-tertiary-structure": (-2.89, 0.01),
            "wine-quality-red": (-0.93, 0.06),
            "yacht": (-1.55, 0.12),
            "year-prediction-msd": (-3.588, math.nan),
        },
        "rmse": {
            "boston-housing": (2.97, 0.85),
            "concrete": (5.23, 0.53),
            "energy": (1.66, 0.19),
            "kin8nm": (0.1, 0.0),
            "naval-propulsion-plant": (0.01, 0.0),
            "power-plant": (4.02, 0.18),
            "protein-tertiary-structure": (4.36, 0.04),
            "wine-quality-red": (0.62, 0.04),
            "yacht": (1.11, 0.38),
            "year-prediction-msd": (8.849, math.nan),
        },
    },
    "deep_ensembles": {
        "test_ll": {
            "boston-housing": (-2.41, 0.25),
            "concrete": (-3.06, 0.18),
            "energy": (-1.38, 0.22),
            "kin8nm": (1.2, 0.02),
            "naval-propulsion-plant": (5.63, 0.05),
            "power-plant": (-2.79, 0.04),
            "protein-tertiary-structure": (-2.83, 0.02),
            "wine-quality-red": (-0.94, 0.12),
            "yacht": (-1.18, 0.21),
            "year-prediction-msd": (-3.35, math.nan),
        },
        "rmse": {
            "boston-housing": (3.28, 1.0),
            "concrete": (6.03, 0.58),
            "energy": (2.09, 0.29),
            "kin8nm": (0.09, 0.0),
            "naval-propulsion-plant": (0.0, 0.0),
            "power-plant": (4.11, 0.17),
            "protein-tertiary-structure": (4.71, 0.06),
            "wine-quality-red": (0.64, 0.04),
            "yacht": (1.58, 0.48),
            "year-prediction-msd": (8.89, math.nan),
        },
    },
}

#: the ten datasets of the protocol (``ppl-bnn download uci`` fetches them)
STANDARD_DATASETS = tuple(PUBLISHED["pbp"]["test_ll"])


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class UCIBenchmarkConfig:
    """Flags of ``ppl-bnn uci-benchmark``."""

    out: str = _f("uci_results", "folder for the per-split result files and the summary")
    datasets: str = _f(
        "all", "comma-separated dataset folders under --data_dir, or 'all' (every folder there)"
    )
    data_dir: str | None = _f(
        None,
        "UCI folder in the standard layout (default: $PPL_BNN_UCI_DIR, else "
        "$PPL_BNN_DATA/uci, else ~/.ppl_bnn/uci, where `ppl-bnn download uci` puts them)",
    )
    splits: str = _f("all", "comma-separated split indices, or 'all' (n_splits.txt)")
    model_name: str = _f("mlp_regression_small", "architecture (one hidden layer of 50)")
    weight_decays: str = _f(
        "1,4", "prior precisions tried on validation (prior variance = 1 / weight_decay)"
    )
    likelihoods: str = _f(
        "homoscedastic,heteroscedastic",
        "likelihoods tried on validation: homoscedastic (learned noise), heteroscedastic",
    )
    val_fraction: float = _f(0.2, "share of each training split held out for validation")
    num_chains: int = _f(3, "chains of the final fit")
    num_warmup: int = _f(150, "warmup (adaptation) iterations per chain, final fit")
    num_samples: int = _f(100, "draws per chain, final fit")
    val_num_chains: int = _f(2, "chains of each validation fit")
    val_num_warmup: int = _f(100, "warmup iterations per chain, validation fits")
    val_num_samples: int = _f(50, "draws per chain, validation fits")
    max_num_doublings: int = _f(7, "NUTS tree depth limit (at most 2^d - 1 leapfrog steps)")
    large_n: int = _f(
        0,
        "training sets larger than this use --large_max_num_doublings (0, the default: none "
        "do, every size gets the same tree depth and draws, so the cost grows with the rows)",
    )
    large_max_num_doublings: int = _f(4, "NUTS tree depth limit on training sets above --large_n")
    method: str = _f(
        SAMPLER,
        "sampler of every fit, a ppl_bnn.infer method with an exact Metropolis test: "
        "nuts, hmc, mams or chees",
    )
    seed: int = _f(0, "random seed (split i uses seed + i)")
    profile: str = _f("", "'smoke': tiny sizes for tests (overrides the sizes above)")
    summarise_only: bool = _f(False, "run nothing: summarise the result files under --out")


def _apply_profile(cfg: UCIBenchmarkConfig) -> UCIBenchmarkConfig:
    if cfg.profile == "smoke":
        return dataclasses.replace(
            cfg,
            num_chains=2,
            num_warmup=10,
            num_samples=10,
            val_num_chains=2,
            val_num_warmup=10,
            val_num_samples=5,
            max_num_doublings=3,
            large_max_num_doublings=3,
        )
    if cfg.profile:
        raise ValueError(f"unknown --profile {cfg.profile!r}; choose smoke or leave it empty")
    return cfg


#: the methods the benchmark runs: exact samplers only (``mclmc`` is biased)
METHODS = ("nuts", "hmc", "mams", "chees")

#: config fields that do not change a split's result (where, which, how to report)
_NOT_RESULT = frozenset({"out", "datasets", "data_dir", "splits", "summarise_only"})


def _stale(cfg: UCIBenchmarkConfig, stored: dict[str, Any]) -> list[str]:
    """The fields of ``cfg`` that change a split's result and differ from ``stored`` (a
    split file's ``config``; a field missing there had its default)."""
    defaults = dataclasses.asdict(UCIBenchmarkConfig())
    now = dataclasses.asdict(cfg)
    return [k for k in now if k not in _NOT_RESULT and stored.get(k, defaults[k]) != now[k]]


# ---------------------------------------------------------------------------- data
def default_data_dir() -> Path:
    """The UCI folder the data code finds: ``$PPL_BNN_UCI_DIR``, else ``$PPL_BNN_DATA/uci``,
    else ``~/.ppl_bnn/uci`` (where ``ppl-bnn download uci`` puts the datasets)."""
    from ppl_bnn.data.builtin import uci_data_dir

    return uci_data_dir(None)


def list_datasets(data_dir: str | os.PathLike) -> list[str]:
    """Every folder of ``data_dir`` in the standard layout (``data.txt`` and split files)."""
    root = Path(data_dir)
    return sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and (p / "data.txt").is_file() and (p / "index_train_0.txt").is_file()
    )


def _read_raw(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    data = np.loadtxt(folder / "data.txt")
    features = np.loadtxt(folder / "index_features.txt", dtype=int, ndmin=1)
    target = int(np.loadtxt(folder / "index_target.txt", dtype=int))
    return data[:, features], data[:, target]


def _num_splits(folder: Path) -> int:
    f = folder / "n_splits.txt"
    if f.is_file():
        return int(np.loadtxt(f))
    return len(list(folder.glob("index_train_*.txt")))


def _standardise(x_fit, y_fit, *others):
    """Scale by the statistics of the fitting rows; returns arrays and (y_mean, y_std)."""
    xm, xs = x_fit.mean(0), x_fit.std(0) + 1e-6
    ym, ys = y_fit.mean(), y_fit.std() + 1e-6
    out = [((x_fit - xm) / xs).astype(np.float32), ((y_fit - ym) / ys).astype(np.float32)]
    for x, y in others:
        out += [((x - xm) / xs).astype(np.float32), ((y - ym) / ys).astype(np.float32)]
    return out, (float(ym), float(ys))


def gaussian_mixture_ll(mean: np.ndarray, std: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-point log density of ``y`` under the equal-weight mixture of ``N(mean_s, std_s^2)``
    over draws ``s`` (axis 0): the log-likelihood of the Bayesian model average."""
    from scipy.special import logsumexp

    mean, std = np.asarray(mean, np.float64), np.asarray(std, np.float64)
    lp = -0.5 * ((y - mean) / std) ** 2 - np.log(std) - 0.5 * math.log(2 * math.pi)
    return logsumexp(lp, axis=0) - math.log(mean.shape[0])


# ------------------------------------------------------------------------ sampling
def _bnn(model_name: str, likelihood: str, weight_decay: float):
    """The BNN of one grid setting: ``model_name`` with a Gaussian prior of variance
    ``1 / weight_decay`` and the named likelihood."""
    from ppl_bnn.config import CommonConfig
    from ppl_bnn.declare.bnn import bnn_model
    from ppl_bnn.declare.likelihoods import make_likelihood
    from ppl_bnn.declare.problem import build_prior
    from ppl_bnn.models import get_model

    lik = make_likelihood(likelihood)
    prior = build_prior(CommonConfig(dir="", weight_decay=weight_decay))
    return bnn_model(get_model(model_name, lik.num_outputs), prior, lik)


def _fit_and_score(cfg, likelihood, wd, x, y, x_eval, y_eval, seed, sizes) -> dict[str, Any]:
    from ppl_bnn.experiments.sampling import function_ess, sample_bnn, split_rhat

    num_chains, num_warmup, num_samples, depth = sizes
    t0, c0 = time.perf_counter(), time.process_time()
    out = sample_bnn(
        _bnn(cfg.model_name, likelihood, wd),
        x,
        y,
        x_eval,
        y_eval,
        method=cfg.method,
        num_chains=num_chains,
        num_warmup=num_warmup,
        num_samples=num_samples,
        max_num_doublings=depth,
        seed=seed,
    )
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    pred = out["pred"]  # (chain, draw, n, [mean, std])
    mean, std = pred[..., 0], pred[..., 1]
    flat = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
    ll = gaussian_mixture_ll(flat(mean), flat(std), y_eval)
    rhat, ess = split_rhat(mean), function_ess(mean)
    return {
        "ll_std": float(ll.mean()),  # standardised units
        "mse_std": float(np.mean((flat(mean).mean(0) - y_eval) ** 2)),
        "acceptance_rate": out["acceptance_rate"],
        "divergent_frac": out["divergent_frac"],
        "mean_leapfrog_steps": out["mean_leapfrog_steps"],
        "step_size": out["step_size"],
        "function_rhat_max": float(np.nanmax(rhat)),
        "function_rhat_median": float(np.nanmedian(rhat)),
        "function_ess_min": float(np.nanmin(ess)),
        "function_ess_median": float(np.nanmedian(ess)),
        "warnings": out["warnings"],
        "wall_s": wall,
        "cpu_s": cpu,
    }


def _depth(cfg: UCIBenchmarkConfig, n: int) -> int:
    capped = cfg.large_n > 0 and n > cfg.large_n
    return cfg.large_max_num_doublings if capped else cfg.max_num_doublings


def run_split(cfg: UCIBenchmarkConfig, name: str, split: int, data_dir: Path) -> dict[str, Any]:
    """Validation grid, refit, test scores of one split (nothing is written here)."""
    folder = data_dir / name
    x_all, y_all = _read_raw(folder)
    train = np.loadtxt(folder / f"index_train_{split}.txt", dtype=int)
    test = np.loadtxt(folder / f"index_test_{split}.txt", dtype=int)
    if np.intersect1d(train, test).size:
        raise ValueError(f"{name} split {split}: train and test rows overlap")
    rng = np.random.default_rng(1000 + split)
    perm = rng.permutation(train)
    n_val = max(1, int(round(cfg.val_fraction * len(train))))
    val, inner = perm[:n_val], perm[n_val:]
    t0, c0 = time.perf_counter(), time.process_time()
    seed = 1000 * (cfg.seed + split)  # fit i of the grid: seed + i; the final fit: seed + 999

    # validation: fit on `inner`, score on `val` (test rows untouched)
    (xi, yi, xv, yv), (_, ys_inner) = _standardise(
        x_all[inner], y_all[inner], (x_all[val], y_all[val])
    )
    val_depth = min(_depth(cfg, len(inner)), max(4, _depth(cfg, len(inner)) - 1))  # one fewer
    val_sizes = (cfg.val_num_chains, cfg.val_num_warmup, cfg.val_num_samples, val_depth)
    grid = []
    for i, (lik, wd) in enumerate(
        (lik, float(wd)) for lik in _csv(cfg.likelihoods) for wd in _csv(cfg.weight_decays)
    ):
        r = _fit_and_score(cfg, lik, wd, xi, yi, xv, yv, seed + i, val_sizes)
        r["val_ll"] = r["ll_std"] - math.log(ys_inner)  # original units
        grid.append({"likelihood": lik, "weight_decay": wd, **r})
    best = max(grid, key=lambda g: g["val_ll"])

    # refit on the whole training split with the chosen setting, then the test rows
    (xt, yt, xe, ye), (_, ys) = _standardise(x_all[train], y_all[train], (x_all[test], y_all[test]))
    sizes = (cfg.num_chains, cfg.num_warmup, cfg.num_samples, _depth(cfg, len(train)))
    final = _fit_and_score(
        cfg, best["likelihood"], best["weight_decay"], xt, yt, xe, ye, seed + 999, sizes
    )
    return {
        "dataset": name,
        "split": split,
        "num_train": int(len(train)),
        "num_test": int(len(test)),
        "num_validation": int(n_val),
        "chosen": {"likelihood": best["likelihood"], "weight_decay": best["weight_decay"]},
        "validation": grid,
        "test_ll": final["ll_std"] - math.log(ys),
        "rmse": math.sqrt(final["mse_std"]) * ys,
        "final": final,
        "sampler": cfg.method,
        "sizes": {"validation": val_sizes, "final": sizes},
        "wall_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
    }


def _csv(s: str) -> list[str]:
    return [p.strip() for p in str(s).split(",") if p.strip()]


def _splits(cfg: UCIBenchmarkConfig, folder: Path) -> list[int]:
    n = _num_splits(folder)
    if cfg.splits == "all":
        return list(range(n))
    out = [int(s) for s in _csv(cfg.splits)]
    bad = [s for s in out if not 0 <= s < n]
    if bad:
        raise ValueError(f"--splits {bad} out of range: {folder.name} has {n} splits")
    return out


def run_benchmark(cfg: UCIBenchmarkConfig, *, write=print) -> dict[str, Any]:
    """Every requested split of every requested dataset (skipping finished ones), then the
    summary (``summary.json``, ``summary.md``) over every result file in ``cfg.out``."""
    cfg = _apply_profile(cfg)
    if cfg.method not in METHODS:
        raise ValueError(
            f"method {cfg.method!r} is not one the benchmark runs; choose one of "
            f"{', '.join(METHODS)} (exact samplers)"
        )
    data_dir = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    if not data_dir.is_dir():
        raise FileNotFoundError(
            f"UCI folder {data_dir} does not exist: run `ppl-bnn download uci` to fetch the "
            "standard datasets there, or pass --data_dir (or set PPL_BNN_UCI_DIR)"
        )
    names = list_datasets(data_dir) if cfg.datasets == "all" else _csv(cfg.datasets)
    if not names:
        raise FileNotFoundError(f"no dataset in the standard layout under {data_dir}")
    out = Path(cfg.out)
    for name in [] if cfg.summarise_only else names:
        folder = data_dir / name
        if not (folder / "data.txt").is_file():
            raise FileNotFoundError(f"no {folder / 'data.txt'}")
        (out / name).mkdir(parents=True, exist_ok=True)
        for split in _splits(cfg, folder):
            path = out / name / f"split_{split}.json"
            if path.is_file():
                differ = _stale(cfg, json.loads(path.read_text()).get("config", {}))
                if differ:
                    raise ValueError(
                        f"{path} was written with other settings ({', '.join(differ)}): "
                        "give another --out, or delete the file to rerun that split"
                    )
                write(f"{name} split {split}: done, skipped")
                continue
            r = run_split(cfg, name, split, data_dir)
            r["config"] = dataclasses.asdict(cfg)
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(r, indent=1))
            tmp.replace(path)  # atomic: a killed run leaves no half-written result
            write(
                f"{name} split {split}: test LL {r['test_ll']:.3f}, RMSE {r['rmse']:.3f}, "
                f"chose {r['chosen']['likelihood']} wd={r['chosen']['weight_decay']:g}, "
                f"{r['wall_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU"
            )
    summary = summarise(out, data_dir)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    text = format_summary(summary) + "\n\n" + format_per_split(summary)
    (out / "summary.md").write_text(text)
    write(text)
    return summary


# ------------------------------------------------------------------------ summary
def _mean_se(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values, np.float64)
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan")
    return float(a.mean()), se


def best_published(name: str, metric: str = "test_ll") -> tuple[str, float] | None:
    """The best published figure (highest LL, lowest RMSE) and its method, if any."""
    vals = [(m, t[metric][name][0]) for m, t in PUBLISHED.items() if name in t[metric]]
    if not vals:
        return None
    pick = max if metric == "test_ll" else min
    return pick(vals, key=lambda v: v[1])


def mc_dropout_files(folder: Path) -> dict[str, Any] | None:
    """The per-split MC-dropout results shipped with the data (``mc_dropout_results/``:
    Gal's 2018 grid-search rerun, 10x epochs), as mean +- standard error and per split."""
    res = Path(folder) / "mc_dropout_results"
    ll = sorted(res.glob("test_ll_*.txt")) if res.is_dir() else []
    rmse = sorted(res.glob("test_MC_rmse_*.txt")) if res.is_dir() else []
    if not ll or not rmse:
        return None
    lls, rmses = np.loadtxt(ll[0], ndmin=1), np.loadtxt(rmse[0], ndmin=1)
    return {
        "file": f"{res.name}/{ll[0].name}",
        "test_ll": _mean_se(lls.tolist()),
        "rmse": _mean_se(rmses.tolist()),
        "per_split_test_ll": lls.tolist(),
        "per_split_rmse": rmses.tolist(),
    }


def summarise(out: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    """Mean +- standard error over the split files found under ``out``; with ``data_dir``,
    also the MC-dropout result files shipped with each dataset, split by split."""
    rows = {}
    for folder in sorted(p for p in Path(out).iterdir() if p.is_dir()):
        files = sorted(folder.glob("split_*.json"), key=lambda p: int(p.stem.split("_")[1]))
        res = [json.loads(p.read_text()) for p in files]
        if not res:
            continue
        ll, rmse = _mean_se([r["test_ll"] for r in res]), _mean_se([r["rmse"] for r in res])
        best = best_published(folder.name)
        mcd = mc_dropout_files(Path(data_dir) / folder.name) if data_dir else None
        wins = None
        if mcd is not None:
            ours = {r["split"]: r["test_ll"] for r in res}
            wins = sum(ours[i] > v for i, v in enumerate(mcd["per_split_test_ll"]) if i in ours)
            same = [v for i, v in enumerate(mcd["per_split_test_ll"]) if i in ours]
            same_rmse = [v for i, v in enumerate(mcd["per_split_rmse"]) if i in ours]
            mcd = {**mcd, "test_ll": _mean_se(same), "rmse": _mean_se(same_rmse)}
        rows[folder.name] = {
            "mc_dropout_files": mcd,
            "splits_beating_mc_dropout_files": wins,
            "beats_mc_dropout_files_ll": None if mcd is None else bool(ll[0] > mcd["test_ll"][0]),
            "num_splits": len(res),
            "test_ll": ll,
            "rmse": rmse,
            "wall_s_per_split": _mean_se([r["wall_s"] for r in res]),
            "cpu_s_per_split": _mean_se([r["cpu_s"] for r in res]),
            "max_wall_s": max(r["wall_s"] for r in res),
            "chosen": _counts(
                f"{r['chosen']['likelihood']}/wd={r['chosen']['weight_decay']:g}" for r in res
            ),
            "per_split": [
                {
                    "split": r["split"],
                    "test_ll": r["test_ll"],
                    "rmse": r["rmse"],
                    "wall_s": r["wall_s"],
                    "cpu_s": r["cpu_s"],
                    "chosen": r["chosen"],
                    "function_rhat_max": r["final"]["function_rhat_max"],
                    "function_ess_min": r["final"].get("function_ess_min", math.nan),
                    "function_ess_median": r["final"].get("function_ess_median", math.nan),
                    "divergent_frac": r["final"]["divergent_frac"],
                }
                for r in res
            ],
            "best_published": best,
            "beats_best_published_ll": None if best is None else bool(ll[0] > best[1]),
        }
    beats = [r["beats_best_published_ll"] for r in rows.values()]
    files = [r["beats_mc_dropout_files_ll"] for r in rows.values()]
    return {
        "datasets": rows,
        "num_with_mc_dropout_files": sum(b is not None for b in files),
        "num_beating_mc_dropout_files_ll": sum(bool(b) for b in files),
        "num_compared": sum(b is not None for b in beats),
        "num_beating_best_published_ll": sum(bool(b) for b in beats),
    }


def _counts(items) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[i] = out.get(i, 0) + 1
    return out


def format_summary(summary: dict[str, Any]) -> str:
    """Markdown: our figures next to PBP, MC dropout and deep ensembles."""
    pub = lambda m, metric, n: (  # noqa: E731
        "-" if n not in PUBLISHED[m][metric] else _pm(*PUBLISHED[m][metric][n])
    )
    lines = [
        "| dataset | splits | HMC test LL | PBP | MC dropout | deep ens. | beats best? "
        "| HMC RMSE | PBP | MC dropout | deep ens. | wall s/split | CPU s/split | chosen |",
        "|---|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for n, r in summary["datasets"].items():
        b = r["beats_best_published_ll"]
        lines.append(
            f"| {n} | {r['num_splits']} | {r['test_ll'][0]:.2f} ± {r['test_ll'][1]:.2f} | "
            + " | ".join(pub(m, "test_ll", n) for m in PUBLISHED)
            + f" | {'-' if b is None else ('yes' if b else 'no')} | "
            f"{_rmse(*r['rmse'])} | "
            + " | ".join(pub(m, "rmse", n) for m in PUBLISHED)
            + f" | {r['wall_s_per_split'][0]:.0f} | {r['cpu_s_per_split'][0]:.0f} | "
            + ", ".join(f"{k} ×{v}" for k, v in r["chosen"].items())
            + " |"
        )
    extra = [(n, r) for n, r in summary["datasets"].items() if r.get("mc_dropout_files")]
    if extra:
        lines += [
            "",
            "MC dropout per-split result files shipped with the data (2018 grid-search rerun, "
            "10x epochs; `mc_dropout_results/`), over the same splits as ours:",
            "",
            "| dataset | MC dropout files test LL | RMSE | HMC better on splits "
            "| HMC mean better? |",
            "|---|---:|---:|---:|:---:|",
        ]
        for n, r in extra:
            m = r["mc_dropout_files"]
            lines.append(
                f"| {n} | {m['test_ll'][0]:.2f} ± {m['test_ll'][1]:.2f} | "
                f"{m['rmse'][0]:.2f} ± {m['rmse'][1]:.2f} | "
                f"{r['splits_beating_mc_dropout_files']} of {r['num_splits']} | "
                f"{'yes' if r['beats_mc_dropout_files_ll'] else 'no'} |"
            )
    lines += [
        "",
        f"HMC's mean test log-likelihood beats the best published figure on "
        f"{summary['num_beating_best_published_ll']} of {summary['num_compared']} datasets "
        "with published figures (mean ± standard error over splits; LL per test point and "
        "RMSE in original units).",
    ]
    not_run = [n for n in STANDARD_DATASETS if n not in summary["datasets"]]
    if not_run:
        lines.append(
            f"Standard datasets with published figures not in this run: {', '.join(not_run)}."
        )
    return "\n".join(lines)


def _rmse(mean: float, se: float) -> str:
    """Two decimals; four below 0.1 (naval-propulsion-plant's RMSE is about 0.001-0.006)."""
    d = 4 if abs(mean) < 0.1 else 2
    return f"{mean:.{d}f} ± {se:.{d}f}"


def _pm(mean: float, spread: float) -> str:
    """``mean ± spread`` with two decimals, as the papers print them; ``± NA`` where none was
    printed (one split)."""
    return f"{mean:.2f} ± " + ("NA" if math.isnan(spread) else f"{spread:.2f}")


def format_per_split(summary: dict[str, Any]) -> str:
    """Markdown: every split's test LL, RMSE, wall and CPU time and chosen setting."""
    lines = [
        "| dataset | split | test LL | RMSE | wall s | CPU s | chosen | function R-hat max "
        "| function ESS min / median |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for n, r in summary["datasets"].items():
        for p in r["per_split"]:
            c = p["chosen"]
            lines.append(
                f"| {n} | {p['split']} | {p['test_ll']:.3f} | {p['rmse']:.3f} | "
                f"{p['wall_s']:.0f} | {p['cpu_s']:.0f} | "
                f"{c['likelihood']}, wd={c['weight_decay']:g} | {p['function_rhat_max']:.2f} | "
                f"{p['function_ess_min']:.0f} / {p['function_ess_median']:.0f} |"
            )
    return "\n".join(lines)
