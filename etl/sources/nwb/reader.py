"""Read scan files of the MICrONS NWB release (DANDI 000402) into ``functional_units`` and ``spikes``.

One file holds one imaging scan, written by catalystneuro's MICrONS-to-nwb converter. Per imaging
field ``<k>`` (1, 2, ...):

- ``/processing/ophys/ImageSegmentation/PlaneSegmentation<k>``: ``id`` = the pipeline's *mask ids*,
  1..n in every field; ``mask_type`` ('soma' or 'artifact'); on the fields where any unit was
  co-registered (materialization 343) also ``pt_root_id``, ``pt_supervoxel_id``,
  ``pt_x/y/z_position`` (float64, NaN where a ROI has no match) and a ragged ``cave_ids``;
- ``/processing/ophys/Fluorescence/RoiResponseSeries<k>``: ``data`` (frames x ROIs, in mask order),
  ``timestamps`` (s, the scan's frame times), ``rois`` (indices into the plane segmentation).

The scan-wide ``unit_id`` of co-registration tables is not stored; it is derived as ``(ROIs of the
earlier fields) + mask_id`` (see :mod:`etl.unit_ids`), and, when the target store already
holds co-registered units, checked per field against them (``report["coregistration"]``).

Session and scan come from ``session_id`` (``"4-scan-7"``), else the file name
(``..._ses-4-scan-7_...``). Only soma ROIs are kept. The rows are keyed by (session, scan_idx,
unit_id): they join a ``cave`` snapshot's co-registration through that key, never through root ids.
The file's root ids went through float64 (not exact above 2**53; MICrONS root ids are ~8.6e17), so
``functional_units.root_id`` is null for them and the count is reported; only an integer column
would be stored. ``nucleus_id`` is null: an ``nwb`` snapshot knows units, not cells.

Traces are read lazily, ``EventRule.block_rois`` columns of one field at a time. Events come from
the file's own deconvolved series where it has them (``Deconvolved``/``Activity`` containers; the
release has none), else from the fluorescence deconvolved by :mod:`etl.sources.nwb.events`.
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
from ...unit_ids import MIN_AGREEMENT, describe_agreement, field_agreement, implausible, unit_offsets
from .events import EventRule, ar1_decay, events_from_block

__all__ = ["NwbLayoutError", "read_nwb", "nwb_files", "scan_of", "coregistration_report"]

_SESSION_ID = re.compile(r"^\s*(\d+)-scan-(\d+)\s*$")
_FILE_NAME = re.compile(r"ses-(\d+)-scan-(\d+)")
_SERIES = re.compile(r"^RoiResponseSeries(\d+)$")
_PLANE = re.compile(r"^PlaneSegmentation(\d+)$")
DECONVOLVED = ("Deconvolved", "Activity")
UNIT_IDS = ("unit_id = (ROIs of all mask types in the scan's earlier fields, ascending) + mask_id "
            "(PlaneSegmentation<field>/id)")
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
    import h5py  # heavy imports only when reading
    from pynwb import NWBHDF5IO

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


def _by_field(path: Path, container, pattern: re.Pattern, group: str, what: str) -> dict:
    """Field number -> member of ``container`` named ``<what><field>``; anything else is refused."""
    out = {}
    for name, item in container.items():
        m = pattern.match(name)
        if not m:
            raise NwbLayoutError(f"{path}: unexpected {group}/{name} (expected {what}<field>, e.g. "
                                 f"{what}1)", path=str(path), group=f"{group}/{name}")
        out[int(m.group(1))] = item
    if not out:
        raise NwbLayoutError(f"{path}: {group} holds no {what}<field>", path=str(path), group=group)
    return out


def _deconvolved(path: Path, ophys) -> tuple[str, dict] | None:
    """The file's own deconvolved series, where it has them (the release has none; see events)."""
    for name in DECONVOLVED:
        if name in ophys.data_interfaces:
            group = f"{OPHYS}/{name}"
            return group, _by_field(path, ophys[name].roi_response_series, _SERIES, group,
                                    "RoiResponseSeries")
    return None


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
        planes = _by_field(path, ophys["ImageSegmentation"].plane_segmentations, _PLANE,
                           f"{OPHYS}/ImageSegmentation", "PlaneSegmentation")
        series = _by_field(path, ophys["Fluorescence"].roi_response_series, _SERIES,
                           f"{OPHYS}/Fluorescence", "RoiResponseSeries")
        own = _deconvolved(path, ophys)
        fields = sorted(planes)
        if sorted(series) != fields or (own and sorted(own[1]) != fields):
            found = {"PlaneSegmentation": fields, "RoiResponseSeries": sorted(series)}
            if own:
                found[own[0]] = sorted(own[1])
            raise NwbLayoutError(f"{path}: fields disagree between groups: {found}; expected the "
                                 "same fields in each", path=str(path), group=OPHYS)
        if fields != list(range(1, len(fields) + 1)):
            missing = sorted(set(range(1, max(fields) + 1)) - set(fields))
            raise NwbLayoutError(f"{path}: fields {fields} of scan {session}-{scan_idx}; expected fields "
                                 f"1..{max(fields)} (missing {missing}): unit ids count the ROIs of every "
                                 "earlier field, so they cannot be derived without them", path=str(path),
                                 group=f"{OPHYS}/ImageSegmentation")
        offsets = unit_offsets({k: len(planes[k].id) for k in fields})
        reports = []
        for k in fields:
            traces = (own[1][k], f"{own[0]}/{own[1][k].name}") if own else None
            reports.append(_read_field(path, k, series[k], f"{OPHYS}/Fluorescence/{series[k].name}",
                                       session, scan_idx, offsets[k], rule, units, spikes, bar, traces))
        intervals = sorted(nwb.intervals) if nwb.intervals else []
        source = (f"the file's deconvolved series ({own[0]}/RoiResponseSeries<field>)" if own else
                  "fluorescence (Fluorescence/RoiResponseSeries<field>), deconvolved here: "
                  + rule.describe()["deconvolution"] if rule.input == "fluorescence" else
                  "Fluorescence/RoiResponseSeries<field>, taken as deconvolved (input='deconvolved')")
        return {"file": path.name, "identifier": nwb.identifier, "session_id": nwb.session_id,
                "session": session, "scan_idx": scan_idx, "fields": reports, "intervals": intervals,
                "event_traces": source}
    finally:
        io.close()


