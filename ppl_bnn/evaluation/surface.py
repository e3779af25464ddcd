"""The posterior density on the plane through three parameter vectors.

After the original ``make_posterior_surface_plot.py`` (Izmailov et al. 2021, the posterior
density plots): with ``theta1, theta2, theta3`` (e.g. HMC samples from three chains),

* ``u = (theta2 - theta1) / ||theta2 - theta1||``;
* ``v`` = ``theta3 - theta1`` without its ``u`` component (Gram-Schmidt), normalised;
* grid point ``(a, b)`` is ``theta1 + a ||theta2 - theta1|| u + b ||v_raw|| v``,

so ``theta1`` sits at ``(0, 0)``, ``theta2`` at ``(1, 0)`` and ``theta3`` at
``(<theta3 - theta1, theta2 - theta1> / ||theta2 - theta1||^2, 1)`` (the original marked
it at an approximate ``(0.5, 1)``; here its exact coordinates are used). At every grid
point the tempered log likelihood of the full training set (sharded over the mesh), the
tempered log prior and their sum (the unnormalised log posterior) are evaluated; the plane
lives in the unconstrained space of :class:`~ppl_bnn.density.logdensity.LogDensity` positions,
which for the BNN weight priors is parameter space itself.

The whole grid is one compiled ``lax.map`` (``batch_size`` points vectorised at a time).
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ppl_bnn.config import SurfaceConfig
from ppl_bnn.declare.problem import Problem, build_problem
from ppl_bnn.density.logdensity import LogDensity
from ppl_bnn.density.sharding import Batch, replicate, to_host
from ppl_bnn.store.checkpoint import CheckpointError
from ppl_bnn.store.samples import read_positions

__all__ = [
    "Plane",
    "SurfaceResult",
    "evaluate_plane",
    "load_position",
    "make_plane",
    "plot_surface",
    "posterior_surface",
]

OUTPUT_FOLDER = "posterior_visualization"
QUANTITIES = ("log_prob", "log_likelihood", "log_prior")


class Plane(NamedTuple):
    """The plane through three flat parameter vectors (numpy float64).

    ``point(a, b) = origin + a * u_norm * u + b * v_norm * v`` with unit ``u``, ``v``.
    """

    origin: np.ndarray
    u: np.ndarray
    v: np.ndarray
    u_norm: float
    v_norm: float

    def coordinates(self, theta: np.ndarray) -> tuple[float, float]:
        """``(a, b)`` of the orthogonal projection of ``theta`` onto the plane."""
        d = np.asarray(theta, np.float64) - self.origin
        return float(d @ self.u / self.u_norm), float(d @ self.v / self.v_norm)

    def point(self, a: float, b: float) -> np.ndarray:
        return self.origin + a * self.u_norm * self.u + b * self.v_norm * self.v


def make_plane(theta1: np.ndarray, theta2: np.ndarray, theta3: np.ndarray) -> Plane:
    """The plane with ``theta1`` at ``(0, 0)``, ``theta2`` at ``(1, 0)``, ``theta3`` at ``b = 1``.

    Computed in float64 whatever the working precision. Raises ``ValueError`` if the
    three points do not span a plane.
    """
    t1, t2, t3 = (np.asarray(t, np.float64) for t in (theta1, theta2, theta3))
    u_raw = t2 - t1
    u_norm = float(np.linalg.norm(u_raw))
    if not u_norm > 0:
        raise ValueError("checkpoints 1 and 2 hold the same parameters: they span no plane")
    u = u_raw / u_norm
    v_raw = (t3 - t1) - ((t3 - t1) @ u) * u
    v_norm = float(np.linalg.norm(v_raw))
    if not v_norm > 1e-12 * max(u_norm, float(np.linalg.norm(t3 - t1))):
        raise ValueError("checkpoint 3 lies on the line through checkpoints 1 and 2: no plane")
    return Plane(t1, u, v_raw / v_norm, u_norm, v_norm)


def load_position(spec: str, logdensity: LogDensity) -> dict[str, np.ndarray]:
    """One chain's (unconstrained) position from a sample file or a checkpoint of a run.

    ``spec`` is ``PATH`` (chain 0) or ``PATH:CHAIN``; ``PATH`` is a posterior sample
    (``RUN_DIR/samples/sample_000123.npz``) or a checkpoint
    (``RUN_DIR/checkpoints/checkpoint_000123.npz``), stacked over chains or a single
    position. Raises ``CheckpointError`` (missing, corrupt, not a position) or
    ``ValueError`` (another model's parameters, no such chain). Nothing read can run code.
    """
    path, chain = spec, 0
    if not Path(spec).exists() and (m := re.fullmatch(r"(.+):(\d+)", spec)):
        path, chain = m.group(1), int(m.group(2))
    stacked = read_positions(path, logdensity)
    chains = next(iter(stacked.values())).shape[0]
    if chain >= chains:
        raise ValueError(f"{path} has {chains} chain(s), not chain {chain}")
    return {name: value[chain] for name, value in stacked.items()}


@partial(jax.jit, static_argnames=("logdensity", "unravel", "batch_size"))
def _evaluate(logdensity, unravel, batch_size, origin, directions, coords, batch):
    def one(ab):
        position = unravel(origin + ab @ directions)
        prior = logdensity.log_prior(position)
        likelihood = logdensity.log_likelihood(position, batch)
        return jnp.stack([prior + likelihood, likelihood, prior])

    return jax.lax.map(one, coords, batch_size=batch_size)


def evaluate_plane(
    logdensity: LogDensity,
    batch: Batch,
    plane: Plane,
    coords: np.ndarray,
    unravel,
    *,
    batch_size: int = 1,
) -> np.ndarray:
    """``(n, 3)`` log posterior, log likelihood and log prior at ``n`` plane coordinates.

    ``coords`` is ``(n, 2)`` of ``(a, b)``; ``unravel`` maps a flat vector to a position
    (``jax.flatten_util.ravel_pytree``). One compiled call for all points.
    """
    dtype = jnp.zeros(()).dtype
    directions = np.stack([plane.u_norm * plane.u, plane.v_norm * plane.v])
    args = replicate(
        logdensity.mesh,
        (np.asarray(plane.origin, dtype), np.asarray(directions, dtype), np.asarray(coords, dtype)),
    )
    out = _evaluate(logdensity, unravel, max(1, int(batch_size)), *args, batch)
    return to_host(out)


class SurfaceResult(NamedTuple):
    """Arrays indexed ``[i, j]`` for ``a = alphas[i]`` (along u), ``b = betas[j]`` (along v)."""

    log_probs: np.ndarray
    log_likelihoods: np.ndarray
    log_priors: np.ndarray
    grid: np.ndarray  # (n_a, n_b, 2): (a, b) of every point
    u_norm: float
    v_norm: float
    checkpoint_coords: np.ndarray  # (3, 2): exact (a, b) of the three checkpoints
    checkpoint_values: np.ndarray  # (3, 3): log_prob, log_likelihood, log_prior at them
    folder: Path | None = None


def _check(cfg: SurfaceConfig) -> None:
    if cfg.grid_size < 2:
        raise ValueError(f"--grid_size must be at least 2, got {cfg.grid_size}")
    if not cfg.limit_left < cfg.limit_right:
        raise ValueError("--limit_left must be smaller than --limit_right")
    if not cfg.limit_bottom < cfg.limit_top:
        raise ValueError("--limit_bottom must be smaller than --limit_top")
    for i in (1, 2, 3):
        if not getattr(cfg, f"checkpoint{i}"):
            raise ValueError(f"--checkpoint{i} is required")


def posterior_surface(
    cfg: SurfaceConfig,
    *,
    problem: Problem | None = None,
    argv: list[str] | None = None,
    write: bool = True,
) -> SurfaceResult:
    """Evaluate the plane through ``--checkpoint1/2/3`` and write ``--dir/posterior_visualization``.

    Every input is checked (flags, checkpoints, their shapes) before anything is
    written. Files: ``surface_plot.npz`` (the original's keys ``log_probs``,
    ``log_priors``, ``log_likelihoods``, ``grid``, ``u_norm``, ``v_norm``, plus
    ``checkpoint_coords``, ``checkpoint_values``), contour plots ``log_prob``,
    ``log_likelihood`` and ``log_prior`` as PDF and PNG, and ``command.sh``.
    """
    _check(cfg)
    if not cfg.dir:
        raise ValueError("--dir is required: the folder that receives posterior_visualization/")
    for i in (1, 2, 3):  # fail on a missing file before any data is loaded
        spec = getattr(cfg, f"checkpoint{i}")
        base = re.sub(r":\d+$", "", spec) if not Path(spec).exists() else spec
        if not Path(base).is_file():
            raise CheckpointError(f"--checkpoint{i}: checkpoint {base} does not exist")
    problem = problem or build_problem(cfg)
    ld = problem.logdensity
    thetas = [load_position(getattr(cfg, f"checkpoint{i}"), ld) for i in (1, 2, 3)]
    flat = [np.asarray(ravel_pytree(t)[0]) for t in thetas]
    _, unravel = ravel_pytree(jax.tree.map(jnp.asarray, thetas[0]))
    plane = make_plane(*flat)

    alphas = np.linspace(cfg.limit_left, cfg.limit_right, cfg.grid_size)
    betas = np.linspace(cfg.limit_bottom, cfg.limit_top, cfg.grid_size)
    grid = np.stack(np.meshgrid(alphas, betas, indexing="ij"), axis=-1)
    marks = np.array([[0.0, 0.0], [1.0, 0.0], plane.coordinates(flat[2])])
    coords = np.concatenate([grid.reshape(-1, 2), marks])
    values = evaluate_plane(
        ld, problem.train, plane, coords, unravel, batch_size=cfg.grid_batch_size
    )
    on_grid = values[: grid[..., 0].size].reshape(*grid.shape[:2], 3)
    result = SurfaceResult(
        log_probs=on_grid[..., 0],
        log_likelihoods=on_grid[..., 1],
        log_priors=on_grid[..., 2],
        grid=grid,
        u_norm=plane.u_norm,
        v_norm=plane.v_norm,
        checkpoint_coords=marks,
        checkpoint_values=values[-3:],
    )
    if not write:
        return result
    from ppl_bnn.density.distributed import is_primary

    folder = Path(cfg.dir) / OUTPUT_FOLDER
    if is_primary():
        _write(result, folder, argv)
    return result._replace(folder=folder)


def _write(result: SurfaceResult, folder: Path, argv: list[str] | None) -> None:
    import shlex
    import sys

    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / "surface_plot.npz",
        log_probs=result.log_probs,
        log_priors=result.log_priors,
        log_likelihoods=result.log_likelihoods,
        grid=result.grid,
        u_norm=result.u_norm,
        v_norm=result.v_norm,
        checkpoint_coords=result.checkpoint_coords,
        checkpoint_values=result.checkpoint_values,
    )
    for i, name in enumerate(QUANTITIES):
        values = (result.log_probs, result.log_likelihoods, result.log_priors)[i]
        plot_surface(result.grid, values, result.checkpoint_coords, folder / name, title=name)
    argv = sys.argv if argv is None else argv
    (folder / "command.sh").write_text(" ".join(shlex.quote(a) for a in argv) + "\n")
    summary = {
        "u_norm": result.u_norm,
        "v_norm": result.v_norm,
        "checkpoint_coords": result.checkpoint_coords.tolist(),
        **{
            f"checkpoint_{q}": result.checkpoint_values[:, i].tolist()
            for i, q in enumerate(QUANTITIES)
        },
    }
    (folder / "surface_summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def plot_surface(
    grid: np.ndarray,
    values: np.ndarray,
    marks: np.ndarray,
    stem: Path,
    *,
    title: str = "log_prob",
) -> list[Path]:
    """Contour lines over filled contours (alpha 0.55), a colour bar, the three checkpoints
    marked in red; written as ``stem.pdf`` and ``stem.png`` (matplotlib's Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    finite = np.where(np.isfinite(values), values, np.nan)
    ax.contour(grid[..., 0], grid[..., 1], finite, zorder=1)
    filled = ax.contourf(grid[..., 0], grid[..., 1], finite, zorder=0, alpha=0.55)
    ax.plot(marks[:, 0], marks[:, 1], "ro", ms=12, markeredgecolor="k", zorder=2)
    for i, (a, b) in enumerate(marks):
        ax.annotate(f"$\\theta_{i + 1}$", (a, b), textcoords="offset points", xytext=(8, 8))
    fig.colorbar(filled, ax=ax)
    ax.set_xlabel("u (checkpoint 1 to 2)")
    ax.set_ylabel("v (towards checkpoint 3)")
    ax.set_title(title)
    paths = [stem.with_suffix(".pdf"), stem.with_suffix(".png")]
    for p in paths:
        fig.savefig(p, bbox_inches="tight", dpi=120)
    return paths
