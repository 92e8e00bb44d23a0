"""Read scan files of the MICrONS NWB release (DANDI 000402) into ``functional_units`` and ``spikes``.

One file holds one imaging scan. Per imaging field ``<k>``:

- ``/processing/ophys/Fluorescence/RoiResponseSeries<k>``: ``data`` (frames x ROIs), ``timestamps``
  (s), ``rois`` (indices into the plane segmentation);
- ``/processing/ophys/ImageSegmentation/PlaneSegmentation<k>``: ``id`` (the unit id within the
  scan), ``mask_type`` ('soma' or 'artifact') and, for some fields, ``pt_root_id`` (materialization
  343) and positions.

Session and scan come from ``session_id`` (``"4-scan-7"``), else the file name
(``..._ses-4-scan-7_...``). Only soma ROIs are kept. The rows are keyed by (session, scan_idx,
unit_id): they join a ``cave`` snapshot's co-registration through that key, never through the
file's root ids (which are recorded in ``functional_units.root_id`` as the file gives them, and are
stale: materialization 343). ``nucleus_id`` is null: an ``nwb`` snapshot knows units, not cells.

Traces are read lazily, ``EventRule.block_rois`` columns of one field at a time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from ...errors import SourceError
from ...tables import SourceTables
from .events import EventRule, ar1_decay, events_from_block

__all__ = ["NwbLayoutError", "read_nwb", "nwb_files", "scan_of"]

_SESSION_ID = re.compile(r"^\s*(\d+)-scan-(\d+)\s*$")
_FILE_NAME = re.compile(r"ses-(\d+)-scan-(\d+)")
_SERIES = re.compile(r"^RoiResponseSeries(\d+)$")
OPHYS = "/processing/ophys"


class NwbLayoutError(SourceError):
    """An NWB file does not have the layout of the MICrONS release; ``group`` names where."""

    def __init__(self, message: str, *, path: str, group: str | None = None) -> None:
        self.group = group
        super().__init__(message, path=path)


def nwb_files(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand ``paths`` (files, or folders searched for ``*.nwb``) into a sorted, de-duplicated list."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.rglob("*.nwb"))
            if not found:
                raise SourceError(f"{p}: folder holds no .nwb file", path=str(p))
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise SourceError(f"{p}: no such file or folder", path=str(p))
    seen, unique = set(), []
    for p in out:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def scan_of(session_id: str | None, path: Path) -> tuple[int, int]:
    """(session, scan_idx) of a file from its ``session_id`` and/or its name; they must agree."""
    from_meta = _SESSION_ID.match(session_id or "")
    from_name = _FILE_NAME.search(path.name)
    keys = [tuple(int(v) for v in m.groups()) for m in (from_meta, from_name) if m]
    if not keys:
        raise NwbLayoutError(f"{path}: cannot tell session and scan: session_id is {session_id!r} "
                             "(expected '<session>-scan-<scan_idx>') and the file name has no "
                             "'ses-<session>-scan-<scan_idx>'", path=str(path), group="/general/session_id")
    if len(set(keys)) > 1:
        raise NwbLayoutError(f"{path}: session_id {session_id!r} says session/scan {keys[0]} but the "
                             f"file name says {keys[1]}", path=str(path), group="/general/session_id")
    return keys[0]


def _open(path: Path):
    import h5py  # noqa: PLC0415 (heavy imports only when reading)
    from pynwb import NWBHDF5IO  # noqa: PLC0415

    if not h5py.is_hdf5(path):
        raise NwbLayoutError(f"{path}: not an NWB file (expected HDF5 with an nwb_version attribute; "
                             "found no HDF5 signature)", path=str(path), group="/")
    with h5py.File(path, "r") as h5:
        version = h5.attrs.get("nwb_version")
    if version is None:
        raise NwbLayoutError(f"{path}: not an NWB file (an HDF5 file without the root attribute "
                             "nwb_version)", path=str(path), group="/")
    try:
        io = NWBHDF5IO(str(path), mode="r")
        return io, io.read()
    except Exception as err:  # pynwb/hdmf raise many types for malformed files
        raise NwbLayoutError(f"{path}: pynwb cannot read it as NWB {version!r}: "
                             f"{type(err).__name__}: {err}", path=str(path), group="/") from err


def _frame_times(series, n_frames: int, path: Path, group: str) -> np.ndarray:
    if series.timestamps is not None:
        times = np.asarray(series.timestamps[:], dtype=np.float64)
    elif series.rate:
        times = (series.starting_time or 0.0) + np.arange(n_frames) / float(series.rate)
    else:
        raise NwbLayoutError(f"{path}: {group} has neither timestamps nor a rate", path=str(path),
                             group=group)
    if len(times) != n_frames:
        raise NwbLayoutError(f"{path}: {group}/timestamps has {len(times)} entries; expected "
                             f"{n_frames} (one per frame of data)", path=str(path), group=group)
    if n_frames > 1 and not np.all(np.diff(times) > 0):
        raise NwbLayoutError(f"{path}: {group}/timestamps are not strictly increasing", path=str(path),
                             group=group)
    return times


def _column(table, name: str) -> np.ndarray | None:
    return np.asarray(table[name].data[:]) if name in table.colnames else None


def _read_file(path: Path, rule: EventRule, units: dict, spikes: dict, bar) -> dict:
    io, nwb = _open(path)
    try:
        session, scan_idx = scan_of(nwb.session_id, path)
        ophys = nwb.processing.get("ophys")
        if ophys is None:
            raise NwbLayoutError(f"{path}: no ophys processing module (expected group {OPHYS} holding "
                                 f"Fluorescence and ImageSegmentation; found modules "
                                 f"{sorted(nwb.processing)})", path=str(path), group=OPHYS)
        for need in ("Fluorescence", "ImageSegmentation"):
            if need not in ophys.data_interfaces:
                raise NwbLayoutError(f"{path}: {OPHYS}/{need} is missing (found "
                                     f"{sorted(ophys.data_interfaces)})", path=str(path),
                                     group=f"{OPHYS}/{need}")
        series_by_name = ophys["Fluorescence"].roi_response_series
        if not series_by_name:
            raise NwbLayoutError(f"{path}: {OPHYS}/Fluorescence holds no RoiResponseSeries",
                                 path=str(path), group=f"{OPHYS}/Fluorescence")
        fields = []
        for name in sorted(series_by_name, key=lambda n: (len(n), n)):
            group = f"{OPHYS}/Fluorescence/{name}"
            m = _SERIES.match(name)
            if not m:
                raise NwbLayoutError(f"{path}: unexpected series {group} (expected "
                                     "RoiResponseSeries<field>)", path=str(path), group=group)
            fields.append(_read_field(path, int(m.group(1)), series_by_name[name], group, session,
                                      scan_idx, rule, units, spikes, bar))
        intervals = sorted(nwb.intervals) if nwb.intervals else []
        return {"file": path.name, "identifier": nwb.identifier, "session_id": nwb.session_id,
                "session": session, "scan_idx": scan_idx, "fields": fields, "intervals": intervals}
    finally:
        io.close()


def _read_field(path: Path, field_idx: int, series, group: str, session: int, scan_idx: int,
                rule: EventRule, units: dict, spikes: dict, bar) -> dict:
    data = series.data
    if len(data.shape) != 2:
        raise NwbLayoutError(f"{path}: {group}/data has shape {tuple(data.shape)}; expected "
                             "(frames, ROIs)", path=str(path), group=group)
    n_frames, n_cols = (int(v) for v in data.shape)
    rois = np.asarray(series.rois.data[:], dtype=np.int64)
    seg = series.rois.table
    seg_group = f"{OPHYS}/ImageSegmentation/{seg.name}"
    n_seg = len(seg.id)
    if n_cols != len(rois):
        raise NwbLayoutError(f"{path}: ROI counts disagree in field {field_idx}: {group}/data has "
                             f"{n_cols} ROI columns but {group}/rois has {len(rois)} entries",
                             path=str(path), group=group)
    if len(rois) != n_seg or (len(rois) and (rois.min() < 0 or rois.max() >= n_seg)):
        raise NwbLayoutError(f"{path}: ROI counts disagree in field {field_idx}: {group} has "
                             f"{len(rois)} ROIs (indices {int(rois.min()) if len(rois) else '-'}.."
                             f"{int(rois.max()) if len(rois) else '-'}) but {seg_group} has {n_seg} rows",
                             path=str(path), group=seg_group)
    ids = np.asarray(seg.id.data[:], dtype=np.int64)[rois]
    kinds = _column(seg, "mask_type")
    if kinds is None:
        raise NwbLayoutError(f"{path}: {seg_group} has no mask_type column (expected 'soma'/'artifact' "
                             f"per ROI; columns {list(seg.colnames)})", path=str(path), group=seg_group)
    soma = np.array([str(k.decode() if isinstance(k, bytes) else k) == "soma" for k in kinds[rois]])
    roots = _column(seg, "pt_root_id")
    roots = None if roots is None else np.asarray(roots, dtype=np.int64)[rois]
    times = _frame_times(series, n_frames, path, group)
    rate = 1.0 / float(np.median(np.diff(times))) if n_frames > 1 else float(series.rate or 1.0)
    n_events = 0
    for start in range(0, n_cols, rule.block_rois):
        stop = min(start + rule.block_rois, n_cols)
        keep = np.flatnonzero(soma[start:stop])
        if len(keep):
            block = np.asarray(data[:, start:stop])[:, keep]  # (frames, kept ROIs), one block only
            trains = events_from_block(block, times, rule, frame_rate_hz=rate)
            for j, train in zip(keep + start, trains):
                key = (session, scan_idx, int(ids[j]))
                root = int(roots[j]) if roots is not None and roots[j] > 0 else None
                units[key] = (field_idx, root, path.name)
                spikes[key] = (field_idx, train)
                n_events += len(train)
        bar.update(stop - start)
    return {"field": field_idx, "frames": n_frames, "rois": n_cols, "soma": int(soma.sum()),
            "with_root_id": int(0 if roots is None else (roots[soma] > 0).sum()),
            "events": n_events, "frame_rate_hz": rate,
            "ar1_g": ar1_decay(rate, rule.tau_s) if rule.input == "fluorescence" else None}


def read_nwb(paths: str | os.PathLike | Sequence[str | os.PathLike], *, rule: EventRule | None = None,
             progress: bool = False) -> SourceTables:
    """Read MICrONS NWB scan files into ``functional_units`` and ``spikes`` (source ``nwb``).

    Parameters
    ----------
    paths
        One or more ``.nwb`` files (or folders searched for them), each one scan.
    rule
        The event rule (default :class:`EventRule`: AR(1) deconvolution, peaks above 0.01).
    progress
        Show a progress bar over ROIs.

    Returns
    -------
    SourceTables
        ``functional_units`` (nucleus_id null; root_id as the file gives it) and ``spikes`` (event
        times in s), sorted by (session, scan_idx, unit_id); the rule in ``parameters["events"]``.

    Raises
    ------
    NwbLayoutError
        A file that is not NWB, lacks the ophys module, or whose ROI counts disagree between traces
        and segmentation; the message names the file and the group.

    Examples
    --------
    >>> tables = read_nwb(["sub-17797_ses-4-scan-7_behavior+image+ophys.nwb"])  # doctest: +SKIP
    >>> tables.tables["spikes"].num_rows                                        # doctest: +SKIP
    """
    rule = rule or EventRule()
    files = nwb_files([paths] if isinstance(paths, (str, os.PathLike)) else paths)
    if not files:
        raise SourceError("source 'nwb' needs at least one .nwb file")
    units: dict = {}
    spikes: dict = {}
    reports = []
    with tqdm(desc="nwb ROIs", unit="roi", disable=not progress) as bar:
        for path in files:
            before = len(units)
            report = _read_file(path, rule, units, spikes, bar)
            found = sum(f["soma"] for f in report["fields"])
            if len(units) - before != found:
                raise NwbLayoutError(f"{path}: {found - (len(units) - before)} soma unit id(s) of scan "
                                     f"{report['session']}-{report['scan_idx']} repeat ids already read "
                                     "(from this or an earlier file); unit ids must be unique per scan",
                                     path=str(path), group=f"{OPHYS}/ImageSegmentation")
            reports.append(report)
    keys = sorted(units)
    fu = pa.table({
        "session": pa.array([k[0] for k in keys], pa.int64()),
        "scan_idx": pa.array([k[1] for k in keys], pa.int64()),
        "field": pa.array([units[k][0] for k in keys], pa.int64()),
        "unit_id": pa.array([k[2] for k in keys], pa.int64()),
        "nucleus_id": pa.array([None] * len(keys), pa.int64()),
        "root_id": pa.array([units[k][1] for k in keys], pa.int64()),
        "score": pa.array([None] * len(keys), pa.float64()),
        "residual": pa.array([None] * len(keys), pa.float64()),
    })
    trains = [spikes[k][1] for k in keys]
    counts = np.array([len(t) for t in trains], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    flat = np.concatenate(trains) if trains else np.zeros(0)
    sp = pa.table({
        "session": fu.column("session"), "scan_idx": fu.column("scan_idx"), "field": fu.column("field"),
        "unit_id": fu.column("unit_id"),
        "n_spikes": pa.array(counts, pa.int64()),
        "spike_times": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, pa.float64())),
    })
    names = ", ".join(p.name for p in files)
    return SourceTables(
        source="nwb",
        tables={"functional_units": fu, "spikes": sp},
        parameters={"files": [str(p) for p in files], "events": rule.describe(),
                    "event_times": "timestamps (s) of the peak frames of RoiResponseSeries<field>",
                    "keys": "(session, scan_idx, unit_id); file root ids (materialization 343) "
                            "are stored but never used to join"},
        report={"files": reports, "units": len(keys), "events": int(sum(len(t) for t in trains))},
        origins={"functional_units": f"NWB ImageSegmentation of {names}",
                 "spikes": f"NWB Fluorescence of {names}"},
    )
