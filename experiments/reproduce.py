"""``reproduce``: the paper's seven findings, measured at laptop size, in one report.

Izmailov, Vikram, Hoffman & Wilson (2021), "What Are Bayesian Neural Network Posteriors
Really Like?", state in their abstract seven findings. Each is a registered
:class:`Finding` here (:data:`FINDINGS`): it runs what it needs, writes its numbers
(``<out>/<name>/result.json``, tables also as CSV), a PNG figure, and a one-line verdict
against the paper's statement: **reproduced** or **not reproduced at this scale**, with
Monte Carlo (bootstrap over test points) uncertainty. ``report.md`` is rendered from those
JSON files alone (:func:`render_report`), so every number in it comes from this run.

The setting, shared by every finding (laptop scale):

* data: scikit-learn's 8x8 ``digits`` (embedded), a one-hidden-layer MLP of 50 ReLU units
  (``mlp_regression_small``); for domain shift the test images corrupted by Gaussian
  noise, Gaussian blur and rotation at five severities;
* **prior**: an isotropic Gaussian whose variance ``1 / weight_decay`` is chosen from a
  grid by the validation NLL of HMC's Bayesian model average, on a validation part carved
  from the training set (never the test set); the same prior for every method;
* HMC: full-batch NUTS with window adaptation (no hand-set step size), several chains,
  ``ppl_bnn.infer(method="nuts")`` compiled and in memory, as a user runs it;
* baselines: the project's own SGD, deep ensemble, SGLD, SGHMC and mean-field VI runners
  (``ppl_bnn.driver``), run directories in ``<out>/_runs``.

Profiles: ``default`` (under an hour on 2 CPU cores), ``quick`` (under 10 minutes) and
``smoke`` (seconds to a minute: structure only, the verdicts mean nothing at that size).
``scale="paper"`` writes the paper-scale plan instead: the named experiments of
``ppl_bnn.experiments.paper`` each finding needs and their cost from the measured
leapfrog step time.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

__all__ = [
    "FINDINGS",
    "PROFILES",
    "Finding",
    "Profile",
    "ReproduceConfig",
    "fmt",
    "paper_plan",
    "render_report",
    "run_reproduce",
]

MODEL = "mlp_regression_small"
CORRUPTIONS = {
    # severity 1..5; images are in normalised units (pixel std 1)
    "noise": (0.25, 0.5, 0.75, 1.0, 1.5),  # std of added Gaussian noise
    "blur": (0.4, 0.6, 0.8, 1.0, 1.3),  # Gaussian blur sigma, pixels
    "rotation": (10.0, 20.0, 30.0, 45.0, 60.0),  # degrees, random sign
}


@dataclass(frozen=True)
class Profile:
    """Sizes of one reproduce profile."""

    n_train: int
    n_test: int
    val_fraction: float
    num_chains: int
    num_warmup: int
    num_samples: int
    max_num_doublings: int
    weight_decays: tuple[float, ...]  # validation grid (prior precision)
    temperatures: tuple[float, ...]
    prior_variances: tuple[float, ...]  # finding 4, scale sweep
    families: tuple[str, ...]
    severities: tuple[int, ...]
    num_augmented_copies: int
    sgd_epochs: int
    ensemble_size: int
    sgmcmc_epochs: int
    sgmcmc_burnin: int
    sgmcmc_every: int
    vi_epochs: int
    batch_size: int
    surface_grid: int
    num_bootstrap: int
    num_weight_coords: int


PROFILES = {
    "smoke": Profile(
        n_train=60,
        n_test=40,
        val_fraction=0.25,
        num_chains=3,
        num_warmup=6,
        num_samples=6,
        max_num_doublings=2,
        weight_decays=(1.0,),
        temperatures=(1.0, 0.1),
        prior_variances=(0.1, 1.0),
        families=("gaussian", "laplace"),
        severities=(1, 5),
        num_augmented_copies=1,
        sgd_epochs=2,
        ensemble_size=2,
        sgmcmc_epochs=4,
        sgmcmc_burnin=2,
        sgmcmc_every=1,
        vi_epochs=2,
        batch_size=20,
        surface_grid=4,
        num_bootstrap=100,
        num_weight_coords=8,
    ),
    "quick": Profile(
        n_train=400,
        n_test=360,
        val_fraction=0.2,
        num_chains=3,
        num_warmup=60,
        num_samples=60,
        max_num_doublings=5,
        weight_decays=(1.0, 3.0, 10.0),
        temperatures=(3.0, 1.0, 0.3, 0.1, 0.03),
        prior_variances=(0.03, 0.1, 0.3, 1.0),
        families=("gaussian", "mixture_gaussian", "logistic", "laplace", "student_t"),
        severities=(1, 2, 3, 4, 5),
        num_augmented_copies=1,
        sgd_epochs=40,
        ensemble_size=5,
        sgmcmc_epochs=120,
        sgmcmc_burnin=40,
        sgmcmc_every=4,
        vi_epochs=40,
        batch_size=80,
        surface_grid=12,
        num_bootstrap=1000,
        num_weight_coords=64,
    ),
    "default": Profile(
        n_train=1437,
        n_test=360,
        val_fraction=0.2,
        num_chains=3,
        num_warmup=100,
        num_samples=100,
        max_num_doublings=6,
        weight_decays=(1.0, 3.0, 10.0),
        temperatures=(3.0, 1.0, 0.3, 0.1, 0.03),
        prior_variances=(0.03, 0.1, 0.3, 1.0),
        families=("gaussian", "mixture_gaussian", "logistic", "laplace", "student_t"),
        severities=(1, 2, 3, 4, 5),
        num_augmented_copies=1,
        sgd_epochs=100,
        ensemble_size=5,
        sgmcmc_epochs=300,
        sgmcmc_burnin=100,
        sgmcmc_every=10,
        vi_epochs=100,
        batch_size=80,
        surface_grid=20,
        num_bootstrap=1000,
        num_weight_coords=128,
    ),
}


@dataclass
class ReproduceConfig:
    out: str = "reproduce_report"
    profile: str = "default"  # default | quick | smoke
    only: tuple[str, ...] = ()
    scale: str = "laptop"  # laptop | paper
    seed: int = 0


# ------------------------------------------------------------------ formatting
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


# --------------------------------------------------------------------- findings
@dataclass(frozen=True)
class Finding:
    """One of the paper's findings: ``run(ctx)`` returns its result dictionary."""

    index: int
    name: str
    title: str
    paper: str  # the paper's statement (abstract / README of the original code)
    run: Callable[[Context], dict[str, Any]]
    paper_experiments: tuple[str, ...] = ()


