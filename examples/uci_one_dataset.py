"""The UCI regression benchmark on one dataset: ``ppl-bnn uci-benchmark`` from Python.

Full-batch MCMC (NUTS with window adaptation) on the standard splits of one UCI dataset:
the prior variance and the likelihood chosen on a validation part of each training split,
then the test log-likelihood per point and RMSE in original units, next to the published
figures (PBP, MC dropout, deep ensembles). See the UCI benchmark page of the docs.

The data are the standard layout (``<data_dir>/yacht/data.txt``, ``index_train_0.txt``,
...) in ``--data_dir``, ``$PPL_BNN_UCI_DIR`` or ``~/.ppl_bnn/uci``.

    python examples/uci_one_dataset.py [DATA_DIR] [DATASET]    # yacht, split 0: minutes
    PPL_BNN_EXAMPLE_TINY=1 python examples/uci_one_dataset.py DATA_DIR   # seconds (tests)
"""

from __future__ import annotations

import os
import sys
import tempfile

from ppl_bnn.data.builtin import uci_data_dir
from ppl_bnn.experiments.uci_benchmark import UCIBenchmarkConfig, run_benchmark

TINY = bool(os.environ.get("PPL_BNN_EXAMPLE_TINY"))


def main(data_dir: str | None = None, dataset: str = "yacht", splits: str = "0") -> dict:
    folder = uci_data_dir(data_dir)
    if not (folder / dataset / "data.txt").is_file():
        raise SystemExit(f"no UCI dataset {dataset!r} in {folder} (pass DATA_DIR)")
    out = tempfile.mkdtemp(prefix="ppl_bnn_uci_")
    cfg = UCIBenchmarkConfig(
        out=out,
        datasets=dataset,
        data_dir=str(folder),
        splits=splits,
        profile="smoke" if TINY else "",
        # tiny: one setting on validation instead of the grid (one fit fewer per setting)
        **({"weight_decays": "1", "likelihoods": "homoscedastic"} if TINY else {}),
    )
    # one line per split, then the table (also written to OUT/summary.md and summary.json)
    return run_benchmark(cfg)


if __name__ == "__main__":
    main(*sys.argv[1:3])
