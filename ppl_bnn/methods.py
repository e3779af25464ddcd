"""The inference methods: one registry, the only list of them.

Every method is one :class:`Method` in :data:`REGISTRY`: its name, its kind (a sampler
or an approximation), whether its draws are exact, its own options (Python names and
defaults), how :func:`ppl_bnn.infer`'s common arguments and those options become its
config (``configure``), and the function that runs that config (``run``).
:func:`ppl_bnn.infer`, :func:`ppl_bnn.run`, the method commands of the ``ppl-bnn`` CLI
and the method table of the docs all come from here (``tests/test_registry.py``).

    >>> from ppl_bnn.methods import REGISTRY
    >>> list(REGISTRY)[:5]
    ['nuts', 'hmc', 'sgld', 'sghmc', 'vi']
    >>> hmc = REGISTRY["hmc"]
    >>> hmc.kind, hmc.exact, hmc.summary_names
    ('sampler', True, ('hmc-window', 'hmc'))

One name, one method. ``"hmc"`` is HMC, Metropolis-adjusted, with a fixed number of
leapfrog steps per trajectory. Its default warmup is Stan's window adaptation (step size
and mass matrix, a trajectory-length rule); the summary calls that run ``hmc-window``.
The original 2021 recipe (a fixed step size and trajectory length, no MH correction
during the burn-in) is the same method under its own keywords: ``step_size`` with
``trajectory_len`` in :func:`ppl_bnn.infer`, an :class:`~ppl_bnn.config.HMCConfig` in
:func:`ppl_bnn.run`, and the ``ppl-bnn hmc`` command with the original's flags; its
summary calls it ``hmc``. Every summary name maps back to one entry
(:func:`method_of_summary`).

Adding a method is one entry: write its kernel (``ppl_bnn/inference/``) and its driver
(``ppl_bnn/driver/``), then call :func:`register` with a :class:`Method` at the end of
this module. It gets ``infer(method=name)``, ``ppl_bnn.run(name, cfg)``, a row of the
docs' table (``python -m ppl_bnn.methods`` prints it) and, unless the CLI maps an
original command onto it, a ``ppl-bnn <name>`` command whose flags are its config's
fields (``ppl_bnn.cli.method``).

One module (about 800 lines) on purpose: it is the only list of the methods, each entry
with its options and how they become its config.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from ppl_bnn import config as C

__all__ = [
    "COMMON_ARGUMENTS",
    "REGISTRY",
    "Common",
    "Method",
    "Option",
    "get",
    "markdown_table",
    "method_of_summary",
    "option_name",
    "options_from_config",
    "register",
    "spelled_for",
]

Kind = Literal["sampler", "approximation"]

# ``ppl_bnn.infer``'s arguments every method shares (a method's options never reuse them)
COMMON_ARGUMENTS = (
    "num_warmup",
    "num_samples",
    "num_chains",
    "seed",
    "step_size",
    "x_test",
    "y_test",
    "run_dir",
    "log_likelihood",
    "progress",
)


@dataclass(frozen=True)
class Option:
    """One keyword of a method in :func:`ppl_bnn.infer`.

    Attributes:
        name: the Python keyword.
        default: its value when not given (``None``: the config's default, or unset).
        help: one line for the docs.
        field: the config field it sets, when it sets one directly (error messages name
            the keyword where the config names the field).
    """

    name: str
    default: Any
    help: str
    field: str | None = None


class Common(NamedTuple):
    """:func:`ppl_bnn.infer`'s common arguments, as a method's ``configure`` sees them."""

    num_warmup: int
    num_samples: int
    num_chains: int
    seed: int
    step_size: float | None
    run_dir: str
    num_rows: int  # training rows of ``x``


@dataclass(frozen=True)
class Method:
    """One inference method.

    Attributes:
        name: what :func:`ppl_bnn.infer` and :func:`ppl_bnn.run` call it.
        kind: ``"sampler"`` (a Markov chain) or ``"approximation"`` (an optimiser's
            point estimates or a fitted distribution).
        exact: whether the draws converge to the posterior (an MH-corrected sampler);
            ``False`` for biased samplers (SG-MCMC: no MH test) and approximations.
        description: one line for the docs' method table.
        options: its keywords in :func:`ppl_bnn.infer` (besides :data:`COMMON_ARGUMENTS`).
        config: the config dataclass it runs (``ppl_bnn.config``).
        configure: ``configure(common, options) -> config``: :func:`ppl_bnn.infer`'s
            common arguments and the options the caller gave (validated names; an absent
            one takes its default) as the config.
        run: ``run(config, *, problem=None, argv=None, progress=None, stop_after=None,
            collect=None, log_likelihood=False) -> RunResult``.
        summary_names: the ``method`` its runs record in ``summary.json`` (glob patterns).
        check: ``check(config)``: why ``config`` does not describe this method, or
            ``None`` when it does (default: it is an instance of ``config``).
        renamed: config field -> how :func:`ppl_bnn.infer`'s arguments give it, where
            ``configure`` derives it (error messages name that instead of the field).
        fixed: config fields the method sets (``{"kernel": "nuts"}``), for a command
            line generated from ``config`` (``ppl_bnn.cli.method``): not flags.
    """

    name: str
    kind: Kind
    exact: bool
    description: str
    options: tuple[Option, ...]
    config: type
    configure: Callable[[Common, dict[str, Any]], Any]
    run: Callable[..., Any]
    summary_names: tuple[str, ...]
    check: Callable[[Any], str | None] | None = None
    renamed: Mapping[str, str] = dataclasses.field(default_factory=dict)
    fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def option_names(self) -> tuple[str, ...]:
        """The names of its options, in order."""
        return tuple(o.name for o in self.options)

    def defaults(self) -> dict[str, Any]:
        """Option name -> default."""
        return {o.name: o.default for o in self.options}

    def spelling(self) -> dict[str, str]:
        """Config field -> how :func:`ppl_bnn.infer` names it (for error messages)."""
        return {
            **_INFER_SPELLING,
            **self.renamed,
            **{o.field or o.name: o.name for o in self.options},
        }

    def describes(self, cfg: Any) -> str | None:
        """Why ``cfg`` is not a config of this method, or ``None`` when it is one."""
        if self.check is not None:
            return self.check(cfg)
        if isinstance(cfg, self.config):
            return None
        return f"it runs a {self.config.__name__}, not a {type(cfg).__name__}"


REGISTRY: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add ``method`` to :data:`REGISTRY` (checked: a new name, a known kind, options
    that do not reuse :func:`ppl_bnn.infer`'s common arguments); returns it."""
    if method.name in REGISTRY:
        raise ValueError(f"method {method.name!r} is already registered")
    if method.kind not in ("sampler", "approximation"):
        raise ValueError(f"kind must be 'sampler' or 'approximation', got {method.kind!r}")
    names = method.option_names
    reused = sorted(set(names) & set(COMMON_ARGUMENTS))
    if reused or len(set(names)) != len(names):
        raise ValueError(f"method {method.name!r}: options reused or repeated: {reused or names}")
    REGISTRY[method.name] = method
    return method


def get(name: str) -> Method:
    """The registered method ``name``; a one-line ``ValueError`` naming the choices."""
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def method_of_summary(summary_method: str) -> Method:
    """The registered method whose runs record ``summary_method`` (``"hmc-window"``,
    ``"sghmc-clr-prec"``, ``"mfvi"``, ...) as the ``method`` of their summary."""
    for method in REGISTRY.values():
        if any(fnmatch.fnmatchcase(summary_method, p) for p in method.summary_names):
            return method
    raise ValueError(f"no registered method records {summary_method!r}")


# How infer's common arguments set the config fields, for error messages (``Method.renamed``
# and the options' fields add the method's own)
_INFER_SPELLING = {
    "dir": "run_dir",
    "seed": "seed",
    "num_chains": "num_chains",
    "ensemble_size": "num_chains",
    "num_iterations": "num_warmup + num_samples",
    "num_burn_in_iterations": "num_warmup",
    "num_epochs": "num_warmup",
    "vi_ensemble_size": "num_samples",
    "init_step_size": "step_size",
}
_SPELLING: ContextVar[Mapping[str, str] | None] = ContextVar("ppl_bnn_spelling", default=None)


def option_name(field: str) -> str:
    """How an error message names the config field ``field``: as the caller gave it.

    Inside :func:`ppl_bnn.infer` (:func:`spelled_for`) that is infer's keyword
    (``num_iterations`` is ``num_warmup + num_samples``, ``dir`` is ``run_dir``);
    otherwise the flag ``--field`` (the fields of a config are the command line's flags).
    """
    spelling = _SPELLING.get()
    return f"--{field}" if spelling is None else spelling.get(field, field)


@contextlib.contextmanager
def spelled_for(method: Method) -> Iterator[None]:
    """Error messages raised inside name options as :func:`ppl_bnn.infer` does for
    ``method``."""
    token = _SPELLING.set(method.spelling())
    try:
        yield
    finally:
        _SPELLING.reset(token)


def markdown_table() -> str:
    """The docs' method table (``docs/guide/backends.md``), one row per method."""
    rows = [
        "| method | kind | exact | what runs | summary `method` | options |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for m in REGISTRY.values():
        names = ", ".join(f"`{n}`" for n in m.summary_names)
        options = ", ".join(f"`{o.name}={o.default!r}`" for o in m.options)
        exact = "yes" if m.exact else "no"
        rows.append(f"| `{m.name}` | {m.kind} | {exact} | {m.description} | {names} | {options} |")
    return "\n".join(rows) + "\n"


# --------------------------------------------------------------------------- options
def options_from_config(cls: type, *names: str, **renamed: str) -> tuple[Option, ...]:
    """Options of ``cls``'s fields, with the fields' defaults and help: ``names`` are
    keywords of the same name as their field, ``renamed`` maps a keyword to its field.

        >>> from ppl_bnn.config import MCMCConfig
        >>> options_from_config(MCMCConfig, "dense_mass")[0].default
        False
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out = []
    for name, field in [*((n, n) for n in names), *renamed.items()]:
        f = fields[field]
        out.append(Option(name, f.default, f.metadata.get("help", ""), field))
    return tuple(out)


def _given(options: Mapping[str, Any], names: tuple[Option, ...]) -> dict[str, Any]:
    """The options among ``names`` that the caller gave, keyed by their config field."""
    fields = {o.name: o.field or o.name for o in names}
    return {fields[k]: v for k, v in options.items() if k in fields}


_MCMC = options_from_config(
    C.MCMCConfig,
    "target_accept",
    "dense_mass",
    "max_num_doublings",
    "init_strategy",
    "init_from",
    "divergence_threshold",
    "eval_freq",
)
_WINDOW_HMC = options_from_config(C.MCMCConfig, "trajectory_length", "max_num_steps")
_ORIGINAL_HMC = (
    Option(
        "trajectory_len",
        None,
        "the original recipe's trajectory length (with step_size; leapfrog steps = "
        "ceil(trajectory_len / step_size)); unset: window-adapted",
        "trajectory_len",
    ),
    *options_from_config(
        C.HMCConfig,
        "max_num_leapfrog_steps",
        "no_mh",
        "step_size_adaptation_speed",
        "target_accept_rate",
        "adapt_mass_matrix",
    ),
)
# the original recipe's keywords: its own and two that both recipes take
_SHARED_HMC = ("divergence_threshold", "eval_freq")
_ORIGINAL_KEYWORDS = (*(o.name for o in _ORIGINAL_HMC), *_SHARED_HMC)

_MINIBATCH = (
    Option("batch_size", 80, "minibatch size (at most the number of rows)", "batch_size"),
    Option("eval_freq", None, "evaluate every this many epochs (default: at the end)", "eval_freq"),
    *options_from_config(C.SGDConfig, "save_freq"),
    Option("momentum_decay", None, "momentum decay (default: 0.9; SGLD: 0)", "momentum_decay"),
    *options_from_config(C.SGDConfig, "init_checkpoint"),
)
_SGMCMC = (
    *_MINIBATCH,
    Option("schedule", "constant", "constant or cyclical step size", "step_size_schedule"),
    Option("preconditioner", "None", "None or RMSprop", "preconditioner"),
    *options_from_config(C.SGMCMCConfig, cycle_length="step_size_cycle_length_epochs"),
    Option("thinning", 1, "one draw every this many epochs after the burn-in", "ensemble_freq"),
    *options_from_config(C.SGMCMCConfig, "final_step_size"),
)
_VI = (
    *_MINIBATCH,
    Option("guide", "AutoNormal", "any NumPyro autoguide, by name", "vi_guide"),
    *options_from_config(C.VIConfig, guide_rank="vi_guide_rank"),
    Option("init_scale", 1e-3, "the guide's initial scale", "vi_sigma_init"),
    *options_from_config(C.VIConfig, "optimizer"),
    Option("init_strategy", "map", "map (L-BFGS from a random start) or uniform", "init_strategy"),
)

# Default learning rates of the minibatch methods, times 1 / num_examples: the gradient
# is that of the whole-data log density (n times a per-example term), so a step of c / n
# moves standardised-scale parameters by O(c) per unit of per-example curvature. They suit
# standardised inputs; un-standardised data or a network far from unit scale need their
# own ``step_size``. SGD runs with momentum 0.9 (an effective step ten times larger).
_SGMCMC_STEP = 0.02
_SGD_STEP = 0.01
# VI: Adam's learning rate (cosine decay to 0), from the MAP (``init_strategy="map"``,
# :func:`ppl_bnn.inference.vi.find_map`): the means start where a Gaussian posterior's
# are, and Adam adapts the log scales (1e-3 -> 1 is about 7 units: a few hundred steps at
# 0.05). A scale far above a coordinate's posterior sd makes the ELBO's gradient noisy
# enough to push the means off the MAP.
_VI_STEP = 0.05


# ------------------------------------------------------------------------- configure
def _mcmc(kernel: str, c: Common, fields: dict[str, Any]) -> C.MCMCConfig:
    start = _run_dir_of_start(fields)
    cfg = C.MCMCConfig(
        dir=c.run_dir,
        seed=c.seed,
        kernel=kernel,
        num_warmup=c.num_warmup,
        num_samples=c.num_samples,
        num_chains=c.num_chains,
        step_size=c.step_size,
        **fields,
    )
    return _keep_start(cfg, start)


def _run_dir_of_start(fields: dict[str, Any]) -> Any:
    """``init_from`` given as an in-memory :class:`RunResult`: the config records its run
    directory (``None`` for a run in memory); returns the result itself, else ``None``."""
    start = fields.get("init_from")
    if start is None or isinstance(start, str):
        return None
    fields["init_from"] = getattr(start, "run_dir", None)
    return start


def _keep_start(cfg: Any, start: Any) -> Any:
    """An in-memory start with no run directory travels beside the config, to the runner."""
    if start is not None and cfg.init_from is None:
        cfg._init_from = start
    return cfg


def _configure_nuts(c: Common, options: dict[str, Any]) -> C.MCMCConfig:
    return _mcmc("nuts", c, _given(options, _MCMC))


def _configure_hmc(c: Common, options: dict[str, Any]) -> C.MCMCConfig | C.HMCConfig:
    if "trajectory_len" not in options and c.step_size is None:
        bad = [k for k in options if k in _ORIGINAL_KEYWORDS and k not in _SHARED_HMC]
        if bad:
            raise ValueError(
                f"{bad[0]!r} belongs to hmc with the original's semantics: give step_size "
                "and trajectory_len with it"
            )
        return _mcmc("hmc", c, _given(options, _MCMC + _WINDOW_HMC))
    if c.step_size is None or "trajectory_len" not in options:
        raise ValueError(
            "hmc with the original's semantics needs both step_size and trajectory_len "
            "(give neither for the window-adapted warmup)"
        )
    bad = [k for k in options if k not in _ORIGINAL_KEYWORDS]
    if bad:
        raise ValueError(
            f"hmc with step_size and trajectory_len takes no keyword {bad[0]!r}; its "
            f"keywords are {', '.join(_ORIGINAL_KEYWORDS)}"
        )
    return C.HMCConfig(
        dir=c.run_dir,
        seed=c.seed,
        step_size=c.step_size,
        num_iterations=c.num_warmup + c.num_samples,
        num_burn_in_iterations=c.num_warmup,
        num_chains=c.num_chains,
        **options,
    )


def _minibatch(c: Common, options: dict[str, Any], names: tuple[Option, ...]) -> dict[str, Any]:
    """The fields of the options given, the batch size at most the number of rows."""
    fields = _given(options, names)
    fields["batch_size"] = min(fields.get("batch_size", 80), c.num_rows)
    return fields


def _default_step(c: Common, base: float, momentum: float = 0.0) -> float:
    """``c.step_size``, or ``base / n`` (SGHMC: times ``1 - momentum``, its effective step
    being ``step_size / (1 - momentum)``): the gradients are of the full-data log density,
    whose curvature grows with ``n``."""
    return c.step_size if c.step_size is not None else base * (1.0 - momentum) / c.num_rows


def _configure_sgmcmc(cls: type, c: Common, options: dict[str, Any]) -> C.SGMCMCConfig:
    from ppl_bnn.driver.sgmcmc import is_ensembling_epoch

    fields = _minibatch(c, options, _SGMCMC)
    fields["preconditioner"] = str(fields.get("preconditioner", "None"))
    momentum = fields.get("momentum_decay", 0.9 if cls is C.SGMCMCConfig else 0.0)
    if cls is C.SGLDConfig and momentum != 0.0:
        raise ValueError("sgld has momentum_decay 0; use method='sghmc'")
    thinning = int(fields.pop("ensemble_freq", 1))
    if thinning < 1:
        raise ValueError(f"thinning must be at least 1, got {thinning}")
    epochs, found = 0, 0  # the fewest epochs with num_samples draws under the original's rule
    while found < c.num_samples:
        found += is_ensembling_epoch(epochs, c.num_warmup, thinning)
        epochs += 1
    return cls(
        dir=c.run_dir,
        seed=c.seed,
        **{"eval_freq": epochs, **fields},
        init_step_size=_default_step(c, _SGMCMC_STEP, momentum if cls is C.SGMCMCConfig else 0),
        num_epochs=epochs,
        num_burnin_epochs=c.num_warmup,
        ensemble_freq=thinning,
        num_chains=c.num_chains,
    )


def _configure_vi(c: Common, options: dict[str, Any]) -> C.VIConfig:
    fields = _minibatch(c, options, _VI)
    _register_guide(fields.setdefault("vi_guide", "AutoNormal"))
    epochs = max(c.num_warmup, 1)
    return C.VIConfig(
        dir=c.run_dir,
        seed=c.seed,
        **{"eval_freq": epochs, "vi_sigma_init": 1e-3, "init_strategy": "map", **fields},
        init_step_size=_VI_STEP if c.step_size is None else c.step_size,
        num_epochs=epochs,
        vi_ensemble_size=c.num_samples,
        num_chains=c.num_chains,
    )


def _configure_sgd(c: Common, options: dict[str, Any]) -> C.EnsembleConfig:
    epochs = max(c.num_warmup, 1)
    return C.EnsembleConfig(
        dir=c.run_dir,
        seed=c.seed,
        **{"eval_freq": epochs, **_minibatch(c, options, _MINIBATCH)},
        init_step_size=_default_step(c, _SGD_STEP),
        num_epochs=epochs,
        ensemble_size=c.num_chains,
    )


def _register_guide(name: str) -> None:
    """Make any NumPyro autoguide usable by name."""
    from numpyro.infer import autoguide

    from ppl_bnn.inference import vi

    if name in vi.GUIDES:
        return
    guide = getattr(autoguide, name, None)
    if not (isinstance(guide, type) and issubclass(guide, autoguide.AutoGuide)):
        names = sorted(
            k
            for k, v in vars(autoguide).items()
            if isinstance(v, type) and issubclass(v, autoguide.AutoGuide) and k != "AutoGuide"
        )
        raise ValueError(f"unknown guide {name!r}; NumPyro's autoguides are {', '.join(names)}")
    vi.GUIDES[name] = guide


# ------------------------------------------------------------------------------- run
# The drivers are imported when a method runs: importing them imports BlackJAX, which
# starts JAX's backend, and the CLI must start ``jax.distributed`` before that.
def _run_mcmc(cfg, **kwargs):
    from ppl_bnn.driver.mcmc import run_mcmc

    return run_mcmc(cfg, init_from=getattr(cfg, "_init_from", None), **kwargs)


def _run_hmc(cfg, **kwargs):
    """The original recipe for an :class:`~ppl_bnn.config.HMCConfig`, else window-adapted."""
    if isinstance(cfg, C.HMCConfig):
        from ppl_bnn.driver.hmc import run_hmc

        return run_hmc(cfg, **kwargs)
    return _run_mcmc(cfg, **kwargs)


def _run_sgmcmc(cfg, **kwargs):
    from ppl_bnn.driver.sgmcmc import run_sgmcmc

    return run_sgmcmc(cfg, **kwargs)


def _run_vi(cfg, **kwargs):
    from ppl_bnn.driver.vi import run_vi

    return run_vi(cfg, **kwargs)


def _run_sgd(name: str) -> Callable[..., Any]:
    def run(cfg, **kwargs):
        from ppl_bnn.driver.sgd import run_sgd

        return run_sgd(cfg, method=name, **kwargs)

    run.__name__ = run.__qualname__ = f"run_{name}"
    return run


# ----------------------------------------------------------------------------- checks
def _check_mcmc(kernel: str) -> Callable[[Any], str | None]:
    def check(cfg) -> str | None:
        if kernel == "hmc" and isinstance(cfg, C.HMCConfig):
            return None
        if not isinstance(cfg, C.MCMCConfig):
            want = "an MCMCConfig or an HMCConfig" if kernel == "hmc" else "an MCMCConfig"
            return f"it runs {want}, not a {type(cfg).__name__}"
        return None if cfg.kernel == kernel else f"it runs kernel={kernel!r}, not {cfg.kernel!r}"

    return check


def _check_sgmcmc(momentum: bool) -> Callable[[Any], str | None]:
    def check(cfg) -> str | None:
        if not isinstance(cfg, C.SGMCMCConfig):
            return f"it runs an SGMCMCConfig, not a {type(cfg).__name__}"
        if (cfg.momentum_decay != 0) != momentum:
            return "sghmc has momentum_decay > 0, sgld momentum_decay 0"
        return None

    return check


def _check_sgd(cfg) -> str | None:
    if isinstance(cfg, C.SGDConfig) and not isinstance(cfg, C.SGMCMCConfig | C.VIConfig):
        return None
    return f"it runs an SGDConfig or an EnsembleConfig, not a {type(cfg).__name__}"


# ---------------------------------------------------------------------------- methods
_SGMCMC_RENAMED = {
    "num_epochs": "num_epochs (from num_warmup, num_samples and thinning)",
    "num_burnin_epochs": "num_warmup",
}
register(
    Method(
        name="nuts",
        kind="sampler",
        exact=True,
        description="BlackJAX NUTS with Stan's window adaptation (step size, diagonal mass "
        "matrix; `dense_mass=True`: dense), started uniformly in (-2, 2) unconstrained",
        options=_MCMC,
        config=C.MCMCConfig,
        configure=_configure_nuts,
        run=_run_mcmc,
        summary_names=("nuts",),
        check=_check_mcmc("nuts"),
        fixed={"kernel": "nuts"},
    )
)
register(
    Method(
        name="hmc",
        kind="sampler",
        exact=True,
        description="HMC with the same warmup and a trajectory-length rule; with `step_size` "
        "and `trajectory_len` the original 2021 recipe (fixed step size and length, no MH "
        "during the `num_warmup` burn-in; `ppl-bnn hmc`)",
        options=(*_MCMC, *_WINDOW_HMC, *_ORIGINAL_HMC),
        config=C.MCMCConfig,
        configure=_configure_hmc,
        run=_run_hmc,
        summary_names=("hmc-window", "hmc"),
        check=_check_mcmc("hmc"),
        fixed={"kernel": "hmc"},
    )
)
register(
    Method(
        name="sgld",
        kind="sampler",
        exact=False,
        description="SGLD (no MH test: biased by its step size and minibatch noise); "
        '`schedule="cyclical"`, `preconditioner="RMSprop"`',
        options=_SGMCMC,
        config=C.SGMCMCConfig,
        configure=lambda c, o: _configure_sgmcmc(C.SGLDConfig, c, o),
        run=_run_sgmcmc,
        summary_names=("sgld", "sgld-*"),
        check=_check_sgmcmc(momentum=False),
        renamed=_SGMCMC_RENAMED,
    )
)
register(
    Method(
        name="sghmc",
        kind="sampler",
        exact=False,
        description="SGHMC (`momentum_decay`, default 0.9; no MH test); "
        '`schedule="cyclical"`, `preconditioner="RMSprop"`',
        options=_SGMCMC,
        config=C.SGMCMCConfig,
        configure=lambda c, o: _configure_sgmcmc(C.SGMCMCConfig, c, o),
        run=_run_sgmcmc,
        summary_names=("sghmc", "sghmc-*"),
        check=_check_sgmcmc(momentum=True),
        renamed=_SGMCMC_RENAMED,
    )
)
register(
    Method(
        name="vi",
        kind="approximation",
        exact=False,
        description='SVI with any NumPyro autoguide by name (`guide="AutoNormal"`), from the '
        "MAP (L-BFGS); `num_chains` independent fits",
        options=_VI,
        config=C.VIConfig,
        configure=_configure_vi,
        run=_run_vi,
        summary_names=("mfvi", "vi-*"),
    )
)
register(
    Method(
        name="sgd",
        kind="approximation",
        exact=False,
        description="MAP by SGD with momentum and a cosine step size, one per chain",
        options=_MINIBATCH,
        config=C.SGDConfig,
        configure=_configure_sgd,
        run=_run_sgd("sgd"),
        summary_names=("sgd",),
        check=_check_sgd,
    )
)
register(
    Method(
        name="map",
        kind="approximation",
        exact=False,
        description="the same as `sgd`, by the name of what it finds",
        options=_MINIBATCH,
        config=C.SGDConfig,
        configure=_configure_sgd,
        run=_run_sgd("map"),
        summary_names=("map",),
        check=_check_sgd,
    )
)
register(
    Method(
        name="ensemble",
        kind="approximation",
        exact=False,
        description="a deep ensemble of `num_chains` SGD members, trained side by side",
        options=_MINIBATCH,
        config=C.EnsembleConfig,
        configure=_configure_sgd,
        run=_run_sgd("ensemble"),
        summary_names=("ensemble",),
    )
)


# ------------------------------------------------ MAMS, ChEES, MCLMC (BlackJAX 1.7)
_ADAPTIVE_COMMON = ("target_accept", "diagonal_preconditioning", "init_strategy", "init_from",
                    "divergence_threshold", "eval_freq")  # fmt: skip
_ADAPTIVE_OWN = {
    "mams": ("avg_num_steps", "max_num_steps", "gradient_dtype"),
    "chees": ("learning_rate", "jitter_amount", "max_num_steps", "gradient_dtype"),
    "mclmc": ("desired_energy_var",),
}


def _adaptive_options(kernel: str) -> tuple[Option, ...]:
    common = [n for n in _ADAPTIVE_COMMON if not (kernel == "mclmc" and n == "target_accept")]
    return options_from_config(C.AdaptiveConfig, *common, *_ADAPTIVE_OWN[kernel])


def _configure_adaptive(kernel: str) -> Callable[[Common, dict[str, Any]], Any]:
    def configure(c: Common, options: dict[str, Any]) -> C.AdaptiveConfig:
        fields = _given(options, _adaptive_options(kernel))
        start = _run_dir_of_start(fields)
        cfg = C.AdaptiveConfig(
            dir=c.run_dir,
            seed=c.seed,
            kernel=kernel,
            num_warmup=c.num_warmup,
            num_samples=c.num_samples,
            num_chains=c.num_chains,
            step_size=c.step_size,
            **fields,
        )
        return _keep_start(cfg, start)

    return configure


def _run_adaptive(cfg, **kwargs):
    from ppl_bnn.driver.adaptive import run_adaptive

    return run_adaptive(cfg, init_from=getattr(cfg, "_init_from", None), **kwargs)


def _check_adaptive(kernel: str) -> Callable[[Any], str | None]:
    def check(cfg) -> str | None:
        if not isinstance(cfg, C.AdaptiveConfig):
            return f"it runs an AdaptiveConfig, not a {type(cfg).__name__}"
        return None if cfg.kernel == kernel else f"it runs kernel={kernel!r}, not {cfg.kernel!r}"

    return check


for _name, _exact, _description in (
    (
        "mams",
        True,
        "MAMS (Robnik et al. 2025): Metropolis-adjusted microcanonical HMC, BlackJAX's "
        'step size, L and diagonal mass matrix tuning; `gradient_dtype="bfloat16"` '
        "keeps it exact",
    ),
    (
        "chees",
        True,
        "ChEES-HMC (Hoffman et al. 2021): one step size and one jittered trajectory length "
        "adapted across the chains (and a diagonal mass matrix); for many chains",
    ),
    (
        "mclmc",
        False,
        "unadjusted microcanonical Langevin MC (no MH test: asymptotically biased, the "
        "bias shrinking with the step size); BlackJAX's tuning",
    ),
):
    register(
        Method(
            name=_name,
            kind="sampler",
            exact=_exact,
            description=_description,
            options=_adaptive_options(_name),
            config=C.AdaptiveConfig,
            configure=_configure_adaptive(_name),
            run=_run_adaptive,
            summary_names=(_name,),
            check=_check_adaptive(_name),
            fixed={"kernel": _name},
        )
    )

if __name__ == "__main__":  # python -m ppl_bnn.methods: the docs' method table
    print(markdown_table(), end="")
