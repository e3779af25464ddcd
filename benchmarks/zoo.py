"""Every MCMC method on every model of the zoo, over several seeds, against references.

One JSON line per (model, method, seed): ``pass`` against the model's reference (means
within 4 MCSE of the run and of the reference combined, sds within [0.8, 1.25], R-hat
below 1.01, bulk ESS at least 400 on every compared quantity; ``failures`` names the
failed checks), ``grads`` (leapfrog steps of the kept draws, summed over chains),
``grads_warmup`` (where the method reports them), ``wall_s`` and ``cpu_s`` (the
process's CPU time; both with compilation) and
``warned`` (a run warning was emitted or ``diagnose()`` found something). The models,
their references and the table: ``docs/guide/zoo.md``.

    python benchmarks/zoo.py [--methods nuts hmc numpyro-nuts] [--models NAME ...]
        [--seeds 0 1 2 3 4] [--num_warmup 1000] [--num_samples 1000] [--num_chains 4]
        > zoo.jsonl
    python benchmarks/zoo.py --summary zoo.jsonl [more.jsonl ...]

``numpyro-nuts`` is NumPyro's own NUTS with its defaults, chains vectorised (the
baseline; ``numpyro-nuts-sequential`` runs its chains one after another), in one
``MCMC.run`` call as its users call it; any method of
``ppl_bnn.api.METHODS`` runs through ``ppl_bnn.infer``. ``--summary`` prints the
pass-rate table (markdown) of JSON-lines files: passes/seeds per model and method, and
for the failing seeds how many warned, and each method's wall time per effective sample
against the faster NumPyro baseline on the models NumPyro passes. Runs in float64.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax

jax.config.update("jax_enable_x64", True)

from ppl_bnn.experiments import zoo  # noqa: E402

DEFAULT_METHODS = ("nuts", "hmc", "numpyro-nuts")


def summary(paths, methods=None) -> str:
    records = []
    for path in paths:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.startswith("{")]
    # the last record of a (model, method, seed) wins: a rerun replaces a run
    latest = {(r["model"], r["method"], r["seed"]): r for r in records}
    records = list(latest.values())
    order = {name: i for i, name in enumerate(zoo.MODELS)}
    records.sort(key=lambda r: (order.get(r["model"], len(order)), r["seed"]))
    table = zoo.pass_table(records, methods)
    base: dict[str, list[bool]] = {}
    for r in records:
        if r["method"] in zoo.NUMPYRO_METHODS:
            base.setdefault(r["model"], []).append(r["pass"])
    passed = {m for m, v in base.items() if all(v)}
    if passed:
        lines = ["", f"On the {len(passed)} models NumPyro NUTS (defaults) passes on every seed:"]
        for k in methods or dict.fromkeys(r["method"] for r in records):
            rs = [r for r in records if r["method"] == k and r["model"] in passed]
            if rs:
                lines.append(f"- {k}: {sum(r['pass'] for r in rs)}/{len(rs)} (model, seed) pairs")
        table += "\n" + "\n".join(lines)
    return table + ratio_lines(records, passed)


def ratio_lines(records, models) -> str:
    """Wall (and CPU) time per effective sample (min bulk ESS) of each ``ppl_bnn`` method
    over that of NumPyro's NUTS, the faster of its chain methods per (model, seed),
    compilation included, on ``models``: median and range over the pairs run side by
    side. CPU time (the process's, all threads) is the steadier figure on a shared
    machine."""
    import statistics

    lines = []
    for clock in ("wall_s", "cpu_s"):
        per: dict[tuple[str, int], dict[str, float]] = {}
        for r in records:
            if r["model"] in models and r.get("min_ess_bulk", 0) > 0 and r.get(clock):
                cost = r[clock] / r["min_ess_bulk"]
                per.setdefault((r["model"], r["seed"]), {})[r["method"]] = cost
        ours = sorted({k for v in per.values() for k in v} - set(zoo.NUMPYRO_METHODS))
        for k in ours:
            ratios = []
            for v in per.values():
                base = [v[b] for b in zoo.NUMPYRO_METHODS if b in v]
                if k in v and base:
                    ratios.append(v[k] / min(base))
            if ratios:
                lines.append(
                    f"- {k}: {clock[:-2]} time per effective sample / NumPyro NUTS's (the "
                    f"faster chain method per pair): median {statistics.median(ratios):.2f} "
                    f"({min(ratios):.2f} to {max(ratios):.2f}) over {len(ratios)} "
                    "(model, seed) pairs"
                )
    return ("\n\n" + "\n".join(lines)) if lines else ""


def main(argv=None) -> int:
    from ppl_bnn.api import METHODS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", default=None)
    p.add_argument("--models", nargs="+", default=list(zoo.MODELS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--num_warmup", type=int, default=1000)
    p.add_argument("--num_samples", type=int, default=1000)
    p.add_argument("--num_chains", type=int, default=4)
    p.add_argument("--summary", nargs="+", default=None, metavar="JSONL")
    a = p.parse_args(argv)
    if a.summary:
        print(summary(a.summary, a.methods))
        return 0
    a.methods = a.methods or list(DEFAULT_METHODS)
    for k in a.methods:
        if k not in zoo.NUMPYRO_METHODS and k not in METHODS:
            names = ", ".join([*zoo.NUMPYRO_METHODS, *METHODS])
            p.error(f"unknown method {k!r}; choose one of {names}")
    models = [zoo.get(n) for n in a.models]
    refs = {m.name: zoo.reference(m) for m in models}
    for m in models:
        for k in a.methods:
            for seed in a.seeds:
                try:
                    rec = zoo.run(
                        m,
                        k,
                        seed,
                        num_warmup=a.num_warmup,
                        num_samples=a.num_samples,
                        num_chains=a.num_chains,
                        ref=refs[m.name],
                    )
                except Exception as e:  # a crash is a failure of the method, recorded
                    rec = {
                        "model": m.name,
                        "method": k,
                        "seed": seed,
                        "expected": m.expected,
                        "pass": False,
                        "failures": [f"error {type(e).__name__}: {e}"[:300]],
                        "warned": True,
                        "error": True,
                    }
                print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    from ppl_bnn.cli.allocator import reexec_with_allocator_settings

    reexec_with_allocator_settings()  # as the ppl-bnn command runs: bounded memory
    sys.exit(main())
