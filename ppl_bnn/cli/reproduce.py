"""``ppl-bnn reproduce``: the paper's seven findings at laptop size, in one report.

Each finding runs what it needs and writes ``<out>/<finding>/result.json`` (its numbers),
``table.csv``, a PNG figure and a verdict ("reproduced" / "not reproduced at this scale")
against the paper's statement; ``<out>/report.md`` is rendered from those files. The prior
variance is chosen on a validation part of the training data and shared by every method.
Default size: under an hour on 2 CPU cores; ``--quick``: under 10 minutes.
``--scale=paper`` writes the paper-scale commands and their costs instead of running.
"""

from __future__ import annotations


def add_parser(sub, name: str) -> None:
    from ppl_bnn.experiments.reproduce import FINDINGS

    p = sub.add_parser(
        name, help="reproduce the paper's findings in one report", description=__doc__
    )
    p.add_argument("--out", default="reproduce_report", help="report folder (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="the quick profile (under 10 minutes)")
    p.add_argument(
        "--profile",
        choices=("default", "quick", "smoke"),
        default=None,
        help="sizes: default, quick (= --quick) or smoke (tests: structure only)",
    )
    p.add_argument(
        "--only",
        nargs="+",
        default=(),
        choices=list(FINDINGS),
        metavar="NAME",
        help="run only these findings: " + ", ".join(FINDINGS),
    )
    p.add_argument(
        "--scale",
        choices=("laptop", "paper"),
        default="laptop",
        help="paper: write the paper-scale commands and costs instead of running",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.experiments.reproduce import ReproduceConfig, run_reproduce

    profile = args.profile or ("quick" if args.quick else "default")
    cfg = ReproduceConfig(
        out=args.out, profile=profile, only=tuple(args.only), scale=args.scale, seed=args.seed
    )
    run_reproduce(cfg, command=" ".join(argv))
    return 0
