"""Reference posterior of the non-centred eight schools model (Rubin 1981; Gelman et al.,
BDA3 Sec. 5.5) from a long NumPyro NUTS run: mean, sd and their Monte Carlo standard
errors per coordinate, written to eight_schools.json beside this file.

    python tests/reference/eight_schools.py [--num_samples 50000] [--num_chains 8]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

Y = np.array([28.0, 8.0, -3.0, 7.0, -1.0, 1.0, 18.0, 12.0])
SIGMA = np.array([15.0, 10.0, 16.0, 11.0, 9.0, 11.0, 10.0, 18.0])


def model(x, y=None):
    """Non-centred eight schools. A row of ``x`` is one observation: ``(school index,
    its standard error)``; the school effects are latent, one per school."""
    school = x[:, 0].astype(jnp.int32)
    mu = numpyro.sample("mu", dist.Normal(0.0, 5.0))
    tau = numpyro.sample("tau", dist.HalfCauchy(5.0))
    with numpyro.plate("school", len(Y)):
        theta_tilde = numpyro.sample("theta_tilde", dist.Normal(0.0, 1.0))
        theta = numpyro.deterministic("theta", mu + tau * theta_tilde)
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("obs", dist.Normal(theta[school], x[:, 1]), obs=y)


def data() -> tuple[np.ndarray, np.ndarray]:
    """``x`` (school index, standard error) and ``y`` (estimated effect), one row each."""
    return np.stack([np.arange(len(Y)), SIGMA], axis=1), Y


def flat(samples: dict) -> dict[str, np.ndarray]:
    """``name[i]`` -> (chain, draw) for the latent sites."""
    out = {}
    for name in ("mu", "tau", "theta_tilde"):
        v = np.asarray(samples[name])
        if v.ndim == 2:
            out[name] = v
        else:
            for i in range(v.shape[-1]):
                out[f"{name}[{i}]"] = v[..., i]
    return out


def main() -> None:
    import arviz as az

    p = argparse.ArgumentParser()
    p.add_argument("--num_samples", type=int, default=50_000)
    p.add_argument("--num_chains", type=int, default=8)
    args = p.parse_args()
    jax.config.update("jax_enable_x64", True)
    mcmc = numpyro.infer.MCMC(
        numpyro.infer.NUTS(model, target_accept_prob=0.95),
        num_warmup=2000,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        chain_method="vectorized",
        progress_bar=False,
    )
    mcmc.run(jax.random.key(20141), *data())
    draws = flat(mcmc.get_samples(group_by_chain=True))
    dt = az.from_dict({"posterior": draws})
    mcse_mean = az.mcse(dt, method="mean")
    mcse_sd = az.mcse(dt, method="sd")
    ess = az.ess(dt)
    rhat = az.rhat(dt)
    ref = {
        name: {
            "mean": float(v.mean()),
            "sd": float(v.std(ddof=1)),
            "mcse_mean": float(mcse_mean[name]),
            "mcse_sd": float(mcse_sd[name]),
            "ess_bulk": float(ess[name]),
            "rhat": float(rhat[name]),
        }
        for name, v in draws.items()
    }
    ref["_meta"] = {
        "sampler": "numpyro NUTS, target_accept_prob 0.95, float64",
        "num_chains": args.num_chains,
        "num_samples": args.num_samples,
        "numpyro": numpyro.__version__,
    }
    out = Path(__file__).with_name("eight_schools.json")
    out.write_text(json.dumps(ref, indent=1) + "\n")
    print(out)


if __name__ == "__main__":
    main()
