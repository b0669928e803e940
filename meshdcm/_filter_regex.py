"""The regular expressions of filters (``~``): compiled by RE2, so that no filter can freeze a node."""

from __future__ import annotations


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
