"""Your own NumPyro model under every backend: NUTS, HMC, SGLD, SGHMC, VI, SGD, an ensemble.

A hand-written Bayesian regression network (not one of ppl_bnn's registered BNNs) is
sampled or approximated by each method through one call, ``ppl_bnn.infer``; only
``method`` changes. Each result converts to an ArviZ DataTree.

    python examples/own_model_every_backend.py           # a minute or two on a CPU
    PPL_BNN_EXAMPLE_TINY=1 python examples/own_model_every_backend.py   # seconds (tests)
"""

from __future__ import annotations

import os

import flax.linen as nn
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.contrib.module import random_flax_module

import ppl_bnn

TINY = bool(os.environ.get("PPL_BNN_EXAMPLE_TINY"))


class Net(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.tanh(nn.Dense(16)(x)))


def model(x, y=None):
    f = random_flax_module("net", Net(), dist.Normal(0, 1), input_shape=(1, x.shape[1]))
    sigma = numpyro.sample("sigma", dist.HalfNormal(1.0))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(f(x)[:, 0], sigma), obs=y)


def data(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-2, 2, n, dtype=np.float32)[:, None]
    y = (np.sin(2 * x[:, 0]) + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y


# method -> its own options (every method also takes num_warmup, num_samples, num_chains)
METHODS = {
    "nuts": {},
    "hmc": {},
    "sgld": {"batch_size": 16},
    "sghmc": {"batch_size": 16, "momentum_decay": 0.9},
    "vi": {"batch_size": 16},
    "sgd": {"batch_size": 16},
    "ensemble": {"batch_size": 16},
}
STEP_SIZES = {"sgld": 1e-4, "sghmc": 1e-4, "vi": 1e-2, "sgd": 1e-3, "ensemble": 1e-3}


def main() -> dict:
    x, y = data(32 if TINY else 128)
    size = (
        {"num_warmup": 5, "num_samples": 5, "num_chains": 2}
        if TINY
        else {"num_warmup": 300, "num_samples": 300, "num_chains": 4}
    )
    results = {}
    for method, options in METHODS.items():
        result = ppl_bnn.infer(
            model, x, y, method=method, seed=0, step_size=STEP_SIZES.get(method), **size, **options
        )
        sigma = result.samples["sigma"]
        results[method] = result
        print(f"{method:>9}: sigma draws {sigma.shape}, posterior mean {float(sigma.mean()):.3f}")
    return results


if __name__ == "__main__":
    main()
