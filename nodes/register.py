"""register: every series of a head study registered onto its reference series, and multiplanar reformats.

On ``stored.series`` matching :data:`meshdcm.imaging.provenance.REGISTRATION_FILTER` (MR and CT, not derived
series except a scanner's ADC map):
- a thin 3D series (slice thickness <= ``reformat_below_mm``, default 1.5 mm; the 3D T1 or the thinnest CT) becomes
  the study's reference, and its coronal and sagittal reformats (``reformat_mm`` thick, default 3 mm) are published;
- every other series of the study is registered onto the reference (rigid mutual information; SimpleITK on CPU,
  CuPy on a GPU node) and published resampled, SeriesDescription suffixed " [reg]", with meta ``reference`` (the
  reference series), ``transform`` (4x4, row by row: reference LPS -> the series' LPS) and ``seconds``; a diffusion
  series as one series per b-value, a dynamic one (DSC) as its first frame (meshdcm.imaging.register.output_volumes).
  Series that arrive before their study's reference wait for it, and ``waiting.series`` says so (meta ``reason``:
  no series is a 3D volume with slices <= ``reformat_below_mm``).
The choice of reference and the series waiting for one are kept under ``work`` (``references.json`` and
``waiting/<study>/<series>.msg|.folder``), so a restarted node goes on where it stopped.
Outputs are derived ``stored.series`` with ``derived_from``; UIDs derive from the inputs, so redelivery makes no
second series, and a redelivered reference series stays its study's reference (it is never registered onto itself);
series written by a meshdcm node are never inputs.

Options (``[nodes.register]``): ``where``, ``work``, ``transform`` (rigid|affine), ``reformat_mm``,
``reformat_below_mm``, ``keep_days`` (7): fetched inputs and outputs are removed from ``work`` this many days after
they were last used (a study's reference counts as used each time a series is registered onto it); a study whose
reference is gone takes the next thin series as its new one, and series waiting for a reference are kept.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset

from meshdcm import (
    FolderRetention, HandlerError, Message, Node, NodeConfig, TransferError, data_dir, days_option, node_options,
    path_part, topics,
)
from meshdcm.imaging import ImagingError, is_own_output, reformat_series, register_series
from meshdcm.imaging.provenance import REGISTRATION_FILTER
from meshdcm.retention import OUTPUT_DAYS

log = logging.getLogger("meshdcm.register.node")


@dataclass(frozen=True)
class RegisterOptions:
    """``[nodes.register]`` (the module docstring says what each does)."""

    where: str = REGISTRATION_FILTER
    work: str = ""
    transform: str = "rigid"
    reformat_mm: float = 3.0
    reformat_below_mm: float = 1.5
    keep_days: float = OUTPUT_DAYS


def create(config: NodeConfig) -> Node:
    return Coregistration(config).node


class Coregistration:
    """One register node: each study's reference series and the series waiting for one (kept under ``work``), the
    retention of its work folders, and the handler that reformats and registers what arrives."""

    def __init__(self, config: NodeConfig):
        opts = node_options("register", RegisterOptions, config.options)
        keep_for = days_option({"keep_days": opts.keep_days})
        self.work = Path(opts.work or data_dir(config.name))
        (self.work / "out").mkdir(parents=True, exist_ok=True)
        (self.work / "in").mkdir(parents=True, exist_ok=True)
        self.thin, self.slab, self.transform = opts.reformat_below_mm, opts.reformat_mm, opts.transform
        self.node = Node(config=config)
        self.node.serve("out", self.work / "out")
        self.references = _References(self.work)
        self.lock = threading.Lock()  # the references and the waiting series
        self.inputs = FolderRetention(self.work / "in", max_age=keep_for)
        self.node.task(self.inputs.sweeper(keep=self.references.waiting_folder_names, removed=self.forget_references))
        self.node.task(FolderRetention(self.work / "out", max_age=keep_for).sweeper())
        self.node.on(topics.STORED_SERIES, where=opts.where)(self.arrived)

    def arrived(self, msg: Message) -> None:
        if msg.meta.get("derived_from") or is_own_output(msg.dataset):
            return
        study_uid = path_part(msg.get("StudyInstanceUID"), "StudyInstanceUID")
        series_uid = path_part(msg.get("SeriesInstanceUID"), "SeriesInstanceUID")
        try:
            folder = self.node.fetch_folder(msg.uris, self.work / "in" / series_uid)
        except TransferError as exc:
            raise HandlerError(f"series {series_uid} could not be fetched: {exc}", retry=True,  # a busy or restarting peer
                               action="check that the node holding it is running; publish stored.series again") from exc
        if float(msg.get("SliceThickness") or 99) <= self.thin:
            self.reformat(msg, series_uid, folder)
            self.reference_arrived(msg, study_uid, folder)
        else:
            self.register_or_wait(msg, study_uid, series_uid, folder)

    def reformat(self, msg: Message, series_uid: str, folder: Path) -> None:
        """The coronal and sagittal reformats of a thin series, published."""
        for plane in ("coronal", "sagittal"):
            out = self.work / "out" / f"{series_uid}-{plane}"
            try:
                reformat_series(folder, out, plane=plane, thickness_mm=self.slab, node_name=self.node.name)
            except ImagingError as exc:
                raise HandlerError(f"series {series_uid}: {plane} reformat failed: {exc}",
                                   action="check the series geometry (meshdcm convert to-nifti)") from exc
            self.publish_folder(out, msg, f"{plane} reformat {self.slab:g} mm")

    def reference_arrived(self, msg: Message, study_uid: str, folder: Path) -> None:
        """A thin series: its study's reference (then the series waiting for one are registered onto it), or, when
        the study has one already, registered onto that."""
        with self.lock:
            reference = self.references.get(study_uid)
            if reference is not None and reference == folder.resolve():
                reference = None  # this series is its study's reference already: a redelivery, not a second one
            if reference is None:
                self.references.set(study_uid, folder)
            waiting = self.references.take_waiting(study_uid) if reference is None else []
        for other, other_folder in waiting:
            self.register_onto(folder, other, other_folder)
            self.references.done_waiting(study_uid, other)
        if reference is not None:
            self.inputs.used(self.references.input_name(reference))
            self.register_onto(reference, msg, folder)

    def register_or_wait(self, msg: Message, study_uid: str, series_uid: str, folder: Path) -> None:
        """Any other series: registered onto its study's reference, or kept waiting for one."""
        with self.lock:
            reference = self.references.get(study_uid)
            if reference is None:
                self.references.wait(study_uid, msg, folder)
                log.info("series %s waits for a reference series of its study", series_uid)
                self.say_waiting(msg)
                return
            self.inputs.used(self.references.input_name(reference))
        self.register_onto(reference, msg, folder)

    def register_onto(self, reference: Path, msg: Message, folder: Path) -> None:
        out = self.work / "out" / f"{path_part(msg.get('SeriesInstanceUID'))}-reg"
        try:
            result = register_series(reference, folder, out, transform=self.transform, node_name=self.node.name)
        except ImagingError as exc:
            raise HandlerError(f"series {msg.get('SeriesInstanceUID')} could not be registered: {exc}",
                               action="meshdcm register FIXED MOVING OUT shows the problem") from exc
        what = f"registered onto {result.fixed_series_uid} ({result.backend}, {result.seconds:.1f} s)"
        for output in result.outputs:  # one per b-value of a diffusion series, else one
            self.publish_folder(output.folder, msg, f"{what}, {output.label}" if output.label else what,
                                reference=result.fixed_series_uid,
                                transform=[round(v, 6) for v in result.matrix.ravel().tolist()],
                                seconds=round(result.seconds, 2))

    def say_waiting(self, msg: Message) -> None:
        """``waiting.series``: why this series is not registered yet (pages show it on the study)."""
        body = Dataset()
        body.StudyInstanceUID, body.SeriesInstanceUID = msg.get("StudyInstanceUID"), msg.get("SeriesInstanceUID")
        self.node.publish(topics.WAITING_SERIES, body, reply_to=msg, meta={
            "waiting_for": "reference", "reason": "waiting for a reference series: none of the series is a 3D "
                                                  f"volume with <= {self.thin:g} mm slices"})

    def publish_folder(self, folder: Path, source: Message, what: str, **extra) -> None:
        """``stored.series`` of a derived series in ``folder``; ``extra`` meta of a registered one: ``reference``
        (the reference series), ``transform`` (the 4x4 matrix, row by row, mapping reference LPS points to the
        source series' LPS points) and ``seconds`` (the registration's)."""
        files = sorted(folder.glob("*.dcm")) or sorted(p for p in folder.rglob("*") if p.is_file())
        header = dcmread(files[0], stop_before_pixels=True)
        self.node.publish(topics.STORED_SERIES, header, reply_to=source,
                          uris=[self.node.uri_for(folder), folder.resolve().as_uri()],
                          meta={"derived_from": source.get("SeriesInstanceUID"), "derivation": what,
                                "instances": len(files), **extra})

    def forget_references(self, gone: list[str]) -> None:
        """The retention removed these ``work/in`` entries: the references into them are forgotten."""
        with self.lock:
            self.references.forget_inputs(set(gone))


