"""Closed-form and quadrature posteriors of the zoo's conjugate, flat-prior and
one-dimensional models."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Stats = dict[str, dict[str, float]]  # quantity -> {mean, sd, mcse_mean, mcse_sd}


def _stats(mean, sd, names) -> Stats:
    mean, sd = np.atleast_1d(mean), np.atleast_1d(sd)
    return {
        n: {"mean": float(m), "sd": float(s), "mcse_mean": 0.0, "mcse_sd": 0.0}
        for n, m, s in zip(names, mean, sd, strict=True)
    }


def _names(site: str, k: int | None) -> list[str]:
    return [site] if k is None else [f"{site}[{i}]" for i in range(k)]


def flat_prior_regression(x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """The posterior of ``y ~ N(X beta, sigma)`` with ``p(beta, sigma) ∝ 1`` (flat on
    ``beta`` and on ``sigma > 0``), ``X = [1, x]``.

    Integrating ``beta`` out leaves ``p(sigma | y) ∝ sigma^-(n - k) exp(-S / (2 sigma^2))``
    (``S`` the residual sum of squares at the least-squares ``beta_hat``): ``sigma^2`` is
    scaled-inverse-chi-square with ``nu = n - k - 1`` degrees of freedom and scale
    ``s^2 = S / nu``, and ``beta`` is multivariate Student-t with ``nu`` degrees of
    freedom, location ``beta_hat`` and scale matrix ``s^2 (X'X)^-1``.

    Returns ``{"nu", "s2", "beta_hat", "scale"}`` and the marginal moments ``"stats"``.
    """
    from scipy.special import gammaln

    X = np.column_stack([np.ones(len(x)), x])
    n, k = X.shape
    beta_hat, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta_hat
    nu = n - k - 1
    s2 = float(resid @ resid) / nu
    scale = s2 * np.linalg.inv(X.T @ X)
    beta_sd = np.sqrt(np.diag(scale) * nu / (nu - 2))
    # sigma = s sqrt(nu) / chi_nu: E[1 / chi_nu] = Gamma((nu - 1) / 2) / (sqrt(2) Gamma(nu / 2))
    e_inv_chi = math.exp(gammaln((nu - 1) / 2) - gammaln(nu / 2)) / math.sqrt(2)
    sigma_mean = math.sqrt(s2 * nu) * e_inv_chi
    sigma_sd = math.sqrt(s2 * nu / (nu - 2) - sigma_mean**2)
    stats = _stats(beta_hat, beta_sd, _names("beta", k))
    stats.update(_stats(sigma_mean, sigma_sd, ["sigma"]))
    return {"nu": nu, "s2": s2, "beta_hat": beta_hat, "scale": scale, "stats": stats}


def sigma_quadrature(
    X: np.ndarray,
    y: np.ndarray,
    log_prior_sigma: Callable[[np.ndarray], np.ndarray],
    prior_mean: np.ndarray | None = None,
    prior_cov: np.ndarray | None = None,
    num_points: int = 4001,
) -> Stats:
    """Posterior moments of ``y ~ N(X beta, sigma)``, ``beta ~ N(prior_mean, prior_cov)``
    (flat when ``prior_cov`` is ``None``) and any prior on ``sigma``, by integrating on a
    grid of ``log sigma``: given ``sigma`` everything is Gaussian, so ``p(y | sigma)``,
    ``E[beta | sigma, y]`` and ``Cov[beta | sigma, y]`` are exact; a coarse grid finds
    where the posterior of ``log sigma`` lives, a fine one (trapezoid rule, spectrally
    accurate for this smooth, rapidly decaying integrand) integrates it.
    """
    n, k = X.shape
    if prior_cov is None:
        xtx = X.T @ X
        beta_hat = np.linalg.solve(xtx, X.T @ y)
        rss = float(np.sum((y - X @ beta_hat) ** 2))
        _, logdet_xtx = np.linalg.slogdet(xtx)

        def cond(log_s):
            s2 = np.exp(2 * log_s)
            # log p(y | sigma) up to a constant: N(y; X beta_hat, s2) * (2 pi s2)^(k/2) / |X'X|^1/2
            ll = -(n - k) * log_s - rss / (2 * s2) - 0.5 * logdet_xtx
            means = np.broadcast_to(beta_hat, (len(log_s), k))
            covs = s2[:, None, None] * np.linalg.inv(xtx)[None]
            return ll, means, covs

    else:
        m0 = np.zeros(k) if prior_mean is None else np.asarray(prior_mean, float)
        chol = np.linalg.cholesky(prior_cov)
        Z = X @ chol  # beta = m0 + chol u, u ~ N(0, I)
        r = y - X @ m0
        lam, U = np.linalg.eigh(Z.T @ Z)
        lam = np.clip(lam, 0.0, None)
        zr = U.T @ (Z.T @ r)
        rr = float(r @ r)

        def cond(log_s):
            s2 = np.exp(2 * log_s)[:, None]
            d = lam[None] / s2 + 1.0  # posterior precision of U'u, diagonal
            mu_u = (zr[None] / s2) / d
            # log N(r; 0, s2 I + Z Z') by the matrix determinant lemma and Woodbury
            quad = rr / s2[:, 0] - np.sum(zr[None] ** 2 / s2**2 / d, axis=1)
            ll = -0.5 * (n * np.log(s2[:, 0]) + np.sum(np.log(d), axis=1) + quad)
            means = m0[None] + (mu_u @ U.T) @ chol.T
            covs = np.einsum("ij,gj,kj->gik", chol @ U, 1.0 / d, chol @ U)
            return ll, means, covs

    def log_post(log_s):
        ll = cond(log_s)[0]
        return ll + log_prior_sigma(np.exp(log_s)) + log_s  # d sigma = sigma d log sigma

    coarse = np.linspace(-40.0, 40.0, 16001)
    lp = log_post(coarse)
    keep = coarse[lp > lp.max() - 60.0]
    grid = np.linspace(keep.min() - 0.05, keep.max() + 0.05, num_points)
    ll, means, covs = cond(grid)
    logw = ll + log_prior_sigma(np.exp(grid)) + grid
    w = np.exp(logw - logw.max())
    w /= w.sum()
    sig = np.exp(grid)
    sigma_mean = float(w @ sig)
    sigma_sd = math.sqrt(max(float(w @ sig**2) - sigma_mean**2, 0.0))
    beta_mean = w @ means
    second = np.einsum("g,gij->ij", w, covs) + np.einsum("g,gi,gj->ij", w, means, means)
    beta_sd = np.sqrt(np.diag(second) - beta_mean**2)
    stats = _stats(beta_mean, beta_sd, _names("beta", k))
    stats.update(_stats(sigma_mean, sigma_sd, ["sigma"]))
    return stats


def gaussian_known_sigma(X, y, sigma: float, prior_sd: np.ndarray) -> Stats:
    """``y ~ N(X beta, sigma)`` (known ``sigma``), ``beta ~ N(0, diag(prior_sd^2))``."""
    prec = X.T @ X / sigma**2 + np.diag(1.0 / np.asarray(prior_sd) ** 2)
    cov = np.linalg.inv(prec)
    mean = cov @ (X.T @ y) / sigma**2
    return _stats(mean, np.sqrt(np.diag(cov)), _names("beta", X.shape[1]))


def nig_regression(X, y, v0: float, a0: float, b0: float) -> Stats:
    """Normal-inverse-gamma: ``sigma2 ~ InvGamma(a0, b0)``, ``beta | sigma2 ~
    N(0, sigma2 v0 I)``: ``beta`` is Student-t (``2 a_n`` degrees of freedom, scale
    ``b_n / a_n V_n``), ``sigma2`` inverse-gamma ``(a_n, b_n)``."""
    n, k = X.shape
    vn = np.linalg.inv(X.T @ X + np.eye(k) / v0)
    mn = vn @ X.T @ y
    an = a0 + n / 2
    bn = b0 + 0.5 * float(y @ y - mn @ np.linalg.solve(vn, mn))
    dof = 2 * an
    beta_sd = np.sqrt(np.diag(vn) * bn / an * dof / (dof - 2))
    s2_mean = bn / (an - 1)
    s2_sd = bn / ((an - 1) * math.sqrt(an - 2))
    stats = _stats(mn, beta_sd, _names("beta", k))
    stats.update(_stats(s2_mean, s2_sd, ["sigma2"]))
    return stats


def one_dim_quadrature(log_density: Callable[[np.ndarray], np.ndarray], lo, hi, n=200_001):
    """Mean and sd of a one-dimensional density on ``[lo, hi]`` (trapezoid rule)."""
    t = np.linspace(lo, hi, n)
    lp = log_density(t)
    w = np.exp(lp - lp.max())
    w /= w.sum()
    mean = float(w @ t)
    return mean, math.sqrt(float(w @ (t - mean) ** 2))
