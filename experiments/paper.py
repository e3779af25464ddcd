"""The runs of "What Are Bayesian Neural Network Posteriors Really Like?" (Izmailov et al. 2021).

Two sources, kept apart by name:

* ``<method>_<dataset>...`` without suffix: every command of the original README, flag for
  flag (``python3 run_<method>.py`` -> ``ppl-bnn <method>``). Two spellings are normalised:
  ``--momentum`` (which only worked through argparse's prefix matching) is written
  ``momentum_decay``, and each experiment gets a run directory of its own,
  ``runs/<experiment name>``: the README sends all four IMDB temperatures to one
  ``--dir``, which the original turned into per-run subfolders and ``ppl-bnn`` refuses.
* ``..._table3``: the hyper-parameters of the paper's Table 3 (appendix) for CIFAR-10,
  CIFAR-100 and IMDB. Where Table 3 is silent the README's choice is used and said so.

HMC trajectory lengths follow the convention the README's numbers satisfy,
``tau = (pi / 2) sqrt(T / weight_decay)`` (pi/2 prior standard deviations).
"""

from __future__ import annotations

import math

from ppl_bnn.experiments import Experiment, register

__all__ = ["trajectory_len"]

_CIFAR_SUBSET = 40960  # the README's CIFAR baselines: 512 devices x 80


def trajectory_len(weight_decay: float, temperature: float = 1.0) -> float:
    """``(pi / 2) sqrt(T / weight_decay)``: a quarter period of the prior's Hamiltonian."""
    return math.pi / 2 * math.sqrt(temperature / weight_decay)


def _add(name: str, method: str, description: str, flags: dict, **kw) -> None:
    register(Experiment(name, method, {**flags, "dir": f"runs/{name}"}, description, **kw))


# --------------------------------------------------------------------- README: HMC
_IMDB_HMC = {
    # temperature: (step size, trajectory length, max leapfrog steps), from the README
    "1": (1e-5, 0.24, 30000),
    "0.3": (3e-6, 0.136, 46000),
    "0.1": (1e-6, 0.078, 90000),
    "0.03": (1e-6, 0.043, 45000),
}
for _t, (_eps, _tau, _max) in _IMDB_HMC.items():
    _add(
        f"hmc_imdb_temp{_t}",
        "hmc",
        f"README: full-batch HMC, CNN-LSTM on IMDB, temperature {_t} (8 V100s in the paper)",
        {
            "seed": 1,
            "weight_decay": 40.0,
            "temperature": float(_t),
            "dataset_name": "imdb",
            "model_name": "cnn_lstm",
            "use_float64": True,
            "step_size": _eps,
            "trajectory_len": _tau,
            "max_num_leapfrog_steps": _max,
        },
    )

_add(
    "hmc_mnist_subset160",
    "hmc",
    "README: full-batch HMC, MLP on the first 160 MNIST training images (one GPU)",
    {
        "seed": 0,
        "weight_decay": 1.0,
        "temperature": 1.0,
        "dataset_name": "mnist",
        "model_name": "mlp_classification",
        "step_size": 3e-5,
        "trajectory_len": 1.5,
        "num_iterations": 100,
        "max_num_leapfrog_steps": 50000,
        "num_burn_in_iterations": 10,
        "subset_train_to": 160,
    },
)

# --------------------------------------------------------------------- README: SGD
_SGD = {"eval_freq": 10, "batch_size": 80, "save_freq": 500, "num_epochs": 500}
_SGD_RUNS = {
    # dataset: (model, weight decay, initial step size, training subset)
    "cifar10": ("resnet20_frn_swish", 10.0, 3e-7, _CIFAR_SUBSET),
    "cifar100": ("resnet20_frn_swish", 10.0, 1e-6, _CIFAR_SUBSET),
    "imdb": ("cnn_lstm", 3.0, 3e-7, None),
}
for _ds, (_model, _wd, _lr, _subset) in _SGD_RUNS.items():
    _flags = {
        "seed": 1,
        "weight_decay": _wd,
        "dataset_name": _ds,
        "model_name": _model,
        "init_step_size": _lr,
        **_SGD,
        "subset_train_to": _subset,
    }
    _add(
        f"sgd_{_ds}",
        "sgd",
        f"README / Table 3: SGD with momentum 0.9 and a cosine schedule, {_model} on {_ds}",
        _flags,
    )
    _add(
        f"deep_ensemble_{_ds}",
        "sgd",
        f"Table 3: deep ensemble of 50 SGD runs (seeds 1..50) as sgd_{_ds}",
        _flags,
        replicas=50,
    )

