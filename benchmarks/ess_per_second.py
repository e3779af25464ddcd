"""Function-space ESS per second on the digits BNN, five samplers side by side.

The model is ``ppl-bnn compare``'s: an MLP 64-50-10 on the embedded ``digits`` data with
a Gaussian prior (variance 1 / weight_decay = 1), 3 chains. The figure of merit is the
bulk ESS of the test predictive probabilities (every test point and class; Izmailov et
al. 2021, Sec. 5), divided by the wall time of the whole method, compilation and
predictions included. Methods:

* ``hmc-recipe``: ``ppl-bnn hmc`` with the paper's recipe as ``ppl-bnn compare`` sets it
  (step size 0.01, trajectory length 1.5, so L = 150; 100 burn-in + 300 iterations);
* ``hmc-warmup``: ppl_bnn's HMC with the default window adaptation and trajectory-length
  rule (nothing hand-set), ``--num_warmup`` + ``--num_samples`` iterations;
* ``hmc-warmup-shared``: the same with one step size shared by the chains
  (``shared_step_size=True``; faster on BNNs, not robust: see docs/guide/hmc.md);
* ``nuts``: ppl_bnn's NUTS with the default window adaptation;
* ``numpyro-nuts``: NumPyro's NUTS (vectorised chains) on the same log density;
* ``blackjax-nuts``: BlackJAX's ``window_adaptation`` + NUTS on the same log density;
* ``mams``, ``chees``, ``mclmc``: ``ppl_bnn.driver.adaptive`` (BlackJAX's MAMS, ChEES-HMC
  and unadjusted, asymptotically biased MCLMC) with their own tuning, in memory;
* ``mams-ensemble``: a deep ensemble of one SGD member per chain (``--ensemble_epochs``
  epochs, step size 1e-4, batch 80: ``ppl-bnn compare``'s), then MAMS with each chain
  started at one member; the ensemble's training is in the wall time, and in the
  gradient count as one full-batch gradient per epoch;
* ``mams-bf16``: MAMS with bfloat16 gradients and the Metropolis test on the float32
  log density (``gradient_dtype="bfloat16"``; emulated on a CPU: its time says nothing of
  a GPU's), to set its acceptance rate and energy error against ``mams``.

One JSON line per method: min / median ESS, ESS per second, ESS per 1000 gradient
evaluations (all chains), max R-hat, wall time and the machine's load average.

Measured 2026-12-01 18:40-19:20 on 2 CPU cores, all five methods in one run (load average
3.4-5.9 from low-priority test jobs alongside), 3 chains, 100 warmup/burn-in + 300 draws:

    method         median ESS  min ESS  wall s  ESS/s  ESS/1000 grads  max R-hat
    hmc-recipe        566        267     107.8   5.25      3.15         1.0266
    hmc-warmup        533        257     103.6   5.14      2.96         1.0228
    nuts              777        377     497.6   1.56      1.20         1.0164
    blackjax-nuts     799        432     785.0   1.02      1.02         1.0216
    numpyro-nuts      785        360     396.2   1.98      1.71*        1.0166

    * NumPyro does not report its warmup's steps: sampling gradients only (overstated).

HMC with the default warmup: 0.98x the recipe's ESS per second, 5.05x BlackJAX NUTS's.
With 1000 draws (``--methods hmc-recipe,hmc-warmup --num_samples 1000
--recipe_iterations 1100``) both get every R-hat below 1.01: hmc-warmup 1.0077 at 7.75
ESS/s, hmc-recipe 1.0065 at 7.09 ESS/s. One step size shared by the chains against one
per chain (``--methods hmc-warmup,hmc-warmup-per-chain``, quiet machine): 93.1 s against
116.6 s, 5.72 against 4.97 ESS/s, 2.96 against 2.73 ESS per 1000 gradients.

    python benchmarks/ess_per_second.py [--methods hmc-recipe,hmc-warmup] \
        [--num_warmup 100] [--num_samples 300] [--subset_train_to 500]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

METHODS = (
    "hmc-recipe",
    "hmc-warmup",
    "nuts",
    "numpyro-nuts",
    "blackjax-nuts",
    "hmc-warmup-shared",
    "mams",
    "chees",
    "mclmc",
    "mams-ensemble",
    "mams-bf16",
)


def function_space(preds: np.ndarray) -> dict:
    """Bulk ESS and R-hat over every test point and class of ``(chain, draw, n, k)``."""
    import arviz as az

    dt = az.from_dict({"posterior": {"p": preds.reshape(preds.shape[:2] + (-1,))}})
    ess = np.asarray(az.ess(dt, method="bulk")["p"].values, float)
    rhat = np.asarray(az.rhat(dt)["p"].values, float)
    return {
        "ess_min": float(np.nanmin(ess)),
        "ess_median": float(np.nanmedian(ess)),
        "rhat_max": float(np.nanmax(rhat)),
    }


def problem(args):
    from ppl_bnn.config import ProblemConfig
    from ppl_bnn.declare.problem import build_problem

    return build_problem(
        ProblemConfig(
            dataset_name="digits",
            model_name="mlp_regression_small",
            weight_decay=1.0,
            subset_train_to=args.subset_train_to,
        )
    )


def predictor(pr):
    predict = jax.jit(jax.vmap(pr.logdensity.predict, in_axes=(0, None)))
    n = pr.dataset.x_test.shape[0]
    return lambda positions: np.asarray(predict(positions, pr.test.x))[:, :n]


def run_recipe(args, pr) -> tuple[np.ndarray, float]:
    from ppl_bnn.config import HMCConfig
    from ppl_bnn.diagnostics.convergence import load_run_draws
    from ppl_bnn.driver import run

    with tempfile.TemporaryDirectory() as tmp:
        cfg = HMCConfig(
            dir=os.path.join(tmp, "hmc"),
            dataset_name="digits",
            model_name="mlp_regression_small",
            weight_decay=1.0,
            subset_train_to=args.subset_train_to,
            step_size=0.01,
            trajectory_len=1.5,
            num_iterations=args.recipe_iterations,
            num_burn_in_iterations=args.recipe_burn_in,
            num_chains=args.num_chains,
            max_num_leapfrog_steps=100_000,
            seed=args.seed,
            tabulate_freq=1000,
        )
        run("hmc", cfg, progress=False)
        preds = load_run_draws(cfg.dir)["predictions"]
    grads = args.num_chains * args.recipe_iterations * 150
    return preds, grads


def run_adaptive_method(args, pr, kernel: str, **options):
    """MAMS, ChEES-HMC or MCLMC through ppl_bnn's driver (in memory), BlackJAX's tuning
    over ``num_warmup`` iterations; gradients: every integration step, tuning included."""
    from ppl_bnn.config import AdaptiveConfig
    from ppl_bnn.driver.adaptive import run_adaptive

    start = options.pop("init_from", None)
    cfg = AdaptiveConfig(
        kernel=kernel,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        seed=args.seed,
        target_accept=None if kernel == "mclmc" else args.target_accept,
        eval_freq=max(args.num_warmup + args.num_samples, 1),
        **options,
    )
    result = run_adaptive(cfg, problem=pr, progress=False, collect=True, init_from=start)
    steps = np.asarray(result.sample_stats["n_steps"])
    grads = int(steps.sum()) + int(result.summary["num_grad_evals_warmup"])
    extra = {k: result.summary.get(k) for k in ("mean_accept_prob", "step_size", "L")}
    if kernel != "mclmc":  # the Metropolis test: acceptance = min(1, exp(-dH))
        acc = np.clip(np.asarray(result.sample_stats["acceptance_rate"], np.float64), 1e-300, 1)
        extra["energy_increase_median"] = float(np.median(-np.log(acc)))  # max(dH, 0)
        extra["energy_increase_p90"] = float(np.quantile(-np.log(acc), 0.9))
    if "nested_rhat" in result.summary:
        extra["nested_rhat"] = result.summary["nested_rhat"]
    return result.predictions, grads, extra


def train_ensemble(args, pr):
    """One SGD member per chain on the same problem (``ppl-bnn compare``'s settings);
    returns the in-memory result and its gradient count in full-batch gradients."""
    from ppl_bnn.config import EnsembleConfig
    from ppl_bnn.driver.sgd import run_ensemble

    cfg = EnsembleConfig(
        dir="",
        dataset_name="digits",
        model_name="mlp_regression_small",
        weight_decay=1.0,
        subset_train_to=args.subset_train_to,
        ensemble_size=args.num_chains,
        num_epochs=args.ensemble_epochs,
        init_step_size=1e-4,
        batch_size=80,
        eval_freq=args.ensemble_epochs,
        save_freq=args.ensemble_epochs,
        seed=args.seed + 100,
    )
    result = run_ensemble(cfg, problem=pr, progress=False, collect=True)
    return result, args.num_chains * args.ensemble_epochs  # one epoch: one full gradient


def run_ppl_bnn(args, pr, kernel: str, **extra_options):
    from ppl_bnn.inference.hmc import build_init
    from ppl_bnn.inference.warmup import build_window_adaptation, initial_positions

    ld, batch, C = pr.logdensity, pr.train, args.num_chains
    predict = predictor(pr)
    key = jax.random.key(args.seed)
    key, k_init, k_eps = jax.random.split(key, 3)
    state = build_init(ld)(initial_positions(ld, k_init, C), batch)
    options = {
        k: v
        for k, v in (
            ("target_accept", args.target_accept),
            ("trajectory_length", args.trajectory_length),
        )
        if v is not None and not (k == "trajectory_length" and kernel == "nuts")
    }
    options.update(extra_options)
    warmup = build_window_adaptation(args.num_warmup, logdensity=ld, kernel=kernel, **options)
    wstate = warmup.init(state, warmup.find_step_size(jax.random.split(k_eps, C), state, batch))
    grads, clamped = 0, 0
    for i in range(args.num_warmup):
        key, k = jax.random.split(key)
        state, wstate, info = warmup.step(jax.random.split(k, C), state, wstate, batch, i)
        grads += int(np.sum(info.num_integration_steps))
        clamped += int(np.sum(getattr(info, "is_clamped", 0)))
    eps, imm = warmup.final(wstate)
    preds = []
    for _ in range(args.num_samples):
        key, k = jax.random.split(key)
        state, info = warmup.kernel(jax.random.split(k, C), state, batch, eps, imm)
        grads += int(np.sum(info.num_integration_steps))
        clamped += int(np.sum(getattr(info, "is_clamped", 0)))
        preds.append(predict(state.position))
    extra = {"step_size": np.asarray(eps).round(5).tolist(), "clamped": clamped}
    return np.stack(preds, axis=1), grads, extra


def run_numpyro(args, pr):
    from numpyro.infer import MCMC, NUTS

    from ppl_bnn.inference.warmup import initial_positions

    ld, batch, C = pr.logdensity, pr.train, args.num_chains
    init = initial_positions(ld, jax.random.key(args.seed), C)
    mcmc = MCMC(
        NUTS(potential_fn=lambda p: -ld(p, batch)),
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=C,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(args.seed + 1), init_params=init, extra_fields=("num_steps",))
    positions = mcmc.get_samples(group_by_chain=True)
    steps = mcmc.get_extra_fields()["num_steps"]
    predict = predictor(pr)
    preds = [
        predict(jax.tree.map(lambda a, d=d: a[:, d], positions)) for d in range(args.num_samples)
    ]
    # warmup steps are not recorded by NumPyro: count the sampling ones only
    return np.stack(preds, axis=1), int(np.sum(steps)), {"grads_exclude_warmup": True}


def run_blackjax(args, pr):
    import blackjax

    from ppl_bnn.inference.warmup import initial_positions

    ld, batch, C = pr.logdensity, pr.train, args.num_chains
    logdensity = lambda p: ld(p, batch)  # noqa: E731
    init = initial_positions(ld, jax.random.key(args.seed), C)
    adapt = blackjax.window_adaptation(blackjax.nuts, logdensity)
    keys = jax.random.split(jax.random.key(args.seed + 1), C)

    @jax.jit
    def warm(keys, init):
        (states, params), info = jax.vmap(lambda k, p: adapt.run(k, p, args.num_warmup))(keys, init)
        return states, params, jnp.sum(info.info.num_integration_steps)

    states, params, warm_steps = warm(keys, init)

    @jax.jit
    def sample(keys, states, params):
        def one(key, state, params):
            kernel = blackjax.nuts(logdensity, **params)

            def body(s, k):
                s, info = kernel.step(k, s)
                return s, (s.position, info.num_integration_steps)

            _, (pos, n) = jax.lax.scan(body, state, jax.random.split(key, args.num_samples))
            return pos, n

        return jax.vmap(one)(keys, states, params)

    positions, steps = sample(jax.random.split(keys[0], C), states, params)
    predict = predictor(pr)
    preds = [
        predict(jax.tree.map(lambda a, d=d: a[:, d], positions)) for d in range(args.num_samples)
    ]
    return np.stack(preds, axis=1), int(warm_steps) + int(np.sum(steps)), {}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--num_chains", type=int, default=3)
    p.add_argument("--num_warmup", type=int, default=100, help="warmup of the adapted methods")
    p.add_argument("--num_samples", type=int, default=300, help="draws of the adapted methods")
    p.add_argument("--recipe_iterations", type=int, default=400)
    p.add_argument("--recipe_burn_in", type=int, default=100)
    p.add_argument("--subset_train_to", type=int, default=None, help="shrink the training set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target_accept", type=float, default=None, help="override (ppl_bnn only)")
    p.add_argument("--trajectory_length", type=float, default=None, help="override (hmc-warmup)")
    p.add_argument("--ensemble_epochs", type=int, default=100, help="SGD epochs per member")
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise SystemExit(f"unknown methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    for method in methods:
        load = os.getloadavg()[0]
        t0 = time.perf_counter()
        pr = problem(args)
        extra = {}
        if method == "hmc-recipe":
            preds, grads = run_recipe(args, pr)
        elif method in ("hmc-warmup", "nuts"):
            preds, grads, extra = run_ppl_bnn(args, pr, "hmc" if method == "hmc-warmup" else "nuts")
        elif method == "hmc-warmup-shared":
            preds, grads, extra = run_ppl_bnn(args, pr, "hmc", shared_step_size=True)
        elif method in ("mams", "chees", "mclmc"):
            preds, grads, extra = run_adaptive_method(args, pr, method)
        elif method == "mams-bf16":
            preds, grads, extra = run_adaptive_method(args, pr, "mams", gradient_dtype="bfloat16")
        elif method == "mams-ensemble":
            ens, ens_grads = train_ensemble(args, pr)
            extra = {"ensemble_s": time.perf_counter() - t0, "ensemble_grads": ens_grads}
            preds, grads, more = run_adaptive_method(
                args, pr, "mams", init_strategy="ensemble", init_from=ens
            )
            grads, extra = grads + ens_grads, {**extra, **more}
        elif method == "numpyro-nuts":
            preds, grads, extra = run_numpyro(args, pr)
        else:
            preds, grads, extra = run_blackjax(args, pr)
        wall = time.perf_counter() - t0
        fs = function_space(preds)
        row = {
            "benchmark": "ess_per_second",
            "method": method,
            **fs,
            "ess_per_s": fs["ess_median"] / wall,
            "ess_min_per_s": fs["ess_min"] / wall,
            "ess_per_1000_grads": 1000 * fs["ess_median"] / max(grads, 1),
            "grads": grads,
            "wall_s": wall,
            "draws": list(preds.shape[:2]),
            "load_avg_start": load,
            "load_avg_end": os.getloadavg()[0],
            "cpu_count": os.cpu_count(),
            "target_accept": args.target_accept,
            "trajectory_length": args.trajectory_length,
            **extra,
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    from ppl_bnn.cli.allocator import reexec_with_allocator_settings

    reexec_with_allocator_settings()  # as the ppl-bnn command runs: bounded memory
    main()