def _mask_ids(path: Path, seg, seg_group: str, field_idx: int) -> np.ndarray:
    ids = np.asarray(seg.id.data[:], dtype=np.int64)
    want = np.arange(1, len(ids) + 1)
    if not np.array_equal(ids, want):
        bad = int(np.flatnonzero(ids != want)[0])
        raise NwbLayoutError(f"{path}: {seg_group}/id holds mask ids {ids[:5].tolist()}... ({len(ids)} "
                             f"rows); expected 1..{len(ids)} in row order (the pipeline's mask ids of field "
                             f"{field_idx}); row {bad} has {int(ids[bad])}. Unit ids are derived as "
                             "offset + mask_id, which needs that layout", path=str(path), group=seg_group)
    return ids


def _root_ids(path: Path, seg, seg_group: str, rows: np.ndarray) -> tuple[np.ndarray | None, int, int]:
    """(exact root ids per ROI or None, ROIs the file gives a root id, of those dropped as inexact).

    The release stores ``pt_root_id`` as float64 (NaN where a ROI has no match). A float64 holds
    integers exactly only up to 2**53; MICrONS root ids (~8.6e17) are not, so float64 root ids are
    never stored: the count is reported instead.
    """
    if "pt_root_id" not in seg.colnames:
        return None, 0, 0
    raw = np.asarray(seg["pt_root_id"].data[:])
    if len(raw) != len(seg.id):
        raise NwbLayoutError(f"{path}: {seg_group}/pt_root_id has {len(raw)} rows; expected {len(seg.id)}",
                             path=str(path), group=seg_group)
    raw = raw[rows]
    if raw.dtype.kind in "iu":
        roots = raw.astype(np.int64)
        return roots, int((roots > 0).sum()), 0
    if raw.dtype.kind == "f":
        given = np.isfinite(raw) & (raw > 0)
        return None, int(given.sum()), int(given.sum())
    raise NwbLayoutError(f"{path}: {seg_group}/pt_root_id has dtype {raw.dtype}; expected float64 (the "
                         "release) or an integer type", path=str(path), group=seg_group)


