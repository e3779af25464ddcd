"""Every docstring example in the package runs (the equivalent of ``--doctest-modules``).

Modules are imported under their installed names (``ppl_bnn.models``, not ``models``), so
registries and dataclasses are the ones the library uses. Each example runs in a fresh
temporary working directory (examples that write ``runs/...`` write there), with
``jax``, ``jnp``, ``np``, ``numpyro`` and ``dist`` already imported; every other name an
example uses, it defines. Outputs are compared with ``ELLIPSIS`` and
``NORMALIZE_WHITESPACE``; a line without an output line only has to run.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ["ppl_bnn", "ppl_bnn.models", "ppl_bnn.diagnostics", "ppl_bnn.experiments"]
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _module_names() -> list[str]:
    names = set()
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.add(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            names.add(info.name)
    return sorted(names)


def _doctests() -> list:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found, seen = [], set()
    for name in _module_names():
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            # re-exported objects are found again under their importers: run each once
            key = (test.filename, test.lineno)
            if test.examples and key not in seen:
                seen.add(key)
                found.append(test)
    return found


DOCTESTS = _doctests()


def _globals() -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np
    import numpyro
    import numpyro.distributions as dist

    return {"jax": jax, "jnp": jnp, "np": np, "numpyro": numpyro, "dist": dist}


def test_the_package_has_docstring_examples():
    assert len(DOCTESTS) >= 5, [t.name for t in DOCTESTS]


@pytest.mark.parametrize("test", DOCTESTS, ids=[t.name for t in DOCTESTS])
def test_docstring_example(test, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    test.globs = {**test.globs, **_globals()}
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    report = []
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)
