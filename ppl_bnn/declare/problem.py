"""Assemble what every backend needs from a configuration: data, model, log density, mesh."""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from numpyro import handlers

from ppl_bnn.config import BNN_FIELDS, ProblemConfig, problem_config
from ppl_bnn.data import Dataset, load_dataset
from ppl_bnn.data.augment import with_augmented_copies
from ppl_bnn.declare import likelihoods, priors
from ppl_bnn.declare.bnn import bnn_model
from ppl_bnn.density.distributed import initialize_from_config
from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import Batch, make_mesh, shard_batch
from ppl_bnn.models import get_model

__all__ = [
    "FINGERPRINT_KEYS",
    "Problem",
    "build_prior",
    "build_likelihood",
    "build_problem",
    "problem_from_arrays",
]


@dataclass
class Problem:
    """A dataset, the model declared on it, and both splits placed on the mesh.

    ``test`` is ``None`` when there is no test split (then nothing is predicted).
    ``model_name`` names the model in summaries; ``config`` is what declared the problem
    (the applicable :class:`ProblemConfig` fields), recorded with the run, or ``None`` for
    a problem assembled in Python (recorded as ``{"model": model_name}``).
    """

    dataset: Dataset
    model: Callable[..., Any]
    logdensity: LogDensity
    mesh: Mesh
    train: Batch
    test: Batch | None
    model_name: str = "model"
    config: dict[str, Any] | None = field(default=None)
    _fingerprint: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def has_test(self) -> bool:
        return self.test is not None and self.dataset.x_test.shape[0] > 0

    def record(self) -> dict[str, Any]:
        """What declared this problem, for ``config.json`` and the summary, with the
        :meth:`fingerprint` of its data and model."""
        base = dict(self.config) if self.config is not None else {"model": self.model_name}
        return {**base, **self.fingerprint()}

    def fingerprint(self) -> dict[str, str]:
        """SHA-256 digests that tell this problem's data and model from any other:
        ``data_sha256`` (dtype, shape and bytes of the four arrays),
        ``model_structure_sha256`` (the traced sites: names, kinds, distributions, shapes,
        dtypes) and, for a model given as a Python function, ``model_source_sha256`` (its
        source, when Python can read it). A run directory records them and refuses a
        resume or a read under other data or another model."""
        if self._fingerprint is None:
            ds = self.dataset
            found = {
                "data_sha256": data_digest(ds.x_train, ds.y_train, ds.x_test, ds.y_test),
                "model_structure_sha256": model_structure_digest(
                    self.model, (ds.x_train[:2], ds.y_train[:2])
                ),
            }
            if self.config is None:  # a function in memory: its source, where readable
                source = model_source_digest(self.model)
                if source is not None:
                    found["model_source_sha256"] = source
            self._fingerprint = found
        return dict(self._fingerprint)


#: the keys of :meth:`Problem.fingerprint` (a run records them in ``config.json``)
FINGERPRINT_KEYS = ("data_sha256", "model_structure_sha256", "model_source_sha256")


def data_digest(*arrays) -> str:
    """SHA-256 of the dtype, shape and bytes of each array, in order."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape};".encode())
        h.update(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def model_structure_digest(model, example) -> str:
    """SHA-256 of the model's traced structure on ``example`` (abstractly: no FLOPs):
    every sample, param and deterministic site's name, kind, observedness, distribution
    (with the ones it wraps), batch and event shapes, value shape and dtype."""
    from ppl_bnn.density.logdensity import _structural

    captured: dict[str, Any] = {}

    def structure(x, y):
        captured.update(handlers.trace(_structural(model)).get_trace(x, y))

    jax.eval_shape(structure, *(np.asarray(a) for a in example))
    rows = []
    for name, site in captured.items():
        if site["type"] not in ("sample", "param", "deterministic"):
            continue
        fn, kinds = site.get("fn"), []
        while fn is not None:
            kinds.append(
                [
                    type(fn).__name__,
                    list(getattr(fn, "batch_shape", ())),
                    list(getattr(fn, "event_shape", ())),
                ]
            )
            fn = getattr(fn, "base_dist", None)
        leaves = jax.tree.leaves(site["value"])
        values = [[list(np.shape(v)), str(getattr(v, "dtype", type(v).__name__))] for v in leaves]
        rows.append([name, site["type"], bool(site.get("is_observed")), kinds, values])
    text = json.dumps(rows, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def model_source_digest(model) -> str | None:
    """SHA-256 of a Python function's source, or ``None`` when Python cannot read it."""
    try:
        source = inspect.getsource(inspect.unwrap(model))
    except (OSError, TypeError):
        return None
    return hashlib.sha256(source.encode()).hexdigest()


