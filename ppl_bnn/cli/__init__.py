"""The ``ppl-bnn`` command: ``ppl-bnn <command> [flags]``.

Each command lives in its own module with ``add_parser(subparsers)`` and ``run(args)``;
``COMMANDS`` lists them. The method commands keep the original scripts' names and flags;
``METHOD_COMMANDS`` says which methods of :data:`ppl_bnn.methods.REGISTRY` each one runs
(the only place where a command name differs from a method name). Bad input ends the
command with a one-line error (exit code 2).
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys

__all__ = ["COMMANDS", "METHOD_COMMANDS", "main"]

# The original's method commands and flags, at the CLI layer only: command -> the registry
# methods it runs (by its flags). ``hmc`` takes the original's flags (an HMCConfig: hmc's
# original recipe); ``sgmcmc`` is SGLD with --momentum_decay=0, SGHMC otherwise; ``sgd``
# finds the MAP (the ``sgd`` and ``map`` methods); ``mfvi`` is the original's name of vi.
_ALIASES: dict[str, tuple[str, ...]] = {
    "hmc": ("hmc",),
    "nuts": ("nuts",),
    "sgd": ("sgd", "map"),
    "ensemble": ("ensemble",),
    "sgmcmc": ("sgld", "sghmc"),
    "vi": ("vi",),
    "mfvi": ("vi",),
}

# command name -> module under ppl_bnn.cli
COMMANDS = {
    "hmc": "hmc",
    "nuts": "nuts",
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
    "uci-benchmark": "uci_benchmark",
    "reproduce": "reproduce",
}


def _method_commands() -> dict[str, tuple[str, ...]]:
    """The aliases, and ``ppl-bnn <name>`` (``ppl_bnn.cli.method``) for every registered
    method that no alias runs."""
    from ppl_bnn.methods import REGISTRY

    reached = {m for names in _ALIASES.values() for m in names}
    return {**_ALIASES, **{m: (m,) for m in REGISTRY if m not in reached}}


# method command -> the registry methods it runs
METHOD_COMMANDS = _method_commands()
COMMANDS.update({c: "method" for c in METHOD_COMMANDS if c not in COMMANDS})


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
    """Run ``ppl-bnn COMMAND [flags]``; return the exit status.

    0: done. 2: the command could not run as asked (bad flags, data, checkpoints or
    paths, a full disk): one line ``ppl-bnn COMMAND: error: ...`` on stderr, and what was
    already written stays as it was (every file is written atomically). 1: a bug in
    ppl_bnn: one line too (``PPL_BNN_TRACEBACK=1`` shows the traceback).
    """
    if argv is None:  # the command itself (not a call from Python): see cli.allocator
        from ppl_bnn.cli.allocator import reexec_with_allocator_settings

        argv = sys.argv[1:]
        reexec_with_allocator_settings(argv)
    args = build_parser().parse_args(argv)
    try:
        if hasattr(args, "coordinator_address"):
            # before anything imports blackjax, whose import already starts JAX's backend
            from ppl_bnn.density.distributed import initialize

            initialize(args.coordinator_address, args.num_processes, args.process_id)
        from ppl_bnn.cli.diagnose import run_warnings_as_lines

        with run_warnings_as_lines():  # a run's end-of-run warnings, one line each
            return int(args.run(args, ["ppl-bnn", *argv]) or 0)
    except Exception as e:
        if os.environ.get("PPL_BNN_TRACEBACK"):
            raise
        message, status = describe_error(e)
        print(f"ppl-bnn {args.command}: error: {message}", file=sys.stderr)
        return status


def describe_error(e: Exception) -> tuple[str, int]:
    """``(one-line message, exit status)`` for an exception that ended a command."""
    if isinstance(e, OSError) and not isinstance(e, FileNotFoundError | FileExistsError):
        return _describe_os_error(e), 2
    if isinstance(e, ValueError | FileNotFoundError | FileExistsError):
        return (str(e).strip().splitlines() or [type(e).__name__])[0], 2
    first = (str(e).strip().splitlines() or [""])[0]
    return (
        f"internal error {type(e).__name__}: {first} (a bug in ppl_bnn: please report it; "
        "PPL_BNN_TRACEBACK=1 shows where)",
        1,
    )


def _describe_os_error(e: OSError) -> str:
    where = e.filename if e.filename is not None else "a file"
    if e.errno == errno.ENOSPC:
        return (
            f"no space left on the device writing {where}: free some space and rerun the same "
            "command (a run resumes from its last checkpoint)"
        )
    if isinstance(e, PermissionError) or e.errno in (errno.EACCES, errno.EPERM):
        return f"permission denied: {where} (make it, or the folder holding it, writable)"
    if e.errno == errno.EROFS:
        return f"read-only file system: {where} (choose a --dir on a writable disk)"
    return f"{e.strerror or type(e).__name__}: {where}"
