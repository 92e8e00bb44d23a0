"""Source ``blueprint``: the per-field arrays released with the MICrONS cortical-RNN study.

Layout (see ``../shared/data/README.md``)::

    <root>/DATA/info/<session>_<scan>_<field>/
        root_ids_<f>.npy  unit_ids_<f>.npy  target_ids_<f>.npy      (N,) int64
        positions_<f>.npy      (N,) pickled object array of [x, y, z] voxels (4, 4, 40 nm)
        spikes_<f>.npy         (N,) pickled object array of spike times in s (some fields only)
        connectome_<f>.csv     dense synapse counts, rows presynaptic
        corr_matrix.npy  sttc_matrix.npy  precision_matrix.npy   (N, N) the study's functional
                               matrices, in the arrays' order (some fields only) -> study_functional

Two quirks are handled here. The object arrays are decoded by a restricted reader
(:mod:`etl.sources.safe_npy`), never by unrestricted unpickling. The connectome's rows and columns
follow ``list(set(root_ids))`` as CPython iterates that set, not the order of the other arrays
(docs/method.md#connectome-order): each field is re-aligned, then self-checked — connected pairs must lie
markedly closer than all pairs, which holds for every released field once aligned (about 0.3x)
and fails in file order (about 1x).

Checks per field (a failure raises :class:`~etl.errors.FieldCheckError` naming the field):
files present, arrays of equal length, connectome shape and header, unique root ids, positions
of three finite coordinates, alignment. ``mode="strict"`` aborts on the first failing field (nothing
is stored); ``mode="lenient"`` skips it, also when one of its files is unreadable or refused by the
restricted reader, and reports it in the snapshot's report.
"""

from __future__ import annotations

import csv
from collections import Counter
from dataclasses import dataclass
from dataclasses import field as dc_field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
from tqdm.auto import tqdm

from ..errors import FieldCheckError, SourceError
from ..tables import SourceTables
from ..formats.safe_npy import load_numeric_object_array, load_plain_array

__all__ = ["Mode", "FieldArrays", "VOXEL_SIZE_NM", "read_field", "align_connectome",
           "alignment_ratio", "read_blueprint"]

#: What to do with a field that fails a check.
Mode = Literal["strict", "lenient"]

#: Voxel size of the released positions, nm (x, y, z).
VOXEL_SIZE_NM = (4.0, 4.0, 40.0)

#: A field passes the alignment check when mean connected-pair distance / mean all-pair distance
#: is below this (released fields, aligned: 0.26-0.43; in file order: 0.8-1.3).
MAX_ALIGNMENT_RATIO = 0.7

#: Fewer connections than this cannot show alignment; such a field is accepted and reported.
MIN_CONNECTIONS_FOR_CHECK = 3


@dataclass
class FieldArrays:
    """One field's arrays, in the order of ``root_ids`` (the connectome already re-aligned)."""

    name: str
    """'<session>_<scan>_<field>'."""
    session: int
    """Imaging session."""
    scan_idx: int
    """Scan within the session."""
    field: int
    """Field within the scan."""
    root_ids: np.ndarray
    """(N,) int64 EM root ids (0 = no segment)."""
    unit_ids: np.ndarray
    """(N,) int64 functional unit ids."""
    nucleus_ids: np.ndarray
    """(N,) int64 nucleus ids (the release's target_ids)."""
    positions_vox: np.ndarray
    """(N, 3) float64 soma positions, voxels."""
    connectome: np.ndarray
    """(N, N) int64 synapse counts [pre, post], in root_ids order."""
    spikes: list[np.ndarray] | None
    """N arrays of spike times in s, or None where the field has none."""
    alignment_ratio: float | None
    """Mean connected-pair / mean all-pair distance after alignment (None: too few connections)."""
    study: dict[str, np.ndarray] = dc_field(default_factory=dict)
    """The study's released functional matrices present for this field: kind -> (N, N)."""


#: Released functional matrices: file name -> study_functional column.
STUDY_MATRICES = {"corr_matrix.npy": "correlation", "sttc_matrix.npy": "sttc",
                  "precision_matrix.npy": "precision"}


