"""The ``ppl-bnn`` command's memory allocator settings.

On Linux with glibc, XLA's CPU runtime frees and reallocates scratch memory inside
compiled loops (every integration step of a ``mams`` trajectory, for instance), and
glibc's per-thread cache (``tcache``) keeps those blocks out of reuse: a process can grow
by a gigabyte every few seconds and run out of memory although its live data is a few
hundred megabytes (measured: ``benchmarks/allocator_memory.py``). Turning the cache off
with the glibc tunable ``glibc.malloc.tcache_count=0`` bounds the memory and makes those
loops faster. A tunable is read when a process starts, so the command sets it in its
environment and starts itself again, once, before anything is imported. From Python, set
``GLIBC_TUNABLES=glibc.malloc.tcache_count=0`` before starting the interpreter (or
preload jemalloc); ``PPL_BNN_KEEP_ALLOCATOR=1`` keeps the command on the defaults.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping

__all__ = ["TUNABLE", "reexec_with_allocator_settings", "tuned_environment"]

TUNABLE = "glibc.malloc.tcache_count=0"


def tuned_environment(environ: Mapping[str, str], libc: str) -> dict[str, str] | None:
    """The environment to start the command in, or ``None`` where it needs no change:
    another C library, the tunable already set (by us or by the user), or
    ``PPL_BNN_KEEP_ALLOCATOR`` set."""
    if libc != "glibc" or environ.get("PPL_BNN_KEEP_ALLOCATOR"):
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.tcache_count" in tunables:
        return None
    env = dict(environ)
    env["GLIBC_TUNABLES"] = f"{tunables}:{TUNABLE}" if tunables else TUNABLE
    return env


def reexec_with_allocator_settings(argv: list[str] | None = None) -> None:
    """Start ``python -m ppl_bnn.cli ARGV`` again in the tuned environment (same process
    id: signals and ``kill`` reach it as before); return where nothing needs changing.
    Without ``argv``: the running script again, ``python sys.argv`` (for the scripts in
    ``benchmarks/``)."""
    if not sys.platform.startswith("linux"):
        return
    env = tuned_environment(os.environ, platform.libc_ver()[0])
    if env is None:
        return
    try:
        command = sys.argv if argv is None else ["-m", "ppl_bnn.cli", *argv]
        os.execve(sys.executable, [sys.executable, *command], env)
    except OSError:  # no interpreter to exec (an embedded Python): run on the defaults
        return