def build_prior(cfg: ProblemConfig) -> priors.Prior:
    kwargs = {}
    if cfg.prior_family == "student_t":
        kwargs["df"] = cfg.student_t_df
    elif cfg.prior_family == "mixture_gaussian":
        kwargs = {"weight": cfg.mixture_weight, "scale_ratio": cfg.mixture_scale_ratio}
    if cfg.prior_family not in priors.PRIOR_FAMILIES:
        raise ValueError(
            f"unknown prior family {cfg.prior_family!r}; choose one of "
            f"{', '.join(priors.PRIOR_FAMILIES)}"
        )
    family = priors.PRIOR_FAMILIES[cfg.prior_family]
    overrides = {}
    if cfg.bias_weight_decay is not None:
        overrides["*bias"] = family(cfg.bias_weight_decay, **kwargs)
    return priors.per_parameter(
        family(cfg.weight_decay, **kwargs), overrides, fan_in_scaling=cfg.fan_in_scaling
    )


def build_likelihood(cfg: ProblemConfig, dataset: Dataset):
    name = cfg.likelihood
    if name == "auto":
        name = "categorical" if dataset.task == "classification" else "heteroscedastic"
    lik = likelihoods.make_likelihood(
        name, **({"noise_std": cfg.noise_std} if name == "homoscedastic" else {})
    )
    if (lik.task == "classification") != (dataset.task == "classification"):
        raise ValueError(
            f"likelihood {name!r} is for {lik.task} but {dataset.name} is a {dataset.task} dataset"
        )
    return lik


def build_problem(cfg: ProblemConfig, dataset: Dataset | None = None) -> Problem:
    """Load the data, declare the model and place both splits on a mesh.

    The model is the BNN ``cfg.model_name`` with the configured prior and likelihood, or,
    with ``cfg.model = "file.py:function"``, the user's own NumPyro model (tempered by
    ``cfg.temperature``; the BNN fields do not apply). Starts ``jax.distributed`` first
    when the config or the environment asks for a multi-process run; the mesh then spans
    every process's devices and each process places only its own rows of the data.
    """
    initialize_from_config(cfg)
    if cfg.use_float64:
        jax.config.update("jax_enable_x64", True)
    if cfg.temperature <= 0:
        raise ValueError(f"--temperature must be positive, got {cfg.temperature}")
    if cfg.microbatch_size is not None and cfg.microbatch_size < 1:
        raise ValueError(f"--microbatch_size must be at least 1, got {cfg.microbatch_size}")
    if cfg.num_devices is not None and cfg.num_devices < 1:
        raise ValueError(f"--num_devices must be at least 1, got {cfg.num_devices}")
    user_model = None
    if cfg.model:
        from ppl_bnn.declare.user_model import load_model

        user_model = load_model(cfg.model)  # a bad spec is refused before any data is read
        _refuse_bnn_flags(cfg)
    else:
        prior = build_prior(cfg)  # validate names before any data is read
    if dataset is None:
        dataset = load_dataset(
            cfg.dataset_name,
            data_dir=cfg.data_dir,
            uci_split=cfg.uci_split,
            subset_train_to=cfg.subset_train_to,
        )
    if cfg.num_augmented_copies:
        dataset = with_augmented_copies(dataset, cfg.num_augmented_copies, seed=cfg.seed)  # type: ignore[attr-defined]  # the run's seed (CommonConfig)
    if user_model is None:
        lik = build_likelihood(cfg, dataset)
        num_outputs = lik.num_outputs or dataset.num_classes
        net = get_model(cfg.model_name, num_outputs)
        model = bnn_model(net, prior, lik, temperature=cfg.temperature)
        name = cfg.model_name
    else:
        model, name = tempered(user_model, cfg.temperature), cfg.model  # type: ignore[assignment]  # cfg.model is set with a user model
    record = {k: v for k, v in vars(problem_config(cfg)).items()}
    if user_model is not None:
        from ppl_bnn.declare.user_model import model_file_digest

        for k in BNN_FIELDS:
            record.pop(k)
        # resuming under an edited model file is refused like any other change
        record["model_sha256"] = model_file_digest(cfg.model)  # type: ignore[arg-type]
    problem = place(
        dataset,
        model,
        num_devices=cfg.num_devices,
        microbatch_size=cfg.microbatch_size,
        model_name=name,
        config=record,
    )
    if user_model is not None:
        check_task(problem, "y_train", f"--model={cfg.model}")
    return problem


