"""Populations of neurons a prior is derived for, resolved against one store snapshot.

A population is one or more imaging fields, every co-registered neuron of a snapshot (pooled), or
any read-only SQL selection returning ``nucleus_id``. Its neuron order is explicit: fields are
ordered by (session, scan_idx, field, unit_id); pooled and SQL populations by nucleus_id. A
neuron imaged in several of the selected fields appears once, with its first unit in that order.

Activity may come from another snapshot: a ``cave`` snapshot holds cells, wiring and the
co-registration of units to cells, an ``nwb`` snapshot the units' spike trains. With
``activity_snapshot`` (an id, or ``"auto"``) the population's spike trains are read from that
snapshot, joined strictly on (session, scan_idx, unit_id) of the population's co-registered units
(never on root ids, which change between materializations). The join is verified first: per field
of the scan, the share of the activity snapshot's unit ids that the population snapshot's
co-registration places in that same field must reach
:data:`etl.unit_ids.MIN_AGREEMENT` (the ``nwb`` source derives unit ids from mask ids by
the pipeline's convention; a wrong derivation moves units between fields), else
:class:`UnitMappingError` gives the numbers; then the field of every joined unit must agree. The
shares are recorded with the activity snapshot's identity. ``"auto"`` keeps the population's own snapshot when it has every train, else takes the
latest other snapshot that has them all (never a synthetic one for measured data, or vice versa).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from connectome_priors.etl.unit_ids import MIN_AGREEMENT, describe_agreement, field_agreement, implausible
from connectome_priors.etl.store import Store

from .errors import PopulationError

__all__ = ["PopulationKind", "Population", "ResolvedPopulation", "UnitMappingError", "resolve"]

PopulationKind = Literal["fields", "pooled", "sql"]
_FIELD = re.compile(r"^(\d+)_(\d+)_(\d+)$")
_NEURON_COLUMNS = ["nucleus_id", "root_id", "session", "scan_idx", "field", "unit_id",
                   "x_nm", "y_nm", "z_nm", "x_vox", "y_vox", "z_vox", "cell_type", "cell_class",
                   "layer"]


class UnitMappingError(PopulationError):
    """Two snapshots' unit ids of a scan do not describe the same units: the join is refused.

    ``fields`` holds the per-field agreement (see :func:`etl.unit_ids.field_agreement`),
    ``threshold`` the share each field needed.
    """

    def __init__(self, message: str, *, snapshot: str, activity_snapshot: str, fields: list[dict],
                 threshold: float) -> None:
        self.snapshot, self.activity_snapshot = snapshot, activity_snapshot
        self.fields, self.threshold = fields, threshold
        super().__init__(message)


@dataclass(frozen=True)
class Population:
    """Which neurons a prior covers."""

    kind: PopulationKind
    """'fields', 'pooled' or 'sql'."""
    fields: tuple[str, ...] = ()
    """For kind 'fields': '<session>_<scan>_<field>' names, e.g. ('6_6_2',)."""
    sql: str | None = None
    """For kind 'sql': a SELECT returning a nucleus_id column (read-only, over the store)."""
    snapshot: str | None = None
    """Snapshot id to read; None means the store's latest."""
    activity_snapshot: str | None = None
    """Where spike trains come from: None (the population's snapshot only), a snapshot id, or
    'auto' (see the module docstring)."""

    @classmethod
    def of_fields(cls, *names: str, snapshot: str | None = None,
                  activity_snapshot: str | None = None) -> Population:
        """A population of one or more fields."""
        bad = [n for n in names if not _FIELD.match(n)]
        if not names or bad:
            raise PopulationError(f"fields must look like '6_6_2' (session_scan_field); got {list(names)}")
        return cls("fields", fields=tuple(names), snapshot=snapshot, activity_snapshot=activity_snapshot)

    @classmethod
    def pooled(cls, *, snapshot: str | None = None, activity_snapshot: str | None = None) -> Population:
        """Every co-registered neuron of the snapshot."""
        return cls("pooled", snapshot=snapshot, activity_snapshot=activity_snapshot)

    @classmethod
    def of_sql(cls, query: str, *, snapshot: str | None = None,
               activity_snapshot: str | None = None) -> Population:
        """The neurons whose nucleus_id a read-only query returns."""
        return cls("sql", sql=query, snapshot=snapshot, activity_snapshot=activity_snapshot)

    def describe(self) -> dict:
        """JSON-ready description (recorded in the manifest)."""
        out = {"kind": self.kind, "fields": list(self.fields), "sql": self.sql}
        if self.activity_snapshot is not None:  # absent otherwise: older versions stay the same
            out["activity_snapshot"] = self.activity_snapshot
        return out


