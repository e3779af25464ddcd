"""``ppl-bnn download``: fetch datasets once, for offline use afterwards.

* ``ppl-bnn download uci [NAME ...]``: the UCI regression benchmarks with their published
  splits (default: all ten), into ``~/.ppl_bnn/uci/<name>/`` (``--data_dir``,
  ``$PPL_BNN_UCI_DIR`` or ``$PPL_BNN_DATA/uci`` elsewhere), every file checked against a
  pinned SHA-256 (``ppl_bnn.data.registry``). A file without a pin is refused; supply the
  hashes of copies you have checked with ``--sha256 FILE`` (``sha256sum`` format).
* ``ppl-bnn download hmc-reference [TASK ...]``: the HMC predictive probabilities the
  NeurIPS 2021 approximate-inference competition published (``cifar10``, ``imdb``), into
  ``~/.ppl_bnn/hmc_reference/<task>/probs.csv``; then ``--reference=hmc-reference:cifar10``
  scores a run against them.
* ``ppl-bnn download NAME ...`` (TFDS names): runs the TFDS builder's
  ``download_and_prepare`` with ``file_format="array_record"`` (the format
  ``tfds.data_source`` reads). This needs TensorFlow (``pip install tensorflow``) and a
  network connection once; training and evaluation afterwards need neither.
"""

from __future__ import annotations

import json
import sys


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="download UCI benchmarks, the published HMC reference or TFDS datasets",
        description=__doc__,
    )
    p.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="'uci [DATASET ...]', 'hmc-reference [cifar10|imdb ...]', or TFDS names: "
        "cifar10, cifar100, mnist, imdb, cifar10_corrupted (all 19 corruptions x 5 "
        "severities) or cifar10_corrupted/<corruption>_<severity>",
    )
    p.add_argument(
        "--data_dir",
        default=None,
        help="destination folder (default: uci: $PPL_BNN_UCI_DIR or ~/.ppl_bnn/uci; "
        "hmc-reference: ~/.ppl_bnn/hmc_reference; TFDS: $TFDS_DATA_DIR or "
        "~/tensorflow_datasets)",
    )
    p.add_argument(
        "--sha256",
        default=None,
        metavar="FILE",
        help="uci / hmc-reference: extra SHA-256 pins in sha256sum format "
        "('<hex>  <dataset>/<file>' lines), for files the registry does not pin",
    )
    p.add_argument(
        "--no_progress", action="store_true", help="uci / hmc-reference: no progress bar"
    )
    p.set_defaults(run=run)


def run(args, argv) -> int:
    kind, rest = args.names[0], args.names[1:]
    if kind in ("uci", "hmc-reference"):
        from ppl_bnn.data.download import fetch_hmc_reference, fetch_uci

        fetch = fetch_uci if kind == "uci" else fetch_hmc_reference
        try:
            out = fetch(rest or None, args.data_dir, not args.no_progress, sha256=args.sha256)
        except (ValueError, OSError) as e:
            print(f"ppl-bnn download: error: {e}", file=sys.stderr)
            return 2
        if out.get("unpinned_datasets"):
            print(
                "ppl-bnn download: not installed, no SHA-256 pinned for their files: "
                + ", ".join(out["unpinned_datasets"])
                + " (name them with --sha256 FILE to install them; see docs/uci.md)",
                file=sys.stderr,
            )
        for name, paths in out["installed"].items():
            line = {"dataset": name, "files": len(paths), "data_dir": out["data_dir"]}
            skipped = out.get("skipped_unpinned", {}).get(name)
            if skipped:
                line["skipped_unpinned"] = skipped
            print(json.dumps(line))
        return 0
    if args.sha256:
        print("ppl-bnn download: error: --sha256 applies to uci and hmc-reference", file=sys.stderr)
        return 2
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