def align_connectome(matrix: np.ndarray, root_ids: np.ndarray) -> np.ndarray:
    """Re-order a released connectome from ``list(set(root_ids))`` order to ``root_ids`` order.

    Parameters
    ----------
    matrix
        (N, N) counts whose rows/columns follow CPython's iteration order of ``set(root_ids)``.
    root_ids
        (N,) unique root ids in the order of the field's other arrays.

    Returns
    -------
    numpy.ndarray
        (N, N) counts with row/column i belonging to ``root_ids[i]``.
    """
    ids = [int(r) for r in root_ids]
    file_order = list(set(ids))  # the release's order: CPython set iteration (hash of int == int)
    if len(file_order) != len(ids):
        raise ValueError("root ids are not unique")
    position = {rid: i for i, rid in enumerate(file_order)}
    perm = np.array([position[r] for r in ids], dtype=np.int64)
    return matrix[np.ix_(perm, perm)]


def alignment_ratio(connectome: np.ndarray, positions_um: np.ndarray) -> float | None:
    """Mean soma distance of connected pairs over mean distance of all pairs (None if < 3 pairs)."""
    diff = positions_um[:, None, :] - positions_um[None, :, :]
    dist = np.sqrt((diff**2).sum(-1))
    connected = (connectome > 0) & ~np.eye(len(connectome), dtype=bool)
    if connected.sum() < MIN_CONNECTIONS_FOR_CHECK:
        return None
    n = len(dist)
    return float(dist[connected].mean() / (dist.sum() / (n * (n - 1))))


def _fail(name: str, check: str, message: str, path: Path | None = None) -> FieldCheckError:
    return FieldCheckError(f"field {name}: {message}", field=name, check=check,
                           path=str(path) if path else None)


def _read_csv_matrix(path: Path, name: str, n: int) -> np.ndarray:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except UnicodeDecodeError as err:
        raise _fail(name, "connectome_encoding",
                    f"{path.name} is not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} at "
                    f"offset {err.start}); expected a CSV of integer synapse counts", path) from err
    except (OSError, csv.Error) as err:
        raise _fail(name, "connectome_shape", f"cannot read {path.name}: {err}", path) from err
    if not rows:
        raise _fail(name, "connectome_shape", f"{path.name} is empty; expected {n + 1} lines", path)
    header = rows[0][1:]
    if header != [str(i) for i in range(len(header))]:
        raise _fail(name, "connectome_shape",
                    f"{path.name} header should be ',0,1,...,{n - 1}'; found {','.join(rows[0][:5])}...",
                    path)
    body = rows[1:]
    if len(header) != n or len(body) != n or any(len(r) != n + 1 for r in body):
        raise _fail(name, "connectome_shape",
                    f"{path.name} is {len(body)} x {len(header)}; expected {n} x {n} to match "
                    f"root_ids_{name}.npy ({n} units)", path)
    try:
        matrix = np.array([[int(v) for v in r[1:]] for r in body], dtype=np.int64)
    except ValueError as err:
        raise _fail(name, "connectome_values", f"{path.name} holds a non-integer count: {err}",
                    path) from err
    if (matrix < 0).any():
        i, j = np.argwhere(matrix < 0)[0]
        raise _fail(name, "connectome_values",
                    f"{path.name} has a negative synapse count {matrix[i, j]} at row {i}, column {j}",
                    path)
    return matrix