@dataclass
class ResolvedPopulation:
    """A population's neurons and the store data a derivation needs, in the population's order."""

    population: Population
    """What was asked for."""
    snapshot: dict
    """The snapshot's row from the store's snapshots table."""
    neurons: pd.DataFrame
    """One row per neuron, in order: nucleus_id, root_id, session, scan_idx, field, unit_id, position."""
    connections: pd.DataFrame
    """Connections among them: pre_index, post_index (row positions in ``neurons``), n_synapses, sum_size."""
    spikes: list[np.ndarray] | None = field(default=None)
    """Spike times (s) per neuron, or None unless every neuron's unit has a spike train."""
    study: dict[str, np.ndarray] | None = field(default=None)
    """Released functional matrices (kind -> (N, N), symmetric) for a one-field population whose
    source released them (the store's study_functional table); None otherwise."""
    activity: dict | None = field(default=None)
    """The snapshot the spike trains came from (snapshot_id, source, content_hash) when it is not
    the population's own; None otherwise."""

    @property
    def positions_um(self) -> np.ndarray:
        """(N, 3) soma positions in um."""
        return self.neurons[["x_nm", "y_nm", "z_nm"]].to_numpy(dtype=np.float64) / 1000.0


def _in_list(values: list[int]) -> str:
    return "(" + ", ".join(str(int(v)) for v in values) + ")" if values else "(NULL)"


def resolve(population: Population, store: Store) -> ResolvedPopulation:
    """Read the population's neurons, wiring and (where complete) spike trains from ``store``.

    Raises
    ------
    PopulationError
        Unknown field, empty selection, or a SQL selection without a nucleus_id column.
    """
    snaps = store.snapshots()
    if snaps.empty:
        raise PopulationError(f"the store at {store.directory} holds no snapshot; run `cxp etl` first")
    sid = population.snapshot or str(snaps.snapshot_id.iloc[-1])
    match = snaps[snaps.snapshot_id == sid]
    if match.empty:
        raise PopulationError(f"no snapshot {sid!r} in {store.directory}; known: {snaps.snapshot_id.tolist()}")
    snapshot = match.iloc[0].to_dict()
    store.verify(sid)  # every file against its recorded sha256: nothing is derived from damaged input
    units_sql = ("SELECT u.session, u.scan_idx, u.field, u.unit_id, u.nucleus_id FROM functional_units u")
    if population.kind == "fields":
        keys = [tuple(int(p) for p in _FIELD.match(f).groups()) for f in population.fields]
        present = store.sql("SELECT DISTINCT session, scan_idx, field FROM functional_units", snapshot=sid)
        have = set(map(tuple, present.to_numpy().tolist()))
        missing = [f for f, k in zip(population.fields, keys) if k not in have]
        if missing:
            raise PopulationError(f"snapshot {sid} has no field(s) {missing}; it has "
                                  f"{len(have)} fields, e.g. {sorted('_'.join(map(str, k)) for k in have)[:5]}")
        cond = " OR ".join(f"(session = {s} AND scan_idx = {c} AND field = {f})" for s, c, f in keys)
        units = store.sql(f"{units_sql} WHERE {cond} ORDER BY session, scan_idx, field, unit_id",
                          snapshot=sid)
        units = units.dropna(subset=["nucleus_id"]).drop_duplicates("nucleus_id", keep="first")
        nuclei = units.nucleus_id.astype(np.int64).tolist()
    else:
        if population.kind == "pooled":
            nuclei = store.sql("SELECT DISTINCT nucleus_id FROM functional_units "
                               "WHERE nucleus_id IS NOT NULL ORDER BY nucleus_id",
                               snapshot=sid).nucleus_id.tolist()
        else:
            chosen = store.sql(population.sql or "", snapshot=sid)
            if "nucleus_id" not in chosen.columns:
                raise PopulationError(f"the population query must return a nucleus_id column; it "
                                      f"returned {list(chosen.columns)}")
            nuclei = sorted(set(chosen.nucleus_id.dropna().astype(np.int64).tolist()))
        units = store.sql(f"{units_sql} ORDER BY session, scan_idx, field, unit_id", snapshot=sid)
        units = units[units.nucleus_id.isin(nuclei)].drop_duplicates("nucleus_id", keep="first")
    if not nuclei:
        hint = (f"; snapshot {sid} is from source {snapshot['source']!r}, whose units are not "
                "co-registered to cells: build from a cave snapshot and take spikes from this one "
                f"with activity_snapshot={sid!r} (--activity-snapshot)") if snapshot["source"] == "nwb" else ""
        raise PopulationError(f"population {population.describe()} selects no neuron in snapshot {sid}"
                              + hint)
    cells = store.sql("SELECT nucleus_id, root_id, x_nm, y_nm, z_nm, x_vox, y_vox, z_vox, cell_type, "
                      f"cell_class, layer FROM neurons WHERE nucleus_id IN {_in_list(nuclei)}",
                      snapshot=sid)
    unknown = sorted(set(nuclei) - set(cells.nucleus_id.tolist()))
    if unknown:
        raise PopulationError(f"{len(unknown)} selected nucleus id(s) are not neurons of snapshot {sid}, "
                              f"e.g. {unknown[:5]}")
    order = pd.DataFrame({"nucleus_id": nuclei})
    neurons = order.merge(cells, on="nucleus_id", how="left").merge(units, on="nucleus_id", how="left")
    for col in ("root_id", "session", "scan_idx", "field", "unit_id"):
        neurons[col] = neurons[col].astype("Int64")
    neurons = neurons[_NEURON_COLUMNS].reset_index(drop=True)
    index = pd.Series(np.arange(len(neurons)), index=neurons.nucleus_id.to_numpy())
    members = _in_list(nuclei)  # filter in the store, not after fetching every connection
    conns = store.sql("SELECT pre_nucleus_id, post_nucleus_id, n_synapses, sum_size FROM connections "
                      f"WHERE pre_nucleus_id IN {members} AND post_nucleus_id IN {members}",
                      snapshot=sid)
    connections = pd.DataFrame({
        "pre_index": index.loc[conns.pre_nucleus_id].to_numpy(),
        "post_index": index.loc[conns.post_nucleus_id].to_numpy(),
        "n_synapses": conns.n_synapses.to_numpy(),
        "sum_size": conns.sum_size.to_numpy(),
    })
    spikes, activity = _activity(store, snaps, snapshot, population, neurons)
    return ResolvedPopulation(population=population, snapshot=snapshot, neurons=neurons,
                              connections=connections, spikes=spikes,
                              study=_study(store, sid, population, neurons), activity=activity)


