"""convert: every stored MR/CT series as NIfTI with a BIDS-style JSON sidecar (dcm2niix-grade geometry).

On ``stored.series`` matching :data:`meshdcm.imaging.DEFAULT_FILTER` (``Modality in ["MR", "CT"] and not ImageType
contains "DERIVED"``), fetches the series, converts it (``meshdcm.imaging.series_to_nifti``) and publishes
``stored.series.nii`` with ``meshdcm://`` URIs of the NIfTI files and sidecars, ``derived_from`` and the sidecar
in ``meta``. Series written by a meshdcm node (provenance, not only ImageType) are never converted.

Options (``[nodes.convert]``): ``where`` (a filter replacing the default), ``work`` (folder), ``compress`` (true),
``keep_days`` (7: outputs are removed from ``work/out`` this many days after they were written).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from meshdcm import (
    FolderRetention, HandlerError, Message, Node, NodeConfig, TransferError, data_dir, days_option, node_options,
    path_part, topics,
)
from meshdcm.imaging import DEFAULT_FILTER, ImagingError, is_own_output, series_to_nifti
from meshdcm.retention import OUTPUT_DAYS


@dataclass(frozen=True)
class ConvertOptions:
    """``[nodes.convert]`` (the module docstring says what each does)."""

    where: str = DEFAULT_FILTER
    work: str = ""
    compress: bool = True
    keep_days: float = OUTPUT_DAYS


def create(config: NodeConfig) -> Node:
    opts = node_options("convert", ConvertOptions, config.options)
    keep_for = days_option({"keep_days": opts.keep_days})
    work = Path(opts.work or data_dir(config.name))
    node = Node(config=config)
    (work / "out").mkdir(parents=True, exist_ok=True)
    node.serve("out", work / "out")
    node.task(FolderRetention(work / "out", max_age=keep_for).sweeper())  # outputs others fetched by now

    @node.on(topics.STORED_SERIES, where=opts.where)
    def convert(msg: Message) -> None:
        if msg.meta.get("derived_from") or is_own_output(msg.dataset):
            return
        series_uid = path_part(msg.get("SeriesInstanceUID"), "SeriesInstanceUID")
        inbox = work / "in" / series_uid
        try:
            source = node.fetch_folder(msg.uris, inbox)
            out = work / "out" / series_uid
            result = series_to_nifti(source, out, compress=opts.compress)
        except TransferError as exc:
            raise HandlerError(f"series {series_uid} could not be fetched: {exc}", retry=True,  # a busy or restarting peer
                               action="check that the node holding it is running; publish stored.series again") from exc
        except ImagingError as exc:
            raise HandlerError(f"series {series_uid} could not be converted: {exc}",
                               action="meshdcm convert to-nifti on the series shows the problem") from exc
        finally:
            shutil.rmtree(inbox, ignore_errors=True)
        uris = [node.uri_for(p) for p in result.paths + result.sidecar_paths]
        node.publish(topics.STORED_SERIES_NII, msg.body, index=msg.index, reply_to=msg, uris=uris,
                     meta={"derived_from": series_uid, "sidecar": result.sidecar, "warnings": result.warnings,
                           "files": [p.name for p in result.paths]})

    return node
