"""``ppl-bnn sgmcmc``: the original ``run_sgmcmc.py`` (SGLD, SGHMC, cyclical, RMSprop).

``--momentum_decay=0`` (``--momentum=0.`` works too, as in the original README) is SGLD,
``> 0`` SGHMC; ``--step_size_schedule=cyclical`` and ``--preconditioner=RMSprop`` give
the cyclical and preconditioned variants. New: ``--num_chains`` (vectorised chains, chain
``i`` seeded with ``seed + i``), ``--preconditioner_correction`` and ``--reference``.
"""

from __future__ import annotations

import json

from ppl_bnn.cli.flags import add_config_arguments, config_from_args
from ppl_bnn.config import SGLDConfig, SGMCMCConfig

_CONFIGS = {"sgld": SGLDConfig}


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="SG-MCMC: SGLD / SGHMC (run_sgmcmc.py)", description=__doc__)
    add_config_arguments(p, _CONFIGS.get(name, SGMCMCConfig))
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run, config_cls=_CONFIGS.get(name, SGMCMCConfig))


def run(args, argv) -> int:
    from ppl_bnn.driver import run_sgmcmc

    cfg = config_from_args(args.config_cls, args)
    summary = run_sgmcmc(cfg, argv=argv, progress=False if args.no_progress else None)
    print(
        json.dumps(
            {
                "summary": f"{cfg.dir}/summary.json",
                "method": summary["method"],
                **summary["final"],
                **summary.get("reference", {}),
            }
        )
    )
    return 0
