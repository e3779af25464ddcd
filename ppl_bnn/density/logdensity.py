"""The full-batch log density of any NumPyro model, sharded over a device mesh.

NumPyro owns the model: the prior and the likelihood are read off a trace of the model
(``handlers.trace`` under ``handlers.substitute``), never from a second hand-written copy.
The model must be callable as ``model(x, y=None)`` with one value per row of the data at
each observed site: inside a plate over the leading batch axis (every
``ppl_bnn.bnn_model`` is), or a row-wise distribution made into one by ``.to_event``
(``dist.Normal(x @ w, s).to_event(1)``), whose per-row terms are recovered.

* the **log prior** is the sum over latent sites (evaluated once, replicated);
* the **log likelihood** is the sum over observed sites and over the whole training set:
  each device sums its shard inside ``shard_map`` and ``psum`` adds the shards. Inside a
  shard it can be accumulated over microbatches (``microbatch_size``) whose activations
  are rematerialised in the backward pass, so memory no longer grows with the dataset.

Positions live in unconstrained space (``biject_to(site.support)``); for the real-valued
weight priors of a BNN this is the identity. Tempering (``handlers.scale``) multiplies the
site log densities; the change-of-variables Jacobian is not tempered, so that the
tempered posterior over the constrained values is exactly ``p(theta | D)^(1/T)``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from numpyro import handlers
from numpyro.distributions.transforms import biject_to
from numpyro.infer.initialization import init_to_uniform, init_to_value
from numpyro.primitives import Messenger

from ppl_bnn.density.sharding import DATA_AXIS, Batch
from ppl_bnn.types import ArrayTree, PRNGKey

__all__ = [
    "LogDensity",
    "check_rowwise",
    "flax_initial_values",
    "predictive_stats",
    "row_event_dims",
]


def predictive_stats(fn: dist.Distribution) -> jax.Array:
    """Function-space summary of a predictive distribution, one row per example.

    Categorical: the class probabilities ``(n, C)``. Anything else: mean and standard
    deviation ``(n, 2)`` (for the Gaussian heads: the predictive mean and noise std).
    """
    fn = _strip_events(fn, row_event_dims(fn))
    base = fn.base_dist if isinstance(fn, dist.ExpandedDistribution) else fn
    if isinstance(base, dist.CategoricalLogits | dist.CategoricalProbs):
        return jnp.broadcast_to(base.probs, fn.batch_shape + base.probs.shape[-1:])
    mean = jnp.broadcast_to(fn.mean, fn.batch_shape)
    std = jnp.broadcast_to(jnp.sqrt(fn.variance), fn.batch_shape)
    return jnp.stack([mean, std], axis=-1)


def _structural(model: Callable) -> Callable:
    """The model with every latent site set by ``init_to_uniform``: tracing it never
    samples a distribution, so improper priors (``ImproperUniform``) trace too."""
    return handlers.substitute(handlers.seed(model, 0), substitute_fn=init_to_uniform)


def _strip_events(fn: dist.Distribution, k: int) -> dist.Distribution:
    for _ in range(k):
        fn = fn.base_dist
    return fn


def row_event_dims(fn: dist.Distribution) -> int:
    """How many ``Independent`` layers (``.to_event``) hide the batch axis of ``fn``.

    ``dist.Normal(mu, s).to_event(1)`` with ``mu`` of shape ``(n,)`` is one distribution
    over all ``n`` rows, yet it factorises over them: its log density is the sum of the
    base distribution's per-row terms. Stripping those layers recovers the per-row terms
    that sharding, microbatching and padding masks need. Zero for sites in a data plate.
    """
    k = 0
    while isinstance(fn, dist.Independent) and not fn.batch_shape:
        fn, k = fn.base_dist, k + 1
    return k


def check_rowwise(name: str, fn: dist.Distribution, rows: int) -> int:
    """``row_event_dims`` of observed site ``name``, or a one-line error if it does not
    factorise over the ``rows`` of the batch (e.g. a multivariate normal over all rows)."""
    k = row_event_dims(fn)
    if _strip_events(fn, k).batch_shape[:1] != (rows,):
        raise ValueError(
            f"observed site {name!r} is not one value per row of the data (batch shape "
            f"{fn.batch_shape}, event shape {fn.event_shape}, {rows} rows): declare it inside "
            f"`with numpyro.plate('data', x.shape[0]):` or as a row-wise distribution "
            f"with `.to_event(...)`"
        )
    return k


def _model_error(model: Callable, e: Exception, trace: dict) -> str:
    """One line for an error the model raised while traced: the error, where in the
    model's own file (the line), and the last site it declared before."""
    import traceback

    message = (str(e).strip().splitlines() or [""])[0]
    library = (str(Path(__file__).parents[1]), "site-packages", "<frozen")
    where = ""
    frames = traceback.extract_tb(e.__traceback__)
    own = [f for f in frames if not any(part in f.filename for part in library)]
    if own:
        f = own[-1]
        where = f" at {Path(f.filename).name}:{f.lineno} ({(f.line or '').strip()[:80]})"
    sites = [n for n, s in trace.items() if s["type"] == "sample"]
    after = f", after site {sites[-1]!r}" if sites else ", before its first site"
    name = getattr(model, "__name__", "model")
    return (
        f"the model {name!r} raised {type(e).__name__}{where}{after} when called on two rows "
        f"of the data: {message[:300]}"
    )


