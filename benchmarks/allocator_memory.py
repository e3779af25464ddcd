"""Peak memory and wall time of a ``mams`` run under glibc's default allocator settings
and under the ``ppl-bnn`` command's (``glibc.malloc.tcache_count=0``, see
``ppl_bnn.cli.allocator``), side by side.

The run: a heteroscedastic-Gaussian BNN (one hidden layer of 50) on 300 synthetic rows
with 6 features, ``ppl_bnn.infer(method="mams")``, 2 chains, ``--warmup`` tuning
iterations and ``--samples`` draws. Each setting runs in its own fresh interpreter
(allocator tunables are read at process start), alternating, ``--repeats`` times; the
child reports its peak resident memory (``ru_maxrss``) and wall time. Prints one JSON line
per run and a ratio line.

    python benchmarks/allocator_memory.py [--warmup 100] [--samples 50] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
import ppl_bnn
from ppl_bnn.config import CommonConfig
from ppl_bnn.declare.bnn import bnn_model
from ppl_bnn.declare.likelihoods import make_likelihood
from ppl_bnn.declare.problem import build_prior
from ppl_bnn.models import get_model

warmup, samples = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
x = rng.normal(size=(300, 6)).astype(np.float32)
noise = rng.normal(0, 0.1 + 0.2 * np.abs(x[:, 2]))
y = (np.sin(x[:, 0]) + 0.3 * x[:, 1] ** 2 + noise).astype(np.float32)
lik = make_likelihood("heteroscedastic")
model = bnn_model(get_model("mlp_regression_small", lik.num_outputs),
                  build_prior(CommonConfig(dir="", weight_decay=1.0)), lik)
t0 = time.perf_counter()
r = ppl_bnn.infer(model, x, y, method="mams", num_chains=2, num_warmup=warmup,
                  num_samples=samples, seed=0, progress=False, log_likelihood=False)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
print(json.dumps({"wall_s": round(wall, 1), "peak_rss_gib": round(peak, 2)}))
"""

SETTINGS = {"glibc-default": "", "tcache-off": "glibc.malloc.tcache_count=0"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    best: dict[str, dict] = {}
    for r in range(a.repeats):
        for name, tunables in SETTINGS.items():
            env = {**os.environ, "GLIBC_TUNABLES": tunables}
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(a.warmup), str(a.samples)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
            rec = {"setting": name, "repeat": r, **json.loads(out.stdout.strip().splitlines()[-1])}
            print(json.dumps(rec), flush=True)
            if name not in best or rec["wall_s"] < best[name]["wall_s"]:
                best[name] = rec
    d, t = best["glibc-default"], best["tcache-off"]
    print(
        json.dumps(
            {
                "peak_rss_ratio_default_over_tcache_off": round(
                    d["peak_rss_gib"] / t["peak_rss_gib"], 2
                ),
                "wall_ratio_default_over_tcache_off": round(d["wall_s"] / t["wall_s"], 2),
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