def _refuse_bnn_flags(cfg: ProblemConfig) -> None:
    """A user model declares its own prior and likelihood: the BNN flags, given with
    ``--model``, would be ignored, so they are refused in one line."""
    import dataclasses

    defaults = {f.name: f.default for f in dataclasses.fields(ProblemConfig)}
    given = [k for k in BNN_FIELDS if k != "model_name" and getattr(cfg, k) != defaults[k]]
    if given:
        raise ValueError(
            f"--{given[0]}={getattr(cfg, given[0])} does not apply to --model={cfg.model}: a "
            "user model declares its own prior and likelihood (drop the flag, or set it in "
            "the model)"
        )


def observed_supports(model, x, y) -> dict[str, tuple[bool, str]]:
    """Observed site -> ``(discrete support, distribution name)`` of ``model(x, y)``,
    traced abstractly (nothing is computed)."""
    from numpyro.infer.initialization import init_to_uniform

    found: dict[str, tuple[bool, str]] = {}

    def structure(x, y):
        traced = handlers.substitute(handlers.seed(model, 0), substitute_fn=init_to_uniform)
        for name, site in handlers.trace(traced).get_trace(x, y).items():
            if site["type"] == "sample" and site["is_observed"]:
                fn = site["fn"]
                while hasattr(fn, "base_dist"):  # Independent, masked, expanded
                    fn = fn.base_dist
                found[name] = (bool(fn.support.is_discrete), type(fn).__name__)

    jax.eval_shape(structure, x, y)
    return found


def check_task(problem: Problem, y_name: str, model_name: str) -> None:
    """A one-line error when the targets' kind does not fit the model's likelihood:
    integer class labels under a continuous observed site (a regression model), or
    fractional targets under a discrete one (a classification model)."""
    ds = problem.dataset
    sites = observed_supports(problem.model, ds.x_train[:2], ds.y_train[:2])
    for name, (discrete, dist_name) in sites.items():
        if ds.task == "classification" and not discrete:
            raise ValueError(
                f"{y_name} holds integers (class labels: a classification task) but the "
                f"observed site {name!r} of {model_name} is continuous ({dist_name}): give "
                f"float targets ({y_name}.astype(np.float32)) for a regression"
            )
        whole = bool(np.all(np.mod(ds.y_train, 1) == 0))  # 0.0 / 1.0 Bernoulli targets
        if ds.task == "regression" and discrete and not whole:
            raise ValueError(
                f"{y_name} holds floats (a regression task) but the observed site {name!r} "
                f"of {model_name} is discrete ({dist_name}) and they are not whole numbers"
            )


def tempered(model, temperature: float):
    """``model`` with every site's log density divided by ``temperature`` (1: unchanged)."""
    if temperature == 1.0:
        return model

    def scaled(x, y=None):
        with handlers.scale(scale=1.0 / temperature):
            return model(x, y)

    for attr in ("net", "net_name"):  # the Flax module, if the model exposes one
        if hasattr(model, attr):
            setattr(scaled, attr, getattr(model, attr))
    return scaled


