"""One benchmark run of a zoo model (NumPyro's NUTS or any ``ppl_bnn.infer`` method) and
the pass-rate table."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .catalogue import ZooModel
from .check import evaluate, flatten, reference
from .exact import Stats


def run_numpyro_nuts(
    m: ZooModel,
    seed: int,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    chain_method: str = "vectorized",
    count_warmup: bool = False,
    **nuts_options,
) -> dict[str, Any]:
    """NumPyro's own NUTS on ``m`` (its defaults unless ``nuts_options``), run as its users
    run it: one ``MCMC.run`` call, warmup included, so one compiled program.

    Returns ``{"samples", "sample_stats", "grads_warmup", "grads"}``: samples
    ``(chain, draw, ...)``, the sampling draws' statistics (``diverging``,
    ``acceptance_rate``, ``energy``, ``n_steps``, ``tree_depth``) and the leapfrog steps
    of sampling, summed over chains. ``grads_warmup`` is ``None`` unless
    ``count_warmup``: then warmup and sampling run as two calls (``MCMC.warmup``, then
    ``MCMC.run``) to count warmup's leapfrog steps too, which compiles the kernel twice.
    """
    import jax
    from numpyro.infer import MCMC, NUTS

    x, y = m.data()
    model = nuts_options.pop("model", m.model)
    mcmc = MCMC(
        NUTS(model, **nuts_options),
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        chain_method=chain_method,
        progress_bar=False,
    )
    key = jax.random.PRNGKey(seed)
    grads_warmup = None
    if num_warmup and count_warmup:
        mcmc.warmup(key, x, y, collect_warmup=True, extra_fields=("num_steps",))
        grads_warmup = int(np.sum(np.asarray(mcmc.get_extra_fields()["num_steps"])))
        key = mcmc.post_warmup_state.rng_key
    fields = ("num_steps", "diverging", "accept_prob", "energy")
    mcmc.run(key, x, y, extra_fields=fields)
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    steps = extra["num_steps"]
    stats = {
        "diverging": extra["diverging"],
        "acceptance_rate": extra["accept_prob"],
        "energy": extra["energy"],
        "n_steps": steps,
        "tree_depth": np.floor(np.log2(np.maximum(steps, 1))).astype(np.int64) + 1,
    }
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    return {
        "samples": samples,
        "sample_stats": stats,
        "grads_warmup": grads_warmup,
        "grads": int(np.sum(steps)),
    }


# ------------------------------------------------------------------ one benchmark run
def _grads(stats: Mapping[str, np.ndarray]) -> int | None:
    for k in ("n_steps", "num_integration_steps", "num_steps"):
        if k in stats and np.size(stats[k]):
            return int(np.sum(np.asarray(stats[k])))
    return None


def _run_warning_category():
    try:
        from ppl_bnn.diagnostics import checks
    except ImportError:
        return None
    return getattr(checks, "RunWarning", None)


def _diagnose_draws(samples, stats, sites) -> list[str] | None:
    """ppl_bnn's run-end checks on draws from elsewhere (NumPyro), where available."""
    try:
        from ppl_bnn.diagnostics import checks
    except ImportError:
        return None
    fn = getattr(checks, "diagnose", None)
    if fn is None:
        return None
    found = fn(stats, flatten(samples, sites), max_num_doublings=10)
    return [str(d) for d in found]


#: the baselines: NumPyro's NUTS with its defaults, chains vectorised or one after another
NUMPYRO_METHODS = {"numpyro-nuts": "vectorized", "numpyro-nuts-sequential": "sequential"}