class _References:
    """Each study's reference series folder and the series waiting for one, on disk under ``work``."""

    def __init__(self, work: Path):
        self.work = work
        self.path = work / "references.json"
        self.waiting_dir = work / "waiting"
        self.studies: dict[str, str] = json.loads(self.path.read_text()) if self.path.exists() else {}

    def get(self, study_uid: str) -> Path | None:
        folder = self.studies.get(study_uid)
        return None if folder is None else Path(folder)

    def set(self, study_uid: str, folder: Path) -> None:
        self.studies[study_uid] = str(folder.resolve())
        _write_atomically(self.path, json.dumps(self.studies).encode())

    def input_name(self, folder: Path) -> str:
        """The entry of ``work/in`` that holds ``folder`` ("" for a folder elsewhere, used in place)."""
        try:
            return Path(folder).resolve().relative_to((self.work / "in").resolve()).parts[0]
        except (ValueError, IndexError):
            return ""

    def forget_inputs(self, names: set[str]) -> None:
        """The studies whose reference was in one of the ``work/in`` entries ``names`` (removed) have none any more."""
        kept = {study: folder for study, folder in self.studies.items() if self.input_name(folder) not in names}
        if len(kept) != len(self.studies):
            self.studies = kept
            _write_atomically(self.path, json.dumps(self.studies).encode())

    def waiting_folder_names(self) -> set[str]:
        """The input folders of the series waiting for a reference: they must stay."""
        names = set()
        for f in self.waiting_dir.glob("*/*.folder"):
            try:
                names.add(self.input_name(Path(f.read_text())))
            except FileNotFoundError:  # its series was registered meanwhile
                continue
        return names

    def wait(self, study_uid: str, msg: Message, folder: Path) -> None:
        msg_file, folder_file = self._files(study_uid, msg)
        msg_file.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(folder_file, str(folder.resolve()).encode())
        _write_atomically(msg_file, msg.to_bytes())  # last: a .msg always has its .folder

    def take_waiting(self, study_uid: str) -> list[tuple[Message, Path]]:
        """The study's waiting series (message, fetched folder); each stays on disk until :meth:`done_waiting`."""
        out = []
        for msg_file in sorted((self.waiting_dir / study_uid).glob("*.msg")):
            msg = Message.from_bytes(msg_file.read_bytes())
            out.append((msg, Path(self._files(study_uid, msg)[1].read_text())))
        return out

    def done_waiting(self, study_uid: str, msg: Message) -> None:
        for path in self._files(study_uid, msg):
            path.unlink(missing_ok=True)

    def _files(self, study_uid: str, msg: Message) -> tuple[Path, Path]:
        base = self.waiting_dir / study_uid / path_part(msg.get("SeriesInstanceUID"))
        return base.with_name(base.name + ".msg"), base.with_name(base.name + ".folder")


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
