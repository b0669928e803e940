"""DICOM networking for meshdcm: query/retrieve/store against PACS, a storage SCP and an embedded PACS.

A node wraps these in a few lines::

    pacs = Pacs("main", ae_title="ORTHANC", host="10.0.0.5", port=4242, dicomweb_url="http://10.0.0.5:8042/dicom-web")
    echo(pacs)
    for study in find(pacs, "STUDY", identifier): ...
    with StorageSCP("/data/incoming", ae_title="MESHDCM", port=11112) as scp:
        result = retrieve(pacs, study_uid, method="move", scp=scp, on_progress=bar)
    store(pacs, paths)
"""

from .config import RETRIEVE_METHODS, Pacs
from .errors import PacsError, PacsUnavailable, RetrieveIncomplete
from .retry import with_retry
from .scu import LEVELS, RetrieveResult, StoreResult, count_instances, echo, find, retrieve, store
from .fetch import fetch
from .instances import StoreFailure, UndecodableInstance
from .storage import Expectation, StorageSCP, StoredInstance

__all__ = [
    "Pacs",
    "RETRIEVE_METHODS",
    "LEVELS",
    "PacsError",
    "PacsUnavailable",
    "RetrieveIncomplete",
    "with_retry",
    "echo",
    "find",
    "count_instances",
    "retrieve",
    "store",
    "RetrieveResult",
    "StoreResult",
    "StorageSCP",
    "StoredInstance",
    "StoreFailure",
    "UndecodableInstance",
    "Expectation",
    "fetch",
]
