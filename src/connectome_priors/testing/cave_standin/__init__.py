"""A local stand-in for a CAVE deployment: the info and materialization endpoints that
``caveclient`` calls, serving a small, seeded, minnie65-shaped fixture over loopback.

It exists so that the ``cave`` source can be proven, benchmarked and demonstrated offline with
the *unmodified* client. Every table's columns are derived from the producers' schema package
(``emannotationschemas``) by the schema the real table uses (:data:`TABLE_SCHEMAS`), never shaped
to what our reader wants; the answers follow the MaterializationEngine's client API
(``materializationengine/blueprints/client/api2.py``, ``common.py``, ``query_manager.py``,
``utils.py`` in CAVEconnectome/MaterializationEngine):

- a frozen table is ``merged`` (``id`` and the flattened fields in schema order, as
  ``merge_tables`` in ``workflows/create_frozen_database.py`` writes it) or, with
  ``split_frozen=True``, ``split`` (annotation and segmentation tables apart: ``id, created,
  superceded_id, valid``, the annotation fields, then ``*_supervoxel_id, *_root_id``);
  a reference table carries ``target_id`` and none of its target's columns;
- only ``valid`` rows are returned; at most ``row_cap`` (``QUERY_LIMIT_SIZE``) rows, or the
  request's smaller ``limit``; a result of exactly that many rows carries the warning
  ``201 - "Limited query to N rows``; a table's ``notice_text`` is another ``Warning`` (each
  message its own header line);
- Arrow IPC bodies (``Content-Type: data.arrow``), compressed inside with ZSTD (or LZ4) when
  the client's ``Accept-Encoding`` names it (caveclient sends ``zstd``), the whole body gzipped
  when it names ``gzip``; headers ``dataframe_resolution`` and ``column_names``; positions
  are integers in the table's voxels, scaled to ``desired_resolution``;
- the join query caveclient sends for ``merge_reference=True`` (suffix ``_ref`` on the
  columns both tables have, see :func:`merge_reference`), and the table metadata
  (``schema_type``, ``reference_table``, voxel resolution) at the endpoint
  ``get_table_metadata`` calls.

It also reports a materialization server version of 5.13, checks a bearer token, and can inject
faults (HTTP errors, stalls). The data are **synthetic**.

Modules: :mod:`.schemas` (the real tables' schemas and columns), :mod:`.layouts` (merged and
split frozen tables, the join query), :mod:`.frames` (a table built from its schema),
:mod:`.fixture` (the seeded minnie65-shaped tables), :mod:`.deployment` (names, voxel size, row
cap, version timestamps), :mod:`.faults`, :mod:`.state`, :mod:`.handler` (the endpoints),
:mod:`.server` (:class:`StandinCave`), :mod:`.cli` (``python -m``).

Run one by hand (offline demo)::

    python -m connectome_priors.testing.cave_standin --port 8765 --cells 400
    cxp etl --source cave --server http://127.0.0.1:8765 --datastack minnie65_public --version latest

Examples
--------
>>> with StandinCave(minnie_fixture(n_cells=50, seed=0)) as cave:   # doctest: +SKIP
...     print(cave.url)
"""

from .cli import main
from .deployment import DATASTACK, DEFAULT_ROW_CAP
from .faults import Fault
from .fixture import minnie_fixture
from .frames import schema_frame
from .layouts import merge_reference, merged_layout, split_layout
from .schemas import BOUND_COREG_SCHEMA, TABLE_SCHEMAS, table_columns
from .server import StandinCave

__all__ = ["BOUND_COREG_SCHEMA", "DATASTACK", "DEFAULT_ROW_CAP", "Fault", "StandinCave",
           "TABLE_SCHEMAS", "main", "merge_reference", "merged_layout", "minnie_fixture",
           "schema_frame", "split_layout", "table_columns"]
