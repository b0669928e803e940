"""Reading a filter's text: the tokenizer and the recursive-descent parser of the grammar in :mod:`meshdcm.filters`.

Hand-written: the grammar is tiny and the errors must name the column and what was expected, which a generic parser
library would make harder, and it keeps the core free of another dependency. The parser makes the tree of
:mod:`meshdcm._filter_tree`; :func:`meshdcm.filters.parse` wraps it into a :class:`~meshdcm.filters.Filter`.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import keyword_dict, tag_for_keyword

from ._filter_regex import compile_regex
from ._filter_tree import _Junction, _Not, _Test
from .errors import FilterSyntaxError

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


def _suggest(word: str) -> str:
    close = difflib.get_close_matches(word, list(keyword_dict), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


#: The deepest nesting of parentheses and ``not`` a filter may have (deeper ones are refused, not a RecursionError).
MAX_DEPTH = 64