def read_field(directory: str | Path) -> FieldArrays:
    """Read and check one released field directory (``.../DATA/info/<s>_<c>_<f>``).

    Raises
    ------
    FieldCheckError
        Naming the field, the check that failed and the file.
    """
    directory = Path(directory)
    name = directory.name
    try:
        session, scan_idx, field_idx = (int(p) for p in name.split("_"))
    except ValueError as err:
        raise _fail(name, "name", f"directory name {name!r} is not <session>_<scan>_<field>",
                    directory) from err
    paths = {kind: directory / f"{kind}_{name}.npy"
             for kind in ("root_ids", "unit_ids", "target_ids", "positions")}
    paths["connectome"] = directory / f"connectome_{name}.csv"
    for path in paths.values():
        if not path.is_file():
            raise _fail(name, "files", f"missing {path.name} in {directory}", path)
    ids = {}
    for kind in ("root_ids", "unit_ids", "target_ids"):
        arr = load_plain_array(paths[kind])
        if arr.ndim != 1 or arr.dtype.kind not in "iu":
            raise _fail(name, "dtype", f"{paths[kind].name} is {arr.dtype} with shape {arr.shape}; "
                        "expected a 1-D integer array", paths[kind])
        ids[kind] = arr.astype(np.int64)
    positions = load_numeric_object_array(paths["positions"])
    spikes_path = directory / f"spikes_{name}.npy"
    spikes = load_numeric_object_array(spikes_path) if spikes_path.is_file() else None
    lengths = {f"{k}_{name}.npy": len(v) for k, v in ids.items()}
    lengths[paths["positions"].name] = len(positions)
    if spikes is not None:
        lengths[spikes_path.name] = len(spikes)
    if len(set(lengths.values())) > 1:
        raise _fail(name, "lengths", "arrays disagree in length: "
                    + ", ".join(f"{k} has {v}" for k, v in lengths.items()), directory)
    n = len(ids["root_ids"])
    if any(p.shape != (3,) for p in positions):
        bad = next(i for i, p in enumerate(positions) if p.shape != (3,))
        raise _fail(name, "positions", f"{paths['positions'].name} element {bad} has shape "
                    f"{positions[bad].shape}; expected 3 coordinates [x, y, z]", paths["positions"])
    pos = np.array(positions, dtype=np.float64).reshape(n, 3)
    if not np.isfinite(pos).all():
        raise _fail(name, "positions", f"{paths['positions'].name} holds NaN/inf coordinates",
                    paths["positions"])
    roots = ids["root_ids"]
    counts = Counter(roots.tolist())
    dup = [r for r, c in counts.items() if c > 1]
    if dup:
        raise _fail(name, "unique_root_ids", f"root_ids_{name}.npy repeats root id(s) {dup[:3]}; the "
                    "connectome cannot be aligned to units", paths["root_ids"])
    raw = _read_csv_matrix(paths["connectome"], name, n)
    matrix = align_connectome(raw, roots)
    ratio = alignment_ratio(matrix, pos * np.array(VOXEL_SIZE_NM) / 1000.0)
    if ratio is not None and ratio >= MAX_ALIGNMENT_RATIO:
        raise _fail(name, "connectome_alignment",
                    f"after re-ordering {paths['connectome'].name} to root_ids order, connected pairs "
                    f"lie {ratio:.2f}x the mean distance of all pairs; expected < {MAX_ALIGNMENT_RATIO} "
                    "(connected neurons are markedly closer). The file's order does not match "
                    "list(set(root_ids)).", paths["connectome"])
    study = {}
    for filename, kind in STUDY_MATRICES.items():
        if (directory / filename).is_file():
            released = load_plain_array(directory / filename)
            if released.shape != (n, n) or released.dtype.kind != "f":
                raise _fail(name, "study_matrices",
                            f"{filename} in field {name} is {released.dtype} with shape "
                            f"{released.shape}; expected float ({n}, {n}) to match root_ids_{name}.npy",
                            directory / filename)
            study[kind] = released.astype(np.float64)
    return FieldArrays(name=name, session=session, scan_idx=scan_idx, field=field_idx, root_ids=roots,
                       unit_ids=ids["unit_ids"], nucleus_ids=ids["target_ids"], positions_vox=pos,
                       connectome=matrix, spikes=spikes, alignment_ratio=ratio, study=study)