# ------------------------------------------------------------------ README: SGMCMC
_SGMCMC = {
    "seed": 1,
    "weight_decay": 5.0,
    "dataset_name": "cifar10",
    "model_name": "resnet20_frn_swish",
    "num_epochs": 10000,
    "num_burnin_epochs": 1000,
    "eval_freq": 10,
    "batch_size": 80,
    "subset_train_to": _CIFAR_SUBSET,
}
_add(
    "sgld_cifar10",
    "sgmcmc",
    "README: SGLD, ResNet-20-FRN-swish on CIFAR-10",
    {
        **_SGMCMC,
        "init_step_size": 1e-6,
        "final_step_size": 1e-6,
        "save_freq": 10,
        "momentum_decay": 0.0,
    },
)
_add(
    "sghmc_cifar10",
    "sgmcmc",
    "README: SGHMC (momentum 0.9), ResNet-20-FRN-swish on CIFAR-10",
    {
        **_SGMCMC,
        "init_step_size": 3e-7,
        "final_step_size": 3e-7,
        "save_freq": 10,
        "momentum_decay": 0.9,
    },
)
_CLR = {
    "step_size_schedule": "cyclical",
    "step_size_cycle_length_epochs": 50,
    "ensemble_freq": 50,
    "momentum_decay": 0.95,
    "save_all_ensembled": True,
}
_add(
    "sghmc_clr_cifar10",
    "sgmcmc",
    "README: SGHMC with a cyclical step size (cycles of 50 epochs), CIFAR-10",
    {**_SGMCMC, **_CLR, "init_step_size": 3e-7, "save_freq": 1000, "preconditioner": "None"},
)
_add(
    "sghmc_clr_prec_cifar10",
    "sgmcmc",
    "README: cyclical SGHMC with an RMSprop preconditioner, CIFAR-10",
    {**_SGMCMC, **_CLR, "init_step_size": 3e-5, "save_freq": 50, "preconditioner": "RMSprop"},
)

# --------------------------------------------------------------------- README: MFVI
_SGD_CHECKPOINT = "checkpoint of the SGD solution (run sgd_{} first)"
_VI = {
    "seed": 11,
    "weight_decay": 5.0,
    "init_step_size": 1e-4,
    "eval_freq": 10,
    "batch_size": 80,
    "optimizer": "Adam",
    "vi_sigma_init": 0.01,
    "temperature": 1.0,
    "vi_ensemble_size": 20,
    "mean_init_checkpoint": None,
}
for _ds in ("cifar10", "cifar100"):
    _add(
        f"vi_{_ds}",
        "vi",
        f"README: mean-field VI, ResNet-20-FRN-swish on {_ds}",
        {
            **_VI,
            "dataset_name": _ds,
            "model_name": "resnet20_frn_swish",
            "num_epochs": 300,
            "save_freq": 300,
            "subset_train_to": _CIFAR_SUBSET,
        },
        requires={"mean_init_checkpoint": _SGD_CHECKPOINT.format(_ds)},
    )
_add(
    "vi_imdb",
    "vi",
    "README: mean-field VI, CNN-LSTM on IMDB",
    {**_VI, "dataset_name": "imdb", "model_name": "cnn_lstm", "num_epochs": 500, "save_freq": 200},
    requires={"mean_init_checkpoint": _SGD_CHECKPOINT.format("imdb")},
)