def _read_field(path: Path, field_idx: int, series, group: str, session: int, scan_idx: int,
                offset: int, rule: EventRule, units: dict, spikes: dict, bar,
                own: tuple | None) -> dict:
    data = series.data
    if len(data.shape) != 2:
        raise NwbLayoutError(f"{path}: {group}/data has shape {tuple(data.shape)}; expected "
                             "(frames, ROIs)", path=str(path), group=group)
    n_frames, n_cols = (int(v) for v in data.shape)
    rois = np.asarray(series.rois.data[:], dtype=np.int64)
    seg = series.rois.table
    seg_group = f"{OPHYS}/ImageSegmentation/{seg.name}"
    if seg.name != f"PlaneSegmentation{field_idx}":
        raise NwbLayoutError(f"{path}: {group}/rois points into {seg_group}; expected "
                             f"PlaneSegmentation{field_idx}", path=str(path), group=group)
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
    mask_ids = _mask_ids(path, seg, seg_group, field_idx)[rois]
    kinds = _column(seg, "mask_type")
    if kinds is None:
        raise NwbLayoutError(f"{path}: {seg_group} has no mask_type column (expected 'soma'/'artifact' "
                             f"per ROI; columns {list(seg.colnames)})", path=str(path), group=seg_group)
    kinds = np.array([str(k.decode() if isinstance(k, bytes) else k) for k in kinds[rois]])
    unknown = sorted(set(kinds) - {"soma", "artifact"})
    if unknown:
        raise NwbLayoutError(f"{path}: {seg_group}/mask_type has values {unknown}; expected 'soma' or "
                             "'artifact'", path=str(path), group=seg_group)
    soma = kinds == "soma"
    roots, given, dropped = _root_ids(path, seg, seg_group, rois)
    if own is not None:
        trace_series, trace_group = own
        if tuple(trace_series.data.shape) != (n_frames, n_cols):
            raise NwbLayoutError(f"{path}: {trace_group}/data has shape {tuple(trace_series.data.shape)}; "
                                 f"expected {(n_frames, n_cols)} like {group}/data", path=str(path),
                                 group=trace_group)
        data = trace_series.data
    times = _frame_times(series, n_frames, path, group)
    rate = 1.0 / float(np.median(np.diff(times))) if n_frames > 1 else float(series.rate or 1.0)
    n_events = 0
    for start in range(0, n_cols, rule.block_rois):
        stop = min(start + rule.block_rois, n_cols)
        keep = np.flatnonzero(soma[start:stop])
        if len(keep):
            block = np.asarray(data[:, start:stop])[:, keep]  # (frames, kept ROIs), one block only
            trains = events_from_block(block, times, rule, frame_rate_hz=rate, deconvolved=own is not None)
            for j, train in zip(keep + start, trains):
                key = (session, scan_idx, offset + int(mask_ids[j]))
                root = int(roots[j]) if roots is not None and roots[j] > 0 else None
                units[key] = (field_idx, root, path.name)
                spikes[key] = (field_idx, train)
                n_events += len(train)
        bar.update(stop - start)
    return {"field": field_idx, "frames": n_frames, "rois": n_cols, "soma": int(soma.sum()),
            "artifact": int((~soma).sum()), "unit_ids": [offset + 1, offset + n_cols] if n_cols else [],
            "with_root_id": int(0 if roots is None else (roots[soma] > 0).sum()),
            "root_ids_in_file": given, "root_ids_dropped_float64": dropped,
            "events": n_events, "frame_rate_hz": rate,
            "ar1_g": ar1_decay(rate, rule.tau_s) if rule.input == "fluorescence" and own is None else None}


