"""``ppl-bnn surface``: the posterior density on the plane through three checkpoints.

The original ``make_posterior_surface_plot.py``, same flags: the common flags (dataset,
model, prior, temperature: the posterior whose density is drawn), ``--checkpoint1/2/3``
(``PATH`` or ``PATH:CHAIN``, e.g. ``runs/a/checkpoints/checkpoint_000100.pkl:0``), the plot
limits and ``--grid_size``. Writes ``--dir/posterior_visualization/``: ``surface_plot.npz``
and contour plots of the log posterior, log likelihood and log prior (PDF and PNG).
"""

from __future__ import annotations

import json

from ppl_bnn.cli.flags import add_config_arguments, config_from_args
from ppl_bnn.config import SurfaceConfig


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(
        name,
        help="posterior density surface through three checkpoints (make_posterior_surface_plot.py)",
        description=__doc__,
    )
    add_config_arguments(p, SurfaceConfig)
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.evaluation.surface import posterior_surface

    cfg = config_from_args(SurfaceConfig, args)
    result = posterior_surface(cfg, argv=argv)
    print(
        json.dumps(
            {
                "surface": str(result.folder / "surface_plot.npz"),  # type: ignore[operator]
                "checkpoint_coords": result.checkpoint_coords.tolist(),
                "checkpoint_log_probs": result.checkpoint_values[:, 0].tolist(),
                "max_log_prob": float(result.log_probs.max()),
            }
        )
    )
    return 0
