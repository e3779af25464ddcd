"""The paper's experiments as named, runnable configurations.

An :class:`Experiment` is a ``ppl-bnn`` command (``hmc``, ``sgd``, ``sgmcmc``, ``vi``,
``surface``) and its flags, nothing else: running one is exactly running
``ppl-bnn <method> --flag=value ...`` (``ppl-bnn experiment NAME`` does that, and
``--dry_run`` prints the command). :mod:`ppl_bnn.experiments.paper` registers every command
of the original README and the paper's Table 3 settings.

Example:
    >>> from ppl_bnn.experiments import get_experiment, smoke
    >>> exp = get_experiment("hmc_mnist_subset160")
    >>> exp.argv()[:3]
    ['hmc', '--seed=0', '--weight_decay=1.0']
    >>> smoke(exp).flags["num_iterations"]
    2
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "EXPERIMENTS",
    "SMOKE_TRAIN_SIZE",
    "Experiment",
    "get_experiment",
    "register",
    "smoke",
]

SMOKE_TRAIN_SIZE = 16
_SMOKE_LEAPFROG_STEPS = 3


@dataclass(frozen=True)
class Experiment:
    """One documented run: ``ppl-bnn <method>`` with ``flags``.

    Attributes:
        name: registry key (``ppl-bnn experiment NAME``).
        method: the ``ppl-bnn`` command that runs it.
        flags: flag name -> value, the original scripts' spelling; ``True`` is a switch.
        description: what it is and where the numbers come from.
        replicas: independent runs (seeds ``seed, seed + 1, ...``, each in
            ``<dir>/seed_<s>``): the members of a deep ensemble or the chains of SGLD.
        requires: flags the user must supply (``--set FLAG=VALUE``), with what they are,
            e.g. the SGD checkpoint that initialises MFVI.
    """

    name: str
    method: str
    flags: Mapping[str, Any]
    description: str
    replicas: int = 1
    requires: Mapping[str, str] = field(default_factory=dict)

    def argv(self, *, replica: int = 0, overrides: Mapping[str, Any] | None = None) -> list[str]:
        """The ``ppl-bnn`` command line (without the program name) of one replica."""
        flags = {**self.flags, **(overrides or {})}
        missing = [k for k in self.requires if flags.get(k) is None]
        if missing:
            needs = "; ".join(f"--set {k}=... ({self.requires[k]})" for k in missing)
            raise ValueError(f"experiment {self.name} needs {needs}")
        if self.replicas > 1:
            flags["seed"] = int(flags.get("seed", 0)) + replica
            flags["dir"] = f"{str(flags['dir']).rstrip('/')}/seed_{flags['seed']}"
        return [self.method, *_format_flags(flags)]


def _format_flags(flags: Mapping[str, Any]) -> list[str]:
    out = []
    for k, v in flags.items():
        if v is True:
            out.append(f"--{k}")
        elif v is not False and v is not None:
            out.append(f"--{k}={v}")
    return out


EXPERIMENTS: dict[str, Experiment] = {}


def register(experiment: Experiment) -> Experiment:
    """Add an experiment to the registry (names are unique)."""
    if experiment.name in EXPERIMENTS:
        raise ValueError(f"experiment {experiment.name!r} is already registered")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ValueError(
            f"unknown experiment {name!r}; `ppl-bnn experiment --list` shows the "
            f"{len(EXPERIMENTS)} registered ones"
        )
    return EXPERIMENTS[name]


def smoke(experiment: Experiment, train_size: int = SMOKE_TRAIN_SIZE) -> Experiment:
    """The same experiment shrunk to run on a CPU in seconds (MLP) to minutes (ResNet).

    Keeps the method, model, dataset, prior, temperature and step sizes; cuts HMC to 2
    iterations (1 of burn-in) of a few leapfrog steps (the trajectory is shortened to
    ``3 * step_size``), minibatch methods to 2 epochs with every frequency set to 1, the
    training set to ``train_size`` examples, ensembles and grids to their smallest useful
    size, and runs one replica.
    """
    f = dict(experiment.flags)
    small = {
        "num_iterations": 2,
        "num_burn_in_iterations": 1,
        "num_epochs": 2,
        "num_burnin_epochs": 1,
        "eval_freq": 1,
        "save_freq": 1,
        "ensemble_freq": 1,
        "step_size_cycle_length_epochs": 1,
        "batch_size": max(1, train_size // 2),
        "vi_ensemble_size": 2,
        "grid_size": 3,
    }
    for k, v in small.items():
        if k in f:
            f[k] = min(f[k], v)
    if experiment.method == "hmc":
        f["num_iterations"] = min(f.get("num_iterations", 2), 2)
        steps = math.ceil(f.get("trajectory_len", 1e-3) / f.get("step_size", 1e-4))
        if steps > _SMOKE_LEAPFROG_STEPS:
            f["trajectory_len"] = float(f"{_SMOKE_LEAPFROG_STEPS * f.get('step_size', 1e-4):.6g}")
    elif experiment.method in ("sgd", "sgmcmc", "vi"):
        f["num_epochs"] = min(f.get("num_epochs", 2), 2)
    f["subset_train_to"] = min(f.get("subset_train_to") or train_size, train_size)
    return replace(experiment, flags=f, replicas=1)


from ppl_bnn.experiments import paper  # noqa: E402,F401  (registers the paper's runs)
