"""The topic registry (meshdcm.topics) is the one list: the code publishes only topics it names, and
docs/protocol.md's topic table lists exactly those."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from meshdcm import topics

ROOT = Path(__file__).resolve().parents[1]


def published_literals() -> dict[str, list[str]]:
    """Topic strings given literally to ``publish(...)`` anywhere in the package and the nodes."""
    found: dict[str, list[str]] = {}
    for path in [*ROOT.joinpath("meshdcm").rglob("*.py"), *ROOT.joinpath("nodes").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "publish" \
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.setdefault(node.args[0].value, []).append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_the_code_publishes_only_registered_topics():
    literals = published_literals()
    assert literals, "the scan found no publish calls: it is broken"
    unknown = {t: where for t, where in literals.items() if topics.by_name(t) is None}
    assert not unknown, f"topics published but not in meshdcm.topics: {unknown}"


def test_nodes_use_the_registry_names():
    """nodes/ publish through the constants, not through strings that could drift."""
    literals = {t: [w for w in where if w.startswith("nodes/")] for t, where in published_literals().items()}
    assert not {t: w for t, w in literals.items() if w}


def test_protocol_md_lists_every_topic_and_no_other():
    text = ROOT.joinpath("docs", "protocol.md").read_text()
    table = text.split("### Topics", 1)[1].split("\n### ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z.<>]+)` \|", table, re.M))
    assert listed == set(topics.ALL), (sorted(listed - set(topics.ALL)), sorted(set(topics.ALL) - listed))
    for name, topic in topics.ALL.items():  # the kind written beside each one agrees
        row = re.search(rf"^\| `{re.escape(name)}` \| (\w+) \|", table, re.M)
        assert row and row.group(1) == topic.kind, name


def test_registry_lookups():
    assert topics.by_name("error.pacs") is topics.ALL["error.<node>"]
    assert topics.error_topic("pacs") == "error.pacs"
    assert topics.by_name("found.end").kind == "answer" and topics.by_name("nope") is None
