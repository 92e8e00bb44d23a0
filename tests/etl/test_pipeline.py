"""run_etl end to end on the synthetic source: labelled, idempotent, byte-identical per seed."""

from __future__ import annotations

import hashlib
import json

import pytest

from connectome_priors.etl.errors import EtlError
from connectome_priors.etl.pipeline import run_etl
from connectome_priors.etl.sources.synthetic import SyntheticConfig
from connectome_priors.etl.store import Store

SMALL = SyntheticConfig(seed=3, n_fields=2, duration_s=60.0)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_synthetic_snapshot_is_labelled_and_queryable(tmp_path):
    snap = run_etl("synthetic", store=tmp_path / "s", synthetic=SMALL)
    assert snap["created"] and snap["source"] == "synthetic"
    assert snap["snapshot_id"].startswith("synthetic-")
    assert json.loads(snap["parameters"])["synthetic"] is True
    store = Store(tmp_path / "s")
    fields = store.sql("SELECT DISTINCT session, scan_idx, field FROM functional_units")
    assert len(fields) == 2
    n = store.sql("SELECT count(*) AS n FROM tuning t JOIN functional_units USING (session, scan_idx, unit_id)")
    assert n.n[0] == json.loads(snap["row_counts"])["tuning"]


def test_same_seed_same_bytes_and_no_duplicate(tmp_path):
    a = run_etl("synthetic", store=tmp_path / "a", synthetic=SMALL)
    b = run_etl("synthetic", store=tmp_path / "b", synthetic=SMALL)
    assert a["snapshot_id"] == b["snapshot_id"] and a["content_hash"] == b["content_hash"]
    for table in ("neurons", "functional_units", "connections", "spikes", "tuning"):
        pa_ = Store(tmp_path / "a").raw_path(a["snapshot_id"], table)
        pb_ = Store(tmp_path / "b").raw_path(b["snapshot_id"], table)
        assert digest(pa_) == digest(pb_), table
    again = run_etl("synthetic", store=tmp_path / "a", synthetic=SMALL)
    assert not again["created"] and len(Store(tmp_path / "a").snapshots()) == 1
    other = run_etl("synthetic", store=tmp_path / "a", synthetic=SyntheticConfig(seed=4, n_fields=2,
                                                                                  duration_s=60.0))
    assert other["snapshot_id"] != a["snapshot_id"]


def test_wrong_arguments_are_explained(tmp_path):
    with pytest.raises(EtlError, match="source 'synthetic' takes no PATH"):
        run_etl("synthetic", "/some/path", store=tmp_path)
    with pytest.raises(EtlError, match="source 'blueprint' needs PATH"):
        run_etl("blueprint", store=tmp_path)
    with pytest.raises(EtlError, match="source 'files' needs PATH"):
        run_etl("files", store=tmp_path)
    with pytest.raises(EtlError, match="source 'nwb' needs PATH"):
        run_etl("nwb", store=tmp_path)
    with pytest.raises(EtlError, match="unknown source 'csv'; expected synthetic, blueprint, cave"):
        run_etl("csv", store=tmp_path)
