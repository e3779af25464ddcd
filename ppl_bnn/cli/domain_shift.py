"""``ppl-bnn domain-shift RUN_DIR``: a run's averaged predictions on CIFAR-10-C.

Rebuilds the run's model from ``RUN_DIR/config.json``, averages the predictive
probabilities over every post-burn-in checkpoint (each chain of each iteration is one
draw) and reports accuracy, NLL and ECE for each corruption and severity, per severity and
per corruption, next to the clean test set. Writes ``domain_shift.json`` and
``domain_shift.txt`` (to ``--output``, default ``RUN_DIR``). The corrupted test sets come
from TFDS (``ppl-bnn download cifar10_corrupted`` prepares them).
"""

from __future__ import annotations

import sys


def _ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name, help="evaluate a run on CIFAR-10-C (accuracy, NLL, ECE)", description=__doc__
    )
    p.add_argument("run_dir", help="run directory written by ppl-bnn hmc")
    p.add_argument("--data_dir", default=None, help="TFDS data folder (default: TFDS's)")
    p.add_argument(
        "--model",
        default=None,
        help="for a run of --model=file.py:function: the same model again (a model file "
        "named only in the run's config.json is never run; its SHA-256 must match)",
    )
    p.add_argument(
        "--corruptions", default=None, help="comma-separated corruption names (default: all 19)"
    )
    p.add_argument(
        "--severities",
        type=_ints,
        default=[1, 2, 3, 4, 5],
        help="comma-separated severities (default: 1,2,3,4,5)",
    )
    p.add_argument("--include_burn_in", action="store_true", help="also average burn-in draws")
    p.add_argument("--thin", type=int, default=1, help="use every THIN-th checkpoint (default: 1)")
    p.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="rows predicted per compiled call (default: a whole test set)",
    )
    p.add_argument("--output", default=None, help="folder for the report (default: RUN_DIR)")
    p.add_argument(
        "--coordinator_address",
        default=None,
        help="jax.distributed coordinator host:port (multi-process runs)",
    )
    p.add_argument(
        "--num_processes", type=int, default=None, help="number of processes of a multi-process run"
    )
    p.add_argument("--process_id", type=int, default=None, help="index of this process")
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.density.distributed import is_primary
    from ppl_bnn.evaluation.domain_shift import evaluate_domain_shift, format_report

    corruptions = None
    if args.corruptions:
        corruptions = [c.strip() for c in args.corruptions.split(",") if c.strip()]
    report = evaluate_domain_shift(
        args.run_dir,
        corruptions=corruptions,
        severities=args.severities,
        data_dir=args.data_dir,
        include_burn_in=args.include_burn_in,
        thin=args.thin,
        batch_size=args.batch_size,
        output=args.output,
        model=args.model,
        progress=lambda line: print(line, file=sys.stderr) if is_primary() else None,
    )
    if is_primary():
        print(format_report(report), end="")
    return 0
