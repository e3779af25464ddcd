"""The registry of findings: each finding module registers one :class:`Finding`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import Context


@dataclass(frozen=True)
class Finding:
    """One of the paper's findings: ``run(ctx)`` returns its result dictionary."""

    index: int
    name: str
    title: str
    paper: str  # the paper's statement (abstract / README of the original code)
    run: Callable[[Context], dict[str, Any]]
    paper_experiments: tuple[str, ...] = ()


FINDINGS: dict[str, Finding] = {}


def register_finding(finding: Finding) -> Finding:
    if finding.name in FINDINGS:
        raise ValueError(f"finding {finding.name!r} is already registered")
    FINDINGS[finding.name] = finding
    return finding