def _activity(store: Store, snaps: pd.DataFrame, snapshot: dict, population: Population,
              neurons: pd.DataFrame) -> tuple[list[np.ndarray] | None, dict | None]:
    """Spike trains per neuron and, when they come from another snapshot, that snapshot's identity."""
    sid = str(snapshot["snapshot_id"])
    want = population.activity_snapshot
    own = _spikes(store, sid, neurons)
    if want is None or want == sid or (want == "auto" and own is not None):
        return own, None
    single_scan = not neurons.unit_id.isna().any() and len(neurons[["session", "scan_idx"]]
                                                           .drop_duplicates()) == 1
    if want != "auto":
        match = snaps[snaps.snapshot_id == want]
        if match.empty:
            raise PopulationError(f"no activity snapshot {want!r} in {store.directory}; known: "
                                  f"{snaps.snapshot_id.tolist()}")
        if not single_scan:  # functional kinds need one scan; nothing to join
            return None, None
        store.verify(want)
        trains = _spikes(store, want, neurons)
        if trains is None:
            raise PopulationError(_missing(store, want, neurons))
        return trains, {**_identity(match.iloc[0]), **_verify(store, sid, want, neurons)}
    if not single_scan:
        return None, None
    synthetic = snapshot["source"] == "synthetic"
    for rec in snaps.iloc[::-1].itertuples(index=False):  # latest first
        if rec.snapshot_id == sid or (rec.source == "synthetic") != synthetic \
                or json.loads(rec.row_counts).get("spikes", 0) == 0:
            continue
        store.verify(rec.snapshot_id)
        trains = _spikes(store, rec.snapshot_id, neurons)
        if trains is not None:
            return trains, {**_identity(pd.Series(rec._asdict())),
                            **_verify(store, sid, rec.snapshot_id, neurons)}
    return None, None


