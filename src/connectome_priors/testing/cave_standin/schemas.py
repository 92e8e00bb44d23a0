"""The real tables' schemas, from the producers' schema package (``emannotationschemas``), and the
columns a frozen table of each schema is queried with."""

from __future__ import annotations

import pandas as pd

from ...etl.sources.cave.transform import CELLTYPES_TABLE, COREG_TABLES, NUCLEUS_TABLE, SYNAPSE_TABLE

__all__ = ["BOUND_COREG_SCHEMA", "CREATED", "TABLE_SCHEMAS", "table_columns"]

#: The real tables' schema (``emannotationschemas`` name) and reference target. The functional
#: tables' schemas (``digital_twin_properties``, ``func_properties_bcm``) and their target are
#: assumed from the table names: the package holds them, the MICrONS docs do not name them.
TABLE_SCHEMAS: dict[str, tuple[str, str | None]] = {
    NUCLEUS_TABLE: ("nucleus_detection", None),
    CELLTYPES_TABLE: ("cell_type_reference", NUCLEUS_TABLE),
    COREG_TABLES[0]: ("func_unit_ext_coreg", NUCLEUS_TABLE),
    COREG_TABLES[1]: ("func_unit_ext_coreg", NUCLEUS_TABLE),
    "digital_twin_properties_bcm_coreg_v4": ("digital_twin_properties", NUCLEUS_TABLE),
    "functional_properties_v3_bcm": ("func_properties_bcm", NUCLEUS_TABLE),
    SYNAPSE_TABLE: ("synapse", None),
}
#: Schema of the bound-point co-registration the stand-in can serve instead (an assumption: the
#: fields of ``func_unit_ext_coreg`` with a bound point ``pt`` in place of ``target_id``, as the
#: MICrONS docs describe co-registration matched by root id; no such schema is registered).
BOUND_COREG_SCHEMA = "func_unit_ext_coreg_bound"
#: The ``created`` time of every row (split frozen tables carry it; one constant here).
CREATED = pd.Timestamp("2020-09-28 12:00:00")


def _schema(schema_type: str):
    """The marshmallow schema class of ``schema_type`` (from ``emannotationschemas``)."""
    from emannotationschemas import get_schema  # only the stand-in needs it

    if schema_type == BOUND_COREG_SCHEMA:
        import marshmallow as mm
        from emannotationschemas.schemas.base import AnnotationSchema, BoundSpatialPoint

        ext = get_schema("func_unit_ext_coreg")
        fields = {k: f for k, f in ext._declared_fields.items() if k not in ("target_id", "valid")}
        return type("FuncUnitExtCoregBound", (AnnotationSchema,),
                    {"pt": mm.fields.Nested(BoundSpatialPoint, required=True), **fields})
    return get_schema(schema_type)


def table_columns(schema_type: str, *, layout: str = "split") -> list[tuple[str, str, bool]]:
    """Columns a frozen table of ``schema_type`` is queried with: (name, kind, required).

    Derived from the schema package as the materialization engine builds its tables: ``id``, then
    (``split`` frozen databases, annotation and segmentation tables apart) ``created`` and
    ``superceded_id``, the annotation fields, and the segmentation fields (``*_supervoxel_id``,
    ``*_root_id``) last; ``merged`` frozen tables hold ``id`` and the flattened fields in schema
    order, without those bookkeeping columns. A bound spatial point ``pt`` gives
    ``pt_position_x/_y/_z``, ``pt_supervoxel_id`` and ``pt_root_id``; a reference annotation
    gives ``target_id`` and no column of its target.

    ``kind`` is one of ``id``, ``timestamp``, ``bool``, ``int``, ``float``, ``str``,
    ``position``, ``segment``, ``target``.
    """
    from emannotationschemas.flatten import create_flattened_schema
    from emannotationschemas.schemas.base import (
        PostGISField, ReferenceTableField, SegmentationField)
    import marshmallow as mm

    ann: list[tuple[str, str, bool]] = []
    seg: list[tuple[str, str, bool]] = []
    for key, f in create_flattened_schema(_schema(schema_type))._declared_fields.items():
        req = bool(f.required)
        if isinstance(f, PostGISField):
            ann += [(f"{key}_{a}", "position", req) for a in "xyz"]
        elif isinstance(f, SegmentationField):
            (seg if layout == "split" else ann).append((key, "segment", False))
        elif isinstance(f, ReferenceTableField):
            ann.append((key, "target", True))
        elif isinstance(f, mm.fields.Boolean):
            ann.append((key, "bool", req))
        elif isinstance(f, mm.fields.Integer):
            ann.append((key, "int", req))
        elif isinstance(f, mm.fields.Float):
            ann.append((key, "float", req))
        else:
            ann.append((key, "str", req))
    head = [("id", "id", True)]
    if layout == "split":
        head += [("created", "timestamp", True), ("superceded_id", "int", False)]
    elif layout != "merged":
        raise ValueError(f"layout must be 'split' or 'merged', not {layout!r}")
    return head + ann + seg
