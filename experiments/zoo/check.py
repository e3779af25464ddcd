"""Draws against a zoo model's reference: the stored references, the summary statistics
and the pass rule."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .catalogue import ZooModel
from .exact import Stats

REFERENCES_PATH = Path(__file__).resolve().parent.parent / "zoo_references.json"
MCSE_FACTOR = 4.0
SD_RATIO = (0.8, 1.25)
RHAT_MAX = 1.01
ESS_MIN = 400.0


@cache
def load_references(path: str | None = None) -> dict[str, Any]:
    """The stored references (``zoo_references.json``): model -> its record."""
    p = Path(path) if path else REFERENCES_PATH
    return json.loads(p.read_text()) if p.exists() else {}


def reference(m: ZooModel, *, stored: bool = False) -> Stats:
    """``m``'s reference: quantity -> ``{mean, sd, mcse_mean, mcse_sd}`` (exact ones:
    computed here, MCSE 0; with ``stored`` the JSON record even for those)."""
    if m.exact is not None and not stored:
        return m.exact()
    refs = load_references()
    key = m.reference_of or m.name
    if key not in refs:
        raise KeyError(f"no stored reference for {key!r}: run benchmarks/zoo_references.py")
    return refs[key]["quantities"]


def flatten(samples: Mapping[str, Any], sites: Sequence[str]) -> dict[str, np.ndarray]:
    """``site[i]`` -> ``(chain, draw)`` for every scalar component of ``sites``."""
    out = {}
    for site in sites:
        v = np.asarray(samples[site], dtype=np.float64)
        if v.ndim == 2:
            out[site] = v
            continue
        flat = v.reshape(v.shape[0], v.shape[1], -1)
        for i, idx in enumerate(np.ndindex(*v.shape[2:])):
            out[f"{site}[{','.join(map(str, idx))}]"] = flat[:, :, i]
    return out


def summarize(draws: Mapping[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Mean, sd, their MCSE, bulk ESS and rank R-hat of each ``(chain, draw)`` array."""
    import arviz_stats as azs

    out = {}
    for name, a in draws.items():
        a = np.asarray(a, dtype=np.float64)
        out[name] = {
            "mean": float(a.mean()),
            "sd": float(a.std(ddof=1)),
            "mcse_mean": float(azs.mcse(a)),
            "mcse_sd": float(azs.mcse(a, method="sd")),
            "ess_bulk": float(azs.ess(a)),
            "rhat": float(azs.rhat(a)),
        }
    return out


def evaluate(samples: Mapping[str, Any], m: ZooModel, ref: Stats | None = None) -> dict:
    """Compare draws (site -> ``(chain, draw, ...)``) with ``m``'s reference.

    Returns ``{"pass", "failures", "max_rhat", "min_ess_bulk", "worst_z", "sd_ratio"}``:
    ``failures`` lists ``"<check> <quantity>"`` for each failed check (``mean``: more than
    :data:`MCSE_FACTOR` combined MCSE off; ``sd``: ratio outside :data:`SD_RATIO`;
    ``rhat``: not below :data:`RHAT_MAX`; ``ess``: bulk ESS below :data:`ESS_MIN`).
    """
    ref = reference(m) if ref is None else ref
    got = summarize(flatten(samples, m.sites))
    missing = sorted(set(ref) - set(got))
    if missing:
        raise KeyError(f"{m.name}: the draws lack {missing[:3]}")
    failures = []
    worst_z, ratios = 0.0, []
    for q, r in ref.items():
        g = got[q]
        err = math.sqrt(g["mcse_mean"] ** 2 + r["mcse_mean"] ** 2)
        z = abs(g["mean"] - r["mean"]) / err if err > 0 else math.inf
        if not np.isfinite(g["mean"]):
            z = math.inf
        worst_z = max(worst_z, z)
        ratio = g["sd"] / r["sd"]
        ratios.append(ratio)
        if not z <= MCSE_FACTOR:
            failures.append(f"mean {q}")
        if not SD_RATIO[0] <= ratio <= SD_RATIO[1]:
            failures.append(f"sd {q}")
        if not g["rhat"] < RHAT_MAX:
            failures.append(f"rhat {q}")
        if not g["ess_bulk"] >= ESS_MIN:
            failures.append(f"ess {q}")
    rhats = [got[q]["rhat"] for q in ref]
    ess = [got[q]["ess_bulk"] for q in ref]
    return {
        "pass": not failures,
        "failures": failures,
        "max_rhat": float(np.nanmax(rhats)) if np.isfinite(rhats).any() else math.inf,
        "min_ess_bulk": float(np.nanmin(ess)) if np.isfinite(ess).any() else 0.0,
        "worst_z": worst_z,
        "sd_ratio": [float(min(ratios)), float(max(ratios))],
    }
