"""Node configuration: defaults < TOML file < MESHDCM_* environment < arguments, and every ConfigError."""

from __future__ import annotations

import dataclasses

import pytest

from meshdcm.config import DEFAULT_INTERFACE, DEFAULT_MESH, NodeConfig, load_config, resolve_interface
from meshdcm.errors import ConfigError

TOML = """
[mesh]
name = "ward-3"
interface = "lo"
peers = ["tcp://127.0.0.1:5670", "tcp://127.0.0.2:5670"]
discovery = false

[node]
name = "perfusion-1"
group = "perfusion"
port = 5670
workers = 2
log_level = "DEBUG"

[nodes.perfusion]
method = "osvd"
threshold = 0.2

[nodes.other]
method = "ignored"
"""


@pytest.fixture
def toml_file(tmp_path):
    path = tmp_path / "meshdcm.toml"
    path.write_text(TOML)
    return path


def test_defaults():
    cfg = load_config(environ={})
    assert cfg.name == "node" and cfg.kind == "node"
    assert cfg.mesh == DEFAULT_MESH and cfg.interface == DEFAULT_INTERFACE == cfg.address == "127.0.0.1"
    assert cfg.peers == () and cfg.discovery is True and cfg.port == 0 and cfg.workers == 4
    assert cfg.group is None and cfg.options == {} and cfg.log_level == "INFO"
    assert load_config(kind="perfusion", environ={}).name == "perfusion"


def test_file_overrides_defaults(toml_file):
    cfg = load_config(kind="perfusion", file=toml_file, environ={})
    assert cfg.mesh == "ward-3" and cfg.interface == "lo" and cfg.address == "127.0.0.1"
    assert cfg.peers == ("tcp://127.0.0.1:5670", "tcp://127.0.0.2:5670")
    assert cfg.discovery is False and cfg.name == "perfusion-1" and cfg.group == "perfusion"
    assert cfg.port == 5670 and cfg.workers == 2 and cfg.log_level == "DEBUG"
    assert cfg.options == {"method": "osvd", "threshold": 0.2}
    assert cfg.kind == "perfusion"


def test_config_file_from_the_environment(toml_file):
    cfg = load_config(kind="perfusion", environ={"MESHDCM_CONFIG": str(toml_file)})
    assert cfg.mesh == "ward-3"
    assert load_config(kind="perfusion", file=toml_file, environ={"MESHDCM_CONFIG": "/nonexistent"}).mesh == "ward-3"


def test_environment_overrides_file(toml_file):
    env = {"MESHDCM_MESH": "env-mesh", "MESHDCM_PORT": "6000", "MESHDCM_DISCOVERY": "yes",
           "MESHDCM_PEERS": "tcp://127.0.0.9:1, tcp://127.0.0.8:2,", "MESHDCM_WORKERS": "8",
           "MESHDCM_NAME": "env-name", "MESHDCM_GROUP": "g", "MESHDCM_LOG_LEVEL": "WARNING",
           "MESHDCM_INTERFACE": "127.0.0.1", "UNRELATED": "x"}
    cfg = load_config(kind="perfusion", file=toml_file, environ=env)
    assert cfg.mesh == "env-mesh" and cfg.port == 6000 and cfg.discovery is True and cfg.workers == 8
    assert cfg.peers == ("tcp://127.0.0.9:1", "tcp://127.0.0.8:2")
    assert cfg.name == "env-name" and cfg.group == "g" and cfg.log_level == "WARNING"
    assert cfg.options == {"method": "osvd", "threshold": 0.2}  # only the file sets options


def test_arguments_override_environment(toml_file):
    env = {"MESHDCM_MESH": "env-mesh", "MESHDCM_PORT": "6000"}
    args = {"mesh": "arg-mesh", "port": 7000, "name": None, "options": {"method": "svd", "extra": 1},
            "linger": 2.5}
    cfg = load_config(kind="perfusion", file=toml_file, environ=env, args=args)
    assert cfg.mesh == "arg-mesh" and cfg.port == 7000
    assert cfg.name == "perfusion-1"  # None arguments are ignored
    assert cfg.options == {"method": "svd", "threshold": 0.2, "extra": 1}
    assert cfg.linger == 2.5


@pytest.mark.parametrize("value,expected", [("1", True), ("true", True), ("ON", True), ("Yes", True),
                                            ("0", False), ("false", False), ("off", False), ("NO", False)])
def test_boolean_environment_values(value, expected):
    assert load_config(environ={"MESHDCM_DISCOVERY": value}).discovery is expected


