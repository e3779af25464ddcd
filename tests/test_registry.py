"""``ppl_bnn.methods.REGISTRY`` is the only list of methods: ``infer``, ``ppl_bnn.run``,
the command line and the docs' method table all agree with it, every entry's options are
``infer``'s, their documented defaults are the configs', and errors inside ``infer`` name
``infer``'s keywords.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import ppl_bnn
from ppl_bnn import api, methods
from ppl_bnn.methods import REGISTRY, Common, Method, Option

ROOT = Path(__file__).resolve().parents[1]
NAMES = list(REGISTRY)


def model(x, y=None):
    w = numpyro.sample("w", dist.Normal(0.0, 10.0).expand([x.shape[1]]).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ w, 1.0), obs=y)


@pytest.fixture(scope="module")
def data():
    x = np.random.default_rng(0).normal(size=(100, 2)).astype(np.float32)
    return x, (x @ np.array([1.0, -1.0])).astype(np.float32)


def common(**kw) -> Common:
    base = dict(num_warmup=4, num_samples=3, num_chains=2, seed=0, step_size=None)
    return Common(**{**base, **kw}, run_dir="", num_rows=100)


# ---------------------------------------------------------------- one list everywhere
def test_infer_takes_the_registry_names():
    assert list(api.METHODS) == NAMES
    assert {k: v for k, v in api.METHODS.items()} == {
        m.name: m.option_names for m in REGISTRY.values()
    }
    with pytest.raises(
        ValueError, match=f"unknown method 'nope'; choose one of {', '.join(NAMES)}$"
    ):
        ppl_bnn.infer(model, None, None, method="nope")


def test_run_takes_the_registry_names():
    from ppl_bnn.driver import RUNNERS

    with pytest.raises(ValueError, match=f"choose one of {', '.join(NAMES)}$"):
        ppl_bnn.run("sgmcmc", None)
    for name, m in REGISTRY.items():
        assert RUNNERS[name] == (m.config, m.run)
    # the families' old names, kept in RUNNERS for existing callers, run registry methods
    assert set(RUNNERS) - set(NAMES) == {"mcmc", "sgmcmc", "mfvi"}
    assert all(v in {(m.config, m.run) for m in REGISTRY.values()} for v in RUNNERS.values())


def test_run_refuses_a_config_of_another_method():
    from ppl_bnn.config import HMCConfig, MCMCConfig, SGLDConfig, SGMCMCConfig, VIConfig

    for method, cfg in [
        ("nuts", MCMCConfig(kernel="hmc")),
        ("nuts", HMCConfig()),
        ("sgld", SGMCMCConfig(momentum_decay=0.9)),
        ("sghmc", SGLDConfig()),
        ("sgd", VIConfig()),
        ("vi", MCMCConfig()),
    ]:
        with pytest.raises(ValueError, match=f"cfg does not describe method '{method}'"):
            ppl_bnn.run(method, cfg)
    assert REGISTRY["hmc"].describes(HMCConfig()) is None  # the original recipe's config
    assert REGISTRY["hmc"].describes(MCMCConfig(kernel="hmc")) is None


def test_the_cli_method_commands_run_the_registry_methods():
    from ppl_bnn.cli import COMMANDS, METHOD_COMMANDS

    assert set(METHOD_COMMANDS) <= set(COMMANDS)
    reached = [m for names in METHOD_COMMANDS.values() for m in names]
    assert set(reached) == set(NAMES)
    # a command's name is a method's name, or an alias of the original's, never another method
    for command, names in METHOD_COMMANDS.items():
        assert command not in REGISTRY or command in names, command


def test_a_registered_method_without_a_command_gets_one_from_its_config():
    from ppl_bnn.cli import method as generic

    parser = argparse.ArgumentParser()
    generic.add_parser(parser.add_subparsers(dest="command"), "nuts")
    args = parser.parse_args(["nuts", "--dir=run", "--num_samples=7"])
    assert args.registry_method == "nuts" and args.num_samples == 7
    assert not hasattr(args, "kernel")  # fixed by the method, not a flag


def test_the_docs_method_table_is_the_registry():
    page = (ROOT / "docs/guide/backends.md").read_text()
    table = re.search(
        r"<!-- the table is methods\.markdown_table\(\).*?-->\n(.*?)<!-- end", page, re.S
    )
    assert table is not None, "the method table's markers are missing"
    assert table.group(1) == methods.markdown_table(), "rerun `python -m ppl_bnn.methods`"
    rows = re.findall(r"^\| `([a-z0-9-]+)` \|", table.group(1), re.M)
    assert rows == NAMES


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize("name", NAMES)
def test_every_option_is_accepted_and_an_unknown_one_is_named(name, data):
    entry = REGISTRY[name]
    assert entry.kind in ("sampler", "approximation") and isinstance(entry.exact, bool)
    assert entry.description and entry.summary_names
    assert not set(entry.option_names) & set(methods.COMMON_ARGUMENTS)
    for option in entry.options:
        assert api._check_options(name, {option.name: option.default}) is entry
    x, y = data
    with pytest.raises(ValueError) as e:
        ppl_bnn.infer(model, x, y, method=name, no_such_keyword=1)
    message = str(e.value)
    assert "\n" not in message and "'no_such_keyword'" in message and f"'{name}'" in message


@pytest.mark.parametrize("name", NAMES)
def test_the_documented_defaults_are_the_configs(name):
    entry = REGISTRY[name]
    cfg = entry.configure(common(), {})
    assert entry.describes(cfg) is None
    fields = {f.name for f in dataclasses.fields(cfg)}
    for option in entry.options:
        if option.default is not None and (option.field or option.name) in fields:
            assert getattr(cfg, option.field or option.name) == option.default, option.name


def test_hmc_is_window_adapted_and_its_own_keywords_give_the_original_recipe():
    from ppl_bnn.config import HMCConfig, MCMCConfig

    hmc = REGISTRY["hmc"]
    window = hmc.configure(common(), {})
    assert isinstance(window, MCMCConfig) and window.kernel == "hmc"
    original = hmc.configure(common(step_size=0.1), {"trajectory_len": 0.5})
    assert isinstance(original, HMCConfig)
    assert (original.num_iterations, original.num_burn_in_iterations) == (7, 4)
    fields = {f.name for f in dataclasses.fields(HMCConfig)}
    for option in hmc.options:
        if option.field in fields and option.default is not None:
            assert getattr(original, option.field) == option.default, option.name


def test_every_summary_name_maps_back_to_one_method():
    for recorded, name in [
        ("nuts", "nuts"),
        ("hmc-window", "hmc"),
        ("hmc", "hmc"),
        ("sgld", "sgld"),
        ("sghmc-clr-prec", "sghmc"),
        ("mfvi", "vi"),
        ("vi-AutoLowRankMultivariateNormal", "vi"),
        ("sgd", "sgd"),
        ("map", "map"),
        ("ensemble", "ensemble"),
    ]:
        assert methods.method_of_summary(recorded).name == name, recorded
    literal = [(p, m) for m in REGISTRY.values() for p in m.summary_names if "*" not in p]
    for pattern, owner in literal:
        assert methods.method_of_summary(pattern) is owner, pattern


def test_a_map_run_records_its_registry_name(data):
    x, y = data
    r = ppl_bnn.infer(model, x, y, method="map", step_size=1e-3, num_warmup=2, num_chains=1)
    assert r.summary["method"] == "map"
    assert methods.method_of_summary(r.summary["method"]).kind == "approximation"


def test_register_checks_the_entry():
    nuts = REGISTRY["nuts"]
    with pytest.raises(ValueError, match="already registered"):
        methods.register(nuts)
    reuses = dataclasses.replace(nuts, name="other", options=(Option("num_samples", 1, ""),))
    with pytest.raises(ValueError, match="options reused or repeated"):
        methods.register(reuses)
    with pytest.raises(ValueError, match="kind must be"):
        methods.register(dataclasses.replace(nuts, name="other", kind="exact"))  # type: ignore[arg-type]
    assert "other" not in REGISTRY and isinstance(nuts, Method)


# ------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    "method, options, want",
    [
        ("sgd", {"eval_freq": 0}, "eval_freq and save_freq must be at least 1"),
        ("sghmc", {"schedule": "cyclical", "cycle_length": 0}, "cycle_length must be at least 1"),
        ("vi", {"optimizer": "RMSprop"}, "unknown optimizer='RMSprop'"),
        ("vi", {"init_scale": -1.0}, "init_scale must be positive"),
        ("hmc", {"step_size": 0.1, "trajectory_len": 0.3, "eval_freq": 0}, "eval_freq must be"),
    ],
)
def test_errors_inside_infer_name_its_keywords(data, method, options, want):
    x, y = data
    with pytest.raises(ValueError) as e:
        ppl_bnn.infer(model, x, y, method=method, num_warmup=2, num_samples=2, **options)
    assert str(e.value).startswith(want) and "--" not in str(e.value)


def test_a_resumed_run_names_infers_arguments(data, tmp_path):
    x, y = data
    kw = dict(method="sgd", step_size=1e-3, num_chains=1, run_dir=str(tmp_path / "run"))
    ppl_bnn.infer(model, x, y, num_warmup=3, **kw)
    with pytest.raises(ValueError) as e:
        ppl_bnn.infer(model, x, y, num_warmup=2, **kw)
    assert str(e.value).startswith("num_warmup=2 is below the 3 epochs already done in run_dir=")
    with pytest.raises(ValueError, match="holds a run with other settings .*use a new run_dir$"):
        ppl_bnn.infer(model, x, y, num_warmup=3, seed=1, **kw)


def test_outside_infer_options_are_flags():
    assert methods.option_name("num_iterations") == "--num_iterations"
    with methods.spelled_for(REGISTRY["hmc"]):
        assert methods.option_name("num_iterations") == "num_warmup + num_samples"
        assert methods.option_name("dir") == "run_dir"
    assert methods.option_name("dir") == "--dir"
