"""The mesh keyring: which nodes may join a mesh (CURVE keys, checked by ZAP through ``zmq.auth``).

A keyring is a folder (docs/security.md explains how a site distributes it)::

    KEYRING/
        authorized/NAME.key          public certificates of the nodes allowed in the mesh
        secret/NAME.key_secret       secret certificates (mode 0600); a machine needs only its own nodes'
        revoked/NAME.key             certificates taken out of authorized/ by ``meshdcm keys revoke``

Certificates are zmq.auth's own format (``zmq.auth.create_certificates``), so ZeroMQ tools can read them.
When a node has a keyring, every one of its sockets uses CURVE: bound sockets are CURVE servers whose ZAP handler
admits only the keys in ``authorized/``; connecting sockets present the node's key and check the peer's.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth

from .errors import ConfigError

__all__ = ["Keyring", "NodeKeys"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class NodeKeys:
    """A node's CURVE key pair (Z85, as ZeroMQ takes them) and the folder of authorized public keys."""

    name: str
    public: bytes
    secret: bytes
    authorized_dir: Path

    def authorized(self) -> set[bytes]:
        return Keyring(self.authorized_dir.parent).authorized_keys()


class Keyring:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.authorized_dir = self.path / "authorized"
        self.secret_dir = self.path / "secret"
        self.revoked_dir = self.path / "revoked"

    # --- administration -------------------------------------------------------------------------------
    def init(self) -> None:
        if self.authorized_dir.exists() and any(self.authorized_dir.iterdir()):
            raise ConfigError(f"{self.path} already holds a keyring; use `meshdcm keys add` to add nodes")
        for d in (self.authorized_dir, self.secret_dir, self.revoked_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.secret_dir, 0o700)

    def add(self, name: str) -> Path:
        """Make a key pair for node ``name``, authorize it, and return the secret certificate's path."""
        self._check(name)
        self._require()
        if (self.authorized_dir / f"{name}.key").exists():
            raise ConfigError(f"a key named {name!r} is already authorized; revoke it first or pick another name")
        public_file, secret_file = zmq.auth.create_certificates(self.secret_dir, name)
        os.chmod(secret_file, 0o600)
        shutil.move(public_file, self.authorized_dir / f"{name}.key")
        return Path(secret_file)

    def authorize(self, name: str, public_certificate: str | os.PathLike) -> None:
        """Authorize a public certificate made elsewhere (e.g. on the node's own machine)."""
        self._check(name)
        self._require()
        public, _secret = zmq.auth.load_certificate(public_certificate)
        shutil.copy(public_certificate, self.authorized_dir / f"{name}.key")
        if public is None:
            raise ConfigError(f"{public_certificate} holds no public key")

    def revoke(self, name: str) -> None:
        self._require()
        source = self.authorized_dir / f"{name}.key"
        if not source.exists():
            raise ConfigError(f"no authorized key named {name!r}; `meshdcm keys list` shows them")
        self.revoked_dir.mkdir(exist_ok=True)
        shutil.move(source, self.revoked_dir / f"{name}.key")

    def list(self) -> list[dict]:
        self._require()
        out = []
        for status, folder in (("authorized", self.authorized_dir), ("revoked", self.revoked_dir)):
            for cert in sorted(folder.glob("*.key")):
                public, _ = zmq.auth.load_certificate(cert)
                out.append({"name": cert.stem, "status": status, "public_key": (public or b"").decode(),
                            "secret_here": (self.secret_dir / f"{cert.stem}.key_secret").exists()})
        return out

    # --- use -------------------------------------------------------------------------------------------
    def authorized_keys(self) -> set[bytes]:
        return self.read_authorized()[0]

    def read_authorized(self) -> tuple[set[bytes], list[str]]:
        """The public keys (Z85) of ``authorized/``, and a line per file that was skipped and why.

        The one reader of the folder, for ZAP and for adverts alike: ``*.key`` files not starting with a dot (as
        zmq.auth and czmq read it: an editor's hidden copy is no key); a file without a public key, unreadable, or
        not a file is skipped and named, never an error that stops a node."""
        keys: set[bytes] = set()
        problems: list[str] = []
        for cert in sorted(self.authorized_dir.glob("*.key")):
            if cert.name.startswith("."):
                continue
            try:
                public, _ = zmq.auth.load_certificate(cert)
            except ValueError:  # zmq.auth: "No public key found in PATH"
                problems.append(f"{cert}: no public key")
                continue
            except OSError as exc:
                problems.append(f"{cert}: {exc.strerror or exc}")
                continue
            if not public or len(public) != 40:
                problems.append(f"{cert}: no 40-character Z85 public key")
                continue
            keys.add(public)
        return keys, problems

    def node_keys(self, name: str | None) -> NodeKeys:
        """The key pair a node uses: ``name``, or the only secret certificate in the keyring."""
        self._require()
        if name is None:
            secrets = sorted(self.secret_dir.glob("*.key_secret"))
            if len(secrets) != 1:
                raise ConfigError(f"keyring {self.path} holds {len(secrets)} secret keys: say which one this node "
                                  "uses with --key NAME")
            name = secrets[0].name.removesuffix(".key_secret")
        secret_file = self.secret_dir / f"{name}.key_secret"
        if not secret_file.exists():
            raise ConfigError(f"keyring {self.path} has no secret key {name!r} on this machine; copy it here from "
                              "the machine where `meshdcm keys add` made it")
        public, secret = zmq.auth.load_certificate(secret_file)
        if secret is None:
            raise ConfigError(f"{secret_file} holds no secret key")
        if not (self.authorized_dir / f"{name}.key").exists():
            raise ConfigError(f"key {name!r} is not authorized in {self.path} (revoked?); peers would refuse it")
        return NodeKeys(name, public, secret, self.authorized_dir)

    def _require(self) -> None:
        if not self.authorized_dir.is_dir():
            raise ConfigError(f"{self.path} is not a meshdcm keyring; create one with `meshdcm keys init {self.path}`")

    @staticmethod
    def _check(name: str) -> None:
        if not _NAME.match(name):
            raise ConfigError(f"a key name is 1-64 letters, digits, '.', '_' or '-', got {name!r}")