def _verify(store: Store, sid: str, act: str, neurons: pd.DataFrame) -> dict:
    """Check that activity snapshot ``act`` numbers the scan's units as snapshot ``sid`` does.

    Per field of the activity snapshot's scan: of its unit ids that ``sid``'s co-registration
    lists, the share placed in the same field must reach :data:`MIN_AGREEMENT`; then every unit of
    the population must lie in the same field in both. Returns the record for the manifest.

    Raises
    ------
    UnitMappingError
        A field below the threshold, or a population unit in different fields.
    """
    session, scan_idx = (int(v) for v in neurons[["session", "scan_idx"]].iloc[0])
    scan = f"session = {session} AND scan_idx = {scan_idx}"
    derived = store.sql(f"SELECT session, scan_idx, field, unit_id FROM spikes WHERE {scan}", snapshot=act)
    coreg = store.sql("SELECT session, scan_idx, field, unit_id FROM functional_units WHERE "
                      f"{scan} AND nucleus_id IS NOT NULL", snapshot=sid)
    rows = field_agreement(derived, coreg)
    record = {"unit_agreement": {
        "threshold": MIN_AGREEMENT,
        "fields": [{k: r[k] for k in ("field", "units", "coregistered", "same_field", "share")} for r in rows]}}
    bad = implausible(rows)
    if bad:
        lines = "; ".join(describe_agreement(r) for r in bad)
        raise UnitMappingError(
            f"activity snapshot {act} and snapshot {sid} do not number the units of session {session} "
            f"scan {scan_idx} alike: {lines}; expected at least {100 * MIN_AGREEMENT:.0f}% per field. The "
            "unit ids of the activity snapshot were derived from the file's mask ids (fields in "
            "ascending order, all ROIs counted); check the scan's files (every field present?) before "
            "joining", snapshot=sid, activity_snapshot=act, fields=rows, threshold=MIN_AGREEMENT)
    placed = derived.set_index("unit_id").field
    for s_, c, u, f in neurons[["session", "scan_idx", "unit_id", "field"]].itertuples(index=False):
        if int(placed.loc[int(u)]) != int(f):
            raise UnitMappingError(f"unit (session {s_}, scan_idx {c}, unit_id {u}) lies in field {f} in "
                                   f"snapshot {sid} but in field {int(placed.loc[int(u)])} in activity "
                                   f"snapshot {act}: the two snapshots do not describe the same scan",
                                   snapshot=sid, activity_snapshot=act, fields=rows, threshold=MIN_AGREEMENT)
    return record


def _identity(rec: pd.Series) -> dict:
    return {"snapshot_id": str(rec["snapshot_id"]), "source": str(rec["source"]),
            "content_hash": str(rec["content_hash"])}


def _missing(store: Store, sid: str, neurons: pd.DataFrame) -> str:
    session, scan_idx = (int(v) for v in neurons[["session", "scan_idx"]].iloc[0])
    have = store.sql(f"SELECT unit_id FROM spikes WHERE session = {session} AND scan_idx = {scan_idx}",
                     snapshot=sid).unit_id.astype(np.int64)
    lacking = sorted(set(neurons.unit_id.astype(np.int64)) - set(have))
    return (f"activity snapshot {sid} holds no spike train for {len(lacking)} of the population's "
            f"{len(neurons)} units of session {session} scan {scan_idx} (joined on session, scan_idx, "
            f"unit_id), e.g. unit_id {lacking[:5]}")


def _study(store: Store, sid: str, population: Population, neurons: pd.DataFrame
           ) -> dict[str, np.ndarray] | None:
    """The released functional matrices of a one-field population, in its neuron order."""
    if population.kind != "fields" or len(population.fields) != 1:
        return None
    session, scan_idx, field_idx = (int(p) for p in _FIELD.match(population.fields[0]).groups())
    rows = store.sql("SELECT unit_a, unit_b, correlation, sttc, precision FROM study_functional "
                     f"WHERE session = {session} AND scan_idx = {scan_idx} AND field = {field_idx}",
                     snapshot=sid)
    n = len(neurons)
    if len(rows) != n * (n + 1) // 2:  # nothing released for this field (or not every pair)
        return None
    index = pd.Series(np.arange(n), index=neurons.unit_id.astype(np.int64).to_numpy())
    a = index.loc[rows.unit_a.to_numpy()].to_numpy()
    b = index.loc[rows.unit_b.to_numpy()].to_numpy()
    out = {}
    for kind in ("correlation", "sttc", "precision"):
        values = rows[kind].to_numpy(dtype=np.float64)
        if np.isnan(values).all():
            continue
        matrix = np.full((n, n), np.nan)
        matrix[a, b] = values
        matrix[b, a] = values  # the release filled one triangle (STTC): mirror it
        out[kind] = matrix
    return out or None


def _spikes(store: Store, sid: str, neurons: pd.DataFrame) -> list[np.ndarray] | None:
    """Spike trains in neuron order, only when every neuron has one from the same scan: trains of
    different scans are different recordings, so pairwise statistics across them mean nothing.
    (Trains from another snapshot are checked by :func:`_verify`.)"""
    scans = neurons[["session", "scan_idx"]].drop_duplicates()
    if neurons.unit_id.isna().any() or len(scans) != 1:
        return None
    session, scan_idx = (int(v) for v in scans.iloc[0])
    trains = store.sql("SELECT session, scan_idx, unit_id, field, spike_times FROM spikes "
                       f"WHERE session = {session} AND scan_idx = {scan_idx}", snapshot=sid)
    if trains.empty:
        return None
    keyed = {(int(s), int(c), int(u)): (int(f), np.asarray(t, dtype=np.float64))
             for s, c, u, f, t in trains.itertuples(index=False)}
    out = []
    for s, c, u in neurons[["session", "scan_idx", "unit_id"]].itertuples(index=False):
        hit = keyed.get((int(s), int(c), int(u)))
        if hit is None:
            return None
        out.append(hit[1])
    return out
