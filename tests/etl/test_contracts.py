"""Every rejection path of the contract validation, with assertions on the message."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from connectome_priors.etl.contracts import arrow_schema, validate_table, validate_tables
from connectome_priors.etl.errors import ValidationError
from connectome_priors.schemas import STORE_TABLES, store_contract
from tests.conftest import tiny_tables

ORIGINS = {name: f"tiny_{name}.parquet" for name in STORE_TABLES}


def replace(table: pa.Table, column: str, values, type_=None) -> pa.Table:
    i = table.column_names.index(column)
    return table.set_column(i, column, pa.array(values, type_))


def test_contracts_are_complete_and_consistent():
    root = Path(__file__).resolve().parents[2] / "schemas" / "store"
    assert sorted(p.stem for p in root.glob("*.json")) == sorted(("snapshots",) + STORE_TABLES)
    for name in STORE_TABLES:
        c = store_contract(name)
        names = [col["name"] for col in c["columns"]]
        assert set(c["primary_key"]) <= set(names)
        for fk in c.get("foreign_keys", []):
            assert set(fk["columns"]) <= set(names)
            assert STORE_TABLES.index(fk["references"]["table"]) < STORE_TABLES.index(name)
        assert all({"name", "type", "nullable", "description"} <= set(col) for col in c["columns"])
        json.dumps(c)


def test_valid_tables_pass_and_are_cast():
    tables = tiny_tables()
    tables["connections"] = replace(tables["connections"], "n_synapses", [2, 1], pa.int32())
    out = validate_tables(tables, origins=ORIGINS)
    assert out["connections"].schema.field("n_synapses").type == pa.int64()
    for name, table in out.items():
        assert table.schema.equals(arrow_schema(name))
    assert out["neurons"].num_rows == 3


def test_missing_column_is_named():
    t = tiny_tables()["neurons"].drop(["y_vox"])
    with pytest.raises(ValidationError, match=r"neurons\.y_vox \(from tiny_neurons\.parquet\).*missing \['y_vox'\]"):
        validate_table(t, "neurons", origin="tiny_neurons.parquet")


def test_unexpected_column_is_named():
    t = tiny_tables()["neurons"].append_column("colour", pa.array(["r", "g", "b"]))
    with pytest.raises(ValidationError, match=r"neurons\.colour.*unexpected column\(s\) \['colour'\]"):
        validate_table(t, "neurons", origin="x")


def test_wrong_type_says_expected_and_found():
    t = replace(tiny_tables()["neurons"], "nucleus_id", ["a", "b", "c"])
    with pytest.raises(ValidationError) as info:
        validate_table(t, "neurons", origin="nucleus.csv")
    err = info.value
    assert (err.table, err.column, err.origin) == ("neurons", "nucleus_id", "nucleus.csv")
    assert err.expected == "type int64" and err.found == "type string"


def test_lossy_float_to_int_is_refused():
    t = replace(tiny_tables()["connections"], "n_synapses", [1.5, 2.0])
    with pytest.raises(ValidationError, match=r"connections\.n_synapses.*expected type int64; found type double"):
        validate_table(t, "connections", origin="x")


def test_nan_position_is_refused_with_the_row():
    t = replace(tiny_tables()["neurons"], "x_vox", [1.0, float("nan"), 3.0])
    with pytest.raises(ValidationError, match=r"neurons\.x_vox.*no missing values; found 1 null/NaN.*row 1: .*'nucleus_id': 12"):
        validate_table(t, "neurons", origin="x")


def test_out_of_volume_position_is_refused():
    t = replace(tiny_tables()["neurons"], "z_vox", [20000.0, 90000.0, 20020.0])
    with pytest.raises(ValidationError, match=r"neurons\.z_vox.*values <= 30000 \(voxel \(40 nm\)\); found 1 row\(s\) out of range \(e\.g\. \[90000\.0\]\)"):
        validate_table(t, "neurons", origin="x")


def test_infinite_value_is_refused():
    t = replace(tiny_tables()["neurons"], "y_nm", [1.0, float("inf"), 3.0])
    with pytest.raises(ValidationError, match=r"neurons\.y_nm.*finite values; found 1 non-finite"):
        validate_table(t, "neurons", origin="x")


@pytest.mark.parametrize("bad", [0, -3])
def test_non_positive_synapse_count_is_refused(bad):
    t = replace(tiny_tables()["connections"], "n_synapses", [2, bad])
    with pytest.raises(ValidationError, match=rf"connections\.n_synapses.*values >= 1.*\[{float(bad)}\]"):
        validate_table(t, "connections", origin="synapses.csv")


def test_duplicate_key_is_refused_with_examples():
    t = replace(tiny_tables()["functional_units"], "unit_id", [1, 2, 2])
    with pytest.raises(ValidationError, match=r"functional_units\.session,scan_idx,unit_id.*unique key.*1 duplicate key\(s\).*'unit_id': 2"):
        validate_table(t, "functional_units", origin="coreg.csv")


def test_null_in_required_column_is_refused():
    t = replace(tiny_tables()["functional_units"], "field", [2, None, 2], pa.int64())
    with pytest.raises(ValidationError, match=r"functional_units\.field.*no missing values"):
        validate_table(t, "functional_units", origin="x")


def test_unsorted_spike_train_is_refused():
    t = tiny_tables()["spikes"]
    t = t.set_column(5, "spike_times", pa.array([[0.1, 0.5, 2.0], [], [1.05, 1.0]],
                                                pa.list_(pa.float64())))
    with pytest.raises(ValidationError, match=r"spikes\.spike_times.*sorted ascending.*1 unsorted row.*row 2"):
        validate_table(t, "spikes", origin="spikes.npy")


def test_sorted_trains_pass_even_when_a_row_starts_lower():
    # row boundaries are not "decreases": [5, 6] followed by [1, 2] is fine
    t = tiny_tables()["spikes"]
    t = t.set_column(5, "spike_times", pa.array([[5.0, 6.0], [1.0, 2.0], []], pa.list_(pa.float64())))
    t = t.set_column(4, "n_spikes", pa.array([2, 2, 0]))
    validate_table(t, "spikes", origin="x")


def test_negative_and_nan_spike_times_are_refused():
    t = tiny_tables()["spikes"]
    neg = t.set_column(5, "spike_times", pa.array([[-0.5, 1.0], [], [1.0]], pa.list_(pa.float64())))
    with pytest.raises(ValidationError, match=r"spikes\.spike_times.*values >= 0.*row 0"):
        validate_table(neg, "spikes", origin="x")
    nan = t.set_column(5, "spike_times", pa.array([[0.5], [float("nan")], [1.0]], pa.list_(pa.float64())))
    with pytest.raises(ValidationError, match=r"spikes\.spike_times.*finite values.*row 1"):
        validate_table(nan, "spikes", origin="x")


def test_ids_that_do_not_join_are_refused():
    tables = tiny_tables()
    tables["functional_units"] = replace(tables["functional_units"], "nucleus_id", [11, 12, 99])
    with pytest.raises(ValidationError, match=r"functional_units\.nucleus_id \(from tiny_functional_units\.parquet\).*exist in neurons\.\(nucleus_id\); found 1 row\(s\) that do not join.*99"):
        validate_tables(tables, origins=ORIGINS)


def test_connection_to_unknown_neuron_is_refused():
    tables = tiny_tables()
    tables["connections"] = replace(tables["connections"], "post_nucleus_id", [12, 77])
    with pytest.raises(ValidationError, match=r"connections\.post_nucleus_id.*77"):
        validate_tables(tables, origins=ORIGINS)


def test_spikes_of_unknown_unit_are_refused_on_the_composite_key():
    tables = tiny_tables()
    tables["spikes"] = replace(tables["spikes"], "scan_idx", [7, 7, 8])
    with pytest.raises(ValidationError, match=r"spikes\.session,scan_idx,unit_id.*functional_units.*1 row\(s\) that do not join"):
        validate_tables(tables, origins=ORIGINS)


def test_table_whose_reference_is_absent_is_refused():
    tables = tiny_tables()
    del tables["neurons"]
    with pytest.raises(ValidationError, match=r"no neurons table in this source"):
        validate_tables(tables, origins=ORIGINS)


def test_unknown_table_is_refused():
    tables = tiny_tables()
    tables["mystery"] = pa.table({"a": [1]})
    with pytest.raises(ValidationError, match=r"one of the store tables"):
        validate_tables(tables, origins={})
