"""A TCP port for a test to name on a command line, one nothing else on the machine will take meanwhile."""

from __future__ import annotations

import random
import socket
from pathlib import Path

_FIRST_TRIED = 10000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host: str = "127.0.0.1") -> int:
    """A free port *below* the kernel's ephemeral range.

    Binding port 0 and closing the socket hands out an ephemeral port, which any process binding port 0 (every
    ZeroMQ ``bind("tcp://...:*")``, every outgoing connection) may take before the test's own process binds it:
    "Address already in use", about once in a few hundred runs. Ports below the range are never handed out.
    """
    low, _ = _ephemeral_range()
    top = max(low - 1, _FIRST_TRIED + 1000)
    for _ in range(200):
        port = random.randint(_FIRST_TRIED, top)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port between {_FIRST_TRIED} and {top} on {host}")
