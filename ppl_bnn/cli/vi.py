"""``ppl-bnn vi``: the original ``run_vi.py`` (mean-field VI), on NumPyro's SVI.

Same flags as the original; ``--vi_guide`` picks another NumPyro autoguide and
``--reference`` adds agreement / total variation (or W2) against an HMC run. The
objective is the tempered ELBO (the original weighted the KL by ``T`` on top).
"""

from __future__ import annotations

import json

from ppl_bnn.cli.flags import add_config_arguments, config_from_args
from ppl_bnn.config import VIConfig


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name, help="mean-field variational inference (run_vi.py)", description=__doc__
    )
    add_config_arguments(p, VIConfig)
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.driver import run_vi

    cfg = config_from_args(VIConfig, args)
    summary = run_vi(cfg, argv=argv, progress=False if args.no_progress else None)
    print(
        json.dumps(
            {
                "summary": f"{cfg.dir}/summary.json",
                **summary["final"],
                **summary.get("reference", {}),
            }
        )
    )
    return 0
