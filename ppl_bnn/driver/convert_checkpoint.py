"""``python -m ppl_bnn.driver.convert_checkpoint FILE...``: rewrite ppl_bnn 0.1 pickle
checkpoints (``checkpoint_000123.pkl``) in the safe format (``checkpoint_000123.npz``
next to each).

Unpickling runs any code the file holds, which is why ppl_bnn never reads these files on
its own: convert only files you wrote yourself.
"""

from __future__ import annotations

import argparse

from ppl_bnn.driver.checkpoint import convert_pickle_checkpoint


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ppl_bnn.driver.convert_checkpoint",
        description="Convert ppl_bnn 0.1 pickle checkpoints to the safe .npz format. "
        "Unpickling runs any code the file holds: convert only files you wrote yourself.",
    )
    parser.add_argument("files", nargs="+", metavar="FILE")
    for name in parser.parse_args(argv).files:
        print(convert_pickle_checkpoint(name))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
