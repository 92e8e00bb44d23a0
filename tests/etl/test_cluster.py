"""``etl.cluster.dask_client``: local workers with and without Dask's malloc trimming."""

from __future__ import annotations

import os

import pytest

from etl.cluster import MALLOC_TRIM_ENV, dask_client
from etl.errors import EtlError


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
    with pytest.raises(EtlError, match=r"'nowhere' is not a Dask scheduler address \(missing port"):
        with dask_client("nowhere"):
            pass