def _refuse_local_latents(trace, latent_sites: list[str], observed_sites: list[str]) -> None:
    """A one-line error for a latent site inside the data plate (one latent per row).

    Positions are replicated on every device while the rows are sharded, and the model is
    traced on a few example rows, so per-row latent variables cannot be represented.
    """
    data_plates = {f.name for n in observed_sites for f in trace[n]["cond_indep_stack"] if f.size}
    for name in latent_sites:
        inside = [f.name for f in trace[name]["cond_indep_stack"] if f.name in data_plates]
        if inside:
            raise ValueError(
                f"latent site {name!r} lies inside the data plate {inside[0]!r} (one latent "
                "per row of the data), which ppl_bnn cannot shard: give it a plate of its own "
                "size (e.g. one per group, indexed by a column of x)"
            )


def _row_log_prob(site, rows: int) -> jax.Array:
    """Scaled log density of an observed site, one value per row of the batch."""
    fn = _strip_events(site["fn"], row_event_dims(site["fn"]))
    lp = jnp.reshape(fn.log_prob(site["value"]), (rows, -1)).sum(-1)
    return lp * _site_scale(site)


def _site_scale(site) -> float | jax.Array:
    return 1.0 if site["scale"] is None else site["scale"]


class _CaptureFlaxInit(Messenger):
    """Records the freshly initialised parameters of every ``flax_module`` param site
    (``random_flax_module`` overwrites them with shapes right after)."""

    def __init__(self):
        super().__init__()
        self.params: dict[str, ArrayTree] = {}

    def postprocess_message(self, msg):
        if msg["type"] == "param" and msg["name"].endswith("$params") and msg["value"]:
            self.params[msg["name"][: -len("$params")]] = jax.tree.map(lambda a: a, msg["value"])


def flax_initial_values(model: Callable, rng_key: PRNGKey, *args) -> dict[str, jax.Array]:
    """Initial values of the sample sites of every ``random_flax_module`` in ``model``,
    drawn by the Flax modules' own initialisers with ``rng_key``.

    Keyed like the sample sites, ``"{module name}/{dotted parameter path}"``.
    """
    capture = _CaptureFlaxInit()
    with capture:
        handlers.substitute(handlers.seed(model, rng_key), substitute_fn=init_to_uniform)(*args)
    values = {}
    for prefix, params in capture.params.items():
        for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
            values[prefix + "/" + ".".join(str(getattr(k, "key", k)) for k in path)] = leaf
    return values


