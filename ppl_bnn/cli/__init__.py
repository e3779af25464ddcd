"""The ``ppl-bnn`` command: ``ppl-bnn <command> [flags]``.

Each command lives in its own module with ``add_parser(subparsers)`` and ``run(args)``;
``COMMANDS`` lists them. Bad input ends the command with a one-line error (exit code 2).
"""

from __future__ import annotations

import argparse
import importlib
import sys

__all__ = ["COMMANDS", "main"]

# command name -> module under ppl_bnn.cli
COMMANDS = {
    "hmc": "hmc",
    "diagnose": "diagnose",
    "models": "listing",
    "surface": "surface",
    "domain-shift": "domain_shift",
    "download": "download",
    "experiment": "experiment",
    "sgd": "sgd",
    "ensemble": "sgd",
    "sgmcmc": "sgmcmc",
    "vi": "vi",
    "mfvi": "vi",
    "compare": "compare",
}


class _OneLineError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppl-bnn",
        description="Bayesian neural network posteriors: declare in NumPyro, sample, diagnose.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in COMMANDS.items():
        importlib.import_module(f"ppl_bnn.cli.{module}").add_parser(sub, name)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "coordinator_address"):
            # before anything imports blackjax, whose import already starts JAX's backend
            from ppl_bnn.density.distributed import initialize

            initialize(args.coordinator_address, args.num_processes, args.process_id)
        return int(args.run(args, ["ppl-bnn", *argv]) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as e:  # CheckpointError is a ValueError
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"ppl-bnn {args.command}: error: {msg}", file=sys.stderr)
        return 2
