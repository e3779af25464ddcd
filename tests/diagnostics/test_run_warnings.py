"""Runs that say when they failed: the run-end checks (``ppl_bnn.diagnostics.checks``).

The checks are tested on synthetic sample statistics with known answers; two tiny runs
check the whole path: a clean run warns nothing, a broken one (a huge fixed step size)
warns, records the warnings in ``summary.json`` and ``RunResult.diagnose()``, and
``ppl-bnn diagnose`` prints them.
"""

from __future__ import annotations

import io
import json
import warnings

import numpy as np
import pytest

from ppl_bnn.diagnostics import RunDiagnostic, RunWarning, checks, diagnose_run_dir
from ppl_bnn.driver.loop import RunResult

RNG = np.random.default_rng(0)


def _iid(chains=4, draws=500, seed=0):
    return np.random.default_rng(seed).normal(size=(chains, draws))


# ------------------------------------------------------------------ each check
def test_divergences_count_and_share():
    d = np.zeros((4, 100), bool)
    d[2, :30] = True
    d[3, 5] = True
    found = checks.check_divergences(d)
    assert (found.kind, found.count, found.total, found.chains) == ("divergences", 31, 400, (2, 3))
    assert found.message.startswith("31 of 400 transitions after warmup (7.8%) diverged")
    assert checks.check_divergences(np.zeros((4, 100), bool)) is None


def test_stuck_chains_are_named():
    accept = np.full((4, 200), 0.85)
    accept[1] = 0.0
    accept[3, :] = np.nan  # a non-finite acceptance counts as 0
    found = checks.check_stuck_chains(accept)
    assert found.kind == "stuck_chains" and found.chains == (1, 3)
    assert "chains 1, 3 accept 0.00 of proposals after warmup (stuck)" in found.message
    assert "the other chains accept 0.85" in found.message
    one = accept.copy()
    one[3] = 0.9
    assert checks.check_stuck_chains(one).message.startswith("chain 1 accepts 0.00")
    assert checks.check_stuck_chains(np.full((4, 200), 0.6)) is None


def test_a_chain_that_drifts_away_is_stuck_too():
    """Accepting everything while far from the others (a scale drifting off under a flat
    prior) is named by its log density."""
    lp = -1850 + _iid()
    lp[2] = -7.7e4 + np.linspace(0, 100, 500)
    found = checks.check_stuck_chains(np.ones((4, 500)), lp)
    assert found.chains == (2,)
    assert "chain 2 stays at a log density far below" in found.message
    assert checks.check_stuck_chains(np.ones((4, 500)), -1850 + _iid()) is None


def test_rhat_flags_chains_that_disagree():
    x = _iid()
    assert checks.check_rhat({"mu": x}) is None
    y = x.copy()
    y[0] += 3.0
    found = checks.check_rhat({"mu": x, "beta": np.stack([y, x], -1)})
    assert found.kind == "rhat" and found.sites == ("beta[0]",)
    assert (found.count, found.total) == (1, 3) and found.value > 1.2
    assert "R-hat above 1.01 on 1 of 3 parameters" in found.message
    # each chain constant at its own value: infinite R-hat; all equal: no verdict
    flat = np.repeat(np.arange(4.0)[:, None], 100, 1)
    assert checks.check_rhat({"s": flat}).value == np.inf
    assert checks.check_rhat({"c": np.ones((4, 100))}) is None
    assert checks.check_rhat({"mu": x[:1]}) is None  # one chain


def test_bulk_ess_below_100_per_chain():
    assert checks.check_ess({"mu": _iid()}) is None
    ar = np.zeros((4, 500))
    eps = _iid()
    for t in range(1, 500):
        ar[:, t] = 0.99 * ar[:, t - 1] + eps[:, t]
    found = checks.check_ess({"mu": ar, "nu": _iid(seed=1)})
    assert found.kind == "ess" and found.sites == ("mu",) and found.value < 100
    assert found.message.startswith("bulk ESS below 100 per chain on 1 of 2 parameters")


def test_ebfmi_matches_its_formula():
    energy = _iid(4, 400)
    energy[1] = np.cumsum(energy[1])  # a random walk: the energy barely changes per step
    found = checks.check_ebfmi(energy)
    e = energy[1]
    expected = np.sum(np.diff(e) ** 2) / np.sum((e - e.mean()) ** 2)
    assert found.chains == (1,) and found.value == pytest.approx(expected, rel=1e-6)
    assert found.message.startswith("E-BFMI below 0.3 in chain 1")
    assert checks.check_ebfmi(_iid(4, 400)) is None


def test_clamped_trajectories_and_saturated_trees():
    steps = np.full((2, 100), 40)
    steps[0, :10] = 1024
    found = checks.check_trajectory_clamped(steps, 1024)
    assert (found.count, found.total, found.chains) == (10, 200, (0,))
    assert "max_num_steps=1024" in found.message
    assert checks.check_trajectory_clamped(steps, 2048) is None
    depth = np.full((2, 100), 3)
    depth[1, :4] = 10
    found = checks.check_tree_depth(depth, 10)
    assert (found.count, found.chains) == (4, (1,))
    assert "max_num_doublings=10" in found.message


def test_diagnose_reads_every_statistic_in_order():
    stats = {
        "diverging": np.eye(2, 50, dtype=bool),
        "acceptance_rate": np.stack([np.zeros(50), np.ones(50)]),
        "energy": np.stack([np.cumsum(_iid(1, 50)[0]), _iid(1, 50)[0]]),
        "tree_depth": np.full((2, 50), 10),
    }
    found = checks.diagnose(stats, {"mu": _iid(2, 50)}, max_num_doublings=10)
    kinds = [f.kind for f in found]
    assert kinds[:4] == ["divergences", "stuck_chains", "ebfmi", "tree_depth"]
    assert set(kinds) <= {"divergences", "stuck_chains", "ebfmi", "tree_depth", "rhat", "ess"}
    again = [RunDiagnostic.from_dict(json.loads(json.dumps(f.to_dict()))) for f in found]
    assert again == found


