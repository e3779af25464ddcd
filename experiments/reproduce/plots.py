"""The findings' figures (PNG, in each finding's folder)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .context import Context


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _fig_path(ctx: Context, stem: str) -> Path:
    return ctx.out / ctx.current / f"{stem}.png"


def _plot_bars(ctx, stem, names, values, errors, ylabel):
    plt = _plt()
    names = list(names)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(names, values, yerr=errors, color="C0", capsize=3)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    fig.savefig(_fig_path(ctx, stem), dpi=100)
    plt.close(fig)


def _plot_curves(ctx, stem, curves, xlabel, ylabel, logx=False):
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for label, (xs, ys) in curves.items():
        ax.plot(xs, ys, "o-", label=label)
    if logx:
        ax.set_xscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(_fig_path(ctx, stem), dpi=100)
    plt.close(fig)


def _plot_rhat(ctx, f_rhat, w_rhat, ab, lp, marks, thr):
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    bins = np.linspace(1.0, max(2.0, float(np.nanmax(np.r_[f_rhat, w_rhat, [1.0]]))), 40)
    axes[0].hist(np.clip(f_rhat, 1, bins[-1]), bins=bins, alpha=0.6, label="function space")
    axes[0].hist(np.clip(w_rhat, 1, bins[-1]), bins=bins, alpha=0.6, label="weight space")
    axes[0].axvline(thr, color="k", ls=":")
    axes[0].set(xlabel="split R-hat", ylabel="count", title="R-hat")
    axes[0].legend(fontsize=8)
    finite = np.where(np.isfinite(lp), lp, np.nan)
    axes[1].contour(ab[..., 0], ab[..., 1], finite)
    cs = axes[1].contourf(ab[..., 0], ab[..., 1], finite, alpha=0.55)
    axes[1].plot(marks[:, 0], marks[:, 1], "ro", ms=8, markeredgecolor="k")
    fig.colorbar(cs, ax=axes[1])
    axes[1].set(title="log posterior through three chains' final states", xlabel="u", ylabel="v")
    fig.tight_layout()
    fig.savefig(_fig_path(ctx, "rhat"), dpi=100)
    plt.close(fig)
