"""A node kind's options (``[nodes.KIND]`` of the configuration) as a typed, frozen dataclass.

A node kind declares its options once::

    @dataclass(frozen=True)
    class PacsOptions:
        ae_title: str = "MESHDCM"
        scp_port: int = 0
        use: list[str] = field(default_factory=list)

    opts = node_options("pacs", PacsOptions, config.options)

and a mistake in the configuration (an unknown key, a value of the wrong type) stops the node at start with a
:class:`~meshdcm.errors.ConfigError` naming the key, instead of a failure on the first message that needs it.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

from .errors import ConfigError

__all__ = ["node_options"]

T = TypeVar("T")


def node_options(kind: str, spec: type[T], values: Mapping[str, Any]) -> T:
    """``values`` checked against the dataclass ``spec`` (field types: str, int, float, bool, dict, list[str],
    and ``X | None``); a ``list[str]`` also takes one string."""
    hints = typing.get_type_hints(spec)
    fields = {f.name for f in dataclasses.fields(spec)}
    unknown = sorted(set(values) - fields)
    if unknown:
        known = f"the options are: {', '.join(sorted(fields))}" if fields else f"the {kind} node takes none"
        raise ConfigError(f"[nodes.{kind}] has unknown option{'s' if len(unknown) > 1 else ''} "
                          f"{', '.join(unknown)}; {known}")
    checked = {name: _check(kind, name, hints[name], value) for name, value in values.items()}
    return spec(**checked)


def _check(kind: str, name: str, hint, value):
    where = f"[nodes.{kind}] {name} = {value!r}"
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        args = typing.get_args(hint)
    origin = typing.get_origin(hint) or hint
    if origin is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: true or false")
    if origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: a whole number")
    if origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where}: a number")
    if origin is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: text")
    if origin is list:
        items = [value] if isinstance(value, str) else value
        if isinstance(items, list) and all(isinstance(v, str) for v in items):
            return list(items)
        raise ConfigError(f"{where}: a name or a list of names")
    if origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise ConfigError(f"{where}: a table")
    raise TypeError(f"node_options cannot check {hint!r} ({name})")  # the node's own mistake, not the user's