def coregistration_report(units: pa.Table, store_dir: str | os.PathLike | None) -> dict:
    """Per-field agreement of ``units`` (as read) with the latest co-registration in a store.

    Parameters
    ----------
    units
        The ``functional_units`` read from NWB files (session, scan_idx, field, unit_id).
    store_dir
        A store that may already hold a snapshot with co-registered units (a ``cave`` or ``files``
        snapshot: ``functional_units`` with nucleus ids).

    Returns
    -------
    dict
        ``status`` ('compared', 'no store', 'no co-registration'), and when compared the snapshot
        id, the threshold (:data:`~etl.unit_ids.MIN_AGREEMENT`), one row per field (see
        :func:`~etl.unit_ids.field_agreement`) with its line of text, and the names of the
        implausible fields (a population join refuses those).
    """
    from ...store import Store

    store = Store(store_dir) if store_dir is not None else None
    if store is None or not store.exists():
        return {"status": "no store"}
    snaps = store.snapshots()
    derived = units.select(["session", "scan_idx", "field", "unit_id"]).to_pandas()
    scans = derived[["session", "scan_idx"]].drop_duplicates()
    cond = " OR ".join(f"(session = {int(s)} AND scan_idx = {int(c)})" for s, c in scans.itertuples(index=False))
    for rec in snaps.iloc[::-1].itertuples(index=False):  # latest first
        if rec.source not in ("cave", "files"):
            continue
        coreg = store.sql("SELECT session, scan_idx, field, unit_id FROM functional_units WHERE "
                          f"nucleus_id IS NOT NULL AND ({cond or 'FALSE'})", snapshot=rec.snapshot_id)
        if coreg.empty:
            continue
        rows = field_agreement(derived, coreg)
        for r in rows:
            r["line"] = describe_agreement(r)
        return {"status": "compared", "snapshot_id": rec.snapshot_id, "threshold": MIN_AGREEMENT,
                "fields": rows,
                "implausible": [f"{r['session']}_{r['scan_idx']}_{r['field']}" for r in implausible(rows)]}
    return {"status": "no co-registration"}


def read_nwb(paths: str | os.PathLike | Sequence[str | os.PathLike], *, rule: EventRule | None = None,
             progress: bool = False, store_dir: str | os.PathLike | None = None) -> SourceTables:
    """Read MICrONS NWB scan files into ``functional_units`` and ``spikes`` (source ``nwb``).

    Parameters
    ----------
    paths
        One or more ``.nwb`` files (or folders searched for them), each one scan.
    rule
        The event rule (default :class:`EventRule`: AR(1) deconvolution, peaks above 0.01).
    progress
        Show a progress bar over ROIs.
    store_dir
        The store the tables are meant for: where it already holds co-registered units of the same
        scans, ``report["coregistration"]`` gives the per-field agreement of the derived unit ids.

    Returns
    -------
    SourceTables
        ``functional_units`` (nucleus_id null; root_id null unless the file stores exact integers)
        and ``spikes`` (event times in s), sorted by (session, scan_idx, unit_id); the rule and the
        deconvolution used in ``parameters["events"]``, the traces used in
        ``parameters["event_traces"]``.

    Raises
    ------
    NwbLayoutError
        A file that is not NWB, lacks the ophys module, whose ROI counts disagree between traces
        and segmentation, whose mask ids are not 1..n per field or whose fields are not 1..F; the
        message names the file and the group.

    Examples
    --------
    >>> tables = read_nwb(["sub-17797_ses-4-scan-7_behavior+image+ophys.nwb"])  # doctest: +SKIP
    >>> tables.tables["spikes"].num_rows                                        # doctest: +SKIP
    """
    rule = EventRule() if rule is None else rule
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
                                     "(the same scan in an earlier file?); unit ids must be unique per scan",
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
    dropped = sum(f["root_ids_dropped_float64"] for r in reports for f in r["fields"])
    return SourceTables(
        source="nwb",
        tables={"functional_units": fu, "spikes": sp},
        parameters={"files": [str(p) for p in files], "events": rule.describe(),
                    "event_traces": sorted({r["event_traces"] for r in reports}),
                    "event_times": "timestamps (s) of the peak frames of RoiResponseSeries<field>",
                    "unit_ids": UNIT_IDS,
                    "keys": "(session, scan_idx, unit_id); file root ids (materialization 343, float64) "
                            "are not stored as exact and never used to join"},
        report={"files": reports, "units": len(keys), "events": int(sum(len(t) for t in trains)),
                "root_ids_dropped_float64": dropped,
                "coregistration": coregistration_report(fu, store_dir)},
        origins={"functional_units": f"NWB ImageSegmentation of {names}",
                 "spikes": f"NWB Fluorescence of {names}"},
    )
