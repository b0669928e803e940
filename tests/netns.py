"""Several "hosts" on one machine: network namespaces joined by a bridge (in a switch namespace of its own).

Nothing touches the root namespace: veth pairs are created directly inside the namespaces, and every address
lives only there (10.77.0.0/24 inside this test's own namespaces).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid


def available() -> str | None:
    """None if network namespaces can be used, else the reason why not."""
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"mdcmprobe{uuid.uuid4().hex[:6]}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"`ip netns add` failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


class Lan:
    """A switch namespace with a bridge, and hosts attached to it."""

    def __init__(self, hosts: int):
        tag = uuid.uuid4().hex[:6]
        self.switch = f"mdcm{tag}sw"
        self.hosts = [f"mdcm{tag}h{i}" for i in range(1, hosts + 1)]
        self.addresses = {h: f"10.77.0.{i}" for i, h in enumerate(self.hosts, start=1)}
        _ip("netns", "add", self.switch)
        try:
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for i, host in enumerate(self.hosts, start=1):
                _ip("netns", "add", host)
                _ip("link", "add", "eth0", "netns", host, "type", "veth", "peer", "name", f"port{i}", "netns",
                    self.switch)
                _ip("-n", self.switch, "link", "set", f"port{i}", "master", "br0")
                _ip("-n", self.switch, "link", "set", f"port{i}", "up")
                _ip("-n", host, "addr", "add", f"{self.addresses[host]}/24", "dev", "eth0")
                _ip("-n", host, "link", "set", "eth0", "up")
                _ip("-n", host, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def block_multicast_dns(self) -> None:
        """Drop mDNS (UDP 5353) at the switch, as networks that block multicast do."""
        nft = ["ip", "netns", "exec", self.switch, "nft"]
        subprocess.run(nft + ["add", "table", "bridge", "meshdcm"], check=True)
        subprocess.run(nft + ["add", "chain", "bridge", "meshdcm", "forward",
                              "{ type filter hook forward priority 0; }"], check=True)
        subprocess.run(nft + ["add", "rule", "bridge", "meshdcm", "forward", "udp", "dport", "5353", "drop"], check=True)

    def close(self) -> None:
        for ns in [*self.hosts, self.switch]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
