"""``run_reproduce``: the selected findings, their files and ``report.md``; the paper-scale plan."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import time
import uuid
from pathlib import Path

from .config import PROFILES, ReproduceConfig
from .context import Context
from .registry import FINDINGS
from .report import _jsonable, render_report


def run_reproduce(cfg: ReproduceConfig, *, command: str = "ppl-bnn reproduce", write=print) -> Path:
    """Run the selected findings, write their JSON/CSV/PNG and ``report.md``."""
    if cfg.profile not in PROFILES:
        raise ValueError(f"unknown profile {cfg.profile!r}; choose one of {', '.join(PROFILES)}")
    unknown = [n for n in cfg.only if n not in FINDINGS]
    if unknown:
        raise ValueError(f"unknown finding(s) {unknown}; choose from {', '.join(FINDINGS)}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.scale == "paper":
        path = out / "paper_plan.md"
        path.write_text(paper_plan(cfg.only or tuple(FINDINGS)))
        write(path.read_text())
        return path
    if cfg.scale != "laptop":
        raise ValueError(f"unknown --scale {cfg.scale!r}; choose laptop or paper")
    run_id = uuid.uuid4().hex[:12]
    names = list(cfg.only) or list(FINDINGS)
    ctx = Context(cfg, out, run_id, write)
    load_before = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    for name in names:
        f = FINDINGS[name]
        (out / name).mkdir(exist_ok=True)
        ctx.current = name
        write(f"== finding {f.index}: {f.title} ==")
        t1 = time.perf_counter()
        r = f.run(ctx)
        r = _jsonable(
            {
                "run_id": run_id,
                "index": f.index,
                "finding": name,
                "title": f.title,
                "paper": f.paper,
                **r,
                "wall_s": time.perf_counter() - t1,
                "profile": cfg.profile,
            }
        )
        (out / name / "result.json").write_text(json.dumps(r, indent=1))
        with open(out / name / "table.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(r["table"]["columns"])
            w.writerows(r["table"]["rows"])
        write(f"   verdict: {r['verdict']} ({r['reason']})")
    run = _jsonable(
        {
            "run_id": run_id,
            "profile": cfg.profile,
            "command": command,
            "findings": names,
            "wall_s": time.perf_counter() - t0,
            "cpu_s": time.process_time() - c0,
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "cpu_count": os.cpu_count(),
            "prior": ctx.__dict__.get("prior"),
            "hidden_units": 50,
            "config": dataclasses.asdict(cfg),
        }
    )
    (out / "run.json").write_text(json.dumps(run, indent=1))
    (out / "report.md").write_text(render_report(out))
    write(f"report: {out / 'report.md'}")
    return out / "report.md"


# ---------------------------------------------------------------- paper scale
#: one full-batch leapfrog step of resnet20_frn_swish on 50k CIFAR images, one H200
#: (benchmarks/gpu_leapfrog.py, README "Costs measured"): 0.54-0.56 s
H200_LEAPFROG_S = 0.55


def paper_plan(names) -> str:
    """The paper-scale commands per finding and their cost from the measured step time."""
    from ppl_bnn.experiments import get_experiment

    hmc = get_experiment("hmc_cifar10_table3").flags  # the paper's Table 3 run
    steps = math.ceil(round(hmc["trajectory_len"] / hmc["step_size"], 6))
    it_h = steps * H200_LEAPFROG_S / 3600
    chain_its, chains = int(hmc["num_iterations"]), int(hmc["num_chains"])
    lines = [
        "# Paper-scale plan",
        "",
        f"CIFAR-10 HMC (Table 3, `ppl-bnn experiment hmc_cifar10_table3`): {steps} leapfrog "
        f"steps per iteration x {chain_its} iterations x {chains} chains. At "
        f"{H200_LEAPFROG_S} s per full-batch leapfrog step on one H200 an "
        f"iteration takes {it_h:.1f} h, a chain {chain_its * it_h:.0f} h, all {chains} chains "
        f"{chains * chain_its * it_h:.0f} H200-hours; on a pod of N devices with linear scaling of "
        f"the data-parallel sum, divide by N (N = 512: {chains * chain_its * it_h / 512:.1f} h of "
        "wall time; small per-device chunks use a device less well, so expect more).",
        "",
    ]
    for name in names:
        f = FINDINGS[name]
        lines += [f"## {f.index}. {f.title}", ""]
        for e in f.paper_experiments:
            exp = get_experiment(e)
            lines.append(f"- `ppl-bnn experiment {e}`: {exp.description.splitlines()[0]}")
        lines.append("")
    return "\n".join(lines)
