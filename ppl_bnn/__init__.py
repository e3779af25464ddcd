"""ppl_bnn: what does a Bayesian neural network posterior really look like?

Declare a BNN once as a NumPyro model (a Flax network, a prior over every parameter, a
likelihood, a temperature), then sample it with full-batch HMC sharded over a device mesh,
or approximate it with cheaper methods, and diagnose the result with ArviZ.

Table of contents:

* declaring models: :func:`bnn_model`, :mod:`ppl_bnn.declare.priors`,
  :mod:`ppl_bnn.declare.likelihoods`,
  :mod:`ppl_bnn.models` (architectures by name)
* data: :func:`load_dataset`, :class:`Dataset`
* densities and devices: :class:`LogDensity`, :func:`make_mesh`, :func:`shard_batch`
* inference: :func:`infer` (any NumPyro model, any backend, one call),
  :mod:`ppl_bnn.inference` (kernels), :func:`run` / :func:`run_hmc` (whole runs from a
  config, resumable), :class:`HMCConfig`, :class:`RunResult`
* evaluation: :mod:`ppl_bnn.evaluation.metrics`, :mod:`ppl_bnn.diagnostics`
"""

from ppl_bnn.config import CommonConfig, HMCConfig
from ppl_bnn.data import Dataset, load_dataset
from ppl_bnn.declare import likelihoods, priors
from ppl_bnn.declare.bnn import bnn_model
from ppl_bnn.declare.problem import Problem, build_problem
from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import make_mesh, shard_batch
from ppl_bnn.evaluation import metrics
from ppl_bnn.store import checkpoint as _checkpoint

# The run states of the layers above the store, readable by any reader of a checkpoint
# (named, not imported: a module is imported when a checkpoint is first read or written).
_checkpoint.register_state_modules(
    "ppl_bnn.evaluation.bma",
    "ppl_bnn.driver.hmc",
    "ppl_bnn.driver.mcmc",
    "ppl_bnn.driver.minibatch",
    "ppl_bnn.driver.sgd",
    "ppl_bnn.driver.sgmcmc",
    "ppl_bnn.driver.vi",
)


def __getattr__(name: str):
    # ``run`` and ``run_hmc`` load on first use: they import blackjax, whose import already
    # starts JAX's backend, and ``jax.distributed.initialize`` (multi-process runs,
    # ``ppl_bnn.density.distributed``) must come before that, so ``import ppl_bnn`` must not.
    if name in ("run", "run_hmc", "RunResult"):
        from ppl_bnn import driver

        return getattr(driver, name)
    if name == "infer":
        from ppl_bnn.api import infer

        return infer
    raise AttributeError(f"module 'ppl_bnn' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "CommonConfig",
    "Dataset",
    "HMCConfig",
    "LogDensity",
    "RunResult",
    "Problem",
    "bnn_model",
    "build_problem",
    "infer",
    "likelihoods",
    "load_dataset",
    "make_mesh",
    "metrics",
    "priors",
    "run",
    "run_hmc",
    "shard_batch",
]
