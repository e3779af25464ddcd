"""``ppl-bnn <method>`` for a registered method without a command of its own.

The flags are the fields of the method's config (``Method.fixed`` excluded: the method
sets them); the run is ``Method.run``, and the last line printed is the summary's path,
its ``method`` and its final metrics, as JSON.
"""

from __future__ import annotations

import json

from ppl_bnn.cli.flags import add_config_arguments, config_from_args
from ppl_bnn.methods import REGISTRY


def add_parser(sub, name: str) -> None:
    method = REGISTRY[name]
    help_ = method.description.replace("`", "")
    p = sub.add_parser(name, help=help_, description=f"``ppl-bnn {name}``: {help_}.")
    add_config_arguments(p, method.config, exclude=tuple(method.fixed))
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run, registry_method=name)


def run(args, argv) -> int:
    method = REGISTRY[args.registry_method]
    cfg = config_from_args(method.config, args)
    for field, value in method.fixed.items():
        setattr(cfg, field, value)
    why = method.describes(cfg)
    if why is not None:
        raise ValueError(f"these flags do not describe {method.name}: {why}")
    summary = method.run(cfg, argv=argv, progress=False if args.no_progress else None)
    print(
        json.dumps(
            {
                "summary": f"{cfg.dir}/summary.json",
                "method": summary["method"],
                **summary["final"],
            }
        )
    )
    return 0
