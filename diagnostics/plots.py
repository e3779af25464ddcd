"""Diagnostic plots (matplotlib, headless): traces and rank histograms, R-hat histograms."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_rank", "plot_rhat_histogram", "plot_trace"]


def _figure(rows: int, cols: int, size=(3.2, 2.2)):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(size[0] * cols, size[1] * rows), squeeze=False)
    return fig, axes


def plot_trace(draws: np.ndarray, names: list[str], path: str | Path, max_panels: int = 8) -> Path:
    """Trace of each chain for up to ``max_panels`` quantities of ``draws (chain, draw, k)``."""
    k = min(draws.shape[-1], max_panels)
    fig, axes = _figure(k, 1, size=(7, 1.6))
    for i in range(k):
        ax = axes[i, 0]
        for c in range(draws.shape[0]):
            ax.plot(draws[c, :, i], lw=0.8, label=f"chain {c}")
        ax.set_ylabel(names[i], fontsize=7, rotation=0, ha="right")
    axes[-1, 0].set_xlabel("draw")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_rank(draws: np.ndarray, names: list[str], path: str | Path, max_panels: int = 8) -> Path:
    """Rank histograms per chain (Vehtari et al. 2021): flat when the chains agree."""
    k = min(draws.shape[-1], max_panels)
    n_chains, n_draws = draws.shape[:2]
    fig, axes = _figure((k + 3) // 4, min(k, 4))
    bins = max(5, min(20, n_draws // 5))
    edges = np.linspace(0, n_chains * n_draws, bins + 1)  # shared edges over all ranks
    for i in range(k):
        ax = axes.flat[i]
        ranks = np.argsort(np.argsort(draws[..., i].ravel())).reshape(n_chains, n_draws)
        for c in range(n_chains):
            ax.hist(ranks[c], bins=edges, histtype="step", lw=1)
        ax.axhline(n_draws / bins, color="k", ls=":", lw=0.8)
        ax.set_title(names[i], fontsize=7)
        ax.set_yticks([])
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)


def plot_rhat_histogram(rhat: dict[str, np.ndarray], path: str | Path) -> Path:
    """Histogram of R-hat values per variable (function space, parameter space)."""
    fig, axes = _figure(1, len(rhat))
    for ax, (name, values) in zip(axes.flat, rhat.items(), strict=False):
        v = np.asarray(values, float).ravel()
        v = v[np.isfinite(v)]
        ax.hist(v, bins=40)
        ax.axvline(1.1, color="r", ls="--", lw=1)
        ax.set_title(f"R-hat: {name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return Path(path)