FINDINGS: dict[str, Finding] = {}


def register_finding(finding: Finding) -> Finding:
    if finding.name in FINDINGS:
        raise ValueError(f"finding {finding.name!r} is already registered")
    FINDINGS[finding.name] = finding
    return finding


# ----------------------------------------------------------------------- data
def _corrupt(x: np.ndarray, kind: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    from scipy import ndimage

    level = CORRUPTIONS[kind][severity - 1]
    bg = float(x.min())
    if kind == "noise":
        return (x + rng.normal(0.0, level, x.shape)).astype(x.dtype)
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        img = x[i, :, :, 0]
        if kind == "blur":
            out[i, :, :, 0] = ndimage.gaussian_filter(img, level, mode="nearest")
        else:
            angle = level * (1 if rng.random() < 0.5 else -1)
            out[i, :, :, 0] = ndimage.rotate(
                img, angle, reshape=False, order=1, mode="constant", cval=bg
            )
    return out


def _shift_copies(x: np.ndarray, copies: int, seed: int) -> np.ndarray:
    """Augmented copies of 8x8 digits: random translations by up to one pixel (a flip or a
    4-pixel crop would not keep an 8x8 digit a digit), background-padded."""
    rng = np.random.default_rng(seed + 7)
    bg = float(x.min())
    out = [x]
    for _ in range(copies):
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=bg)
        dx, dy = rng.integers(0, 3, len(x)), rng.integers(0, 3, len(x))
        out.append(
            np.stack(
                [
                    padded[i, a : a + 8, b : b + 8]
                    for i, (a, b) in enumerate(zip(dx, dy, strict=True))
                ]
            )
        )
    return np.concatenate(out).astype(x.dtype)


def _bootstrap_mean(values: np.ndarray, B: int, seed: int) -> tuple[float, float, float, float]:
    """Mean, bootstrap standard error and 95% interval of the mean over test points."""
    rng = np.random.default_rng(seed)
    v = np.asarray(values, np.float64)
    idx = rng.integers(0, len(v), (B, len(v)))
    means = v[idx].mean(1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(v.mean()), float(means.std()), float(lo), float(hi)


def _point_nll(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    return -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))


