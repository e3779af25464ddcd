"""Flags from typed config dataclasses: one ``--name`` per field, the original's spelling."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any

__all__ = ["add_config_arguments", "config_from_args"]


def _base_type(tp) -> type:
    if isinstance(tp, str):
        tp = eval(tp, {"float": float, "int": int, "str": str, "bool": bool, "None": None})  # noqa: S307
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def add_config_arguments(
    parser: argparse.ArgumentParser, config_cls, *, exclude: tuple[str, ...] = ()
) -> None:
    """Add one flag per field of ``config_cls`` (bools are switches), except ``exclude``
    (fields that do not apply to the command: they keep their defaults)."""
    for f in dataclasses.fields(config_cls):
        if f.name in exclude:
            continue
        help_ = f.metadata.get("help", "")
        tp = _base_type(f.type)
        name = f"--{f.name}"
        if tp is bool:
            parser.add_argument(name, action="store_true", default=f.default, help=help_)
        else:
            default = None if f.metadata.get("required") else f.default
            parser.add_argument(
                name,
                type=tp,
                default=default,
                required=bool(f.metadata.get("required")),
                help=f"{help_} (default: {f.default})" if not f.metadata.get("required") else help_,
            )


def config_from_args(config_cls, args: argparse.Namespace) -> Any:
    """Build ``config_cls`` from the parsed flags (extra attributes are ignored)."""
    names = {f.name for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: v for k, v in vars(args).items() if k in names})
