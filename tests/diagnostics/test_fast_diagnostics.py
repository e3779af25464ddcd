"""The vectorised R-hat and bulk ESS (ppl_bnn.diagnostics.fast) give ArviZ's figures.

Every case compares against ``arviz_stats`` quantity by quantity, to 1e-10 relative, with
the same NaN and infinite entries: several shapes (odd draw counts, 1-8 chains, quantity
shapes of rank 0-2), ties and discrete draws, constant quantities, NaN and infinite
draws, heavy tails, strongly autocorrelated chains, float32 draws, several seeds.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

from ppl_bnn.diagnostics import checks, fast
from ppl_bnn.diagnostics.convergence import _per_variable

RTOL = 1e-10
SEEDS = range(6)


def _arviz(x: np.ndarray, figure: str) -> np.ndarray:
    from arviz_stats.base import array_stats

    moved = np.moveaxis(np.asarray(x), (0, 1), (-2, -1))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if figure == "rhat":
            return np.asarray(array_stats.rhat(moved), np.float64)
        return np.asarray(array_stats.ess(moved, method="bulk"), np.float64)


def _assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape and got.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_array_equal(np.isposinf(got), np.isposinf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=RTOL, atol=0)


def _both(x: np.ndarray) -> None:
    _assert_same(fast.rhat(x), _arviz(x, "rhat"))
    _assert_same(fast.ess_bulk(x), _arviz(x, "ess"))


def _ar1(rng, shape, phi):
    noise = rng.normal(size=shape)
    x = np.empty(shape)
    x[:, 0] = noise[:, 0] / np.sqrt(1 - phi**2)
    for t in range(1, shape[1]):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    return x


def _draws(kind: str, rng, shape) -> np.ndarray:
    if kind == "normal":
        return rng.normal(size=shape) + rng.normal(size=(shape[0], 1, *shape[2:]))
    if kind == "ties":
        return np.round(rng.normal(size=shape), 1)
    if kind == "discrete":
        return rng.integers(0, 3, size=shape).astype(np.float64)
    if kind == "cauchy":
        return rng.standard_cauchy(size=shape)
    if kind == "ar1":
        return _ar1(rng, shape, phi=0.99)
    if kind == "antithetic":
        return _ar1(rng, shape, phi=-0.9)
    if kind == "float32":
        return rng.normal(size=shape).astype(np.float32)
    if kind == "integers":
        return rng.integers(-5, 5, size=shape)
    raise ValueError(kind)


KINDS = ["normal", "ties", "discrete", "cauchy", "ar1", "antithetic", "float32", "integers"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", KINDS)
def test_random_arrays_match_arviz(kind, seed):
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    for _ in range(4):
        chains = int(rng.integers(1, 9))
        draws = int(rng.choice([4, 5, 7, 10, 33, 100, 251]))
        quantity = [(), (6,), (2, 3)][int(rng.integers(0, 3))]
        _both(_draws(kind, rng, (chains, draws, *quantity)))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("draws", [4, 5, 9, 40, 41])
def test_edge_cases_match_arviz(seed, draws):
    rng = np.random.default_rng(seed)
    chains = 1 + seed % 4 * 2  # 1, 3, 5, 7 chains
    x = rng.normal(size=(chains, draws, 12))
    x[..., 0] = 2.5  # constant
    x[..., 1] = np.arange(chains)[:, None]  # each chain constant, at its own value
    x[0, draws // 2, 2] = np.nan  # one NaN draw
    x[..., 3] = np.nan  # all NaN
    x[0, 1, 4] = np.inf  # one infinite draw
    x[:, : draws // 2 + 1, 5] = np.inf  # mostly infinite: the fold is NaN
    x[0, 0, 6], x[-1, -1, 6] = -np.inf, np.inf
    x[..., 7] = rng.integers(0, 2, size=(chains, draws))  # two values
    x[..., 8] = 0.0
    x[0, 0, 8] = 1.0  # one draw differs
    x[:, draws - draws // 2 :, 9] = x[:, : draws // 2, 9]  # split halves identical
    x[..., 10] = 1e300 * rng.normal(size=(chains, draws))  # huge values
    _both(x)


@pytest.mark.parametrize("shape", [(2, 3), (1, 3, 5), (4, 2, 2), (0, 10, 2), (3, 10, 0)])
def test_too_small_and_empty(shape):
    x = np.random.default_rng(0).normal(size=shape)
    got_r, got_e = fast.rhat(x), fast.ess_bulk(x)
    assert got_r.shape == got_e.shape == shape[2:]
    if 0 not in shape:
        _assert_same(got_r, _arviz(x, "rhat"))
        _assert_same(got_e, _arviz(x, "ess"))
    assert np.isnan(got_r).all()


def test_one_quantity_gives_a_scalar():
    x = _ar1(np.random.default_rng(3), (4, 50), phi=0.5)
    assert fast.rhat(x).shape == () and fast.ess_bulk(x).shape == ()
    _both(x)


def test_rejects_a_single_axis():
    with pytest.raises(ValueError, match="chain, draw"):
        fast.rhat(np.zeros(10))


def test_large_array_on_a_subset_of_columns():
    """(4, 100, 20000) at once (ArviZ takes tens of seconds for all of it), checked
    against ArviZ on 300 of the columns."""
    rng = np.random.default_rng(7)
    x = _ar1(rng, (4, 100, 20000), phi=0.7) + rng.normal(size=(4, 1, 20000))
    r, e = fast.rhat(x), fast.ess_bulk(x)
    cols = rng.choice(x.shape[2], size=300, replace=False)
    _assert_same(r[cols], _arviz(x[..., cols], "rhat"))
    _assert_same(e[cols], _arviz(x[..., cols], "ess"))


def test_datasets_match_az_rhat_and_ess():
    """``diagnose_runs``' per-variable Datasets are shaped, named and valued as
    ``az.rhat``/``az.ess`` return them."""
    import arviz as az

    rng = np.random.default_rng(11)
    posterior = xr.Dataset(
        {
            "w": (("chain", "draw", "w_dim_0", "w_dim_1"), rng.normal(size=(3, 21, 4, 2))),
            "b": (("chain", "draw"), rng.normal(size=(3, 21)).astype(np.float32)),
        },
        coords={"chain": [0, 1, 2], "draw": np.arange(21), "w_dim_0": list("abcd")},
    )
    tree = xr.DataTree.from_dict({"posterior": posterior})
    for figure, reference in ((fast.rhat, az.rhat), (fast.ess_bulk, az.ess)):
        got = _per_variable(tree["posterior"].to_dataset(), figure)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = reference(tree, group="posterior").to_dataset()
        xr.testing.assert_allclose(got, want, rtol=RTOL)
        assert list(got.data_vars) == list(want.data_vars)
        assert {v: got[v].dims for v in got.data_vars} == {v: want[v].dims for v in want}


def _with_arviz(monkeypatch):
    monkeypatch.setattr(checks.fast, "rhat", lambda x: _arviz(x, "rhat"))
    monkeypatch.setattr(checks.fast, "ess_bulk", lambda x: _arviz(x, "ess"))


@pytest.mark.parametrize("check", [checks.check_rhat, checks.check_ess])
def test_run_end_checks_warn_as_with_arviz(check, monkeypatch):
    rng = np.random.default_rng(5)
    sites = {
        "mixed": np.concatenate([_ar1(rng, (2, 40, 30), 0.95), rng.normal(size=(2, 40, 30))]),
        "offset": rng.normal(size=(4, 40)) + np.arange(4)[:, None],
        "frozen": np.repeat(np.arange(4.0)[:, None], 40, axis=1),
        "flat": np.ones((4, 40)),
    }
    got = check(sites)
    with monkeypatch.context() as patch:
        _with_arviz(patch)
        want = check(sites)
    assert got is not None and want is not None
    assert (got.message, got.sites, got.count, got.total) == (
        want.message,
        want.sites,
        want.count,
        want.total,
    )
    assert got.value == pytest.approx(want.value, rel=RTOL)
