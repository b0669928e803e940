"""The tree of a filter: tests, ``not``, ``and``/``or`` junctions and match-everything, and what a comparison means.

Each node of the tree gives its canonical text (what ``str(filter)`` and peers' adverts say), its compiled test (a
closure over an element getter ``tag -> value``, evaluated on every message) and the tags it reads. The parser
(:mod:`meshdcm._filter_syntax`) and the builder (:func:`meshdcm.filters.attribute`) make trees;
:class:`meshdcm.filters.Filter` wraps one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pydicom.datadict import tag_for_keyword

from ._filter_regex import compile_regex

Getter = Callable[[int], Any]

@dataclass(frozen=True)
class _Test:
    tag: int
    op: str  # == != < <= > >= ~ in contains exists missing
    operand: Any = None  # str | float | int | tuple | None

    def text(self) -> str:
        name = _tag_text(self.tag)
        if self.op in ("exists", "missing"):
            return f"{name} {self.op}"
        if self.op == "in":
            return f"{name} in [{', '.join(_literal_text(v) for v in self.operand)}]"
        return f"{name} {self.op} {_literal_text(self.operand)}"

    def compile(self) -> Callable[[Getter], bool]:
        tag, op, operand = self.tag, self.op, self.operand
        if op == "exists":
            return lambda get: get(tag) is not None
        if op == "missing":
            return lambda get: get(tag) is None
        if op == "contains":
            def contains(get):
                value = get(tag)
                if value is None or value is True:  # True: a sequence or binary value, not comparable
                    return False
                if value.__class__ is tuple:
                    return any(_equal(v, operand) for v in value)
                return _equal(value, operand)
            return contains
        if op == "~":
            search = compile_regex(operand).search

            def matches(get):
                value = get(tag)
                return value is not None and value is not True and search(_whole(value)) is not None
            return matches
        if op == "in":
            options = operand
            strings = frozenset(o for o in options if isinstance(o, str))

            def is_in(get):
                value = get(tag)
                if value is None or value is True:
                    return False
                if value.__class__ is str and len(strings) == len(options):
                    return value in strings
                return any(_equal(value, o) for o in options)
            return is_in
        if isinstance(operand, str):
            compare = _COMPARE[op]

            def string_test(get):
                value = get(tag)
                return value is not None and value is not True and compare(_whole(value), operand)
            return string_test
        compare = _COMPARE[op]

        def number_test(get):
            value = get(tag)
            if value is None or isinstance(value, tuple):
                return False
            number = _number(value)
            return number is not None and compare(number, operand)
        return number_test

    def tags(self) -> set[int]:
        return {self.tag}


@dataclass(frozen=True)
class _Not:
    item: Any

    def text(self) -> str:
        inner = self.item.text()
        return f"not {inner}" if isinstance(self.item, (_Test, _Not)) else f"not ({inner})"

    def compile(self):
        inner = self.item.compile()
        return lambda get: not inner(get)

    def tags(self):
        return self.item.tags()


@dataclass(frozen=True)
class _Junction:
    kind: str  # "and" | "or"
    items: tuple

    def text(self) -> str:
        parts = []
        for item in self.items:
            t = item.text()
            if isinstance(item, _Junction) and item.kind != self.kind:
                t = f"({t})"
            parts.append(t)
        return f" {self.kind} ".join(parts)

    def compile(self):
        compiled = [i.compile() for i in self.items]
        if len(compiled) > 4:  # a loop: nested pairs of a long chain would nest calls as deep as the chain is long
            tests = tuple(compiled)
            if self.kind == "and":
                def every(get):
                    for t in tests:
                        if not t(get):
                            return False
                    return True
                return every

            def some(get):
                for t in tests:
                    if t(get):
                        return True
                return False
            return some
        test = compiled[-1]
        for first in reversed(compiled[:-1]):  # nested pairs: no generator per evaluation
            if self.kind == "and":
                test = (lambda a, b: lambda get: a(get) and b(get))(first, test)
            else:
                test = (lambda a, b: lambda get: a(get) or b(get))(first, test)
        return test

    def tags(self):
        out: set[int] = set()
        for i in self.items:
            out |= i.tags()
        return out


@dataclass(frozen=True)
class _All:
    def text(self) -> str:
        return ""

    def compile(self):
        return lambda get: True

    def tags(self):
        return set()


def _whole(value) -> str:
    if value.__class__ is str:
        return value
    if isinstance(value, tuple):
        return "\\".join(_scalar_text(v) for v in value)
    return _scalar_text(value)


def _scalar_text(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _number(value):
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _equal(value, operand) -> bool:
    if value.__class__ is str and operand.__class__ is str:
        return value == operand
    if isinstance(operand, str):
        return _whole(value) == operand
    number = _number(value) if not isinstance(value, tuple) else None
    return number is not None and number == operand


_COMPARE = {
    "==": lambda a, b: a == b, "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
}


def _tag_text(tag: int) -> str:
    from pydicom.datadict import keyword_for_tag

    keyword = keyword_for_tag(tag)
    # repeating groups (60xx overlays, 50xx curves) have a keyword that tag_for_keyword does not map back
    return keyword if keyword and tag_for_keyword(keyword) == tag else f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _literal_text(v) -> str:
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)
