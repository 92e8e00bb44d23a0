"""Synapses among the selected neurons, and the ``connections`` between them by nucleus id (from
a synapse table, or from an edge list where there is none)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ....aggregate import synapses_to_connections
from ....errors import SourceError
from .columns import need, nullable_floats

__all__ = ["connections", "edge_list", "synapses"]


def synapses(syn: pd.DataFrame, table: str, neurons: pa.Table, report: dict) -> pa.Table:
    """The canonical ``synapses`` table: the rows of ``syn`` between two of ``neurons``.

    Parameters
    ----------
    syn
        ``id``, ``pre_pt_root_id``, ``post_pt_root_id``; optional ``size``,
        ``ctr_pt_position_x/_y/_z`` (voxels). A missing value is null, never NaN.
    table
        Its real name (messages).
    neurons
        The canonical ``neurons`` table (``root_id``).
    report
        Counts duplicate synapse ids dropped (where any), ``synapses_among_neurons`` and
        ``autapses_not_counted``.
    """
    need(syn, table, ["id", "pre_pt_root_id", "post_pt_root_id"])
    roots = neurons.column("root_id").drop_null().to_numpy()
    among = np.isin(syn["pre_pt_root_id"].to_numpy(), roots) & np.isin(
        syn["post_pt_root_id"].to_numpy(), roots)
    syn = syn[among]
    dup = syn.duplicated("id")
    if dup.any():
        report["synapse_duplicate_ids_dropped"] = int(dup.sum())
    syn = syn[~dup].sort_values("id", kind="stable")
    n = len(syn)

    def col(name: str) -> pa.Array:
        return nullable_floats(syn[name].to_numpy(np.float64) if name in syn else np.full(n, np.nan))

    report["synapses_among_neurons"] = int(n)
    report["autapses_not_counted"] = int((syn["pre_pt_root_id"].to_numpy()
                                          == syn["post_pt_root_id"].to_numpy()).sum())
    return pa.table({
        "synapse_id": syn["id"].to_numpy(np.int64),
        "pre_root_id": syn["pre_pt_root_id"].to_numpy(np.int64),
        "post_root_id": syn["post_pt_root_id"].to_numpy(np.int64),
        "size": col("size"),
        "x_vox": col("ctr_pt_position_x"), "y_vox": col("ctr_pt_position_y"),
        "z_vox": col("ctr_pt_position_z"),
    })


def connections(synapses: pa.Table, neurons: pa.Table) -> pa.Table:
    """Synapses -> connections by nucleus id (the shared aggregator, :mod:`etl.aggregate`).

    Parameters
    ----------
    synapses
        The canonical ``synapses`` table (``pre_root_id``, ``post_root_id``, ``size``).
    neurons
        The canonical ``neurons`` table (``nucleus_id``, ``root_id``).

    Returns
    -------
    pyarrow.Table
        ``pre_nucleus_id``, ``post_nucleus_id``, ``n_synapses``, ``sum_size``.
    """
    return synapses_to_connections(synapses, neurons.select(["nucleus_id", "root_id"]))


def edge_list(edges: pd.DataFrame, neurons: pa.Table, table: str, report: dict) -> pa.Table:
    """An edge list (root ids or nucleus ids, ``n_synapses``, optional ``sum_size``) -> the
    ``connections`` table among ``neurons``: rows naming other cells and autapses are counted
    and left out, rows of one pair (two root ids of one cell across a merge) summed.
    """
    if "pre_nucleus_id" in edges and "post_nucleus_id" in edges:
        pre = edges["pre_nucleus_id"].to_numpy(np.int64)
        post = edges["post_nucleus_id"].to_numpy(np.int64)
        known = np.isin(pre, neurons.column("nucleus_id").to_numpy())
        known &= np.isin(post, neurons.column("nucleus_id").to_numpy())
    else:
        need(edges, table, ["pre_pt_root_id", "post_pt_root_id"])
        rooted = neurons.filter(neurons.column("root_id").is_valid())
        by_root = pd.Series(rooted.column("nucleus_id").to_numpy(),
                            index=rooted.column("root_id").to_numpy())
        pre = by_root.reindex(edges["pre_pt_root_id"].to_numpy(np.int64)).to_numpy()
        post = by_root.reindex(edges["post_pt_root_id"].to_numpy(np.int64)).to_numpy()
        known = ~(np.isnan(pre.astype(np.float64)) | np.isnan(post.astype(np.float64)))
        pre = np.where(known, pre, 0).astype(np.int64)
        post = np.where(known, post, 0).astype(np.int64)
    need(edges, table, ["n_synapses"])
    n = pd.to_numeric(edges["n_synapses"], errors="raise").to_numpy()
    if len(n) and (np.any(n != np.floor(n)) or np.any(n < 1)):
        raise SourceError(f"{table}: column n_synapses: expected whole numbers >= 1; found "
                          f"{n[(n != np.floor(n)) | (n < 1)][0]!r}", path=table)
    size = (edges["sum_size"].to_numpy(np.float64) if "sum_size" in edges
            else np.full(len(edges), np.nan))
    self_loop = known & (pre == post)
    report[f"{table}_rows_not_between_selected_cells"] = int((~known).sum())
    report["autapses_not_counted"] = int(n[self_loop].sum())  # synapses, as from a synapse table
    keep = known & ~self_loop
    df = pd.DataFrame({"pre_nucleus_id": pre[keep], "post_nucleus_id": post[keep],
                       "n_synapses": n[keep].astype(np.int64), "sum_size": size[keep]})
    pairs = df.groupby(["pre_nucleus_id", "post_nucleus_id"], sort=True).agg(
        n_synapses=("n_synapses", "sum"), sum_size=("sum_size", lambda v: v.sum(min_count=len(v))),
        rows=("n_synapses", "size")).reset_index()
    merged = int((pairs["rows"] - 1).sum())
    if merged:
        report[f"{table}_rows_summed_into_one_pair"] = merged
    return pa.table({"pre_nucleus_id": pairs["pre_nucleus_id"].to_numpy(np.int64),
                     "post_nucleus_id": pairs["post_nucleus_id"].to_numpy(np.int64),
                     "n_synapses": pairs["n_synapses"].to_numpy(np.int64),
                     "sum_size": nullable_floats(pairs["sum_size"].to_numpy(np.float64))})