class LogDensity:
    """Log prior, sharded full-batch log likelihood and predictions of a NumPyro model.

    Args:
        model: a NumPyro model ``model(x, y=None)``.
        mesh: the device mesh (``ppl_bnn.density.sharding.make_mesh``).
        example: one example batch ``(x, y)`` (numpy, a few rows) used to trace the model.
        microbatch_size: if set, each device accumulates its shard's log likelihood in
            chunks of this many rows (the batch must be padded to a multiple of it:
            ``shard_batch(..., multiple=microbatch_size)``).

    Example:
        >>> import jax, numpy as np, numpyro, numpyro.distributions as dist
        >>> from ppl_bnn.density.logdensity import LogDensity
        >>> from ppl_bnn.density.sharding import make_mesh, shard_batch
        >>> def model(x, y=None):  # Bayesian linear regression
        ...     w = numpyro.sample("w", dist.Normal(0, 1).expand([x.shape[1]]).to_event(1))
        ...     with numpyro.plate("data", x.shape[0]):
        ...         numpyro.sample("y", dist.Normal(x @ w, 0.5), obs=y)
        >>> x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
        >>> y = (x @ np.array([1.0, -1.0, 0.5])).astype(np.float32)
        >>> mesh = make_mesh()
        >>> ld = LogDensity(model, mesh, (x[:2], y[:2]))
        >>> batch = shard_batch(mesh, x, y)
        >>> theta = ld.init(jax.random.key(0))
        >>> value, grad = jax.value_and_grad(ld)(theta, batch)
        >>> grad["w"].shape
        (3,)
    """

    def __init__(
        self,
        model: Callable,
        mesh: Mesh,
        example: tuple[np.ndarray, np.ndarray],
        *,
        microbatch_size: int | None = None,
    ):
        self.model = model
        self.mesh = mesh
        self.microbatch_size = microbatch_size
        self._example: tuple[np.ndarray, np.ndarray] = tuple(np.asarray(a) for a in example)  # type: ignore[assignment]
        # Trace abstractly (no compilation, no FLOPs): only names, shapes and supports
        # are needed. Parameter sites holding arrays are then evaluated concretely.
        captured = {}
        tracer = handlers.trace(_structural(model))

        def structure(x, y):
            captured.update(tracer.get_trace(x, y))

        try:
            jax.eval_shape(structure, *self._example)
        except Exception as e:  # noqa: BLE001 - any error of the user's model, in one line
            raise ValueError(_model_error(model, e, getattr(tracer, "trace", None) or {})) from None
        trace = captured
        self.latent_sites = [
            name
            for name, s in trace.items()
            if s["type"] == "sample" and not s["is_observed"] and not s["infer"].get("is_auxiliary")
        ]
        for name in self.latent_sites:
            fn = trace[name]["fn"]
            if fn.support.is_discrete:
                raise ValueError(
                    f"latent site {name!r} is discrete ({type(fn).__name__}): every ppl_bnn "
                    "method moves continuous latents by gradients; sum it out of the model "
                    "(or observe it)"
                )
        self.observed_sites = [
            name for name, s in trace.items() if s["type"] == "sample" and s["is_observed"]
        ]
        if not self.observed_sites:
            raise ValueError("the model has no observed site: call it as model(x, y)")
        rows = self._example[0].shape[0]
        for name in self.observed_sites:
            check_rowwise(name, trace[name]["fn"], rows)
        _refuse_local_latents(trace, self.latent_sites, self.observed_sites)
        # numpyro.param sites (for a Flax module: its parameter shapes) are held fixed.
        param_names = [n for n, s in trace.items() if s["type"] == "param"]
        if any(jax.tree.leaves(trace[n]["value"]) for n in param_names):
            concrete = handlers.trace(_structural(model)).get_trace(*self._example)
            self._params = {n: concrete[n]["value"] for n in param_names}
        else:
            self._params = {n: trace[n]["value"] for n in param_names}
        self.transforms = {n: biject_to(trace[n]["fn"].support) for n in self.latent_sites}
        self.shapes = {n: tuple(jnp.shape(trace[n]["value"])) for n in self.latent_sites}
        self._init = jax.jit(self._init_impl)

    # ----------------------------------------------------------------- positions
    def init(self, rng_key: PRNGKey, values: dict | None = None) -> dict:
        """An initial position (unconstrained) for one chain.

        Network weights start from the Flax module's own initialisers (as the original
        code did with Haiku's), for every ``random_flax_module`` of the model whatever its
        name; ``values`` pins any site; every other latent site starts uniformly in
        ``(-2, 2)`` in unconstrained space.
        """
        return self._init(rng_key, dict(values or {}))

    def _init_impl(self, rng_key: PRNGKey, values: dict) -> dict:
        key_net, key_rest = jax.random.split(rng_key)
        if any(n.endswith("$params") for n in self._params):  # a Flax module's parameters
            for name, leaf in flax_initial_values(self.model, key_net, *self._example).items():
                if name in self.latent_sites:
                    values.setdefault(name, leaf)
        if not all(n in values for n in self.latent_sites):
            strategy = init_to_value(values=values)
            # seed innermost: the init strategy draws with the key the seed handler provides
            seeded = handlers.substitute(
                handlers.seed(self.model, key_rest), substitute_fn=strategy
            )
            model = handlers.substitute(seeded, self._params)
            trace = handlers.trace(model).get_trace(*self._example)
            values = {n: trace[n]["value"] for n in self.latent_sites}
        # (every site given: the model's trace would return the values as they are)
        dtype = jnp.zeros(()).dtype
        return {n: jnp.asarray(self.transforms[n].inv(values[n]), dtype) for n in self.latent_sites}

    def constrain(self, position: dict) -> dict:
        """Map an unconstrained position to the values of the model's sites."""
        return {n: self.transforms[n](position[n]) for n in self.latent_sites}

    def unconstrain(self, values: dict) -> dict:
        """Inverse of :meth:`constrain`."""
        return {n: self.transforms[n].inv(values[n]) for n in self.latent_sites}

    def _trace(self, position: dict, x, y, substitute_fn=None):
        model = handlers.substitute(self.model, {**self._params, **self.constrain(position)})
        if substitute_fn is not None:
            model = handlers.substitute(model, substitute_fn=substitute_fn)
        return handlers.trace(model).get_trace(x, y)

    # -------------------------------------------------------------- densities
    def log_prior(self, position: dict) -> jax.Array:
        """Tempered log prior (plus the log-Jacobian of the unconstraining transform)."""
        trace = self._trace(position, *self._example)
        total = jnp.zeros((), jax.tree.leaves(position)[0].dtype)
        for n in self.latent_sites:
            site = trace[n]
            total = total + jnp.sum(site["fn"].log_prob(site["value"])) * _site_scale(site)
            t = self.transforms[n]
            if not isinstance(t, dist.transforms.IdentityTransform):
                total = total + jnp.sum(t.log_abs_det_jacobian(position[n], site["value"]))
        return total

    def _local_log_likelihood(self, position: dict, x, y, mask) -> jax.Array:
        """Masked log likelihood of the rows of one shard (no communication)."""

        def chunk(x, y, mask):
            trace = self._trace(position, x, y)
            lps = [_row_log_prob(trace[n], mask.shape[0]) for n in self.observed_sites]
            return sum(jnp.sum(jnp.where(mask > 0, lp, 0.0)) for lp in lps)

        # activations are recomputed in the backward pass: memory of one chunk
        return self._over_chunks(chunk, x, y, mask, remat=True)

    def _over_chunks(self, chunk: Callable, x, y, mask, *, remat: bool) -> jax.Array:
        """``chunk(x, y, mask)`` summed over the shard, ``microbatch_size`` rows at a time."""
        m = self.microbatch_size
        if m is None or m >= x.shape[0]:
            return chunk(x, y, mask)
        split = lambda a: a.reshape((a.shape[0] // m, m) + a.shape[1:])
        body = lambda acc, c: (acc + chunk(*c), None)
        total, _ = jax.lax.scan(
            jax.checkpoint(body) if remat else body,
            self._zero_accumulator(mask.dtype),
            (split(x), split(y), split(mask)),
        )
        return total

    # ------------------------------------------------------------- sharding
    @property
    def _sharded(self) -> bool:
        # On a one-device mesh shard_map only adds a (trivial) collective, which inside
        # the leapfrog loop costs measurably on CPU: call the per-shard function directly.
        return self.mesh.devices.size > 1

    def _over_shards(self, fn: Callable, in_specs: tuple, out_specs) -> Callable:
        if not self._sharded:
            return fn
        return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs)

    def _psum(self, value: jax.Array) -> jax.Array:
        return jax.lax.psum(value, DATA_AXIS) if self._sharded else value

    def _zero_accumulator(self, dtype) -> jax.Array:
        zero = jnp.zeros((), dtype)
        # the accumulator varies across the data axis like the shard it sums
        return jax.lax.pcast(zero, (DATA_AXIS,), to="varying") if self._sharded else zero

    def log_likelihood(self, position: dict, batch: Batch) -> jax.Array:
        """Tempered log likelihood of the full batch, summed across the mesh."""
        data = P(DATA_AXIS)

        def local(position, x, y, mask):
            return self._psum(self._local_log_likelihood(position, x, y, mask))

        summed = self._over_shards(local, (P(), data, data, data), P())

        return summed(position, batch.x, batch.y, batch.mask)

    def minibatch_log_likelihood(self, position: dict, x: jax.Array, y: jax.Array) -> jax.Array:
        """Tempered log likelihood summed over the rows of one minibatch, without ``shard_map``.

        For the minibatch methods (SGD, SG-MCMC, VI). Every row counts (no mask, no
        microbatching). Under ``jit``, rows gathered from a sharded batch are partitioned
        by XLA itself; on one device this avoids the collective ``shard_map`` inserts,
        which inside a ``lax.scan`` over minibatches costs more than the step on CPU.
        """
        trace = self._trace(position, x, y)
        total = jnp.zeros((), jax.tree.leaves(position)[0].dtype)
        for n in self.observed_sites:
            site = trace[n]
            total = total + jnp.sum(site["fn"].log_prob(site["value"])) * _site_scale(site)
        return total

    def log_density_difference(self, new: dict, old: dict, batch: Batch) -> jax.Array:
        """``logdensity(new) - logdensity(old)``, accurate when both are huge.

        In float32 a full-batch log density of 1e6 carries an absolute error of order 0.1,
        so subtracting two of them blurs the Metropolis-Hastings test. Here the difference
        is taken per parameter coordinate and per example *before* summing (the original
        code did this for the Gaussian prior in closed form), so the error scales with the
        difference, not with the totals. Costs two forward passes, no gradient.
        """
        tr_new, tr_old = self._trace(new, *self._example), self._trace(old, *self._example)
        total = jnp.zeros((), jax.tree.leaves(new)[0].dtype)
        for n in self.latent_sites:
            a, b = tr_new[n], tr_old[n]
            fa, fb = a["fn"], b["fn"]
            while isinstance(fa, dist.Independent) and isinstance(fb, dist.Independent):
                fa, fb = fa.base_dist, fb.base_dist  # elementwise log densities
            diff = fa.log_prob(a["value"]) * _site_scale(a) - fb.log_prob(b["value"]) * _site_scale(
                b
            )
            total = total + jnp.sum(diff)
            t = self.transforms[n]
            if not isinstance(t, dist.transforms.IdentityTransform):
                total = (
                    total
                    + jnp.sum(t.log_abs_det_jacobian(new[n], a["value"]))
                    - jnp.sum(t.log_abs_det_jacobian(old[n], b["value"]))
                )

        def likelihood_diff(new, old, x, y, mask):
            def chunk(x, y, mask):
                tn, to = self._trace(new, x, y), self._trace(old, x, y)
                rows = mask.shape[0]
                return sum(
                    jnp.sum(
                        jnp.where(
                            mask > 0, _row_log_prob(tn[n], rows) - _row_log_prob(to[n], rows), 0.0
                        )
                    )
                    for n in self.observed_sites
                )

            return self._psum(self._over_chunks(chunk, x, y, mask, remat=False))

        data = P(DATA_AXIS)
        diff = self._over_shards(likelihood_diff, (P(), P(), data, data, data), P())
        return total + diff(new, old, batch.x, batch.y, batch.mask)

    def __call__(self, position: dict, batch: Batch) -> jax.Array:
        """Tempered log posterior density (unnormalised)."""
        return self.log_prior(position) + self.log_likelihood(position, batch)

    # ------------------------------------------------------------ predictions
    def predict(self, position: dict, x: jax.Array) -> jax.Array:
        """Predictive statistics (``predictive_stats``) for every row of a sharded ``x``."""

        observed = set(self.observed_sites)

        def placeholder(site):
            # an unobserved likelihood site would draw y from a key that is the same on
            # every shard while its parameters vary by shard (refused by shard_map);
            # only its distribution is read here, so it gets zeros instead of a draw
            if site["type"] == "sample" and site["name"] in observed:
                fn = site["fn"]
                dtype = jnp.int32 if fn.support.is_discrete else x.dtype
                return jnp.zeros(fn.shape(), dtype)
            return None

        def local(position, x):
            trace = self._trace(position, x, None, substitute_fn=placeholder)
            return predictive_stats(trace[self.observed_sites[0]]["fn"])

        return self._over_shards(local, (P(), P(DATA_AXIS)), P(DATA_AXIS))(position, x)

    def num_parameters(self) -> int:
        return int(sum(np.prod(s, dtype=int) for s in self.shapes.values()))


ArrayTree = ArrayTree  # re-exported for type hints in callers
