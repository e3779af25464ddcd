"""The runs the findings share: data, the validated prior, the main HMC run, baselines."""

from __future__ import annotations

import time
from functools import cached_property
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from .config import CORRUPTIONS, MODEL, PROFILES, ReproduceConfig
from .stats import _point_acc, _point_nll


def _corrupt(x: np.ndarray, kind: str, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The digits images ``x`` with the corruption ``kind`` at ``severity`` (1..5)."""
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
