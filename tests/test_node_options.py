"""Every node kind checks its ``[nodes.KIND]`` options when it is built: an unknown key or a value of the wrong type
stops it at start with a ConfigError naming the key, never a HandlerError (or a crash) on the first message."""

from __future__ import annotations

import importlib

import pytest

from meshdcm import ConfigError, NodeConfig

#: Valid options of each kind (files only under the test's folder) and its mistakes: (key, value).
KINDS = {
    "convert": (lambda tmp: {"work": str(tmp)}, [("wher", "x"), ("compress", "yes")]),
    "index": (lambda tmp: {"path": str(tmp / "index.sqlite3")}, [("mongodb", "x"), ("synchronous", 2)]),
    "monitor": (lambda tmp: {}, [("topic", "error")]),
    "pacs": (lambda tmp: {"storage": str(tmp)}, [("scp_prot", 104), ("scp_port", "104")]),
    "perfusion": (lambda tmp: {"work": str(tmp)}, [("methd", "osvd"), ("leakage_correction", "no")]),
    "register": (lambda tmp: {"work": str(tmp)}, [("reformat_below", 1.0), ("reformat_mm", "3mm")]),
    "viewer": (lambda tmp: {"work": str(tmp), "viewers": {"desk": {"host": "127.0.0.1", "port": 11112}}},
               [("retry", 2), ("retry_seconds", "x")]),
    "web": (lambda tmp: {"data": str(tmp), "port": 0, "token": "t"}, [("cache_max_mb", 1), ("port", "http")]),
}


@pytest.mark.parametrize("kind, key, value", [(kind, key, value) for kind, (_, mistakes) in KINDS.items()
                                              for key, value in mistakes])
def test_a_mistaken_option_stops_the_node_at_start_naming_it(tmp_path, kind, key, value):
    create = importlib.import_module(f"nodes.{kind}").create
    options = {**KINDS[kind][0](tmp_path), key: value}
    with pytest.raises(ConfigError) as raised:
        create(NodeConfig(name=f"options-{kind}", kind=kind, discovery=False, options=options))
    assert f"[nodes.{kind}]" in str(raised.value) and key in str(raised.value)
