"""``kernel.dask``: one meaning of the scheduler argument; local workers with and without Dask's
malloc trimming."""

from __future__ import annotations

import os

import pytest

from connectome_priors.kernel.dask import MALLOC_TRIM_ENV, DaskError, dask_client, resolve_scheduler


def _worker_env():
    return os.environ.get(MALLOC_TRIM_ENV)


def test_trim_memory_false_starts_workers_without_dasks_malloc_variable(monkeypatch):
    monkeypatch.delenv(MALLOC_TRIM_ENV, raising=False)
    with dask_client(n_workers=1, memory_limit="1GiB") as client:
        assert set(client.run(_worker_env).values()) == {"65536"}  # Dask's default
    # the nanny exported it into this process, where later workers would inherit it
    assert os.environ.get(MALLOC_TRIM_ENV) == "65536"
    with dask_client(n_workers=1, memory_limit="1GiB", trim_memory=False) as client:
        assert set(client.run(_worker_env).values()) == {None}
        assert os.environ.get(MALLOC_TRIM_ENV) == "65536"  # this process's environment restored


def test_a_string_that_is_no_address_is_a_clear_error():
    with pytest.raises(DaskError, match=r"'nowhere' is not a Dask scheduler address \(missing port"):
        with dask_client("nowhere"):
            pass


def test_none_means_the_setting_and_no_cluster_when_unset(monkeypatch, tmp_path):
    monkeypatch.delenv("CXP_DASK_SCHEDULER", raising=False)
    (tmp_path / "empty.toml").write_text("")  # $CXP_CONFIG must name a file that exists
    monkeypatch.setenv("CXP_CONFIG", str(tmp_path / "empty.toml"))
    assert resolve_scheduler(None) is None
    assert resolve_scheduler("local") == "local"
    monkeypatch.setenv("CXP_DASK_SCHEDULER", "tcp://127.0.0.1:1")
    assert resolve_scheduler(None) == "tcp://127.0.0.1:1"
    assert resolve_scheduler("local") == "local"  # an argument beats the environment
    config = tmp_path / "config.toml"
    config.write_text('dask_scheduler = "tcp://127.0.0.1:2"\n')
    monkeypatch.setenv("CXP_CONFIG", str(config))
    monkeypatch.delenv("CXP_DASK_SCHEDULER")
    assert resolve_scheduler(None) == "tcp://127.0.0.1:2"
