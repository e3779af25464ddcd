"""Variational inference with NumPyro's autoguides and SVI, on minibatches.

Mean-field VI (the paper's MFVI, Blundell et al. 2015) is NumPyro's ``AutoNormal``: an
independent Gaussian per parameter, ``loc`` initialised at a given position (for a BNN
usually an SGD solution, ``--mean_init_checkpoint``) and ``scale = softplus(rho)``
initialised at ``--vi_sigma_init`` (the original's parametrisation). Other autoguides
(``AutoDiagonalNormal``, ``AutoLowRankMultivariateNormal``) are a name away.

**Starting at the MAP** (:func:`find_map`). Adam moves every coordinate by about its
learning rate per step, whatever the coordinate's scale, and a correlated posterior is a
narrow valley along which it crawls: on a linear regression with an un-centred covariate
of scale 100 (posterior correlation -0.99) the mean was still 3 posterior sds off after
4,000 full-batch steps. L-BFGS (Nocedal & Wright 2006, Alg. 7.5; ``optax.lbfgs``) reaches
that MAP in about 20 iterations whatever the scales and correlations; for a Gaussian
posterior the MAP is the mean, so the ELBO's remaining work is the scales, which Adam
adapts in log space in a few hundred steps. ``ppl_bnn.infer(method="vi")`` starts there
by default (``init_strategy="map"``).

**Objective.** ``Trace_ELBO`` on the model with its observed sites scaled by ``N / B``
(:func:`minibatch_model`): an unbiased estimate of::

    ELBO_T(q) = E_q[ (log p(D | theta) + log p(theta)) / T ] + H(q)

whose maximiser is the ``q`` closest in KL to the tempered posterior ``p(theta | D)^(1/T)``
that HMC and SG-MCMC target; the ``1/T`` comes from the model's own ``handlers.scale``.
The original code instead divided the likelihood by ``T`` and then multiplied the KL by
``T`` (``E_q[log p(D|theta)]/T - T KL(q || p)``), an effective ``T^2`` weighting for
``T != 1``.

Example:
    >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
    >>> from ppl_bnn.inference import schedules, vi
    >>> def model(x, y=None):  # Bayesian linear regression
    ...     w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
    ...     with numpyro.plate("data", x.shape[0]):
    ...         numpyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)
    >>> x = np.random.default_rng(0).normal(size=(640, 3)).astype(np.float32)
    >>> y = (x @ np.array([1.0, -1.0, 0.5])).astype(np.float32)
    >>> batched = vi.minibatch_model(model, num_examples=640, batch_size=80)
    >>> guide = vi.build_guide(batched, init_values={"w": np.zeros(3)}, init_scale=1e-2)
    >>> svi = vi.build_svi(batched, guide, vi.optimizer("Adam", schedules.cosine(3e-2, 200)))
    >>> state = svi.init(jax.random.key(0), x[:80], y[:80])
    >>> update = jax.jit(svi.update)
    >>> for i in range(200):
    ...     rows = slice(80 * (i % 8), 80 * (i % 8 + 1))
    ...     state, loss = update(state, x[rows], y[rows])
    >>> np.round(vi.mean_values(guide, svi.get_params(state), ["w"])["w"], 1)
    Array([ 1. , -1. ,  0.5], dtype=float32)
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from numpyro.infer import SVI, Trace_ELBO, autoguide
from numpyro.infer.initialization import init_to_value
from numpyro.optim import optax_to_numpyro
from numpyro.primitives import Messenger

from ppl_bnn.methods import option_name
from ppl_bnn.types import ArrayTree, PRNGKey

__all__ = [
    "GUIDES",
    "OrderedTraceELBO",
    "build_guide",
    "build_svi",
    "find_map",
    "find_map_stack",
    "mean_values",
    "minibatch_model",
    "optimizer",
    "sample_values",
    "scale_observed",
]

GUIDES: dict[str, type] = {
    "AutoNormal": autoguide.AutoNormal,
    "AutoDiagonalNormal": autoguide.AutoDiagonalNormal,
    "AutoLowRankMultivariateNormal": autoguide.AutoLowRankMultivariateNormal,
}


class scale_observed(Messenger):  # noqa: N801 - a NumPyro handler, named like its peers
    """Multiply the log density of the *observed* sites by ``scale`` (latent sites untouched).

    With ``scale = N / B`` a minibatch stands for the whole training set, as NumPyro's
    ``plate(subsample_size=...)`` would do for a model written with subsampling.
    """

    def __init__(self, fn=None, scale: float = 1.0):
        if scale <= 0:
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = scale
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg.get("is_observed"):
            msg["scale"] = self.scale if msg.get("scale") is None else self.scale * msg["scale"]


def minibatch_model(model: Callable, *, num_examples: int, batch_size: int) -> Callable:
    """``model`` seen through minibatches of ``batch_size``: observed sites scaled by ``N / B``."""
    factor = num_examples / batch_size

    def scaled(x, y=None):
        with scale_observed(scale=factor):
            return model(x, y)

    return scaled


def build_guide(
    model: Callable,
    name: str = "AutoNormal",
    *,
    init_values: dict | None = None,
    init_scale: float = 0.1,
    rank: int | None = None,
):
    """A NumPyro autoguide by name, centred at ``init_values`` (constrained site values)."""
    if name not in GUIDES:
        raise ValueError(
            f"unknown {option_name('vi_guide')}={name!r}; choose one of {', '.join(GUIDES)}"
        )
    if init_scale <= 0:
        raise ValueError(f"{option_name('vi_sigma_init')} must be positive, got {init_scale}")
    kwargs = {
        "init_loc_fn": init_to_value(values=dict(init_values or {})),
        "init_scale": init_scale,
    }
    if name == "AutoLowRankMultivariateNormal" and rank is not None:
        kwargs["rank"] = rank
    return GUIDES[name](model, **kwargs)


def optimizer(name: str, schedule: optax.Schedule, momentum_decay: float = 0.9):
    """``Adam`` (b1 0.9, b2 0.999, eps 1e-8, the original's) or ``SGD`` with momentum."""
    if name == "Adam":
        return optax.adam(schedule, b1=0.9, b2=0.999, eps=1e-8)
    if name == "SGD":
        return optax.sgd(schedule, momentum=momentum_decay or None)
    raise ValueError(f"unknown {option_name('optimizer')}={name!r}; choose SGD or Adam")


class OrderedTraceELBO(Trace_ELBO):
    """NumPyro's ``Trace_ELBO`` with its per-site terms summed in a fixed order.

    ``Trace_ELBO`` sums the sites' ``log p - log q`` terms in the iteration order of a
    Python ``set`` of site names, which follows the process's string-hash seed
    (``PYTHONHASHSEED``): two processes running the same fit added the same float32 terms
    in different orders and drifted apart in the last digits after a few steps. Here the
    terms are summed in sorted site-name order, whatever the process.
    """

    def __init__(self, num_particles: int = 1, **kwargs):
        super().__init__(num_particles=num_particles, **{**kwargs, "sum_sites": False})

    def loss_with_mutable_state(self, rng_key, param_map, model, guide, *args, **kwargs):
        out = super().loss_with_mutable_state(rng_key, param_map, model, guide, *args, **kwargs)
        terms = out["loss"]
        total = jnp.array(0.0)
        for name in sorted(terms):
            total = total + terms[name]
        return {**out, "loss": total}


def build_svi(
    model: Callable, guide, opt: optax.GradientTransformation, *, num_particles: int = 1
) -> SVI:
    """NumPyro ``SVI`` minimising the negative ELBO of ``model`` with ``opt`` (summed over
    sites in a fixed order: :class:`OrderedTraceELBO`)."""
    return SVI(model, guide, optax_to_numpyro(opt), OrderedTraceELBO(num_particles=num_particles))


def find_map(logdensity_fn: Callable, position: ArrayTree, *, num_steps: int = 100) -> ArrayTree:
    """``num_steps`` L-BFGS iterations (zoom line search) up ``logdensity_fn`` from
    ``position``; the start is returned instead when the end is not finite or not better
    (a density that grows without bound, as at a hierarchical model's funnel neck).

    Example:
        >>> import jax.numpy as jnp
        >>> from ppl_bnn.inference import vi
        >>> p = vi.find_map(lambda p: -((p["a"] - 3.0) ** 2).sum() - 1e4 * p["b"] ** 2,
        ...                 {"a": jnp.zeros(2), "b": jnp.ones(())})
        >>> [round(float(v), 4) for v in (*p["a"], p["b"])]
        [3.0, 3.0, 0.0]
    """
    opt = optax.lbfgs()
    loss = lambda p: -logdensity_fn(p)  # noqa: E731
    value_and_grad = optax.value_and_grad_from_state(loss)

    def body(carry, _):
        p, state = carry
        value, grad = value_and_grad(p, state=state)
        updates, state = opt.update(grad, state, p, value=value, grad=grad, value_fn=loss)
        return (optax.apply_updates(p, updates), state), None

    (end, _), _ = jax.lax.scan(body, (position, opt.init(position)), None, length=num_steps)
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(end)]))
    better = finite & jnp.isfinite(loss(end)) & (loss(end) <= loss(position))
    return jax.tree.map(lambda a, b: jnp.where(better, a, b), end, position)


def find_map_stack(logdensity, positions: ArrayTree, batch, *, num_steps: int = 100) -> ArrayTree:
    """:func:`find_map` of a ``LogDensity`` on ``batch`` (the full training set) from each
    of a stack of unconstrained positions ``(chains, ...)``, vectorised."""
    one = lambda p: find_map(lambda q: logdensity(q, batch), p, num_steps=num_steps)  # noqa: E731
    return jax.jit(jax.vmap(one))(positions)


def mean_values(guide, params: dict, sites: list[str]) -> dict:
    """The guide's median (its mean for Gaussian guides) at ``sites``, constrained."""
    median = guide.median(params)
    return {k: median[k] for k in sites}


def sample_values(rng_key: PRNGKey, guide, params: dict, sites: list[str], num: int) -> ArrayTree:
    """``num`` joint draws from the guide at ``sites`` (constrained), leading axis ``num``."""
    draws = guide.sample_posterior(rng_key, params, sample_shape=(num,))
    return {k: draws[k] for k in sites}
