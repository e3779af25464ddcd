"""``ppl-bnn nuts``: BlackJAX NUTS with Stan's window adaptation, on any model.

The first ``--num_warmup`` iterations adapt the step size (dual averaging) and a
diagonal mass matrix (``--dense_mass``: a dense one) in Stan's windows; the following
``--num_samples`` iterations sample with them and are the posterior samples, kept in
``samples/`` (every latent and deterministic site) with their statistics. Chains start
at ``--init_strategy`` (default ``median``), or at the positions of ``--init_checkpoint``.
The same run as ``ppl_bnn.infer(..., method="nuts")``: ``--model=file.py:function``
with ``--dataset_name=file.npz`` runs your own NumPyro model; rerunning the command with
the same ``--dir`` resumes it, bit for bit.
"""

from __future__ import annotations

import json

from ppl_bnn.cli.flags import add_config_arguments, config_from_args
from ppl_bnn.config import MCMCConfig

# the window-adapted HMC's own fields and the minibatch augmentation do not apply to NUTS
_NOT_NUTS = ("kernel", "trajectory_length", "max_num_steps", "data_augmentation")


def add_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help="NUTS with window adaptation (BlackJAX)", description=__doc__)
    add_config_arguments(p, MCMCConfig, exclude=_NOT_NUTS)
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    p.set_defaults(run=run)


def run(args, argv) -> int:
    from ppl_bnn.driver.mcmc import run_mcmc

    cfg = config_from_args(MCMCConfig, args)
    cfg.kernel = "nuts"
    summary = run_mcmc(cfg, argv=argv, progress=False if args.no_progress else None)
    print(
        json.dumps(
            {
                "summary": f"{cfg.dir}/summary.json",
                "method": summary["method"],
                "mean_accept_prob": summary.get("mean_accept_prob"),
                "num_divergent_after_burn_in": summary.get("num_divergent_after_burn_in"),
                **summary["final"],
            }
        )
    )
    return 0