def place(
    dataset: Dataset,
    model,
    *,
    num_devices: int | None = None,
    microbatch_size: int | None = None,
    model_name: str = "model",
    config: dict[str, Any] | None = None,
) -> Problem:
    """Trace ``model`` on ``dataset`` and place both splits on a mesh."""
    mesh = make_mesh(num_devices)
    example = (dataset.x_train[:2], dataset.y_train[:2])
    ld = LogDensity(model, mesh, example, microbatch_size=microbatch_size)
    multiple = microbatch_size or 1
    train = shard_batch(mesh, dataset.x_train, dataset.y_train, multiple=multiple)
    test = None
    if dataset.x_test.shape[0] > 0:
        test = shard_batch(mesh, dataset.x_test, dataset.y_test, multiple=multiple)
    return Problem(dataset, model, ld, mesh, train, test, model_name, config)


def check_array(a, name: str, *, inputs: bool) -> np.ndarray:
    """``a`` as a NumPy array of real, finite numbers, else a one-line ``ValueError``
    naming ``name``. Inputs (``inputs=True``) have a row axis and a feature axis at least
    (``(rows, features, ...)``); targets one value (or more) per row."""
    try:
        a = np.asarray(a)
    except (ValueError, TypeError) as e:  # ragged lists
        raise ValueError(f"{name} is not an array of numbers ({e})") from None
    if np.issubdtype(a.dtype, np.complexfloating):
        raise ValueError(
            f"{name} holds complex numbers ({a.dtype}): they are not cast to real ones; give "
            f"the part you mean ({name}.real, abs({name}))"
        )
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{name} has dtype {a.dtype}: it must hold numbers")
    if a.ndim == 0:
        raise ValueError(f"{name} is a scalar: it must hold one row per example")
    if inputs and a.ndim == 1:
        raise ValueError(
            f"{name} has shape {a.shape}: inputs are (rows, features); one feature per row is "
            f"{name}[:, None]"
        )
    if np.issubdtype(a.dtype, np.inexact) and not np.isfinite(a).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise ValueError(f"{name} holds {a[bad]} at index {bad} (it must be finite)")
    return a


def problem_from_arrays(
    model,
    x,
    y,
    x_test=None,
    y_test=None,
    *,
    num_devices: int | None = None,
    microbatch_size: int | None = None,
    model_name: str | None = None,
) -> Problem:
    """A :class:`Problem` for any NumPyro model ``model(x, y=None)`` and arrays.

    Integer targets make a classification task (``num_classes = max(y) + 1``), anything
    else a regression task in the units given (``y_scale = 1``). No test split is needed:
    without ``x_test`` nothing is predicted.
    """
    x, y = check_array(x, "x", inputs=True), check_array(y, "y", inputs=False)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} rows but y has {y.shape[0]}")
    if x.shape[0] == 0:
        raise ValueError("x and y have no rows")
    if (x_test is None) != (y_test is None) and y_test is not None:
        raise ValueError("y_test given without x_test")
    if x_test is None:
        x_test = x[:0]
        y_test = y[:0]
    x_test = check_array(x_test, "x_test", inputs=True)
    if x_test.shape[1:] != x.shape[1:]:
        raise ValueError(f"x_test rows have shape {x_test.shape[1:]}, x rows {x.shape[1:]}")
    y_test = np.zeros((x_test.shape[0],) + y.shape[1:], y.dtype) if y_test is None else y_test
    y_test = check_array(y_test, "y_test", inputs=False)
    if y_test.shape[0] != x_test.shape[0]:
        raise ValueError(f"x_test has {x_test.shape[0]} rows but y_test has {y_test.shape[0]}")
    classification = np.issubdtype(y.dtype, np.integer)
    if classification and min(y.min(initial=0), y_test.min(initial=0)) < 0:
        raise ValueError(
            "integer y are class labels 0, 1, ...: y holds a negative one (give float "
            "targets, y.astype(np.float32), for a regression)"
        )
    num_classes = int(max(y.max(initial=0), y_test.max(initial=0))) + 1 if classification else None
    dataset = Dataset(
        name="arrays",
        x_train=x,
        y_train=y,
        x_test=x_test,
        y_test=y_test,
        task="classification" if classification else "regression",
        num_classes=num_classes,
    )
    name = model_name or getattr(model, "__name__", "model")
    problem = place(
        dataset,
        model,
        num_devices=num_devices,
        microbatch_size=microbatch_size,
        model_name=name,  # type: ignore[arg-type]  # a str: getattr's default is one
    )
    check_task(problem, "y", "the model")
    return problem
