"""The cold-posterior effect on a small BNN: full-batch HMC at several temperatures.

The posterior is raised to 1/T (prior and likelihood alike, ``--temperature``): T = 1 is
the Bayes posterior, T < 1 "cold". For each T this runs multi-chain full-batch HMC on the
embedded digits data (in memory: nothing is written) and prints the test accuracy and
negative log-likelihood of the Bayesian model average, as in the paper's Figure 5.

    python examples/cold_posterior_sweep.py          # several minutes on a CPU
    PPL_BNN_EXAMPLE_TINY=1 python examples/cold_posterior_sweep.py    # seconds (tests)
"""

from __future__ import annotations

import os

import ppl_bnn
from ppl_bnn import HMCConfig

TINY = bool(os.environ.get("PPL_BNN_EXAMPLE_TINY"))
TEMPERATURES = (1.0, 0.1) if TINY else (1.0, 0.3, 0.1, 0.03)


def run_at(temperature: float):
    size = (
        dict(num_iterations=3, num_burn_in_iterations=1, subset_train_to=64, num_chains=2)
        if TINY
        else dict(num_iterations=60, num_burn_in_iterations=10, num_chains=3)
    )
    cfg = HMCConfig(
        dir="",  # in memory
        dataset_name="digits",
        model_name="mlp_classification",
        weight_decay=5.0,
        temperature=temperature,
        step_size=3e-4,
        trajectory_len=0.03 if not TINY else 1.5e-3,
        seed=0,
        **size,
    )
    return ppl_bnn.run("hmc", cfg, progress=False)


def main() -> dict:
    rows = {}
    print(f"{'T':>6}  {'accept':>6}  {'test acc':>8}  {'test nll':>8}")
    for t in TEMPERATURES:
        summary = run_at(t).summary
        final = summary["final"]
        rows[t] = final
        print(
            f"{t:>6}  {summary['mean_accept_prob']:>6.3f}  "
            f"{final['test/ens_accuracy']:>8.4f}  {final['test/ens_nll']:>8.4f}"
        )
    return rows


if __name__ == "__main__":
    main()
