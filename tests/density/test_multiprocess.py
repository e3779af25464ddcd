"""Two processes on localhost (CPU, gloo), two fake devices each, against a plain run.

Both runs use the same data (101 digits: padded over 4 devices and microbatches of 8) and
the same seed. The log density, its gradient, predictions and two HMC iterations
(``ppl-bnn hmc``, one of burn-in and one with the MH test) must agree to float tolerance,
and only the primary process may write the run directory.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ppl_bnn.store.checkpoint import load_checkpoint

WORKER = Path(__file__).resolve().parents[1] / "multiprocess_worker.py"  # in tests/


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _start(out: Path, process_id: int, num_processes: int, port: int, devices: int):
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1"}
    env.pop("XLA_FLAGS", None)
    log = open(out / f"log_{process_id}.txt", "w")  # noqa: SIM115 - closed after wait
    args = [
        sys.executable,
        str(WORKER),
        str(out),
        str(process_id),
        str(num_processes),
        str(port),
        str(devices),
    ]
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env), log


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiprocess")
    port = _free_port()
    procs = [
        _start(root / "multi", 0, 2, port, 2),
        _start(root / "multi", 1, 2, port, 2),
        _start(root / "single", 0, 0, 0, 1),
    ]
    try:
        for p, log in procs:
            p.wait(timeout=400)
            log.close()
    finally:
        for p, _ in procs:
            if p.poll() is None:
                p.kill()
    for (p, _), name in zip(procs, ["multi/log_0", "multi/log_1", "single/log_0"], strict=True):
        assert p.returncode == 0, (root / f"{name}.txt").read_text()[-3000:]
    return root / "multi", root / "single"


def test_log_density_and_gradient_match(runs):
    multi, single = (np.load(d / "result.npz") for d in runs)
    assert int(multi["num_processes"]) == 2 and int(multi["num_devices"]) == 4
    assert int(single["num_processes"]) == 1 and int(single["num_devices"]) == 1
    np.testing.assert_allclose(multi["value"], single["value"], rtol=2e-6)
    np.testing.assert_allclose(multi["preds"], single["preds"], rtol=1e-5, atol=1e-6)
    assert multi["preds"].shape == (360, 10)  # every test row, padding dropped
    grads = [k for k in single.files if k.startswith("grad/")]
    assert grads
    for k in grads:
        scale = np.max(np.abs(single[k]))
        np.testing.assert_allclose(multi[k], single[k], atol=2e-6 * scale, err_msg=k)


@pytest.mark.parametrize("step", [1, 2])
def test_hmc_iterations_match(runs, step):
    multi, single = (
        load_checkpoint(d / "run" / "checkpoints" / f"checkpoint_{step:06d}.npz") for d in runs
    )
    for k, v in single["position"].items():
        np.testing.assert_allclose(multi["position"][k], v, rtol=1e-5, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(multi["logdensity"], single["logdensity"], rtol=1e-5)
    np.testing.assert_array_equal(multi["key"], single["key"])
    np.testing.assert_allclose(multi["ensemble"].first, single["ensemble"].first, atol=1e-5)


def test_only_the_primary_process_writes(runs):
    multi, single = runs
    commands = (multi / "run" / "command.sh").read_text().splitlines()
    assert len(commands) == 1 and "--process_id=0" in commands[0]
    records, reference = (
        [json.loads(ln) for ln in (d / "run" / "metrics.jsonl").read_text().splitlines()]
        for d in (multi, single)
    )
    assert [r["iteration"] for r in records] == [1, 2]
    for r, ref in zip(records, reference, strict=True):
        assert r["accepted"] == ref["accepted"]
        np.testing.assert_allclose(r["test/accuracy"], ref["test/accuracy"])
