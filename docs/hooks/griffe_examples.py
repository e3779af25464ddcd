"""Griffe extension: read a Google-style ``Example:`` section as ``Examples:``.

Griffe's Google parser turns a singular ``Example:`` into an admonition whose ``>>>``
lines are rendered as prose (and whose ``[...]`` outputs look like cross-references);
Napoleon treats both spellings alike. This keeps the docstrings as written and renders
their doctests as code.
"""

from __future__ import annotations

import re

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:\s*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
