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

Hand-written parser: the grammar is tiny and the errors must name the column and what was expected,
which a generic parser library would make harder, and it keeps the core free of another dependency.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from pydicom.datadict import keyword_dict, tag_for_keyword

from .errors import FilterError, FilterSyntaxError

__all__ = ["ALL", "Filter", "attribute", "parse"]

Getter = Callable[[int], Any]


# --- the tree ----------------------------------------------------------------------------------------


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


def _suggest(word: str) -> str:
    close = difflib.get_close_matches(word, list(keyword_dict), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


# --- the parser ----------------------------------------------------------------------------------------

_TAG_RE = re.compile(r"\(\s*([0-9A-Fa-f]{4})\s*,\s*([0-9A-Fa-f]{4})\s*\)")
_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<tag>\(\s*[0-9A-Fa-f]{4}\s*,\s*[0-9A-Fa-f]{4}\s*\))
  | (?P<op>==|!=|<=|>=|<|>|~)
  | (?P<punct>[()\[\],])
  | (?P<number>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)
_RESERVED = {"and", "or", "not", "in", "contains", "exists", "missing"}


@dataclass
class _Token:
    kind: str  # tag op punct number string word end
    text: str
    column: int  # 1-based
    value: Any = None


def _describe(tok: _Token) -> str:
    return "the end of the filter" if tok.kind == "end" else repr(tok.text)


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    out = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body) and body[i + 1] in "\\\"'":
            out.append(body[i + 1])
            i += 2
            continue
        out.append(c)  # other backslashes stay literal, so "\d+" is a regex digit class
        i += 1
    return "".join(out)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            ch = text[pos]
            if ch in "\"'":
                raise FilterSyntaxError(text, pos + 1, f"a closing {ch} for the string that starts here")
            if ch == "=" or ch == "!":
                raise FilterSyntaxError(text, pos + 1, "'==' or '!=' to compare", repr(ch))
            raise FilterSyntaxError(text, pos + 1, "a keyword, a tag, an operator, a string or a number", repr(ch))
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tok = _Token(kind, m.group(), pos + 1)
            if kind == "string":
                tok.value = _unquote(tok.text)
            elif kind == "number":
                tok.value = float(tok.text)
            elif kind == "tag":
                g = _TAG_RE.fullmatch(tok.text)
                assert g is not None
                tok.value = int(g.group(1) + g.group(2), 16)
            tokens.append(tok)
        pos = m.end()
    tokens.append(_Token("end", "", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0  # nested 'not' and '(' (bounded: MAX_DEPTH)

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def fail(self, expected: str, tok: _Token | None = None):
        tok = tok or self.tok
        raise FilterSyntaxError(self.text, tok.column, expected, _describe(tok))

    def word(self, w: str) -> bool:
        if self.tok.kind == "word" and self.tok.text == w:
            self.i += 1
            return True
        return False

    def punct(self, p: str) -> bool:
        if self.tok.kind == "punct" and self.tok.text == p:
            self.i += 1
            return True
        return False

    def parse(self):
        if self.tok.kind == "end":
            self.fail("a test such as Modality == \"MR\"")
        tree = self.or_expr()
        if self.tok.kind != "end":
            self.fail("'and', 'or', or the end of the filter")
        return tree

    def or_expr(self):
        items = [self.and_expr()]
        while self.word("or"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else _Junction("or", tuple(items))

    def and_expr(self):
        items = [self.not_expr()]
        while self.word("and"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else _Junction("and", tuple(items))

    def not_expr(self):
        open_tok = self.tok
        nested = open_tok.kind in ("word", "punct") and open_tok.text in ("not", "(")
        if nested:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise FilterSyntaxError(self.text, open_tok.column, f"at most {MAX_DEPTH} nested 'not' and '('",
                                        "deeper nesting")
        try:
            if self.word("not"):
                return _Not(self.not_expr())
            if self.punct("("):
                inner = self.or_expr()
                if not self.punct(")"):
                    self.fail(f"')' to close the '(' at column {open_tok.column}")
                return inner
            return self.test()
        finally:
            if nested:
                self.depth -= 1

    def test(self):
        tok = self.tok
        if tok.kind == "tag":
            tag = tok.value
        elif tok.kind == "word" and tok.text not in _RESERVED:
            tag = tag_for_keyword(tok.text)
            if tag is None:
                raise FilterSyntaxError(self.text, tok.column, f"a DICOM keyword{_suggest(tok.text)}", repr(tok.text))
        else:
            self.fail("a DICOM keyword or a tag like (0008,0060), 'not' or '('")
        self.i += 1
        op_tok = self.tok
        if op_tok.kind == "op":
            self.i += 1
            if op_tok.text == "~":
                if self.tok.kind != "string":
                    self.fail("a quoted regular expression after '~'")
                pattern = self.tok.value
                try:
                    compile_regex(pattern)
                except ValueError as exc:
                    raise FilterSyntaxError(self.text, self.tok.column, f"a valid regular expression ({exc})") from None
                self.i += 1
                return _Test(tag, "~", pattern)
            return _Test(tag, op_tok.text, self.literal(f"a string or a number after '{op_tok.text}'"))
        if self.word("in"):
            if not self.punct("["):
                self.fail("'[' to start the list after 'in'")
            values = [self.literal("a string or a number in the list")]
            while self.punct(","):
                values.append(self.literal("a string or a number after ','"))
            if not self.punct("]"):
                self.fail("',' or ']' to close the list")
            return _Test(tag, "in", tuple(values))
        if self.word("contains"):
            return _Test(tag, "contains", self.literal("a string or a number after 'contains'"))
        if self.word("exists"):
            return _Test(tag, "exists")
        if self.word("missing"):
            return _Test(tag, "missing")
        self.fail("an operator (== != < <= > >= ~ in contains exists missing)")

    def literal(self, expected: str):
        tok = self.tok
        if tok.kind in ("string", "number"):
            self.i += 1
            return tok.value
        self.fail(expected)


#: The deepest nesting of parentheses and ``not`` a filter may have (deeper ones are refused, not a RecursionError).
MAX_DEPTH = 64
#: The longest filter text.
MAX_LENGTH = 10_000


def compile_regex(pattern: str):
    """A regular expression of a filter, compiled by RE2 (google-re2): its time is linear in the value's length
    whatever the pattern, so no filter can freeze a node (Python's ``re`` took 19 s for ``(a+)+$`` on 26
    characters). Raises ``ValueError`` with RE2's reason; backreferences and lookaround are not supported."""
    import re2

    options = re2.Options()
    options.log_errors = False  # RE2 would also print the reason to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        backtracking = reason.startswith(("invalid escape sequence", "invalid perl operator"))
        raise ValueError(reason + ("; filters use RE2 syntax: no backreferences or lookaround" if backtracking
                                   else "")) from None


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

