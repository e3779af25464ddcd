"""``ppl-bnn experiment NAME``: run one of the paper's runs by name (``--list`` shows them).

Each experiment is a ``ppl-bnn <method>`` command with fixed flags (``--dry_run`` prints
it). ``--smoke`` shrinks it to a few iterations or epochs on a handful of examples, to check
a set-up quickly; ``--mock_data`` serves TFDS datasets as random data of the right shapes
(``tfds.testing.mock_data``), so that a smoke run needs no download either.
"""

from __future__ import annotations

import sys


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="run one of the paper's experiments by name", description=__doc__)
    p.add_argument("name", nargs="?", help="experiment name (see --list)")
    p.add_argument("--list", action="store_true", help="list the experiments and exit")
    p.add_argument(
        "--smoke", action="store_true", help="shrink to 1-2 iterations/epochs on a few examples"
    )
    p.add_argument("--dir", default=None, help="run directory (default: runs/<name>)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FLAG=VALUE",
        help="override or supply a flag of the experiment (repeatable)",
    )
    p.add_argument(
        "--replica",
        type=int,
        default=None,
        help="run only this replica (0-based) of a multi-seed experiment",
    )
    p.add_argument(
        "--mock_data",
        action="store_true",
        help="serve TFDS datasets as random data (tfds.testing.mock_data)",
    )
    p.add_argument("--dry_run", action="store_true", help="print the command(s) only")
    p.set_defaults(run=run)


def _overrides(args) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set expects FLAG=VALUE, got {item!r}")
        out[key.lstrip("-")] = value
    if args.dir is not None:
        out["dir"] = args.dir
    return out


def _list() -> int:
    from ppl_bnn.cli import COMMANDS
    from ppl_bnn.experiments import EXPERIMENTS

    width = max(map(len, EXPERIMENTS))
    for exp in EXPERIMENTS.values():
        note = "" if exp.method in COMMANDS else f" [needs `ppl-bnn {exp.method}`]"
        print(f"{exp.name:<{width}}  {exp.method:<7} {exp.description}{note}")
    return 0


def run(args, argv) -> int:
    from ppl_bnn.cli import COMMANDS, main
    from ppl_bnn.experiments import SMOKE_TRAIN_SIZE, get_experiment, smoke

    if args.list:
        return _list()
    if not args.name:
        raise ValueError("name an experiment (see `ppl-bnn experiment --list`)")
    exp = get_experiment(args.name)
    if args.smoke:
        exp = smoke(exp)
    overrides = _overrides(args)
    replicas = range(exp.replicas) if args.replica is None else [args.replica]
    if not all(0 <= r < exp.replicas for r in replicas):
        raise ValueError(f"--replica must lie in 0..{exp.replicas - 1} for {exp.name}")
    commands = [exp.argv(replica=r, overrides=overrides) for r in replicas]
    if args.dry_run:
        for command in commands:
            print("ppl-bnn " + " ".join(command))
        return 0
    if exp.method not in COMMANDS:
        raise ValueError(
            f"experiment {exp.name} runs `ppl-bnn {exp.method}`, which this "
            "installation does not provide yet"
        )
    subset = overrides.get("subset_train_to", exp.flags.get("subset_train_to"))
    subset = max(int(subset or 0), SMOKE_TRAIN_SIZE)
    for command in commands:
        print("ppl-bnn " + " ".join(command), file=sys.stderr)
        code = _run_mocked(main, command, subset) if args.mock_data else main(command)
        if code:
            return code
    return 0


def _run_mocked(main, command: list[str], num_examples: int) -> int:
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=num_examples):
        return main(command)
