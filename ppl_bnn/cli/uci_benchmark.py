"""``ppl-bnn uci-benchmark``: NUTS on every standard split of the UCI regression sets.

Per split: hyperparameters (prior variance, homoscedastic learned-noise or heteroscedastic
likelihood) chosen on a validation part of the training split, a refit on the whole
training split, and the test log-likelihood per point and RMSE in original units. One
result file per split under ``--out``: a rerun skips finished splits. The summary
(``summary.md``) puts the published PBP, MC-dropout and deep-ensemble figures next to ours.
"""

from __future__ import annotations

from ppl_bnn.cli.flags import add_config_arguments, config_from_args


def add_parser(sub, name: str) -> None:
    from ppl_bnn.experiments.uci_benchmark import UCIBenchmarkConfig

    p = sub.add_parser(
        name, help="the UCI regression benchmark over all standard splits", description=__doc__
    )
    add_config_arguments(p, UCIBenchmarkConfig)
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.experiments.uci_benchmark import UCIBenchmarkConfig, run_benchmark

    cfg = config_from_args(UCIBenchmarkConfig, args)
    run_benchmark(cfg)
    print(f"summary: {cfg.out}/summary.md")
    return 0
