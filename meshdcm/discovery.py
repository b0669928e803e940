"""mDNS discovery through python-zeroconf: advertise this node, learn about the others.

Service type ``_meshdcm._tcp.local.``; the advert is small (node id, name, mesh, protocol version,
endpoints, manifest digest) and the full manifest is fetched over the control socket (HELLO).  Zeroconf
is bound to the one interface address the node uses (``interfaces=[address]``), never to all interfaces.
Registration skips the probing step (names carry the node id, so they cannot clash) so that peers hear
the first announcement at once; that announcement is what makes a late joiner known within milliseconds.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass
from typing import Callable

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

__all__ = ["SERVICE_TYPE", "Advert", "Discovery"]

log = logging.getLogger(__name__)
SERVICE_TYPE = "_meshdcm._tcp.local."


@dataclass(frozen=True)
class Advert:
    node_id: str
    name: str
    mesh: str
    protocol: str
    control: str
    events: str
    work: str
    digest: str
    key: str = ""

    def properties(self) -> dict[str, str]:
        props = {"id": self.node_id, "name": self.name, "mesh": self.mesh, "v": self.protocol, "ctl": self.control,
                 "pub": self.events, "pull": self.work, "digest": self.digest}
        if self.key:
            props["key"] = self.key
        return props

    @classmethod
    def from_info(cls, info: ServiceInfo) -> "Advert | None":
        props = {k.decode("utf-8", "replace"): (v or b"").decode("utf-8", "replace")
                 for k, v in (info.properties or {}).items()}
        if not props.get("id") or not props.get("ctl"):
            return None
        return cls(props["id"], props.get("name", ""), props.get("mesh", ""), props.get("v", ""), props["ctl"],
                   props.get("pub", ""), props.get("pull", ""), props.get("digest", ""), props.get("key", ""))


def _instance_name(advert: Advert) -> str:
    label = f"{advert.name[:40]}-{advert.node_id[:12]}".replace(".", "-")
    return f"{label}.{SERVICE_TYPE}"


class Discovery:
    """Advertise one node and report the adverts of others through callbacks (called on zeroconf's thread)."""

    def __init__(self, address: str, on_found: Callable[[Advert], None], on_lost: Callable[[str], None]):
        self.address = address
        self._on_found = on_found
        self._on_lost = on_lost
        self._zc: Zeroconf | None = None
        self._browser: ServiceBrowser | None = None
        self._info: ServiceInfo | None = None
        self._names: dict[str, str] = {}  # mDNS name -> node id
        self._lock = threading.Lock()

    def _service_info(self, advert: Advert, port: int) -> ServiceInfo:
        return ServiceInfo(SERVICE_TYPE, _instance_name(advert), addresses=[socket.inet_aton(self.address)],
                           port=port, properties=advert.properties(), server=f"meshdcm-{advert.node_id[:12]}.local.")

    def start(self, advert: Advert, port: int) -> None:
        self._zc = Zeroconf(interfaces=[self.address], ip_version=IPVersion.V4Only)
        self._info = self._service_info(advert, port)
        self._browser = ServiceBrowser(self._zc, SERVICE_TYPE, handlers=[self._changed], delay=0)
        # register without blocking start(): the first announcement leaves at once, the rest follow
        threading.Thread(target=self._register, name="meshdcm-mdns-register", daemon=True).start()

    def _register(self) -> None:
        zc, info = self._zc, self._info
        if zc is None or info is None:
            return
        try:
            zc.register_service(info, cooperating_responders=True)
        except Exception as exc:  # a closed zeroconf during a fast stop, or a bad interface
            log.warning("mDNS registration failed on %s: %s", self.address, exc)

    def update(self, advert: Advert, port: int) -> None:
        if self._zc is None:
            return
        self._info = self._service_info(advert, port)
        try:
            self._zc.update_service(self._info)
        except Exception as exc:
            log.warning("mDNS update failed: %s", exc)

    def stop(self) -> None:
        zc, self._zc = self._zc, None
        if zc is None:
            return
        try:
            if self._browser is not None:
                self._browser.cancel()
            if self._info is not None:
                zc.unregister_service(self._info)
        except Exception as exc:
            log.debug("mDNS unregister: %s", exc)
        finally:
            zc.close()

    def _changed(self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange) -> None:
        if self._info is not None and name == self._info.name:
            return
        if state_change is ServiceStateChange.Removed:
            with self._lock:
                node_id = self._names.pop(name, None)
            if node_id:
                self._on_lost(node_id)
            return
        info = zeroconf.get_service_info(service_type, name, timeout=1500)
        if info is None:
            return
        advert = Advert.from_info(info)
        if advert is None:
            log.warning("ignoring an mDNS advert without a node id or control endpoint: %s", name)
            return
        with self._lock:
            self._names[name] = advert.node_id
        self._on_found(advert)