def test_networks_are_checked_in_function_space():
    preds = RNG.dirichlet(np.ones(3), size=(2, 50, 7))
    samples = {"net/Dense_0.kernel": RNG.normal(size=(2, 50, 4, 5))}
    q, space = checks.convergence_quantities(samples, preds, bnn=True, task="classification")
    assert space == "function" and set(q) == {"test_prob"}
    q, space = checks.convergence_quantities(
        samples, None, bnn=True, sample_stats={"lp": _iid(2, 50)}
    )
    assert space == "log density" and set(q) == {"lp"}
    assert checks.is_bnn(sites=list(samples)) and not checks.is_bnn(sites=["sigma"])
    # a large model costs at most MAX_QUANTITIES quantities
    names, x = checks._flat({"w": RNG.normal(size=(2, 10, 100, 100))})
    assert len(names) == x.shape[0] <= checks.MAX_QUANTITIES and names[0] == "w[0, 0]"


def test_approximations_get_no_mcmc_warnings_and_sgmcmc_gets_rhat():
    bad = np.stack([_iid(1, 100)[0], _iid(1, 100)[0] + 5])
    result = RunResult(summary={"method": "mfvi"}, samples={"mu": bad})
    assert result.diagnose() == []
    result = RunResult(summary={"method": "sgld"}, samples={"mu": bad})
    assert [f.kind for f in result.diagnose()] == ["rhat", "ess"]


def test_the_command_line_prints_run_warnings_as_lines():
    from ppl_bnn.cli.diagnose import run_warnings_as_lines

    out = io.StringIO()
    with run_warnings_as_lines(out), warnings.catch_warnings():
        warnings.simplefilter("error")  # printed, not raised: a strict harness passes
        checks.warn([checks.check_stuck_chains(np.zeros((2, 10)))])
    assert out.getvalue().startswith("warning: chains 0, 1 accept 0.00 of proposals")


# ------------------------------------------------------------------ whole runs
def _model(x, y=None):
    import numpyro
    import numpyro.distributions as dist

    mu = numpyro.sample("mu", dist.Normal(0, 10))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(mu + 0 * x[:, 0], 1.0), obs=y)


X = np.zeros((20, 1), np.float32)
Y = np.random.default_rng(0).normal(1.0, 1.0, 20).astype(np.float32)


def test_a_clean_run_warns_nothing():
    """HMC with a trajectory of about a quarter period of the Gaussian posterior: nearly
    independent draws, nothing to warn about."""
    import ppl_bnn

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = ppl_bnn.infer(
            _model, X, Y, method="hmc", step_size=0.1, trajectory_len=0.35, num_warmup=20,
            num_samples=200, num_chains=2,
        )  # fmt: skip
    assert [w for w in caught if issubclass(w.category, RunWarning)] == []
    assert result.summary["warnings"] == [] and result.diagnose() == []


def test_a_broken_run_says_so_everywhere(tmp_path, capsys):
    """A huge fixed step size: every transition diverges, both chains stick; the warnings come at the run's end, in summary.json, from ``diagnose()``,
    from the run directory, and from ``ppl-bnn diagnose``."""
    import ppl_bnn
    from ppl_bnn.cli import main

    run_dir = tmp_path / "run"
    with pytest.warns(RunWarning) as caught:
        result = ppl_bnn.infer(
            _model, X, Y, x_test=X[:3], method="hmc", step_size=50.0, trajectory_len=50.0,
            num_warmup=0, num_samples=10, num_chains=2, run_dir=str(run_dir),
        )  # fmt: skip
    lines = [str(w.message) for w in caught if issubclass(w.category, RunWarning)]
    assert lines[0].startswith("20 of 20 transitions after warmup (100.0%) diverged")
    assert lines[1].startswith("chains 0, 1 accept 0.00 of proposals after warmup (stuck)")
    kinds = [f.kind for f in result.diagnose()]
    assert kinds[:2] == ["divergences", "stuck_chains"] and "rhat" in kinds
    assert result.diagnose()[1].chains == (0, 1)
    saved = json.loads((run_dir / "summary.json").read_text())["warnings"]
    assert [RunDiagnostic.from_dict(d) for d in saved] == result.diagnose()
    assert [f.kind for f in diagnose_run_dir(run_dir)] == kinds
    capsys.readouterr()
    assert main(["diagnose", str(run_dir), "--output", str(tmp_path / "d.nc")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [ln for ln in out if ln.startswith("warning: ")] == [f"warning: {m}" for m in lines]
    assert json.loads(out[-1])["netcdf"].endswith("d.nc")


@pytest.mark.parametrize(
    ("config", "method"),
    [
        ({"kernel": "nuts"}, "nuts"),
        ({"kernel": "hmc"}, "hmc-window"),
        ({"kernel": "mams"}, "mams"),
        ({"kernel": "chees"}, "chees"),
        ({"kernel": "mclmc"}, "mclmc"),
        ({"max_num_leapfrog_steps": 10}, "hmc"),
    ],
)
def test_a_run_without_a_summary_is_named_by_its_config(config, method):
    """A run directory killed before its first summary is diagnosed as the method its
    configuration names (the checks of an MCMC method apply)."""
    from ppl_bnn.diagnostics.checks import _method_of, is_approximation

    assert _method_of(config) == method
    assert not is_approximation(method)
