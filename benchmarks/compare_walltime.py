"""Wall time of ``ppl-bnn compare`` at its default size (the README's main job).

Runs the command in a fresh temporary folder (a separate process, as a user would) and
prints one JSON line per method (training time and wall time inside the command) and one
for the whole command, with the device and the number of CPU cores JAX sees.

    python benchmarks/compare_walltime.py [-- extra compare flags]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time


def main() -> None:
    extra = sys.argv[1:]
    if extra[:1] == ["--"]:
        extra = extra[1:]
    workdir = tempfile.mkdtemp(prefix="ppl_bnn_compare_")
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    cmd = [
        sys.executable,
        "-c",
        "from ppl_bnn.cli import main; raise SystemExit(main())",
        "compare",
        f"--dir={workdir}/run",
        *extra,
    ]
    try:
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stdout[-2000:], proc.stderr[-4000:], file=sys.stderr)
            raise SystemExit(proc.returncode)
        with open(os.path.join(workdir, "run", "compare.json")) as f:
            result = json.load(f)
        for name, row in result["methods"].items():
            print(
                json.dumps(
                    {
                        "benchmark": "compare_walltime",
                        "method": name,
                        "train_s": row["train_time"],
                        "wall_s": row["wall_time"],
                    }
                )
            )
        import jax

        print(
            json.dumps(
                {
                    "benchmark": "compare_walltime",
                    "method": "total",
                    "wall_s": wall,
                    "device": str(jax.devices()[0]),
                    "cpu_count": os.cpu_count(),
                    "hmc_rhat_max": (result.get("hmc_function_space") or {}).get("max_rhat"),
                    "extra_flags": extra,
                }
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
