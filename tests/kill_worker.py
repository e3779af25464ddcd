"""``ppl-bnn`` that SIGKILLs itself inside a checkpoint write (for test_kill_resume.py; not
collected by pytest).

``python kill_worker.py N WHERE ppl-bnn-args...`` runs ``ppl_bnn.cli.main(args)`` and, in
the N-th checkpoint write of this process, kills itself with SIGKILL at ``WHERE``:

* ``mid-write``: half of the temporary file written (the temporary file is left behind);
* ``before-rename``: the temporary file complete and synced, not yet renamed;
* ``after-rename``: the checkpoint in place, nothing after it written.

A real ``kill -9`` at a random time rarely lands inside a write of a few kilobytes; this
puts one there on purpose. Without a kill the process ends like ``ppl-bnn``.
"""

from __future__ import annotations

import io
import os
import signal
import sys


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(n: int, where: str) -> None:
    import ppl_bnn.store.checkpoint as ckpt

    original = ckpt.atomic_write
    real_replace = os.replace
    count = 0

    def atomic_write(path, write):
        nonlocal count
        if not path.name.startswith("checkpoint_"):
            return original(path, write)
        count += 1
        if count != n:
            return original(path, write)
        if where == "mid-write":

            def half(f):
                buf = io.BytesIO()
                write(buf)
                data = buf.getvalue()
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                _die()

            return original(path, half)
        if where == "before-rename":

            def replace(src, dst):
                if os.path.basename(dst) == path.name:
                    _die()
                return real_replace(src, dst)

            os.replace = replace
            return original(path, write)
        original(path, write)
        _die()

    ckpt.atomic_write = atomic_write


if __name__ == "__main__":
    install(int(sys.argv[1]), sys.argv[2])
    from ppl_bnn.cli import main

    raise SystemExit(main(sys.argv[3:]))
