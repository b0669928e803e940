"""DICOM input filters: a small declarative language nodes use to say which messages they want.

Grammar (docs/filters.md has the full reference)::

    filter     := or_expr
    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | "(" or_expr ")" | test
    test       := tag ( ("==" | "!=" | "<" | "<=" | ">" | ">=") literal
                      | "~" string | "in" "[" literal ("," literal)* "]"
                      | "contains" literal | "exists" | "missing" )
    tag        := Keyword | "(" gggg "," eeee ")"
    literal    := string | number

Meaning: a comparison looks at the element's whole value (several values joined by ``\\``); ``contains`` tests
one value of a multi-valued element; ``~`` is a regular-expression *search*; every test on an absent or
empty element is false, except ``missing``.  Filters are values: ``str(f)`` is their canonical text (what
peers advertise), ``f & g``, ``f | g`` and ``~f`` compose them, and :func:`attribute` builds them from
Python without parsing::

    perf = (attribute("Modality") == "MR") & attribute("SeriesDescription").search("(?i)perf|dsc")

The parts: the tree and what its tests mean (``_filter_tree.py``), reading the text (``_filter_syntax.py``), RE2 for
``~`` (``_filter_regex.py``); this module is the public value and its builder.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache

from pydicom.datadict import tag_for_keyword

from ._filter_regex import compile_regex
from ._filter_syntax import _TAG_RE, _Parser, _suggest
from ._filter_syntax import MAX_DEPTH as MAX_DEPTH  # the deepest nesting a filter may have
from ._filter_tree import Getter, _All, _Junction, _Not, _Test
from .errors import FilterError, FilterSyntaxError

__all__ = ["ALL", "Filter", "attribute", "parse"]


# --- the public value ---------------------------------------------------------------------------------


class Filter:
    """A compiled filter.  Call it with a getter ``tag -> value`` or use :meth:`matches`."""

    __slots__ = ("_tree", "_test", "_tags", "_text")

    def __init__(self, tree):
        self._tree = tree
        self._test = tree.compile()
        self._tags = frozenset(tree.tags())
        self._text = tree.text()

    # evaluation
    def evaluate(self, get: Getter) -> bool:
        """True if the element getter ``get(tag)`` (e.g. ``DataView.get``) satisfies the filter."""
        return self._test(get)

    def matches(self, data) -> bool:
        """True if ``data`` — a :class:`~meshdcm.Message`, a :class:`~meshdcm.dataview.DataView`, a body's
        bytes or a pydicom Dataset — satisfies the filter."""
        from pydicom.dataset import Dataset

        from .dataview import DataView, values_of_element

        if isinstance(data, (bytes, bytearray, memoryview)):
            return self._test(DataView(data).get)
        if isinstance(data, Dataset):
            def get(tag, _ds=data):
                elem = _ds.get(tag)
                return None if elem is None else values_of_element(elem)
            return self._test(get)
        view = getattr(data, "view", data)
        return self._test(view.get)

    @property
    def tags(self) -> frozenset[int]:
        """The tags the filter reads (a receiver walks the body only up to the highest)."""
        return self._tags

    @property
    def is_all(self) -> bool:
        return isinstance(self._tree, _All)

    # composition
    def __and__(self, other: "Filter") -> "Filter":
        if self.is_all:
            return other
        if other.is_all:
            return self
        return Filter(_Junction("and", _flatten("and", self._tree, other._tree)))

    def __or__(self, other: "Filter") -> "Filter":
        if self.is_all or other.is_all:
            return ALL
        return Filter(_Junction("or", _flatten("or", self._tree, other._tree)))

    def __invert__(self) -> "Filter":
        if self.is_all:
            raise FilterError("the match-everything filter cannot be negated")
        return Filter(_Not(self._tree))

    # serialisation
    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Filter({self._text!r})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Filter) and other._text == self._text

    def __hash__(self) -> int:
        return hash(self._text)

    def to_json(self) -> str:
        return json.dumps(self._text)


def _flatten(kind, a, b) -> tuple:
    items = []
    for t in (a, b):
        if isinstance(t, _Junction) and t.kind == kind:
            items.extend(t.items)
        else:
            items.append(t)
    return tuple(items)


ALL = Filter(_All())


class _Attribute:
    """Builder returned by :func:`attribute`."""

    __slots__ = ("tag",)

    def __init__(self, tag: int):
        self.tag = tag

    def _f(self, op, operand=None) -> Filter:
        return Filter(_Test(self.tag, op, _check_literal(operand) if op not in ("exists", "missing", "in") else operand))

    def __eq__(self, v):  # type: ignore[override]
        return self._f("==", v)

    def __ne__(self, v):  # type: ignore[override]
        return self._f("!=", v)

    def __lt__(self, v):
        return self._f("<", v)

    def __le__(self, v):
        return self._f("<=", v)

    def __gt__(self, v):
        return self._f(">", v)

    def __ge__(self, v):
        return self._f(">=", v)

    __hash__ = None  # type: ignore[assignment]

    def search(self, pattern: str) -> Filter:
        try:
            compile_regex(pattern)
        except ValueError as exc:
            raise FilterError(f"invalid regular expression {pattern!r}: {exc}") from None
        return Filter(_Test(self.tag, "~", pattern))

    def isin(self, values) -> Filter:
        values = tuple(_check_literal(v) for v in values)
        if not values:
            raise FilterError("'in' needs at least one value")
        return Filter(_Test(self.tag, "in", values))

    def contains(self, v) -> Filter:
        return self._f("contains", v)

    def exists(self) -> Filter:
        return self._f("exists")

    def missing(self) -> Filter:
        return self._f("missing")


def _check_literal(v):
    if isinstance(v, bool) or not isinstance(v, (str, int, float)):
        raise FilterError(f"a filter compares with a string or a number, got {v!r}")
    if isinstance(v, float) and not math.isfinite(v):
        raise FilterError(f"a filter compares with a finite number, got {v!r}")
    return float(v) if isinstance(v, int) else v


def attribute(name_or_tag: str | int) -> _Attribute:
    """Start a filter on an element, by keyword (``"Modality"``), ``"(0008,0060)"`` or an int tag."""
    if isinstance(name_or_tag, int):
        return _Attribute(name_or_tag)
    text = name_or_tag.strip()
    m = _TAG_RE.fullmatch(text)
    if m:
        return _Attribute(int(m.group(1) + m.group(2), 16))
    tag = tag_for_keyword(text)
    if tag is None:
        raise FilterError(f"unknown DICOM keyword {text!r}{_suggest(text)}")
    return _Attribute(tag)


#: The longest filter text.
MAX_LENGTH = 10_000


@lru_cache(maxsize=512)
def parse(text: str | None) -> Filter:
    """Parse a filter expression; an empty or None text is :data:`ALL` (match everything).

    Raises :class:`~meshdcm.errors.FilterSyntaxError` naming the column and what was expected.
    """
    if text is None or not text.strip():
        return ALL
    if len(text) > MAX_LENGTH:
        raise FilterSyntaxError(text[:60] + "...", 1, f"a filter of at most {MAX_LENGTH} characters",
                                f"{len(text)} characters")
    return Filter(_Parser(text).parse())

