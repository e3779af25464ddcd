"""The ``ppl-bnn`` command starts itself with glibc's per-thread malloc cache off."""

import os
import subprocess
import sys

import pytest

from ppl_bnn.cli.allocator import TUNABLE, tuned_environment


def test_tuned_environment_adds_the_tunable_once():
    env = tuned_environment({"PATH": "/bin"}, "glibc")
    assert env == {"PATH": "/bin", "GLIBC_TUNABLES": TUNABLE}
    assert tuned_environment(env, "glibc") is None  # the restarted command: no loop


def test_tuned_environment_keeps_the_users_tunables():
    env = tuned_environment({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "glibc")
    assert env["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{TUNABLE}"
    own = {"GLIBC_TUNABLES": "glibc.malloc.tcache_count=7"}
    assert tuned_environment(own, "glibc") is None  # the user's own choice stands


@pytest.mark.parametrize(
    "environ, libc", [({}, "musl"), ({}, ""), ({"PPL_BNN_KEEP_ALLOCATOR": "1"}, "glibc")]
)
def test_tuned_environment_leaves_others_alone(environ, libc):
    assert tuned_environment(environ, libc) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables: Linux only")
def test_the_command_runs_with_the_tunable(tmp_path):
    """The command as a user starts it (``main()`` with no argv): a ``sitecustomize`` on
    the path records the environment each interpreter starts with."""
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc")
    record = tmp_path / "seen.txt"
    (tmp_path / "sitecustomize.py").write_text(
        "import os\n"
        f"with open({str(record)!r}, 'a') as f:\n"
        "    f.write(os.environ.get('GLIBC_TUNABLES', '-') + '\\n')\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "GLIBC_TUNABLES"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    code = "import sys; sys.argv = ['ppl-bnn', 'models']; from ppl_bnn.cli import main; sys.exit(main())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("models:")
    assert record.read_text().split() == ["-", TUNABLE]  # started once more, with it