def run(
    m: ZooModel,
    method: str,
    seed: int,
    *,
    num_warmup: int = 1000,
    num_samples: int = 1000,
    num_chains: int = 4,
    ref: Stats | None = None,
    **options,
) -> dict[str, Any]:
    """Run ``method`` (a key of :data:`NUMPYRO_METHODS`, or any ``ppl_bnn.infer`` method) on
    ``m`` with ``seed``; the JSON record of :func:`evaluate` plus gradients, wall time and warnings.

    ``warned``: the run emitted a run warning (a ``RunWarning``, any warning raised from
    ppl_bnn) or its ``diagnose()`` found something; for NumPyro's NUTS, ppl_bnn's checks
    run on its draws.
    """
    import time
    import warnings

    ref = reference(m) if ref is None else ref
    category = _run_warning_category()
    t0, c0 = time.perf_counter(), time.process_time()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if method in NUMPYRO_METHODS:
            out = run_numpyro_nuts(
                m,
                seed,
                num_warmup=num_warmup,
                num_samples=num_samples,
                num_chains=num_chains,
                chain_method=NUMPYRO_METHODS[method],
                **options,
            )
            samples, stats = out["samples"], out["sample_stats"]
            grads_warmup, grads = out["grads_warmup"], out["grads"]
            diagnosed = _diagnose_draws(samples, stats, m.sites)
        else:
            import ppl_bnn

            x, y = m.data()
            result = ppl_bnn.infer(
                m.model,
                x,
                y,
                method=method,
                num_warmup=num_warmup,
                num_samples=num_samples,
                num_chains=num_chains,
                seed=seed,
                **options,
            )
            samples, stats = result.samples or {}, result.sample_stats or {}
            grads = _grads(stats)
            grads_warmup = result.summary.get("num_grad_evals_warmup")
            diagnose = getattr(result, "diagnose", None)
            diagnosed = [str(d) for d in diagnose()] if callable(diagnose) else None
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0

    def ours(w) -> bool:
        if category is not None and issubclass(w.category, category):
            return True
        return "ppl_bnn" in str(w.filename) or "/diagnostics/" in str(w.filename)

    messages = [str(w.message).splitlines()[0][:200] for w in caught if ours(w)]
    record: dict[str, Any] = {
        "model": m.name,
        "method": method,
        "seed": seed,
        "expected": m.expected,
        **evaluate(samples, m, ref),
        "grads": grads,
        "grads_warmup": grads_warmup,
        "divergent": int(np.sum(stats["diverging"])) if "diverging" in stats else None,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "warned": bool(messages) or bool(diagnosed),
        "warnings": messages[:8],
        "diagnosed": diagnosed[:8] if diagnosed else diagnosed,
        "num_chains": num_chains,
        "num_warmup": num_warmup,
        "num_samples": num_samples,
    }
    return record


def pass_table(records: Sequence[Mapping[str, Any]], methods: Sequence[str] | None = None):
    """The markdown pass-rate table of benchmark records: per model and method,
    ``passes/seeds``, and for the failing seeds how many warned (``warned k/f``)."""
    methods = list(methods or dict.fromkeys(r["method"] for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    cell: dict[tuple[str, str], list] = {}
    for r in records:
        cell.setdefault((r["model"], r["method"]), []).append(r)
    lines = [
        "| model | expected | " + " | ".join(methods) + " |",
        "| --- | --- | " + " | ".join("---" for _ in methods) + " |",
    ]
    totals = {k: [0, 0] for k in methods}
    silent = {k: 0 for k in methods}
    for model in models:
        expected = next(r["expected"] for r in records if r["model"] == model)
        row = []
        for k in methods:
            rs = cell.get((model, k), [])
            if not rs:
                row.append("")
                continue
            passed = sum(r["pass"] for r in rs)
            failed = [r for r in rs if not r["pass"]]
            text = f"{passed}/{len(rs)}"
            if failed:
                warned = sum(r["warned"] for r in failed)
                text += f", warned {warned}/{len(failed)}"
                silent[k] += len(failed) - warned
            row.append(text)
            totals[k][0] += passed
            totals[k][1] += len(rs)
        lines.append(f"| {model} | {expected} | " + " | ".join(row) + " |")
    lines.append(
        "| all | | "
        + " | ".join(f"{p}/{n}, {silent[k]} silent" for k, (p, n) in totals.items())
        + " |"
    )
    return "\n".join(lines)
