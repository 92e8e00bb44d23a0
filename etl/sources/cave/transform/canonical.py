"""The whole transform: CAVE tables -> the store's canonical tables, one step per table."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import pyarrow as pa

from ....errors import SourceError
from ....tables import SourceTables
from .cells import add_cell_types, coregistration, neurons_table, select
from .columns import first_present
from .connectivity import connections, edge_list, synapses
from .conversion import Conversion
from .functional import functional_units, tuning
from .names import (CELLTYPES_TABLE, CONNECTIONS_KEY, DEFAULT_VOXEL_NM, FUNCTIONAL_TABLES,
                    NUCLEUS_TABLE, SELECTIONS, SYNAPSE_TABLE, NeuronSelection, TableShape)
from .nuclei import nuclei

__all__ = ["canonical_tables"]


def canonical_tables(raw: Mapping[str, pd.DataFrame], *, datastack: str | None,
                     materialization_version: int | None, materialization_timestamp: str | None,
                     neurons: NeuronSelection = "coregistered_excitatory",
                     origins: Mapping[str, str] | None = None,
                     parameters: dict | None = None,
                     shapes: Mapping[str, TableShape] | None = None,
                     names: Mapping[str, str] | None = None) -> SourceTables:
    """Turn CAVE tables into the store's canonical tables, keyed on nucleus id.

    Parameters
    ----------
    raw
        CAVE table name -> DataFrame with the columns CAVE returns (``split_positions=True``,
        positions in **voxels**). Used columns:

        ``nucleus_detection_v0`` (required)
            ``id`` (nucleus id), ``pt_root_id``, ``pt_position_x/_y/_z``; optional ``valid``.
        ``aibs_metamodel_celltypes_v661``
            ``target_id`` (nucleus id; or ``pt_root_id`` for a bound point table),
            ``classification_system`` (``excitatory_neuron``, ``inhibitory_neuron``, ...),
            ``cell_type`` (``23P``, ``BC``, ...); optional ``id``, ``valid``.
        ``coregistration_manual_v4`` (or ``coregistration_auto_phase3_fwd_apl_vess_combined_v2``)
            ``target_id`` (or ``pt_root_id`` for a bound point table), ``session``,
            ``scan_idx``, ``field``, ``unit_id``; optional ``score``, ``residual``, ``valid``.
        ``digital_twin_properties_bcm_coreg_v4`` (degrees) or ``functional_properties_v3_bcm``
        (radians, clockwise)
            ``session``, ``scan_idx``, ``unit_id``, ``pref_ori``, ``pref_dir``, and ``gOSI``/``gDSI``
            (or ``OSI``/``DSI``).
        ``synapses_pni_2``
            ``id``, ``pre_pt_root_id``, ``post_pt_root_id``; optional ``size``,
            ``ctr_pt_position_x/_y/_z``.
        ``connections`` (an edge list; used when there is no synapse table)
            ``pre_pt_root_id``/``post_pt_root_id`` or ``pre_nucleus_id``/``post_nucleus_id``,
            ``n_synapses``; optional ``sum_size``.

        Tables other than the nucleus table may be absent; their store tables are then absent.
        Any further columns (target columns of a merged shape, ``created``, ...) are ignored.
    datastack, materialization_version, materialization_timestamp
        Provenance recorded on the snapshot (timestamp ISO-8601 UTC).
    neurons
        Which cells become ``neurons``: ``coregistered_excitatory`` (default: co-registered cells
        of class excitatory), ``coregistered``, ``excitatory``, ``neurons`` (excitatory or
        inhibitory), or ``all`` (every nucleus that passes the identity checks, but glia).
    origins
        Store table -> description of where it came from (error messages); defaults name the CAVE
        tables.
    parameters
        Recorded on the snapshot; ``voxel_resolution_nm`` (default ``[4, 4, 40]``) converts
        voxels to nm.
    shapes
        CAVE table -> :data:`TableShape` of the cell-type and co-registration tables, where the
        caller knows it (the live source: from the server's table metadata). Tables not named
        here get :func:`infer_shape` (from the columns).
    names
        Key of ``raw`` -> the name of the table it really is (a profile's table read under the
        minnie65 key), for the report, origins and messages.

    Returns
    -------
    SourceTables
        ``source="cave"`` (callers such as the ``files`` source override it). ``report`` counts
        the nuclei excluded for root id 0, for sharing a root id with another nucleus, the
        duplicates dropped, the shape of each cell table (``shapes``), and per cell table the
        rows naming no valid nucleus (``<table>_unmatched_rows``) and, for bound points, the rows
        whose root carries several nuclei (``<table>_ambiguous_rows``).

    Notes
    -----
    Identity: a nucleus whose ``pt_root_id`` is 0 (no segment), or whose root id carries several
    nuclei (a merge error), is excluded and counted. Cells are keyed on the nucleus id, so a new
    materialization whose root ids changed maps onto the same cells without duplicates.

    Examples
    --------
    Two cells and a nucleus without a segment (root id 0), no other table, so every cell:

    >>> raw = {"nucleus_detection_v0": pd.DataFrame({
    ...     "id": [1, 2, 3], "pt_root_id": [11, 12, 0], "pt_position_x": [10, 20, 30],
    ...     "pt_position_y": [5, 5, 5], "pt_position_z": [1, 2, 3]})}
    >>> st = canonical_tables(raw, datastack="minnie65_public", materialization_version=1300,
    ...                       materialization_timestamp=None, neurons="all")
    >>> st.tables["neurons"].select(["nucleus_id", "x_nm", "z_nm"]).to_pydict()
    {'nucleus_id': [1, 2], 'x_nm': [40.0, 80.0], 'z_nm': [40.0, 80.0]}
    >>> st.report["excluded_root_id_zero"]
    1
    """
    if neurons not in SELECTIONS:
        raise SourceError(f"neuron selection must be one of {', '.join(SELECTIONS)}; "
                          f"found {neurons!r}")
    parameters = dict(parameters or {})
    voxel = tuple(float(v) for v in parameters.get("voxel_resolution_nm", DEFAULT_VOXEL_NM))
    parameters.setdefault("voxel_resolution_nm", list(voxel))
    parameters.setdefault("neurons", neurons)
    conv = Conversion(names=dict(names or {}), shapes=dict(shapes or {}))
    report, named = conv.report, conv.named
    tables: dict[str, pa.Table] = {}
    used: dict[str, str] = {}

    if NUCLEUS_TABLE not in raw:
        raise SourceError(f"CAVE tables lack {NUCLEUS_TABLE!r}, which keys every cell; "
                          f"found {sorted(raw)}", path=NUCLEUS_TABLE)
    valid_nuclei, cells = nuclei(raw[NUCLEUS_TABLE], named(NUCLEUS_TABLE), report)
    used["neurons"] = named(NUCLEUS_TABLE)
    ct = raw.get(CELLTYPES_TABLE)
    cells = add_cell_types(cells, ct, valid_nuclei, conv)
    if ct is not None:
        used["neurons"] += f" + {named(CELLTYPES_TABLE)}"
    coreg_key, coreg = coregistration(raw, valid_nuclei, conv)
    cells = select(cells, neurons, has_cell_types=ct is not None, coreg=coreg, report=report)
    tables["neurons"] = neurons_table(cells, voxel)

    if coreg_key is not None and coreg is not None:
        tables["functional_units"] = functional_units(coreg, cells, report)
        used["functional_units"] = named(coreg_key)
        func_key, func = first_present(raw, FUNCTIONAL_TABLES)
        if func_key is not None and func is not None:
            unit = FUNCTIONAL_TABLES[func_key]
            tables["tuning"] = tuning(func, named(func_key), tables["functional_units"],
                                      unit=unit, report=report)
            used["tuning"] = f"{named(func_key)} (angles {unit})"
            parameters.setdefault("functional_table", named(func_key))

    syn = raw.get(SYNAPSE_TABLE)
    if syn is not None:
        tables["synapses"] = synapses(syn, named(SYNAPSE_TABLE), tables["neurons"], report)
        tables["connections"] = connections(tables["synapses"], tables["neurons"])
        used["synapses"] = named(SYNAPSE_TABLE)
        used["connections"] = f"{named(SYNAPSE_TABLE)} aggregated by nucleus id"
    elif raw.get(CONNECTIONS_KEY) is not None:
        tables["connections"] = edge_list(raw[CONNECTIONS_KEY], tables["neurons"],
                                          named(CONNECTIONS_KEY), report)
        used["connections"] = f"{named(CONNECTIONS_KEY)} (an edge list)"

    report["shapes"] = dict(sorted(conv.shape_of.items()))
    all_origins = {name: f"CAVE {datastack or '?'} v{materialization_version} {desc}"
                   for name, desc in used.items()}
    all_origins.update(origins or {})
    return SourceTables(source="cave", tables=tables, parameters=parameters, report=report,
                        origins=all_origins, datastack=datastack,
                        materialization_version=materialization_version,
                        materialization_timestamp=materialization_timestamp)
