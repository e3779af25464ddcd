"""Typed run configurations. The CLI builds these from flags; nothing below it sees argparse.

Field names are the original scripts' flag names (``--weight_decay``, ``--step_size``, ...);
each field's ``help`` metadata is the flag's help text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

__all__ = [
    "BNN_FIELDS",
    "AdaptiveConfig",
    "CommonConfig",
    "EnsembleConfig",
    "HMCConfig",
    "MCMCConfig",
    "SGDConfig",
    "SGLDConfig",
    "SGMCMCConfig",
    "SurfaceConfig",
    "ProblemConfig",
    "RunConfig",
    "VIConfig",
    "applicable",
    "problem_config",
    "to_dict",
]


def _f(default, help: str, **kw):
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ProblemConfig:
    """What declares the problem: the data, the model, its prior and likelihood, and where
    the data are placed (devices, microbatches, processes).

    ``build_problem`` reads only these fields. With ``model`` set (a user model
    ``file.py:function``) the BNN fields (``model_name``, the prior and likelihood
    fields) do not apply: they are neither used nor recorded (see :func:`applicable`).
    """

    dataset_name: str = _f(
        "digits",
        "dataset: digits, synthetic_regression, a UCI name, <uci>_<seed>, file.npz, cifar10, cifar100, mnist, imdb or cifar10_corrupted/<corruption>_<severity>",
    )
    model_name: str = _f("mlp_classification", "architecture name (see `ppl-bnn models`)")
    model: str | None = _f(
        None,
        "your own NumPyro model `model(x, y=None)` as path/to/file.py:function (instead of --model_name and the prior/likelihood flags)",
    )
    weight_decay: float = _f(15.0, "prior precision: prior variance = 1 / weight_decay")
    temperature: float = _f(1.0, "posterior temperature T: the posterior is raised to 1/T")
    subset_train_to: int | None = _f(None, "keep only the first N training examples")
    use_float64: bool = _f(False, "compute in float64 (default float32)")
    data_dir: str | None = _f(
        None,
        "folder with datasets (UCI: <name>/data.txt, index_*.txt; TFDS: its data_dir, default $TFDS_DATA_DIR or ~/tensorflow_datasets)",
    )
    uci_split: int | None = _f(None, "published UCI split 0..19 (with a plain UCI dataset name)")
    prior_family: str = _f("gaussian", "gaussian, mixture_gaussian, logistic, laplace or student_t")
    student_t_df: float = _f(1.0, "degrees of freedom of the student_t prior")
    mixture_weight: float = _f(0.5, "weight of the narrow component of the mixture_gaussian prior")
    mixture_scale_ratio: float = _f(4.0, "std ratio broad/narrow of the mixture_gaussian prior")
    fan_in_scaling: bool = _f(False, "divide each kernel's prior variance by its fan-in")
    bias_weight_decay: float | None = _f(
        None, "separate prior precision for biases (default: weight_decay)"
    )
    likelihood: str = _f("auto", "categorical, heteroscedastic, homoscedastic (auto: by task)")
    noise_std: float | None = _f(
        None, "fixed noise std of the homoscedastic likelihood (default: learned)"
    )
    num_augmented_copies: int = _f(
        0, "full-batch methods: add this many fixed augmented copies of the training images"
    )
    num_devices: int | None = _f(None, "devices of the data mesh (default: all)")
    microbatch_size: int | None = _f(
        None, "accumulate the full-batch likelihood over chunks of this many examples per device"
    )
    coordinator_address: str | None = _f(
        None, "jax.distributed coordinator host:port (multi-process runs)"
    )
    num_processes: int | None = _f(None, "number of processes of a multi-process run")
    process_id: int | None = _f(None, "index of this process in a multi-process run")


# the fields of a ppl_bnn BNN (``bnn_model``): they mean nothing for a user model
BNN_FIELDS = (
    "model_name",
    "weight_decay",
    "prior_family",
    "student_t_df",
    "mixture_weight",
    "mixture_scale_ratio",
    "fan_in_scaling",
    "bias_weight_decay",
    "likelihood",
    "noise_std",
)


@dataclass
class RunConfig:
    """What every run shares, whatever the method: where it is written, its seed."""

    dir: str = _f(
        "",
        "run directory for checkpoints, metrics and draws (required on the command line; "
        "empty in Python: in memory, nothing written)",
        required=True,
    )
    seed: int = _f(0, "random seed")
    init_checkpoint: str | None = _f(None, "checkpoint whose parameters initialise the run")
    tabulate_freq: int = _f(40, "repeat the console table header every this many rows")
    data_augmentation: bool = _f(
        False, "minibatch methods: random crop (pad 4) and horizontal flip of images"
    )
    keep_samples: int = _f(
        1,
        "keep the positions of every k-th posterior draw in samples/ (0: none); "
        "checkpoints are the resume state only",
    )
    keep_checkpoints: int = _f(2, "checkpoints kept (the latest ones; resume falls back)")


@dataclass
class CommonConfig(RunConfig, ProblemConfig):
    """Flags shared by every method (the original's ``cmd_args_utils``): the problem
    (:class:`ProblemConfig`) and the run (:class:`RunConfig`) in one flat dataclass, so
    that the original flags keep their names."""


def problem_config(cfg) -> ProblemConfig:
    """The :class:`ProblemConfig` part of any config."""
    return ProblemConfig(
        **{f.name: getattr(cfg, f.name) for f in dataclasses.fields(ProblemConfig)}
    )


def applicable(cfg) -> dict:
    """The config as recorded in ``config.json`` and the summary: fields that do not apply
    (the BNN fields when ``cfg.model`` names a user model) are left out."""
    out = dataclasses.asdict(cfg)
    if getattr(cfg, "model", None):
        for name in BNN_FIELDS:
            out.pop(name, None)
    return out


@dataclass
class HMCConfig(CommonConfig):
    """Flags of ``ppl-bnn hmc`` (the original ``run_hmc.py``) and the new HMC options."""

    step_size: float = _f(1e-4, "HMC step size")
    trajectory_len: float = _f(
        1e-3, "HMC trajectory length; leapfrog steps = ceil(trajectory_len / step_size)"
    )
    num_iterations: int = _f(1000, "total number of HMC iterations (burn-in included)")
    max_num_leapfrog_steps: int = _f(10000, "sanity bound on the number of leapfrog steps")
    num_burn_in_iterations: int = _f(0, "iterations without MH correction, not averaged")
    no_mh: bool = _f(False, "never apply the Metropolis-Hastings correction")
    step_size_adaptation_speed: float = _f(
        0.0, "burn-in step-size adaptation: eps *= exp(speed * (accept - target)); 0 = off"
    )
    target_accept_rate: float = _f(0.8, "target acceptance rate of the step-size adaptation")
    adapt_mass_matrix: bool = _f(False, "estimate a diagonal mass matrix from the burn-in draws")
    num_chains: int = _f(1, "chains run side by side (vectorised), each seeded separately")
    num_param_draws: int = _f(
        16, "parameter coordinates kept per iteration for parameter-space R-hat"
    )
    eval_freq: int = _f(
        1,
        "train-set predictions and metrics every this many iterations (and the last); "
        "test predictions for the average are taken every post-burn-in iteration",
    )
    divergence_threshold: float = _f(
        1000.0, "a trajectory whose energy error exceeds this (or is not finite) is divergent"
    )
    zero_accept_patience: int = _f(
        10, "warn when a chain takes no proposal for this many consecutive iterations"
    )


@dataclass
class SurfaceConfig(CommonConfig):
    """Flags of ``ppl-bnn surface`` (the original ``make_posterior_surface_plot.py``)."""

    limit_bottom: float = _f(-0.25, "lower limit of the plot along v (towards checkpoint 3)")
    limit_top: float = _f(1.25, "upper limit of the plot along v (towards checkpoint 3)")
    limit_left: float = _f(-0.25, "left limit of the plot along u (checkpoint 1 to 2)")
    limit_right: float = _f(1.25, "right limit of the plot along u (checkpoint 1 to 2)")
    grid_size: int = _f(20, "number of grid points in each direction")
    checkpoint1: str = _f("", "first checkpoint (the origin); PATH or PATH:CHAIN", required=True)
    checkpoint2: str = _f("", "second checkpoint, at (1, 0); PATH or PATH:CHAIN", required=True)
    checkpoint3: str = _f("", "third checkpoint, spans v; PATH or PATH:CHAIN", required=True)
    grid_batch_size: int = _f(1, "grid points evaluated at once (vectorised) in the compiled loop")


def to_dict(config) -> dict:
    return dataclasses.asdict(config)


@dataclass
class SGDConfig(CommonConfig):
    """Flags of ``ppl-bnn sgd`` (the original ``run_sgd.py``), shared by SG-MCMC and VI."""

    init_step_size: float = _f(1e-6, "initial step size (cosine schedule for SGD and VI)")
    num_epochs: int = _f(300, "total number of epochs")
    batch_size: int = _f(80, "minibatch size")
    eval_freq: int = _f(10, "evaluate every this many epochs (and after the last)")
    save_freq: int = _f(50, "checkpoint every this many epochs (and after the last)")
    momentum_decay: float = _f(0.9, "momentum decay (SGD; SG-MCMC: 0 is SGLD, > 0 SGHMC)")
    reference: str | None = _f(
        None,
        "HMC run directory or predictions .npy: agreement/TV (or W2) against it in the summary",
    )
    num_param_draws: int = _f(16, "parameter coordinates kept per draw for parameter-space R-hat")


@dataclass
class EnsembleConfig(SGDConfig):
    """Flags of ``ppl-bnn ensemble``: SGD members from seeds ``seed, seed+1, ...``."""

    ensemble_size: int = _f(5, "number of independently seeded SGD members, trained side by side")


@dataclass
class SGMCMCConfig(SGDConfig):
    """Flags of ``ppl-bnn sgmcmc`` (the original ``run_sgmcmc.py``) and the new options."""

    preconditioner: str = _f("None", "None or RMSprop")
    step_size_schedule: str = _f(
        "constant", "constant (cosine burn-in to final_step_size) or cyclical"
    )
    num_burnin_epochs: int = _f(300, "epochs before the final step size is reached (not ensembled)")
    final_step_size: float | None = _f(
        None, "step size after the burn-in, constant schedule (default: init_step_size)"
    )
    step_size_cycle_length_epochs: int = _f(50, "cycle length in epochs (cyclical schedule)")
    save_all_ensembled: bool = _f(False, "checkpoint every ensembled epoch")
    ensemble_freq: int = _f(10, "ensemble the iterate every this many epochs after the burn-in")
    num_chains: int = _f(1, "chains run side by side (vectorised); chain i uses seed + i")
    preconditioner_correction: bool = _f(
        False,
        "RMSprop: add the drift that corrects for the position-dependent preconditioner (Li et al. 2016)",
    )


@dataclass
class SGLDConfig(SGMCMCConfig):
    """``SGMCMCConfig`` with ``momentum_decay = 0``: SGLD."""

    momentum_decay: float = _f(0.0, "momentum decay: 0 is SGLD, > 0 SGHMC")


@dataclass
class VIConfig(SGDConfig):
    """Flags of ``ppl-bnn vi`` (the original ``run_vi.py``) and the new options."""

    optimizer: str = _f("Adam", "SGD (with momentum_decay) or Adam; cosine step-size schedule")
    vi_sigma_init: float = _f(1e-3, "initial standard deviation of every weight")
    vi_ensemble_size: int = _f(20, "samples from the approximate posterior averaged at evaluation")
    mean_init_checkpoint: str | None = _f(
        None, "SGD checkpoint whose parameters initialise the variational mean"
    )
    vi_guide: str = _f(
        "AutoNormal",
        "NumPyro autoguide: AutoNormal (mean field), AutoDiagonalNormal or AutoLowRankMultivariateNormal",
    )
    vi_guide_rank: int | None = _f(
        None, "rank of AutoLowRankMultivariateNormal (default: NumPyro's)"
    )
    num_chains: int = _f(
        1,
        "independent fits side by side (vectorised), fit i from seed + i; each gives vi_ensemble_size draws, one chain",
    )
    init_strategy: str = _f(
        "uniform",
        "variational mean without --mean_init_checkpoint: uniform (LogDensity.init) or map (then L-BFGS to the MAP on the full batch)",
    )


@dataclass
class MCMCConfig(CommonConfig):
    """HMC or NUTS with Stan's window adaptation (``ppl_bnn.infer(method="nuts")``, and
    ``method="hmc"`` without a hand-set step size and trajectory length)."""

    kernel: str = _f("nuts", "nuts, or hmc (the window-adapted trajectory-length rule)")
    num_warmup: int = _f(1000, "warmup iterations (step size and mass matrix adapted)")
    num_samples: int = _f(1000, "iterations after the warmup, kept as samples")
    num_chains: int = _f(4, "chains run side by side (vectorised)")
    step_size: float | None = _f(
        None, "initial step size of the adaptation (default: Stan's heuristic)"
    )
    target_accept: float | None = _f(
        None,
        "dual averaging's target mean acceptance probability (default: 0.65 for hmc, 0.8 for nuts)",
    )
    dense_mass: bool = _f(False, "adapt a dense mass matrix (default diagonal)")
    max_num_doublings: int = _f(10, "NUTS: at most 2**this leapfrog steps per iteration")
    trajectory_length: float | None = _f(
        None, "hmc: trajectory length in whitened units (default pi/2)"
    )
    max_num_steps: int = _f(1024, "hmc: bound on the leapfrog steps of one trajectory (clamped)")
    init_strategy: str = _f(
        "uniform",
        "initial positions: uniform (Stan's: U(-2, 2) unconstrained), median, optimize, "
        "ensemble (--init_from) or pathfinder",
    )
    divergence_threshold: float = _f(1000.0, "energy error above which a trajectory diverged")
    eval_freq: int = _f(1, "train-set predictions and metrics every this many iterations")
    num_param_draws: int = _f(16, "parameter coordinates kept per draw for R-hat")
    init_from: str | None = _f(
        None,
        "with --init_strategy=ensemble: the run directory of a finished sgd/ensemble run; chain i starts at its member i (mod members)",
    )


@dataclass
class AdaptiveConfig(CommonConfig):
    """MAMS, ChEES-HMC or MCLMC with BlackJAX's own tuning (``ppl_bnn.infer(method="mams")``,
    ``"chees"``, ``"mclmc"``; ``ppl-bnn mams``, ``ppl-bnn chees``, ``ppl-bnn mclmc``)."""

    kernel: str = _f("mams", "mams, chees or mclmc (asymptotically biased: no MH test)")
    num_warmup: int = _f(1000, "tuning iterations (step size, L, diagonal mass matrix)")
    num_samples: int = _f(1000, "iterations after the tuning, kept as samples")
    num_chains: int = _f(4, "chains run side by side (vectorised; chees adapts across them)")
    step_size: float | None = _f(None, "initial step size of the tuning (default: the method's)")
    target_accept: float | None = _f(
        None, "target acceptance (default: mams 0.9, chees 0.651 harmonic mean); not mclmc"
    )
    diagonal_preconditioning: bool = _f(True, "adapt a diagonal inverse mass matrix")
    avg_num_steps: float = _f(2.0, "mams: mean integration steps per proposal (L / step size)")
    learning_rate: float = _f(0.025, "chees: Adam's learning rate on the log trajectory length")
    jitter_amount: float = _f(1.0, "chees: trajectory length T * U(1 - jitter_amount, 1]")
    max_num_steps: int = _f(
        1000, "mams, chees: bound on the integration steps of one trajectory (clamped)"
    )
    desired_energy_var: float = _f(
        5e-4, "mclmc: energy error variance per dimension the step size is tuned for"
    )
    gradient_dtype: str | None = _f(
        None,
        "mams, chees: integrate with gradients in bfloat16, float16 or float32; the MH test keeps the full-precision log density (exact)",
    )
    init_strategy: str = _f(
        "uniform",
        "initial positions: uniform (U(-2, 2) unconstrained), median, optimize, ensemble (--init_from) or pathfinder",
    )
    init_from: str | None = _f(
        None, "with --init_strategy=ensemble: a finished sgd/ensemble run directory"
    )
    divergence_threshold: float = _f(1000.0, "energy error above which a proposal diverged")
    eval_freq: int = _f(1, "train-set predictions and metrics every this many iterations")
    num_param_draws: int = _f(16, "parameter coordinates kept per draw for R-hat")
