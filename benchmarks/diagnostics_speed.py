"""Seconds for rank-normalised R-hat and bulk ESS: ArviZ vs ``ppl_bnn.diagnostics.fast``.

Draws shaped ``(chain, draw, quantity)``, AR(1) chains (autocorrelation 0.7). ArviZ
(``arviz_stats``) computes one quantity at a time, so it is timed on a subsample of the
quantities (``--arviz_quantities``) and its time scaled up linearly to all of them (said
so in the output); the vectorised version runs on the whole array, and both are checked
to agree on the subsample. Prints a table and one JSON line per shape.

    python benchmarks/diagnostics_speed.py [--shape 4 1000 10000] [--arviz_quantities 500]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np

from ppl_bnn.diagnostics import fast


def draws(chains: int, n: int, quantities: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(chains, n, quantities))
    x = np.empty_like(noise)
    x[:, 0] = noise[:, 0]
    for t in range(1, n):
        x[:, t] = 0.7 * x[:, t - 1] + noise[:, t]
    return x


def seconds(fn, *args) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def arviz_figure(x: np.ndarray, name: str) -> np.ndarray:
    """ArviZ's ``name`` (``rhat`` or ``ess_bulk``) of ``x`` ``(chain, draw, quantity)``."""
    from arviz_stats.base import array_stats

    moved = np.moveaxis(x, (0, 1), (-2, -1))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        if name == "rhat":
            return array_stats.rhat(moved)
        return array_stats.ess(moved, method="bulk")


def compare(chains: int, n: int, quantities: int, arviz_quantities: int) -> dict:
    x = draws(chains, n, quantities)
    sub = np.random.default_rng(1).choice(quantities, min(arviz_quantities, quantities), False)
    scale = quantities / sub.size
    rows = {}
    subsample = np.ascontiguousarray(x[..., sub])
    for name in ("rhat", "ess_bulk"):  # imports and first calls out of the timings
        arviz_figure(subsample[..., :2], name)
        getattr(fast, name)(subsample[..., :2])
    for name in ("rhat", "ess_bulk"):
        t_fast, out = seconds(getattr(fast, name), x)
        t_arviz, want = seconds(arviz_figure, subsample, name)
        np.testing.assert_allclose(out[sub], want, rtol=1e-10)
        rows[name] = {"arviz_s": t_arviz * scale, "vectorised_s": t_fast}
    return {
        "shape": [chains, n, quantities],
        "arviz_quantities_timed": int(sub.size),
        "arviz_extrapolated": bool(scale > 1),
        **rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shape",
        type=int,
        nargs=3,
        action="append",
        metavar=("CHAINS", "DRAWS", "QUANTITIES"),
        help="(chain, draw, quantity); repeat for several; default: long chains "
        "(4, 1000, 10000) and a short run of a network (4, 10, 85000)",
    )
    parser.add_argument("--arviz_quantities", type=int, default=500)
    args = parser.parse_args()
    print(f"{'shape':>18} {'figure':>9} {'ArviZ s':>9} {'vectorised s':>13} {'speed-up':>9}")
    notes = []
    for shape in args.shape or [(4, 1000, 10000), (4, 10, 85000)]:
        chains, n, quantities = shape
        result = compare(chains, n, quantities, args.arviz_quantities)
        for name in ("rhat", "ess_bulk"):
            row = result[name]
            ratio = row["arviz_s"] / row["vectorised_s"]
            print(
                f"{str(tuple(shape)):>18} {name:>9} {row['arviz_s']:>8.2f}"
                f"{'*' if result['arviz_extrapolated'] else ' '} "
                f"{row['vectorised_s']:>13.2f} {ratio:>8.0f}x"
            )
        if result["arviz_extrapolated"]:
            notes.append(
                f"* ArviZ timed on {result['arviz_quantities_timed']} of {shape[2]} "
                "quantities and scaled up linearly"
            )
        notes.append(json.dumps(result))
    print("\n".join(notes))


if __name__ == "__main__":
    main()
