"""The PACS a node talks to, as one immutable value (several can be configured side by side)."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Pacs", "RETRIEVE_METHODS"]

RETRIEVE_METHODS = ("move", "get", "wado")


@dataclass(frozen=True)
class Pacs:
    """Where a PACS is and how to talk to it.

    ``ae_title``/``host``/``port`` address its DIMSE services (C-ECHO, C-FIND, C-MOVE, C-GET, C-STORE);
    ``dicomweb_url`` (e.g. ``http://10.0.0.5:8042/dicom-web``) its QIDO/WADO/STOW-RS services.
    ``retrieve`` is the default retrieve method (``move``, ``get`` or ``wado``) and ``store_method`` the
    default upload method (``c-store`` or ``stow``). ``calling_ae`` is our own AE title; C-MOVE sends to
    ``move_destination`` (our storage SCP's AE title, which the PACS must know as a modality).
    """

    name: str
    ae_title: str = "ORTHANC"
    host: str = "127.0.0.1"
    port: int = 4242
    dicomweb_url: str | None = None
    retrieve: str = "move"
    store_method: str = "c-store"
    calling_ae: str = "MESHDCM"
    move_destination: str | None = None
    timeout: float = 30.0
    retries: int = 3
    max_pdu: int = 1 << 20
    http_headers: dict = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self):
        if self.retrieve not in RETRIEVE_METHODS:
            raise ValueError(f"PACS {self.name!r}: retrieve must be one of {RETRIEVE_METHODS}, not {self.retrieve!r}")
        if self.store_method not in ("c-store", "stow"):
            raise ValueError(f"PACS {self.name!r}: store_method must be 'c-store' or 'stow', not {self.store_method!r}")
        if self.retrieve == "wado" and not self.dicomweb_url:
            raise ValueError(f"PACS {self.name!r}: retrieve='wado' needs dicomweb_url")
        for title in (self.ae_title, self.calling_ae):
            if not 0 < len(title) <= 16:
                raise ValueError(f"PACS {self.name!r}: AE title {title!r} must be 1-16 characters")

    @classmethod
    def from_dict(cls, name: str, d: dict) -> Pacs:
        """Build from a config mapping (keys as the field names; unknown keys are an error)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"PACS {name!r}: unknown settings {sorted(unknown)}; known are {sorted(known - {'name'})}")
        return cls(name=name, **d)

    def __str__(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port})"
