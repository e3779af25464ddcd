"""Assemble what every backend needs from a configuration: data, model, log density, mesh."""

from __future__ import annotations

from dataclasses import dataclass

import jax
from jax.sharding import Mesh

from ppl_bnn.config import CommonConfig
from ppl_bnn.data import Dataset, load_dataset
from ppl_bnn.data.augment import with_augmented_copies
from ppl_bnn.declare import likelihoods, priors
from ppl_bnn.declare.bnn import bnn_model
from ppl_bnn.density.distributed import initialize_from_config
from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import Batch, make_mesh, shard_batch
from ppl_bnn.models import get_model

__all__ = ["Problem", "build_prior", "build_likelihood", "build_problem"]


@dataclass
class Problem:
    """A dataset, the BNN declared on it, and both splits placed on the mesh."""

    dataset: Dataset
    model: object
    logdensity: LogDensity
    mesh: Mesh
    train: Batch
    test: Batch


def build_prior(cfg: CommonConfig) -> priors.Prior:
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


def build_likelihood(cfg: CommonConfig, dataset: Dataset):
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


def build_problem(cfg: CommonConfig, dataset: Dataset | None = None) -> Problem:
    """Load the data, declare the BNN and place both splits on a mesh.

    Starts ``jax.distributed`` first when the config or the environment asks for a
    multi-process run; the mesh then spans every process's devices and each process
    places only its own rows of the data.
    """
    initialize_from_config(cfg)
    if cfg.use_float64:
        jax.config.update("jax_enable_x64", True)
    if cfg.temperature <= 0:
        raise ValueError(f"--temperature must be positive, got {cfg.temperature}")
    prior = build_prior(cfg)  # validate names before any data is read
    if dataset is None:
        dataset = load_dataset(
            cfg.dataset_name,
            data_dir=cfg.data_dir,
            uci_split=cfg.uci_split,
            subset_train_to=cfg.subset_train_to,
        )
    if cfg.num_augmented_copies:
        dataset = with_augmented_copies(dataset, cfg.num_augmented_copies, seed=cfg.seed)
    lik = build_likelihood(cfg, dataset)
    num_outputs = lik.num_outputs or dataset.num_classes
    net = get_model(cfg.model_name, num_outputs)
    model = bnn_model(net, prior, lik, temperature=cfg.temperature)
    mesh = make_mesh(cfg.num_devices)
    example = (dataset.x_train[:2], dataset.y_train[:2])
    ld = LogDensity(model, mesh, example, microbatch_size=cfg.microbatch_size)
    multiple = cfg.microbatch_size or 1
    train = shard_batch(mesh, dataset.x_train, dataset.y_train, multiple=multiple)
    test = shard_batch(mesh, dataset.x_test, dataset.y_test, multiple=multiple)
    return Problem(dataset, model, ld, mesh, train, test)
