"""``ppl-bnn sgd`` (the original ``run_sgd.py``) and ``ppl-bnn ensemble`` (deep ensembles).

Same flags as the original; ``ensemble`` adds ``--ensemble_size`` (members use seeds
``seed, seed + 1, ...``). ``--reference`` adds agreement / total variation (or W2) against
an HMC run to the summary.
"""

from __future__ import annotations

import json

from ppl_bnn.cli.flags import add_config_arguments, config_from_args
from ppl_bnn.config import EnsembleConfig, SGDConfig

_CONFIGS = {"sgd": SGDConfig, "ensemble": EnsembleConfig}
_HELP = {
    "sgd": "MAP by SGD with momentum (run_sgd.py)",
    "ensemble": "deep ensemble of SGD runs from several seeds",
}


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=_HELP.get(name, _HELP["sgd"]), description=__doc__)
    add_config_arguments(p, _CONFIGS.get(name, SGDConfig))
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run, config_cls=_CONFIGS.get(name, SGDConfig))


def run(args, argv) -> int:
    from ppl_bnn.driver import run_ensemble, run_sgd

    cfg = config_from_args(args.config_cls, args)
    runner = run_ensemble if args.config_cls is EnsembleConfig else run_sgd
    summary = runner(cfg, argv=argv, progress=False if args.no_progress else None)
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