def _field_dirs(root: Path) -> list[Path]:
    info = root / "DATA" / "info"
    if not info.is_dir():
        info = root if any(root.glob("*/root_ids_*.npy")) else info
    if not info.is_dir():
        raise SourceError(f"{root}: no DATA/info folder; expected the study's released layout "
                          "(<root>/DATA/info/<session>_<scan>_<field>/...)", path=str(root))
    dirs = sorted(p for p in info.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise SourceError(f"{info}: holds no field folders", path=str(info))
    return dirs


def read_blueprint(path: str | Path, *, mode: Mode = "strict", fields: list[str] | None = None,
                   progress: bool = False) -> SourceTables:
    """Read the released per-field arrays into canonical tables.

    Parameters
    ----------
    path
        The release's root (holding ``DATA/info``), e.g. ``../shared/data/cortical-blueprint``.
    mode
        ``"strict"``: the first field that fails a check aborts with its error. ``"lenient"``: such
        fields are skipped and listed in the report.
    fields
        Only these fields ('6_6_2', ...); default all.
    progress
        Show a progress bar over fields.

    Returns
    -------
    SourceTables
        ``neurons``, ``functional_units``, ``connections`` and ``spikes`` (fields with spikes).
    """
    if mode not in ("strict", "lenient"):
        raise ValueError(f"mode must be 'strict' or 'lenient'; got {mode!r}")
    root = Path(path)
    dirs = _field_dirs(root)
    if fields is not None:
        if not fields or any(not str(f).strip() for f in fields):
            raise SourceError(f"{root}: fields {list(fields)!r} name no field; give field names "
                              "such as '6_6_2' (or leave fields out for every field)", path=str(root))
        known = {d.name: d for d in dirs}
        missing = [f for f in fields if f not in known]
        if missing:
            raise SourceError(f"{root}: no field(s) {missing}; available: {sorted(known)}", path=str(root))
        dirs = [known[f] for f in fields]
    loaded: list[FieldArrays] = []
    skipped: dict[str, str] = {}
    for d in tqdm(dirs, desc="blueprint fields", unit="field", disable=not progress):
        try:
            loaded.append(read_field(d))
        except SourceError as err:  # a failed check, or an unreadable / unsafe file of the field
            if mode == "strict":
                raise
            skipped[getattr(err, "field", d.name)] = str(err)
    if not loaded:
        raise SourceError(f"{root}: no field passed its checks; skipped: {skipped}", path=str(root))
    tables, report = _assemble(loaded)
    report.update({
        "fields_loaded": [f.name for f in loaded],
        "fields_skipped": skipped,
        "alignment_ratio": {f.name: f.alignment_ratio for f in loaded},
    })
    origin = f"blueprint release at {root}"
    return SourceTables(
        source="blueprint", tables=tables,
        parameters={"path": str(root.resolve()), "mode": mode, "fields": fields,
                    "voxel_size_nm": list(VOXEL_SIZE_NM),
                    "connectome_order": "list(set(root_ids)), re-aligned to root_ids order"},
        report=report,
        origins={"neurons": f"{origin} (target_ids_*.npy, root_ids_*.npy, positions_*.npy)",
                 "functional_units": f"{origin} (unit_ids_*.npy, target_ids_*.npy, root_ids_*.npy)",
                 "connections": f"{origin} (connectome_*.csv)",
                 "spikes": f"{origin} (spikes_*.npy)",
                 "study_functional": f"{origin} (corr_matrix.npy, sttc_matrix.npy, precision_matrix.npy)"})


def _unit_keys(fields: list[FieldArrays]) -> dict[str, pa.Array]:
    """session, scan_idx, field, unit_id columns of every unit of ``fields``, in order."""
    def repeat(attr: str) -> pa.Array:
        return pa.array(np.concatenate([np.full(len(f.unit_ids), getattr(f, attr)) for f in fields]),
                        pa.int64())

    return {"session": repeat("session"), "scan_idx": repeat("scan_idx"), "field": repeat("field"),
            "unit_id": pa.array(np.concatenate([f.unit_ids for f in fields]), pa.int64())}


def _assemble(loaded: list[FieldArrays]) -> tuple[dict[str, pa.Table], dict]:
    units: dict[str, list] = {"nucleus_id": [], "root_id": []}
    roots_of: dict[int, Counter] = {}
    pos_of: dict[int, np.ndarray] = {}
    moved = 0
    for f in loaded:
        units["nucleus_id"] += f.nucleus_ids.tolist()
        units["root_id"] += [r if r != 0 else None for r in f.root_ids.tolist()]
        for nid, rid, p in zip(f.nucleus_ids.tolist(), f.root_ids.tolist(), f.positions_vox):
            roots_of.setdefault(nid, Counter())[rid] += 1
            if nid in pos_of:
                moved += int(not np.allclose(pos_of[nid], p))
            else:
                pos_of[nid] = p
    nuclei = sorted(pos_of)
    pos = np.array([pos_of[n] for n in nuclei], dtype=np.float64).reshape(-1, 3)
    neuron_roots = []
    several = 0
    for nid in nuclei:
        # most units agree; a nucleus seen under several root ids keeps its most frequent non-zero one
        ranked = [r for r, _ in roots_of[nid].most_common() if r != 0]
        several += len(roots_of[nid]) > 1
        neuron_roots.append(ranked[0] if ranked else None)
    size = np.array(VOXEL_SIZE_NM)
    neurons = pa.table({
        "nucleus_id": pa.array(nuclei, pa.int64()),
        "root_id": pa.array(neuron_roots, pa.int64()),
        "x_vox": pos[:, 0], "y_vox": pos[:, 1], "z_vox": pos[:, 2],
        "x_nm": pos[:, 0] * size[0], "y_nm": pos[:, 1] * size[1], "z_nm": pos[:, 2] * size[2],
        "cell_type": pa.nulls(len(nuclei), pa.string()),
        "cell_class": pa.nulls(len(nuclei), pa.string()),
        "layer": pa.nulls(len(nuclei), pa.string()),
    })
    functional_units = pa.table({
        **_unit_keys(loaded),
        **{k: pa.array(v, pa.int64()) for k, v in units.items()},
        "score": pa.nulls(len(units["nucleus_id"]), pa.float64()),
        "residual": pa.nulls(len(units["nucleus_id"]), pa.float64()),
    })
    connections, conn_report = _connections(loaded)
    tables = {"neurons": neurons, "functional_units": functional_units, "connections": connections}
    spiking = [f for f in loaded if f.spikes is not None]
    if spiking:
        tables["spikes"] = _spikes(spiking)
    released = [f for f in loaded if f.study]
    if released:
        tables["study_functional"] = _study_functional(released)
    report = {"nuclei_with_several_root_ids": several, "nuclei_with_moved_positions": moved,
              **conn_report}
    return tables, report


def _connections(loaded: list[FieldArrays]) -> tuple[pa.Table, dict]:
    seen: dict[tuple[int, int], int] = {}
    conflicts = 0
    root_zero = 0
    for f in loaded:
        pre, post = np.nonzero(f.connectome)
        for i, j in zip(pre.tolist(), post.tolist()):
            if f.root_ids[i] == 0 or f.root_ids[j] == 0:
                root_zero += 1  # root id 0 is "no segment": its synapses are not real wiring
                continue
            key = (int(f.nucleus_ids[i]), int(f.nucleus_ids[j]))
            count = int(f.connectome[i, j])
            if key in seen and seen[key] != count:
                conflicts += 1
                count = max(count, seen[key])
            seen[key] = count
    keys = sorted(seen)
    table = pa.table({
        "pre_nucleus_id": pa.array([k[0] for k in keys], pa.int64()),
        "post_nucleus_id": pa.array([k[1] for k in keys], pa.int64()),
        "n_synapses": pa.array([seen[k] for k in keys], pa.int64()),
        "sum_size": pa.nulls(len(keys), pa.float64()),
    })
    return table, {"connections_excluded_root_id_0": root_zero,
                   "connection_count_conflicts_between_fields": conflicts}


def _spikes(spiking: list[FieldArrays]) -> pa.Table:
    trains = [np.asarray(t, dtype=np.float64) for f in spiking for t in f.spikes]
    lengths = np.array([len(t) for t in trains], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    values = np.concatenate(trains) if trains else np.empty(0)
    return pa.table({
        **_unit_keys(spiking),
        "n_spikes": pa.array(lengths, pa.int64()),
        "spike_times": pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values)),
    })


def _study_functional(fields: list[FieldArrays]) -> pa.Table:
    """Lower triangle (with the diagonal) of each field's released matrices, one row per pair."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("session", "scan_idx", "field", "unit_a", "unit_b",
                                           *STUDY_MATRICES.values())}
    for f in fields:
        rows, cols = np.tril_indices(len(f.unit_ids))
        parts["session"].append(np.full(len(rows), f.session))
        parts["scan_idx"].append(np.full(len(rows), f.scan_idx))
        parts["field"].append(np.full(len(rows), f.field))
        parts["unit_a"].append(f.unit_ids[rows])
        parts["unit_b"].append(f.unit_ids[cols])
        for kind in STUDY_MATRICES.values():
            parts[kind].append(f.study[kind][rows, cols] if kind in f.study
                               else np.full(len(rows), np.nan))
    columns = {k: np.concatenate(v) for k, v in parts.items()}
    return pa.table({k: pa.array(v, pa.float64() if k in STUDY_MATRICES.values() else pa.int64(),
                                 from_pandas=True) for k, v in columns.items()})