def _point_acc(probs: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (probs.argmax(-1) == y).astype(np.float64)


# ------------------------------------------------------------------ HMC sampler
class _Sampler:
    """The digits BNN of one prior, sampled with ``ppl_bnn.infer`` (window-adapted NUTS,
    compiled, in memory; :func:`ppl_bnn.experiments.sampling.sample_bnn`); its log
    density and the flattening of its positions serve the posterior surface."""

    _cache: dict[tuple, _Sampler] = {}

    @classmethod
    def get(cls, family: str, weight_decay: float, x_shape, sizes, m: int):
        key = (family, weight_decay, tuple(x_shape), sizes, m)
        if key not in cls._cache:
            cls._cache[key] = cls(*key)
        return cls._cache[key]

    def __init__(self, family, weight_decay, x_shape, sizes, m):
        import jax
        from jax.flatten_util import ravel_pytree

        from ppl_bnn.config import CommonConfig
        from ppl_bnn.declare.bnn import bnn_model
        from ppl_bnn.declare.likelihoods import Categorical
        from ppl_bnn.declare.problem import build_prior
        from ppl_bnn.density.logdensity import LogDensity
        from ppl_bnn.density.sharding import make_mesh
        from ppl_bnn.models import get_model

        self.sizes = sizes
        kw = {"student_t_df": 5.0} if family == "student_t" else {}
        # Student-t (df 5) at equal variance: scale^2 = v (df - 2) / df
        wd = weight_decay * 5.0 / 3.0 if family == "student_t" else weight_decay
        prior = build_prior(CommonConfig(dir="", weight_decay=wd, prior_family=family, **kw))
        self.model = bnn_model(get_model(MODEL, 10), prior, Categorical())
        example = (np.zeros((2, *x_shape[1:]), np.float32), np.zeros(2, np.int32))
        ld = LogDensity(self.model, make_mesh(1), example)
        self.logdensity = ld
        flat0, self.unravel = ravel_pytree(ld.init(jax.random.key(0)))
        self.coords = np.random.default_rng(0).choice(flat0.shape[0], min(m, flat0.shape[0]), False)

    def __call__(self, seed: int, x, y, x_eval, y_eval, temperature=1.0) -> dict[str, Any]:
        import jax
        from jax.flatten_util import ravel_pytree

        from ppl_bnn.declare.problem import tempered
        from ppl_bnn.experiments.sampling import sample_bnn

        chains, warmup, samples, depth = self.sizes
        out = sample_bnn(
            tempered(self.model, temperature),
            x,
            y,
            x_eval,
            y_eval,
            num_chains=chains,
            num_warmup=warmup,
            num_samples=samples,
            max_num_doublings=depth,
            seed=seed,
        )
        ld = self.logdensity
        latent = {k: out["samples"][k] for k in ld.latent_sites}  # (C, S, ...) constrained
        c, s = next(iter(latent.values())).shape[:2]
        flat_draws = jax.vmap(jax.vmap(lambda q: ravel_pytree(ld.unconstrain(q))[0]))(latent)
        return {
            "probs": out["pred"],  # (C, S, n, 10)
            "coords": np.asarray(flat_draws, np.float64)[..., self.coords],  # (C, S, m)
            "final_position": jax.tree.map(lambda a: np.asarray(a)[:, -1], dict(latent)),
            "acceptance_rate": out["acceptance_rate"],
            "divergent_frac": out["divergent_frac"],
            "mean_leapfrog_steps": out["mean_leapfrog_steps"],
            "warnings": out["warnings"],
            "draws": (c, s),
        }


# ---------------------------------------------------------------------- context
class _BaselineArgs(TypedDict):
    """What every baseline shares: the problem, the seed, the minibatch."""

    dataset_name: str
    model_name: str
    weight_decay: float
    seed: int
    tabulate_freq: int
    batch_size: int


class _SGDSchedule(TypedDict):
    """SGD's and each ensemble member's epochs."""

    num_epochs: int
    init_step_size: float
    eval_freq: int
    save_freq: int


class _SGMCMCSchedule(TypedDict):
    """The epochs and chains of SGLD and SGHMC."""

    num_epochs: int
    num_burnin_epochs: int
    ensemble_freq: int
    num_chains: int
    eval_freq: int
    save_freq: int


class Context:
    """Shared, lazily computed runs: data, the validated prior, the main HMC run and the
    baselines; every finding reads what it needs."""

    current: str  # the finding being run (set by run_reproduce): its figures' folder

    def __init__(self, cfg: ReproduceConfig, out: Path, run_id: str, write=print):
        self.cfg, self.out, self.run_id, self.write = cfg, out, run_id, write
        self.p = PROFILES[cfg.profile]

    @property
    def sizes(self) -> tuple[int, int, int, int]:
        p = self.p
        return (p.num_chains, p.num_warmup, p.num_samples, p.max_num_doublings)

    @cached_property
    def data(self) -> dict[str, Any]:
        from ppl_bnn.data.builtin import load_digits

        ds = load_digits()
        p = self.p
        x_tr, y_tr = ds.x_train[: p.n_train], ds.y_train[: p.n_train]
        x_te, y_te = ds.x_test[: p.n_test], ds.y_test[: p.n_test]
        perm = np.random.default_rng(self.cfg.seed).permutation(len(x_tr))
        n_val = int(round(p.val_fraction * len(x_tr)))
        rng = np.random.default_rng(self.cfg.seed + 1)
        shifted, slices, start = [x_te], {"clean": (0, len(x_te))}, len(x_te)
        for kind in CORRUPTIONS:
            for s in p.severities:
                shifted.append(_corrupt(x_te, kind, s, rng))
                slices[f"{kind}_{s}"] = (start, start + len(x_te))
                start += len(x_te)
        return {
            "x_train": x_tr,
            "y_train": y_tr,
            "x_test": x_te,
            "y_test": y_te,
            "x_inner": x_tr[perm[n_val:]],
            "y_inner": y_tr[perm[n_val:]],
            "x_val": x_tr[perm[:n_val]],
            "y_val": y_tr[perm[:n_val]],
            "x_eval": np.concatenate(shifted),
            "y_eval": np.tile(y_te, len(shifted)),
            "slices": slices,
        }

    def hmc(
        self,
        x,
        y,
        x_eval,
        y_eval,
        *,
        weight_decay,
        family="gaussian",
        temperature=1.0,
        seed_offset=0,
        sizes=None,
    ) -> dict[str, Any]:
        sizes = sizes or self.sizes
        sampler = _Sampler.get(family, weight_decay, x.shape, sizes, self.p.num_weight_coords)
        t0 = time.perf_counter()
        r = sampler(self.cfg.seed + seed_offset, x, y, x_eval, y_eval, temperature)
        r["wall_s"] = time.perf_counter() - t0
        r["sampler"] = sampler
        return r

    @cached_property
    def prior(self) -> dict[str, Any]:
        """The prior variance chosen by HMC's validation NLL (test data never read)."""
        d = self.data
        grid = []
        for i, wd in enumerate(self.p.weight_decays):
            r = self.hmc(
                d["x_inner"],
                d["y_inner"],
                d["x_val"],
                d["y_val"],
                weight_decay=wd,
                seed_offset=100 + i,
            )
            bma = r["probs"].mean((0, 1))
            grid.append(
                {
                    "weight_decay": wd,
                    "prior_variance": 1.0 / wd,
                    "val_nll": float(_point_nll(bma, d["y_val"]).mean()),
                    "val_accuracy": float(_point_acc(bma, d["y_val"]).mean()),
                    "wall_s": r["wall_s"],
                }
            )
            self.write(f"  prior: weight_decay {wd:g}: validation NLL {grid[-1]['val_nll']:.4f}")
        best = min(grid, key=lambda g: g["val_nll"])
        return {
            "grid": grid,
            "weight_decay": best["weight_decay"],
            "prior_variance": 1 / best["weight_decay"],
        }

    @property
    def wd(self) -> float:
        return self.prior["weight_decay"]

    @cached_property
    def main_hmc(self) -> dict[str, Any]:
        d = self.data
        self.write(f"  main HMC run (weight_decay {self.wd:g}) on clean and shifted test inputs")
        return self.hmc(d["x_train"], d["y_train"], d["x_eval"], d["y_eval"], weight_decay=self.wd)

    def slice(self, probs: np.ndarray, name: str) -> np.ndarray:
        a, b = self.data["slices"][name]
        return probs[..., a:b, :]

    @cached_property
    def baselines(self) -> dict[str, dict[str, Any]]:
        """Member predictions ``(m, n_eval, 10)`` of SGD, ensemble, SGLD, SGHMC, MFVI."""
        from ppl_bnn.config import EnsembleConfig, SGDConfig, SGMCMCConfig, VIConfig
        from ppl_bnn.data import Dataset
        from ppl_bnn.declare.problem import build_problem
        from ppl_bnn.driver import RUNNERS
        from ppl_bnn.evaluation.reference import run_predictions
        from ppl_bnn.store.checkpoint import latest_checkpoint

        d, p = self.data, self.p
        root = self.out / "_runs"
        ds = Dataset(
            "digits",
            d["x_train"],
            d["y_train"],
            d["x_eval"],
            np.tile(d["y_test"], len(d["slices"])),
            "classification",
            num_classes=10,
        )
        common = _BaselineArgs(
            dataset_name="digits",
            model_name=MODEL,
            weight_decay=self.wd,
            seed=self.cfg.seed,
            tabulate_freq=100000,
            batch_size=p.batch_size,
        )
        sgd = _SGDSchedule(
            num_epochs=p.sgd_epochs,
            init_step_size=1e-4,
            eval_freq=p.sgd_epochs,
            save_freq=p.sgd_epochs,
        )
        sgmcmc = _SGMCMCSchedule(
            num_epochs=p.sgmcmc_epochs,
            num_burnin_epochs=p.sgmcmc_burnin,
            ensemble_freq=p.sgmcmc_every,
            num_chains=2,
            eval_freq=p.sgmcmc_epochs,
            save_freq=p.sgmcmc_epochs,
        )
        sgd_cfg = SGDConfig(dir=str(root / "sgd"), **common, **sgd)
        # mfvi's config is made when it runs: its mean starts from SGD's last checkpoint
        configs: dict[str, tuple[str, SGDConfig | None]] = {
            "sgd": ("sgd", sgd_cfg),
            "ensemble": (
                "ensemble",
                EnsembleConfig(
                    dir=str(root / "ensemble"), **common, **sgd, ensemble_size=p.ensemble_size
                ),
            ),
            "sgld": (
                "sgmcmc",
                SGMCMCConfig(
                    dir=str(root / "sgld"),
                    **common,
                    **sgmcmc,
                    init_step_size=1e-4,
                    momentum_decay=0.0,
                ),
            ),
            "sghmc": (
                "sgmcmc",
                SGMCMCConfig(
                    dir=str(root / "sghmc"),
                    **common,
                    **sgmcmc,
                    init_step_size=1e-5,
                    momentum_decay=0.9,
                ),
            ),
            "mfvi": ("vi", None),
        }
        problem = build_problem(sgd_cfg, dataset=ds)
        out = {}
        for name, (runner, mcfg) in configs.items():
            if mcfg is None:  # mfvi
                mcfg = VIConfig(
                    dir=str(root / "mfvi"),
                    **common,
                    num_epochs=p.vi_epochs,
                    init_step_size=1e-3,
                    vi_sigma_init=1e-2,
                    vi_ensemble_size=20,
                    eval_freq=p.vi_epochs,
                    save_freq=p.vi_epochs,
                    mean_init_checkpoint=str(latest_checkpoint(root / "sgd" / "checkpoints")),
                )
            self.write(f"  baseline {name}")
            t0 = time.perf_counter()
            RUNNERS[runner][1](mcfg, problem=problem, progress=False)
            out[name] = {
                "members": run_predictions(mcfg.dir)[:, : ds.x_test.shape[0]],
                "wall_s": time.perf_counter() - t0,
            }
        return out


# -------------------------------------------------------------- the findings
def _table(columns: list[str], rows: list[list[Any]]) -> dict[str, Any]:
    return {"columns": columns, "rows": rows}


def _metrics(ctx: Context, probs: np.ndarray, y: np.ndarray, seed: int) -> dict[str, float]:
    from ppl_bnn.evaluation.metrics import ece

    B = ctx.p.num_bootstrap
    acc, acc_se, _, _ = _bootstrap_mean(_point_acc(probs, y), B, seed)
    nll, nll_se, _, _ = _bootstrap_mean(_point_nll(probs, y), B, seed)
    return {
        "accuracy": acc,
        "accuracy_se": acc_se,
        "nll": nll,
        "nll_se": nll_se,
        "ece": float(ece(probs, y)),
    }


def _diff(ctx, a: np.ndarray, b: np.ndarray, seed: int) -> dict[str, float]:
    m, se, lo, hi = _bootstrap_mean(a - b, ctx.p.num_bootstrap, seed)
    return {"diff": m, "se": se, "ci_low": lo, "ci_high": hi}


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


def finding_cold(ctx: Context) -> dict[str, Any]:
    d, p = ctx.data, ctx.p
    y = d["y_test"]
    x_aug = _shift_copies(d["x_train"], p.num_augmented_copies, ctx.cfg.seed)
    y_aug = np.tile(d["y_train"], p.num_augmented_copies + 1)
    curves: dict[str, dict[float, np.ndarray]] = {"no augmentation": {}, "augmentation": {}}
    rows: list[list[Any]] = []
    numbers: dict[str, Any] = {"temperatures": list(p.temperatures), "runs": {}}
    for setting, (x, yy) in (
        ("no augmentation", (d["x_train"], d["y_train"])),
        ("augmentation", (x_aug, y_aug)),
    ):
        for T in p.temperatures:
            if setting == "no augmentation" and T == 1.0:
                probs = ctx.slice(ctx.main_hmc["probs"], "clean").mean((0, 1))
            else:
                r = ctx.hmc(
                    x,
                    yy,
                    d["x_test"],
                    d["y_test"],
                    weight_decay=ctx.wd,
                    temperature=T,
                    seed_offset=300,
                )
                probs = r["probs"].mean((0, 1))
            curves[setting][T] = probs
            m = _metrics(ctx, probs, y, seed=int(T * 1000) % 9973)
            numbers["runs"][f"{setting} T={T:g}"] = {"temperature": T, **m}
            rows.append([setting, T, m["accuracy"], m["nll"], m["nll_se"]])
            ctx.write(f"  cold posterior: {setting}, T={T:g}: NLL {m['nll']:.4f}")
    effects: dict[str, dict[str, Any]] = {}
    for setting, c in curves.items():
        colder = [T for T in c if T < 1.0]
        if 1.0 not in c or not colder:
            continue
        best = min(colder, key=lambda T: _point_nll(c[T], y).mean())
        dd = _diff(ctx, _point_nll(c[best], y), _point_nll(c[1.0], y), 5)
        effects[setting] = {
            "best_cold_temperature": best,
            "nll_best_cold_minus_t1": dd,
            "cold_effect": bool(dd["ci_high"] < 0),
        }
    numbers["effects"] = effects
    numbers["criteria"] = {"ci": 95}
    ok = (not effects.get("no augmentation", {}).get("cold_effect", True)) and effects.get(
        "augmentation", {}
    ).get("cold_effect", False)
    parts = [
        f"{s}: NLL at the best colder T ({fmt(e['best_cold_temperature'])}) minus at T "
        f"{fmt(1.0)}: "
        f"{fmt(e['nll_best_cold_minus_t1']['diff'])} "
        f"(95% CI {fmt(e['nll_best_cold_minus_t1']['ci_low'])} "
        f"to {fmt(e['nll_best_cold_minus_t1']['ci_high'])})"
        for s, e in effects.items()
    ]
    _plot_curves(
        ctx,
        "cold",
        {s: (list(c), [_point_nll(c[T], y).mean() for T in c]) for s, c in curves.items()},
        "temperature T",
        "test NLL",
        logx=True,
    )
    return {
        "verdict": "reproduced" if ok else "not reproduced at this scale",
        "reason": "; ".join(parts),
        "numbers": numbers,
        "table": _table(["setting", "T", "accuracy", "NLL", "NLL SE"], rows),
        "figure": "cold.png",
    }


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


def finding_rhat(ctx: Context) -> dict[str, Any]:
    import jax
    from jax.flatten_util import ravel_pytree

    from ppl_bnn.experiments.sampling import split_rhat as _split_rhat

    d, p = ctx.data, ctx.p
    r = ctx.main_hmc
    probs = ctx.slice(r["probs"], "clean")  # (C, S, n, 10)
    f_rhat = _split_rhat(probs.reshape(probs.shape[:2] + (-1,)))
    keep = np.isfinite(f_rhat) & (probs.reshape(probs.shape[:2] + (-1,)).std((0, 1)) > 1e-6)
    f_rhat = f_rhat[keep]
    w_rhat = _split_rhat(r["coords"])
    w_rhat = w_rhat[np.isfinite(w_rhat)]
    thr = 1.1
    numbers: dict[str, Any] = {
        "function_space": {
            "median_rhat": float(np.median(f_rhat)),
            "frac_rhat_gt_threshold": float(np.mean(f_rhat > thr)),
            "count": int(f_rhat.size),
        },
        "weight_space": {
            "median_rhat": float(np.median(w_rhat)),
            "frac_rhat_gt_threshold": float(np.mean(w_rhat > thr)),
            "count": int(w_rhat.size),
        },
        "chains": p.num_chains,
        "draws_per_chain": p.num_samples,
        "criteria": {"rhat_threshold": thr},
    }
    ok = numbers["function_space"]["median_rhat"] < thr < numbers["weight_space"]["median_rhat"]
    # posterior surface through the final states of three chains (T = 1, full training set)
    sampler = r["sampler"]
    finals = jax.tree.map(lambda a: np.asarray(a), r["final_position"])
    flat = [np.asarray(ravel_pytree({k: v[c] for k, v in finals.items()})[0]) for c in range(3)]
    g = p.surface_grid
    ab, lp, marks = _surface(sampler, flat, d["x_train"], d["y_train"], g)
    numbers["surface"] = {
        "grid_size": g,
        "max_log_posterior": float(np.nanmax(lp)),
        "min_log_posterior": float(np.nanmin(lp)),
    }
    _plot_rhat(ctx, f_rhat, w_rhat, ab, lp, marks, thr)
    return {
        "verdict": "reproduced" if ok else "not reproduced at this scale",
        "reason": (
            f"median split-R-hat in function space {fmt(numbers['function_space']['median_rhat'])} "
            f"({fmt(numbers['function_space']['frac_rhat_gt_threshold'])} above {fmt(thr)}), "
            f"in weight "
            f"space {fmt(numbers['weight_space']['median_rhat'])} "
            f"({fmt(numbers['weight_space']['frac_rhat_gt_threshold'])} above {fmt(thr)})"
        ),
        "numbers": numbers,
        "table": _table(
            ["space", "median R-hat", "share above threshold", "count"],
            [
                [
                    "function",
                    numbers["function_space"]["median_rhat"],
                    numbers["function_space"]["frac_rhat_gt_threshold"],
                    numbers["function_space"]["count"],
                ],
                [
                    "weight",
                    numbers["weight_space"]["median_rhat"],
                    numbers["weight_space"]["frac_rhat_gt_threshold"],
                    numbers["weight_space"]["count"],
                ],
            ],
        ),
        "figure": "rhat.png",
    }


def _surface(sampler, flat, x, y, g):
    """Log posterior on the plane through three parameter vectors, as the original
    ``make_posterior_surface_plot.py``: ``theta1 + a (theta2 - theta1) + b v``, with ``v``
    the part of ``theta3 - theta1`` orthogonal to ``theta2 - theta1``; a, b in
    [-0.25, 1.25]. Returns the grid, the values and the three points' coordinates."""
    import jax
    import jax.numpy as jnp

    from ppl_bnn.density.sharding import Batch

    t1, t2, t3 = (np.asarray(f, np.float64) for f in flat)
    u = t2 - t1
    w = t3 - t1
    proj = float(w @ u / (u @ u))
    v = w - proj * u
    ab = np.stack(
        np.meshgrid(np.linspace(-0.25, 1.25, g), np.linspace(-0.25, 1.25, g), indexing="ij"), -1
    )
    ld, unravel = sampler.logdensity, sampler.unravel
    batch = Batch(jnp.asarray(x), jnp.asarray(y), jnp.ones(len(x), jnp.float32), len(x))
    origin, dirs = jnp.asarray(t1, jnp.float32), jnp.asarray(np.stack([u, v]), jnp.float32)
    f = jax.jit(lambda c: jax.lax.map(lambda z: ld(unravel(origin + z @ dirs), batch), c))
    lp = np.asarray(f(jnp.asarray(ab.reshape(-1, 2), jnp.float32))).reshape(g, g)
    marks = np.array([[0.0, 0.0], [1.0, 0.0], [proj, 1.0]])
    return ab, lp, marks


# -------------------------------------------------------------------- figures
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fig_path(ctx: Context, stem: str) -> Path:
    return ctx.out / ctx.current / f"{stem}.png"


def _plot_bars(ctx, stem, names, values, errors, ylabel):
    plt = _plt()
    names = list(names)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(names, values, yerr=errors, color="C0", capsize=3)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(_fig_path(ctx, stem), dpi=100)
    plt.close(fig)


def _plot_curves(ctx, stem, curves, xlabel, ylabel, logx=False):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, (xs, ys) in curves.items():
        ax.plot(xs, ys, "o-", label=label)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(_fig_path(ctx, stem), dpi=100)
    plt.close(fig)


def _plot_rhat(ctx, f_rhat, w_rhat, ab, lp, marks, thr):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    bins = np.linspace(1.0, max(2.0, float(np.nanmax(np.r_[f_rhat, w_rhat, [1.0]]))), 40)
    axes[0].hist(np.clip(f_rhat, 1, bins[-1]), bins=bins, alpha=0.6, label="function space")
    axes[0].hist(np.clip(w_rhat, 1, bins[-1]), bins=bins, alpha=0.6, label="weight space")
    axes[0].axvline(thr, color="k", ls=":")
    axes[0].set(xlabel="split R-hat", ylabel="count", title="R-hat")
    axes[0].legend(fontsize=8)
    finite = np.where(np.isfinite(lp), lp, np.nan)
    axes[1].contour(ab[..., 0], ab[..., 1], finite)
    cs = axes[1].contourf(ab[..., 0], ab[..., 1], finite, alpha=0.55)
    axes[1].plot(marks[:, 0], marks[:, 1], "ro", ms=8, markeredgecolor="k")
    fig.colorbar(cs, ax=axes[1])
    axes[1].set(title="log posterior through three chains' final states", xlabel="u", ylabel="v")
    fig.tight_layout()
    fig.savefig(_fig_path(ctx, "rhat"), dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------ registry
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
register_finding(
    Finding(
        3,
        "cold_posterior",
        "No cold-posterior effect without data augmentation",
        "posterior tempering is not needed for near-optimal performance, with little evidence "
        "for a cold posterior effect, which is largely an artifact of data augmentation",
        finding_cold,
        ("hmc_imdb_temp1", "hmc_imdb_temp0.3", "hmc_imdb_temp0.1", "hmc_imdb_temp0.03"),
    )
)
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
register_finding(
    Finding(
        7,
        "rhat",
        "Function-space R-hat is near 1, weight-space R-hat is not",
        "HMC chains mix in function space (R-hat of the predictions close to 1) while they do "
        "not in weight space (Section 5); the posterior density through three samples",
        finding_rhat,
        ("hmc_cifar10_table3", "surface_imdb"),
    )
)


# ------------------------------------------------------------------ report
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


def run_reproduce(cfg: ReproduceConfig, *, command: str = "ppl-bnn reproduce", write=print) -> Path:
    """Run the selected findings, write their JSON/CSV/PNG and ``report.md``."""
    if cfg.profile not in PROFILES:
        raise ValueError(f"unknown profile {cfg.profile!r}; choose one of {', '.join(PROFILES)}")
    unknown = [n for n in cfg.only if n not in FINDINGS]
    if unknown:
        raise ValueError(f"unknown finding(s) {unknown}; choose from {', '.join(FINDINGS)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.scale == "paper":
        path = out / "paper_plan.md"
        path.write_text(paper_plan(cfg.only or tuple(FINDINGS)))
        write(path.read_text())
        return path
    if cfg.scale != "laptop":
        raise ValueError(f"unknown --scale {cfg.scale!r}; choose laptop or paper")
    run_id = uuid.uuid4().hex[:12]
    names = list(cfg.only) or list(FINDINGS)
    ctx = Context(cfg, out, run_id, write)
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for name in names:
        f = FINDINGS[name]
        (out / name).mkdir(exist_ok=True)
        ctx.current = name
        write(f"== finding {f.index}: {f.title} ==")
        t1 = time.perf_counter()
        r = f.run(ctx)
        r = _jsonable(
            {
                "run_id": run_id,
                "index": f.index,
                "finding": name,
                "title": f.title,
                "paper": f.paper,
                **r,
                "wall_s": time.perf_counter() - t1,
                "profile": cfg.profile,
            }
        )
        (out / name / "result.json").write_text(json.dumps(r, indent=1))
        with open(out / name / "table.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(r["table"]["columns"])
            w.writerows(r["table"]["rows"])
        write(f"   verdict: {r['verdict']} ({r['reason']})")
    run = _jsonable(
        {
            "run_id": run_id,
            "profile": cfg.profile,
            "command": command,
            "findings": names,
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "cpu_count": os.cpu_count(),
            "prior": ctx.__dict__.get("prior"),
            "hidden_units": 50,
            "config": dataclasses.asdict(cfg),
        }
    )
    (out / "run.json").write_text(json.dumps(run, indent=1))
    (out / "report.md").write_text(render_report(out))
    write(f"report: {out / 'report.md'}")
    return out / "report.md"


# ---------------------------------------------------------------- paper scale
#: one full-batch leapfrog step of resnet20_frn_swish on 50k CIFAR images, one H200
#: (benchmarks/gpu_leapfrog.py, README "Costs measured"): 0.54-0.56 s
H200_LEAPFROG_S = 0.55


def paper_plan(names) -> str:
    """The paper-scale commands per finding and their cost from the measured step time."""
    from ppl_bnn.experiments import get_experiment

    hmc = get_experiment("hmc_cifar10_table3").flags  # the paper's Table 3 run
    steps = math.ceil(round(hmc["trajectory_len"] / hmc["step_size"], 6))
    it_h = steps * H200_LEAPFROG_S / 3600
    chain_its, chains = int(hmc["num_iterations"]), int(hmc["num_chains"])
    lines = [
        "# Paper-scale plan",
        "",
        f"CIFAR-10 HMC (Table 3, `ppl-bnn experiment hmc_cifar10_table3`): {steps} leapfrog "
        f"steps per iteration x {chain_its} iterations x {chains} chains. At "
        f"{H200_LEAPFROG_S} s per full-batch leapfrog step on one H200 an "
        f"iteration takes {it_h:.1f} h, a chain {chain_its * it_h:.0f} h, all {chains} chains "
        f"{chains * chain_its * it_h:.0f} H200-hours; on a pod of N devices with linear scaling of "
        f"the data-parallel sum, divide by N (N = 512: {chains * chain_its * it_h / 512:.1f} h of "
        "wall time; small per-device chunks use a device less well, so expect more).",
        "",
    ]
    for name in names:
        f = FINDINGS[name]
        lines += [f"## {f.index}. {f.title}", ""]
        for e in f.paper_experiments:
            exp = get_experiment(e)
            lines.append(f"- `ppl-bnn experiment {e}`: {exp.description.splitlines()[0]}")
        lines.append("")
    return "\n".join(lines)
