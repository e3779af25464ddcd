"""The overhead benchmarks on two versions of ppl_bnn, side by side in one run.

Runs ``hmc_overhead.py`` (ppl_bnn's time per leapfrog step, whole HMC run) and
``minibatch_epoch_overhead.py`` (time per SGD / SGLD epoch, compiled kernel and whole run)
from this checkout against two library trees: the working tree and ``--baseline``, a git
revision checked out into a temporary worktree (with ``ppl_bnn/models``,
``ppl_bnn/diagnostics`` and ``ppl_bnn/experiments`` linked in as the installed package
maps them). The two alternate, ``--rounds`` times, so load on the machine hits both alike;
each script's ppl_bnn figures are kept per round, and the summary gives, per figure, the
ratio new / baseline of the medians over rounds (below 1: the working tree is faster).

    python benchmarks/overhead_ab.py --baseline REV [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCRIPTS = {
    "hmc_overhead.py": ["--steps", "100", "1000", "--iterations", "8", "--repeats", "1"],
    "minibatch_epoch_overhead.py": ["--repeats", "5", "--e1", "2", "--e2", "302"],
}


def baseline_tree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(where), rev],
                   check=True, capture_output=True)  # fmt: skip
    for sub in ("models", "diagnostics", "experiments"):
        link = where / "ppl_bnn" / sub
        if not link.exists():
            link.symlink_to(where / sub, target_is_directory=True)
    return where


def figures(script: str, line: dict) -> dict[str, float]:
    """The ppl_bnn figures of one JSON line, by name."""
    if script == "hmc_overhead.py" and "sec_per_step_ppl_bnn" in line:
        return {f"hmc s/leapfrog L={line['num_leapfrog_steps']}": line["sec_per_step_ppl_bnn"]}
    if script == "minibatch_epoch_overhead.py" and line.get("impl") == "ppl_bnn":
        return {f"{line['benchmark']} {line['level']} s": line["median_s"]}
    return {}


def run(script: str, tree: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, str(HERE / script), *SCRIPTS[script]], env=env,
                         capture_output=True, text=True, check=True)  # fmt: skip
    found: dict[str, float] = {}
    for text in out.stdout.splitlines():
        if text.startswith("{"):
            found.update(figures(script, json.loads(text)))
    return found


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", required=True, help="git revision to compare against")
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="ppl_bnn_ab_") as tmp:
        trees = {"baseline": baseline_tree(a.baseline, Path(tmp) / "baseline"), "new": ROOT}
        try:
            seen: dict[str, dict[str, list[float]]] = {"baseline": {}, "new": {}}
            for r in range(a.rounds):
                for script in SCRIPTS:
                    for name, tree in trees.items():
                        for k, v in run(script, tree).items():
                            seen[name].setdefault(k, []).append(v)
                            print(json.dumps({"round": r, "tree": name, "figure": k, "s": v}),
                                  flush=True)  # fmt: skip
            for k in seen["new"]:
                old, new = np.median(seen["baseline"].get(k, [np.nan])), np.median(seen["new"][k])
                print(json.dumps({"figure": k, "baseline_s": old, "new_s": new,
                                  "ratio_new_over_baseline": round(float(new / old), 3),
                                  "load_average": os.getloadavg()[0]}))  # fmt: skip
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                            str(trees["baseline"])], capture_output=True)  # fmt: skip


if __name__ == "__main__":
    main()
