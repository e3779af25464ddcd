"""``ppl-bnn hmc``: the original ``run_hmc.py``, same flags, plus the new options."""

from __future__ import annotations

import json

from ppl_bnn.cli.flags import add_config_arguments, config_from_args
from ppl_bnn.config import HMCConfig


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="full-batch HMC (run_hmc.py)", description=__doc__)
    add_config_arguments(p, HMCConfig)
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.driver import run_hmc

    cfg = config_from_args(HMCConfig, args)
    summary = run_hmc(cfg, argv=argv, progress=False if args.no_progress else None)
    print(json.dumps({"summary": f"{cfg.dir}/summary.json", **summary["final"]}))
    return 0
