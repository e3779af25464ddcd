"""The model, the image corruptions and the profile sizes of ``ppl-bnn reproduce``."""

from __future__ import annotations

from dataclasses import dataclass

MODEL = "mlp_regression_small"
CORRUPTIONS = {
    # severity 1..5; images are in normalised units (pixel std 1)
    "noise": (0.25, 0.5, 0.75, 1.0, 1.5),  # std of added Gaussian noise
    "blur": (0.4, 0.6, 0.8, 1.0, 1.3),  # Gaussian blur sigma, pixels
    "rotation": (10.0, 20.0, 30.0, 45.0, 60.0),  # degrees, random sign
}


@dataclass(frozen=True)
class Profile:
    """Sizes of one reproduce profile."""

    n_train: int
    n_test: int
    val_fraction: float
    num_chains: int
    num_warmup: int
    num_samples: int
    max_num_doublings: int
    weight_decays: tuple[float, ...]  # validation grid (prior precision)
    temperatures: tuple[float, ...]
    prior_variances: tuple[float, ...]  # finding 4, scale sweep
    families: tuple[str, ...]
    severities: tuple[int, ...]
    num_augmented_copies: int
    sgd_epochs: int
    ensemble_size: int
    sgmcmc_epochs: int
    sgmcmc_burnin: int
    sgmcmc_every: int
    vi_epochs: int
    batch_size: int
    surface_grid: int
    num_bootstrap: int
    num_weight_coords: int


PROFILES = {
    "smoke": Profile(
        n_train=60,
        n_test=40,
        val_fraction=0.25,
        num_chains=3,
        num_warmup=6,
        num_samples=6,
        max_num_doublings=2,
        weight_decays=(1.0,),
        temperatures=(1.0, 0.1),
        prior_variances=(0.1, 1.0),
        families=("gaussian", "laplace"),
        severities=(1, 5),
        num_augmented_copies=1,
        sgd_epochs=2,
        ensemble_size=2,
        sgmcmc_epochs=4,
        sgmcmc_burnin=2,
        sgmcmc_every=1,
        vi_epochs=2,
        batch_size=20,
        surface_grid=4,
        num_bootstrap=100,
        num_weight_coords=8,
    ),
    "quick": Profile(
        n_train=400,
        n_test=360,
        val_fraction=0.2,
        num_chains=3,
        num_warmup=60,
        num_samples=60,
        max_num_doublings=5,
        weight_decays=(1.0, 3.0, 10.0),
        temperatures=(3.0, 1.0, 0.3, 0.1, 0.03),
        prior_variances=(0.03, 0.1, 0.3, 1.0),
        families=("gaussian", "mixture_gaussian", "logistic", "laplace", "student_t"),
        severities=(1, 2, 3, 4, 5),
        num_augmented_copies=1,
        sgd_epochs=40,
        ensemble_size=5,
        sgmcmc_epochs=120,
        sgmcmc_burnin=40,
        sgmcmc_every=4,
        vi_epochs=40,
        batch_size=80,
        surface_grid=12,
        num_bootstrap=1000,
        num_weight_coords=64,
    ),
    "default": Profile(
        n_train=1437,
        n_test=360,
        val_fraction=0.2,
        num_chains=3,
        num_warmup=100,
        num_samples=100,
        max_num_doublings=6,
        weight_decays=(1.0, 3.0, 10.0),
        temperatures=(3.0, 1.0, 0.3, 0.1, 0.03),
        prior_variances=(0.03, 0.1, 0.3, 1.0),
        families=("gaussian", "mixture_gaussian", "logistic", "laplace", "student_t"),
        severities=(1, 2, 3, 4, 5),
        num_augmented_copies=1,
        sgd_epochs=100,
        ensemble_size=5,
        sgmcmc_epochs=300,
        sgmcmc_burnin=100,
        sgmcmc_every=10,
        vi_epochs=100,
        batch_size=80,
        surface_grid=20,
        num_bootstrap=1000,
        num_weight_coords=128,
    ),
}


@dataclass
class ReproduceConfig:
    out: str = "reproduce_report"
    profile: str = "default"  # default | quick | smoke
    only: tuple[str, ...] = ()
    scale: str = "laptop"  # laptop | paper
    seed: int = 0
