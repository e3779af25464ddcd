"""``ppl-bnn download``: prepare TFDS datasets once, for offline reading without TensorFlow.

Runs the TFDS builder's ``download_and_prepare`` with ``file_format="array_record"`` (the
format ``tfds.data_source`` reads). This one step needs TensorFlow (``pip install
tensorflow``) and a network connection; training and evaluation afterwards need neither.
"""

from __future__ import annotations

import json
import sys


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name, help="download and prepare TFDS datasets (needs TensorFlow once)", description=__doc__
    )
    p.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="cifar10, cifar100, mnist, imdb, cifar10_corrupted (all 19 corruptions x 5 "
        "severities) or cifar10_corrupted/<corruption>_<severity>",
    )
    p.add_argument(
        "--data_dir",
        default=None,
        help="TFDS data folder (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)",
    )
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.data.tfds import prepare, tfds_names

    for name in args.names:
        tfds_names(name)  # reject a bad name before downloading anything
    for name in args.names:
        try:
            prepared = prepare(name, args.data_dir)
        except ImportError as e:
            print(f"ppl-bnn download: error: {e}", file=sys.stderr)
            return 2
        print(json.dumps({"dataset": name, "prepared": prepared, "data_dir": args.data_dir}))
    return 0
