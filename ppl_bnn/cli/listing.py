"""``ppl-bnn models``: list registered architectures, datasets and prior families."""

from __future__ import annotations


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="list models, datasets and priors")
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.data import DATASETS
    from ppl_bnn.declare.priors import PRIOR_FAMILIES
    from ppl_bnn.models import MODELS

    print("models:   " + ", ".join(sorted(MODELS)))
    names = sorted(
        {n.split("/")[0] + "/<corruption>_<severity>" if "/" in n else n for n in DATASETS}
    )
    print("datasets: " + ", ".join(names) + ", <uci name>[_<seed>], file.npz")
    print("priors:   " + ", ".join(PRIOR_FAMILIES))
    return 0
