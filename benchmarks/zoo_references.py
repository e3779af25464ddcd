"""Regenerate ``experiments/zoo_references.json``: the model zoo's reference posteriors.

For every zoo model (:mod:`ppl_bnn.experiments.zoo`) the file holds, per scalar quantity,
the reference mean and sd and the Monte Carlo standard error of each:

* closed-form and quadrature references: computed (MCSE 0), stored for the record;
* the others: one long NumPyro NUTS run (8 chains x 5000 draws after 2000 warmup,
  vectorized, target acceptance 0.9 unless the model says otherwise), summarised with
  ArviZ (mean, sd, ``mcse_mean``, ``mcse_sd``, bulk ESS, R-hat);

and whether NumPyro NUTS with its defaults (4 chains x (1000 + 1000)) passes the model
against that reference on seeds 0-4 (``numpyro_defaults``): the models it passes are the
ones every default sampler has to pass.

    python benchmarks/zoo_references.py [--models NAME ...] [--defaults-from zoo.jsonl]
        [--skip-defaults]

``--defaults-from`` takes the NumPyro-defaults record from ``benchmarks/zoo.py`` output
(its ``numpyro-nuts`` lines) instead of running it again. Runs in float64.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

from ppl_bnn.experiments import zoo  # noqa: E402

LONG = {"num_warmup": 2000, "num_samples": 5000, "num_chains": 8, "target_accept_prob": 0.9}
DEFAULT_SEEDS = (0, 1, 2, 3, 4)


def long_run(m: zoo.ZooModel, seed: int = 20240601) -> dict:
    opts = {**LONG, **m.reference_options}
    t0 = time.perf_counter()
    model = m.reference_model or m.model
    out = zoo.run_numpyro_nuts(m, seed, model=model, **opts)
    stats = zoo.summarize(zoo.flatten(out["samples"], m.sites))
    div = int(out["sample_stats"]["diverging"].sum())
    return {
        "source": "numpyro-nuts",
        "how": {
            **opts,
            "model": model.__name__,
            "seed": seed,
            "chain_method": "vectorized",
            "divergent": div,
            "wall_s": round(time.perf_counter() - t0, 1),
        },
        "max_rhat": max(s["rhat"] for s in stats.values()),
        "min_ess_bulk": min(s["ess_bulk"] for s in stats.values()),
        "quantities": stats,
    }


def defaults_record(m: zoo.ZooModel, ref, records=None) -> dict:
    if records is None:
        records = [zoo.run(m, "numpyro-nuts", s, ref=ref) for s in DEFAULT_SEEDS]
    passes = sum(r["pass"] for r in records)
    return {
        "seeds": [r["seed"] for r in records],
        "passes": passes,
        "pass": passes == len(records),
        "failures": {str(r["seed"]): r["failures"][:4] for r in records if not r["pass"]},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="*", default=None)
    p.add_argument("--defaults-from", default=None, help="benchmarks/zoo.py JSON lines")
    p.add_argument("--skip-defaults", action="store_true")
    p.add_argument("--out", default=str(zoo.REFERENCES_PATH))
    a = p.parse_args(argv)
    try:
        with open(a.out) as f:
            refs = json.load(f)
    except FileNotFoundError:
        refs = {}
    names = a.models or list(zoo.MODELS)
    from_file: dict[str, list] = {}
    if a.defaults_from:
        with open(a.defaults_from) as f:
            for line in f:
                r = json.loads(line)
                if r.get("method") == "numpyro-nuts" and r["seed"] in DEFAULT_SEEDS:
                    from_file.setdefault(r["model"], []).append(r)
    # the models whose reference others share come first
    names.sort(key=lambda n: zoo.get(n).reference_of is not None)
    for name in names:
        m = zoo.get(name)
        if m.reference_of is not None:
            entry = {"source": "numpyro-nuts", "reference_of": m.reference_of}
            ref = refs[m.reference_of]["quantities"]
        elif m.exact is not None:
            entry = {"source": m.source, "quantities": m.exact()}
            ref = entry["quantities"]
        else:
            entry = long_run(m)
            ref = entry["quantities"]
        old = refs.get(name, {}).get("numpyro_defaults")
        if name in from_file:
            entry["numpyro_defaults"] = defaults_record(m, ref, from_file[name])
        elif not a.skip_defaults:
            entry["numpyro_defaults"] = defaults_record(m, ref)
        elif old is not None:
            entry["numpyro_defaults"] = old
        refs[name] = entry
        shown = {k: v for k, v in entry.items() if k != "quantities"}
        print(json.dumps({"model": name, **shown}), flush=True)
        with open(a.out, "w") as f:  # after every model: a long regeneration can stop
            json.dump({k: refs[k] for k in sorted(refs)}, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
