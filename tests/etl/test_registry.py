"""``etl.sources.registry``: one config dataclass per source; options a source does not take are
errors, not silently ignored; a config and the flat call give the same snapshot."""

from __future__ import annotations

import pytest

from connectome_priors import BlueprintSource, NwbSource, SyntheticSource, run_etl
from connectome_priors.etl.errors import EtlError
from connectome_priors.etl.sources.cave.client import CaveConfig
from connectome_priors.etl.sources.registry import FilesSource, name_of, source_config
from connectome_priors.etl.sources.synthetic import SyntheticConfig


def test_flat_options_map_to_the_sources_config():
    assert source_config("synthetic", seed=3) == SyntheticSource(seed=3)
    assert source_config("blueprint", "/r", fields=["6_6_2"], mode="lenient") == BlueprintSource(
        "/r", mode="lenient", fields=("6_6_2",))
    assert source_config("nwb", "a.nwb") == NwbSource(("a.nwb",))
    files = source_config("files", "/e", cave=CaveConfig(datastack="pinky100", neurons="all",
                                                         version=185))
    assert files == FilesSource("/e", neurons="all", datastack="pinky100", materialization_version=185)
    assert source_config("blueprint", "/r", seed=None) == BlueprintSource("/r")  # None: not given
    assert name_of(files) == "files"


def test_an_option_the_source_does_not_take_is_refused():
    with pytest.raises(EtlError, match=r"source 'blueprint' takes no option 'seed'; its options: "
                                       r"fields, mode"):
        source_config("blueprint", "/r", seed=3)
    with pytest.raises(EtlError, match="source 'synthetic' takes no option 'fields'"):
        run_etl("synthetic", fields=["6_6_2"])
    with pytest.raises(EtlError, match="not a source config"):
        run_etl(object())


def test_a_config_and_the_flat_call_give_the_same_snapshot(tmp_path):
    small = SyntheticConfig(seed=4, n_fields=1, fields_per_scan=1, duration_s=30.0,
                            field_size_range=(10, 12))
    a = run_etl(SyntheticSource(small), store=tmp_path / "a")
    b = run_etl("synthetic", store=tmp_path / "b", synthetic=small)
    assert a["snapshot_id"] == b["snapshot_id"] and a["content_hash"] == b["content_hash"]
