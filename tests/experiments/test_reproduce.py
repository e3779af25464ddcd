"""``ppl-bnn reproduce`` at smoke size: the report's structure, and that every number in it
comes from the JSON files written by the same invocation."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from ppl_bnn.experiments import reproduce as rp

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?![\w])")
VERDICTS = {"reproduced", "not reproduced at this scale"}


def _numeric_leaves(tree) -> set[str]:
    """Every number of a JSON tree, formatted as the report formats numbers."""
    out: set[str] = set()
    if isinstance(tree, dict):
        for k, v in tree.items():
            out |= _numeric_leaves(v)
            out |= _numeric_leaves(k) if NUMBER.fullmatch(str(k)) else set()
    elif isinstance(tree, list):
        for v in tree:
            out |= _numeric_leaves(v)
    elif isinstance(tree, bool) or tree is None:
        pass
    elif isinstance(tree, int | float):
        out.add(rp.fmt(tree))
    elif isinstance(tree, str) and NUMBER.fullmatch(tree):
        out.add(tree)
    return out


def _sections(report: str) -> dict[str, str]:
    parts = re.split(r"^## ", report, flags=re.M)
    return {p.splitlines()[0]: p for p in parts[1:]}


def test_fmt_and_bootstrap():
    assert rp.fmt(0.123456) == "0.1235" and rp.fmt(3) == "3" and rp.fmt(1.5e-5) == "1.500e-05"
    # the bootstrap SE of a mean is close to std / sqrt(n)
    v = np.random.default_rng(0).normal(size=400)
    mean, se, lo, hi = rp._bootstrap_mean(v, 2000, 1)
    assert mean == pytest.approx(v.mean())
    assert se == pytest.approx(v.std() / np.sqrt(len(v)), rel=0.1)
    assert lo < mean < hi


def test_paper_plan_costs_follow_the_measured_step_time(tmp_path):
    path = rp.run_reproduce(
        rp.ReproduceConfig(out=str(tmp_path), scale="paper"), write=lambda *_: 0
    )
    text = path.read_text()
    assert "70250 leapfrog steps" in text  # 0.7025 / 1e-5, Table 3
    steps = int(re.search(r"(\d+) leapfrog steps", text).group(1))
    hours = steps * rp.H200_LEAPFROG_S / 3600
    assert f"{hours:.1f} h" in text
    for f in rp.FINDINGS.values():  # every finding names runnable paper-scale experiments
        assert f"## {f.index}." in text
        for e in f.paper_experiments:
            assert f"ppl-bnn experiment {e}" in text


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown finding"):
        rp.run_reproduce(rp.ReproduceConfig(out=str(tmp_path), only=("nope",)))
    with pytest.raises(ValueError, match="unknown profile"):
        rp.run_reproduce(rp.ReproduceConfig(out=str(tmp_path), profile="huge"))


def _check_report(out, names):
    report = (out / "report.md").read_text()
    run = json.loads((out / "run.json").read_text())
    assert run["findings"] == list(names)
    # the report is exactly what the JSON files of this run render to
    assert rp.render_report(out) == report
    assert run["run_id"] in report
    sections = _sections(report)
    allowed_header = _numeric_leaves(run) | {"95"}
    for name in names:
        r = json.loads((out / name / "result.json").read_text())
        assert r["run_id"] == run["run_id"]  # written by this invocation
        assert r["verdict"] in VERDICTS
        title = f"{r['index']}. {r['title']}"
        sec = sections[title]
        assert f"**Verdict: {r['verdict']}**" in sec
        png = out / name / r["figure"]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name}/{r['figure']})" in sec
        assert (out / name / "table.csv").read_text().splitlines()[0].split(",") == r["table"][
            "columns"
        ]
        allowed = _numeric_leaves(r) | {"95"}
        body = sec.split("\n", 1)[1].replace(r["paper"], "").replace(r["title"], "")
        body = body.replace(f"{name}/result.json", "")
        found = NUMBER.findall(body)
        assert found, f"no numbers in section {title}"
        missing = [n for n in found if n not in allowed]
        assert not missing, f"{title}: numbers not in {name}/result.json: {missing}"
    # header and prior section: numbers from run.json
    head = report.split("## Verdicts")[0].replace(run["command"], "")
    missing = [n for n in NUMBER.findall(head) if n not in allowed_header]
    assert not missing, missing


@pytest.mark.slow  # every finding end to end (about a minute): the slow tier
def test_smoke_report_structure_and_provenance(tmp_path):
    names = ("chains",)
    rp.run_reproduce(
        rp.ReproduceConfig(out=str(tmp_path), profile="smoke", only=names), write=lambda *_: 0
    )
    _check_report(tmp_path, names)
    r = json.loads((tmp_path / "chains" / "result.json").read_text())
    # equal compute: C (W + S) iterations either way
    p = rp.PROFILES["smoke"]
    assert r["numbers"]["single_chain"]["draws_per_chain"] + p.num_warmup == p.num_chains * (
        p.num_warmup + p.num_samples
    )
    # a second invocation writes a new run id everywhere it ran
    first = json.loads((tmp_path / "run.json").read_text())["run_id"]
    rp.run_reproduce(
        rp.ReproduceConfig(out=str(tmp_path), profile="smoke", only=("chains",)),
        write=lambda *_: 0,
    )
    second = json.loads((tmp_path / "run.json").read_text())["run_id"]
    assert second != first
    assert json.loads((tmp_path / "chains" / "result.json").read_text())["run_id"] == second
    _check_report(tmp_path, ("chains",))


@pytest.mark.slow
def test_every_finding_at_smoke_size(tmp_path):
    """All seven findings in one invocation at smoke size (a few CPU-minutes; the default
    tier runs one finding end to end in the provenance test above): each writes
    its numbers, figure and verdict, and the report holds only numbers from this run."""
    rp.run_reproduce(rp.ReproduceConfig(out=str(tmp_path), profile="smoke"), write=lambda *_: 0)
    _check_report(tmp_path, tuple(rp.FINDINGS))
