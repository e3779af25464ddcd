"""``ppl-bnn compare``: HMC, SGD, deep ensemble, SGLD, SGHMC, cyclical preconditioned
SGHMC and mean-field VI on the same model, in one table and one Markdown report.

Defaults run in about five minutes on two CPU cores (embedded ``digits`` data, one hidden
layer of 50 units). Every method's run directory lands under ``--dir``; a rerun resumes
(finished methods are not recomputed). ``--methods`` picks a subset, ``--reference`` uses
an existing HMC run instead of running HMC.
"""

from __future__ import annotations

from ppl_bnn.cli.flags import add_config_arguments, config_from_args


def add_parser(sub, name: str) -> None:
    from ppl_bnn.experiments.compare import CompareConfig

    p = sub.add_parser(name, help="compare every inference method against HMC", description=__doc__)
    add_config_arguments(p, CompareConfig)
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.experiments.compare import CompareConfig, run_compare

    cfg = config_from_args(CompareConfig, args)
    run_compare(cfg, argv=argv)
    print(f"report: {cfg.dir}/report.md")
    return 0
