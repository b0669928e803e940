"""The few exceptions of the PACS layer; their messages name the PACS, the study and what to do."""

from __future__ import annotations

__all__ = ["PacsError", "PacsUnavailable", "RetrieveIncomplete"]


class PacsError(Exception):
    """A DICOM network operation with a PACS failed.

    ``pacs`` is the PACS (its name and address are in the message), ``study_uid`` the study concerned (if any),
    ``reason`` what went wrong, ``retryable`` whether trying again later may help.
    """

    def __init__(self, pacs, reason: str, study_uid: str | None = None, operation: str = "",
                 retryable: bool = False, storage_failure: str = ""):
        self.pacs = pacs
        self.storage_failure = storage_failure  # our side could not keep what arrived (e.g. a full disk): why
        self.reason = reason
        self.study_uid = study_uid
        self.operation = operation
        self.retryable = retryable
        where = f" for study {study_uid}" if study_uid else ""
        op = f"{operation} " if operation else ""
        super().__init__(f"PACS {pacs}: {op}failed{where}: {reason}")


class PacsUnavailable(PacsError):
    """The PACS could not be reached, rejected or aborted the association, or timed out (retryable)."""

    def __init__(self, pacs, reason: str, study_uid: str | None = None, operation: str = ""):
        super().__init__(pacs, reason + "; check that the PACS is running and knows our AE title, then retry",
                         study_uid=study_uid, operation=operation, retryable=True)


class RetrieveIncomplete(PacsError):
    """A retrieve finished but fewer instances arrived than the PACS announced."""

    def __init__(self, pacs, study_uid: str, done: int, total: int, reason: str = "", storage_failure: str = ""):
        self.done, self.total = done, total
        msg = f"{done} of {total} instances arrived" + (f" ({reason})" if reason else "")
        super().__init__(pacs, msg + "; retry the retrieve", study_uid=study_uid, operation="retrieve",
                         retryable=True, storage_failure=storage_failure)
