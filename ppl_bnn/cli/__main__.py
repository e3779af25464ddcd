"""``python -m ppl_bnn.cli``: the ``ppl-bnn`` command."""

import sys

from ppl_bnn.cli import main

sys.exit(main())