# ---------------------------------------------------------- README: surface plot
_add(
    "surface_imdb",
    "surface",
    "README: log posterior, log likelihood and log prior in the plane of three checkpoints, "
    "CNN-LSTM on IMDB",
    {
        "weight_decay": 40.0,
        "temperature": 1.0,
        "model_name": "cnn_lstm",
        "dataset_name": "imdb",
        "checkpoint1": None,
        "checkpoint2": None,
        "checkpoint3": None,
        "limit_bottom": -0.75,
        "limit_left": -0.75,
        "limit_right": 1.75,
        "limit_top": 1.75,
        "grid_size": 50,
    },
    requires={f"checkpoint{i}": f"checkpoint {i} of 3 spanning the plane" for i in (1, 2, 3)},
)

# ------------------------------------------------------------------------ Table 3
_TABLE3 = {
    # dataset: (model, HMC samples per chain, HMC weight decay, SGLD step size, subset)
    "cifar10": ("resnet20_frn_swish", 240, 5.0, 1e-6, _CIFAR_SUBSET),
    "cifar100": ("resnet20_frn_swish", 40, 5.0, 3e-6, _CIFAR_SUBSET),
    "imdb": ("cnn_lstm", 400, 40.0, 1e-5, None),
}
for _ds, (_model, _samples, _wd, _sgld_lr, _subset) in _TABLE3.items():
    # IMDB: the README's T = 1 trajectory; CIFAR: the convention, 70,250 leapfrog steps
    _tau = 0.24 if _ds == "imdb" else round(trajectory_len(_wd), 4)
    _steps = 30000 if _ds == "imdb" else round(_tau / 1e-5)
    _add(
        f"hmc_{_ds}_table3",
        "hmc",
        f"Table 3: HMC on {_ds}, prior variance 1/{_wd:g}, step size 1e-5, 50 burn-in "
        f"iterations, 3 chains of {_samples} samples (trajectory length {_tau}: the README's "
        "for IMDB, derived for CIFAR; 512 TPUs in the paper"
        + (", training subset as the README's baselines)" if _subset else ")"),
        {
            "seed": 0,
            "weight_decay": _wd,
            "temperature": 1.0,
            "dataset_name": _ds,
            "model_name": _model,
            "step_size": 1e-5,
            "trajectory_len": _tau,
            "max_num_leapfrog_steps": _steps,
            "num_burn_in_iterations": 50,
            "num_iterations": 50 + _samples,
            "num_chains": 3,
            "subset_train_to": _subset,
            "use_float64": _ds == "imdb",
        },
    )
    _add(
        f"sgld_{_ds}_table3",
        "sgmcmc",
        f"Table 3: SGLD on {_ds}, prior variance 1/5, constant step size {_sgld_lr:g}, "
        "10,000 epochs with 1,000 of burn-in, a sample every 10 epochs (900 per chain), "
        "5 chains (seeds 1..5)",
        {
            "seed": 1,
            "weight_decay": 5.0,
            "dataset_name": _ds,
            "model_name": _model,
            "init_step_size": _sgld_lr,
            "final_step_size": _sgld_lr,
            "num_epochs": 10000,
            "num_burnin_epochs": 1000,
            "ensemble_freq": 10,
            "eval_freq": 10,
            "batch_size": 80,
            "save_freq": 10,
            "momentum_decay": 0.0,
            "subset_train_to": _subset,
        },
        replicas=5,
    )
    _add(
        f"mfvi_{_ds}_table3",
        "vi",
        f"Table 3: mean-field VI on {_ds}, prior variance 1/5, 300 epochs of Adam (step size "
        "1e-4, cosine), batch 80, initial std 0.01, mean initialised at the SGD solution, "
        "50 predictive samples",
        {
            **_VI,
            "dataset_name": _ds,
            "model_name": _model,
            "num_epochs": 300,
            "save_freq": 300,
            "vi_ensemble_size": 50,
            "subset_train_to": _subset,
        },
        requires={"mean_init_checkpoint": _SGD_CHECKPOINT.format(_ds)},
    )
