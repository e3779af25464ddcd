"""The docs site: the generated CLI reference equals ``ppl-bnn <command> --help``.

The page ``cli.md`` is written at build time by ``docs/hooks/cli_reference.py`` (an MkDocs
hook) from ``ppl_bnn.cli.build_parser()``; ``mkdocs build --strict`` itself runs in
``.ci/run``.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _hook():
    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "docs" / "hooks" / "cli_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _help_blocks(page: str) -> dict[str, str]:
    """command -> the text of its ``--help`` block on the page (indentation removed)."""
    blocks = {}
    pattern = re.compile(
        r'\?\?\? note "`ppl-bnn (\S+) --help`"\n\n    ```text\n(.*?)\n    ```', re.S
    )
    for name, body in pattern.findall(page):
        blocks[name] = "\n".join(line[4:] for line in body.split("\n"))
    return blocks


@pytest.fixture(scope="module")
def page_and_hook():
    hook = _hook()
    return hook.render_cli_reference(), hook


def test_every_command_has_its_help_on_the_page(page_and_hook, capsys, monkeypatch):
    from ppl_bnn.cli import COMMANDS, main

    page, hook = page_and_hook
    blocks = _help_blocks(page)
    assert set(blocks) == set(COMMANDS)
    monkeypatch.setenv("COLUMNS", str(hook.HELP_COLUMNS))
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        expected = "\n".join(
            line.rstrip() for line in capsys.readouterr().out.rstrip("\n").split("\n")
        )
        assert blocks[command] == expected, command


def test_every_flag_is_in_its_table(page_and_hook):
    from ppl_bnn.cli import build_parser

    page, hook = page_and_hook
    sections = re.split(r"\n## `", page)[1:]
    by_name = {s.split("`", 1)[0]: s for s in sections}
    sub = hook._subparsers(build_parser())
    for name, parser in sub.choices.items():
        table = by_name[name].split("??? note")[0]
        for action in parser._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}`" in table, (name, flag)


def test_console_script_prints_the_same_help(page_and_hook):
    """The installed ``ppl-bnn`` entry point prints what the page shows (one command)."""
    page, hook = page_and_hook
    exe = Path(sys.executable).with_name("ppl-bnn")
    if not exe.exists():
        pytest.skip("ppl-bnn console script not installed next to the interpreter")
    env = {**os.environ, "COLUMNS": str(hook.HELP_COLUMNS)}
    out = subprocess.run(
        [str(exe), "diagnose", "--help"], capture_output=True, text=True, env=env, check=True
    ).stdout
    expected = "\n".join(line.rstrip() for line in out.rstrip("\n").split("\n"))
    assert _help_blocks(page)["diagnose"] == expected


def test_the_distributed_page_exists_and_is_in_the_nav():
    """``tests/test_scale_benchmarks.py`` and the README cite docs/distributed.md."""
    assert (ROOT / "docs" / "distributed.md").is_file()
    assert "distributed.md" in (ROOT / "mkdocs.yml").read_text()