def test_config_is_frozen_and_with_resolves_the_interface():
    cfg = load_config(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.port = 1  # type: ignore[misc]
    changed = cfg.with_(interface="lo", port=5)
    assert changed.address == "127.0.0.1" and changed.port == 5 and cfg.port == 0
    assert cfg.with_(interface="127.0.0.5").address == "127.0.0.5"
    assert cfg.with_(interface="lo", address="127.0.0.7").address == "127.0.0.7"
    assert isinstance(changed, NodeConfig)


def test_resolve_interface():
    assert resolve_interface("lo") == "127.0.0.1"
    assert resolve_interface("127.0.0.1") == "127.0.0.1"
    assert resolve_interface("10.1.2.3") == "10.1.2.3"  # an address is taken as given (nothing is bound here)
    with pytest.raises(ConfigError, match="no network interface called 'nosuchif0'; `ip addr` lists them"):
        resolve_interface("nosuchif0")


# --- every ConfigError path ---------------------------------------------------------------------------------

def _write(tmp_path, text: str, name="bad.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(file=tmp_path / "absent.toml", environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(environ={"MESHDCM_CONFIG": str(tmp_path / "absent.toml")})


def test_unreadable_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(file=tmp_path, environ={})  # a directory
    latin1 = tmp_path / "latin1.toml"
    latin1.write_bytes('[node]\nname = "m\xfcller"\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot be read"):
        load_config(file=latin1, environ={})


@pytest.mark.parametrize("text", ["[mesh\nname = 1", "[mesh]\nname = ", "[mesh]\nname = 'a'\nname = 'b'", "= 3"])
def test_bad_toml(tmp_path, text):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"configuration file {path} is not valid TOML"):
        load_config(file=path, environ={})


@pytest.mark.parametrize("text,key", [
    ("[node]\nport = 'abc'", "port"), ("[node]\nport = 5670.5", "port"), ("[node]\nport = true", "port"),
    ("[node]\nworkers = [1]", "workers"), ("[mesh]\ndiscovery = 'maybe'", "discovery"),
    ("[mesh]\npeers = 5", "peers"), ("[node]\nname = ['a']", "name"), ("[mesh]\nname = 3", "mesh"),
])
def test_bad_types_in_the_file(tmp_path, text, key):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError, match=f"{path}: {key} must be"):
        load_config(file=path, environ={})


@pytest.mark.parametrize("text,table", [("mesh = 5", "mesh"), ("node = 'x'", "node"), ("nodes = 1", "nodes"),
                                        ("[nodes]\nnode = 3", "nodes.node")])
def test_sections_that_are_not_tables(tmp_path, text, table):
    with pytest.raises(ConfigError, match=rf"\[{table}\] must be a table"):
        load_config(file=_write(tmp_path, text), environ={})


@pytest.mark.parametrize("var,value", [("MESHDCM_PORT", "x"), ("MESHDCM_PORT", "1.5"), ("MESHDCM_WORKERS", ""),
                                       ("MESHDCM_DISCOVERY", "2")])
def test_bad_types_in_the_environment(var, value):
    with pytest.raises(ConfigError, match=rf"\${var}: .* must be"):
        load_config(environ={var: value})


def test_bad_argument_types():
    with pytest.raises(ConfigError, match="--port: port must be int"):
        load_config(environ={}, args={"port": "many"})
    with pytest.raises(ConfigError, match="--discovery"):
        load_config(environ={}, args={"discovery": "perhaps"})


@pytest.mark.parametrize("port", [-1, 65534, 70000])
def test_bad_ports(port):
    with pytest.raises(ConfigError, match="port must be 0"):
        load_config(environ={}, args={"port": port})


def test_edge_ports_are_accepted():
    assert load_config(environ={}, args={"port": 65533}).port == 65533
    assert load_config(environ={"MESHDCM_PORT": "0"}).port == 0


def test_bad_workers():
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        load_config(environ={"MESHDCM_WORKERS": "0"})


@pytest.mark.parametrize("peer", ["127.0.0.1:5670", "udp://127.0.0.1:5670", "tcp://127.0.0.1", "tcp://"])
def test_bad_peers(peer):
    with pytest.raises(ConfigError, match="a peer is a control endpoint like tcp://HOST:PORT"):
        load_config(environ={"MESHDCM_PEERS": peer})


def test_unknown_interface(tmp_path):
    with pytest.raises(ConfigError, match="no network interface called 'nosuchif0'"):
        load_config(environ={"MESHDCM_INTERFACE": "nosuchif0"})
    with pytest.raises(ConfigError, match="no network interface"):
        load_config(file=_write(tmp_path, "[mesh]\ninterface = 'eth99x'"), environ={})
