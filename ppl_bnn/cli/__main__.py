"""``python -m ppl_bnn.cli``: the ``ppl-bnn`` command."""

import sys

from ppl_bnn.cli import main

if __name__ == "__main__":
    sys.exit(main())
