"""Tests of priors_store/remote.py (push, pull, load(URL)) against a real S3 protocol server
(moto's server mode on 127.0.0.1) and file:// URLs."""

from __future__ import annotations

import filecmp
import json
import logging
import shutil
import threading

import numpy as np
import pytest
import scipy.sparse as sp

from connectome_priors.testing import moto_s3

pytest.importorskip("fsspec")
pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

from connectome_priors import priors_store  # noqa: E402
from connectome_priors.cli import main  # noqa: E402
from connectome_priors.priors_store import remote  # noqa: E402
from connectome_priors.priors_store.errors import (ArtifactIntegrityError,  # noqa: E402
                                                   ArtifactNotFoundError, PriorsError)
from connectome_priors.priors_store.pipeline import DeriveParams  # noqa: E402
from connectome_priors.priors_store.population import Population  # noqa: E402
from connectome_priors.priors_store.remote_index import build_id  # noqa: E402

BUCKET = "cxp-test"
FAST = moto_s3.FAST


def _start_server(bucket: str = BUCKET):
    """A moto S3 server counting requests (``server.hook.writes()``), and its storage options."""
    server = moto_s3.start_s3(bucket, hook=moto_s3.RequestCounter())
    return server, server.options


@pytest.fixture(scope="module", autouse=True)
def aws_env(tmp_path_factory):
    """Dummy credentials and no user AWS configuration (nothing but 127.0.0.1 is contacted)."""
    with moto_s3.offline_aws(tmp_path_factory.mktemp("aws")):
        yield


@pytest.fixture(scope="module")
def s3(aws_env):
    """(server, storage options) of a moto S3 server on 127.0.0.1 with bucket ``cxp-test``."""
    server, options = _start_server()
    yield server, options
    server.stop()


@pytest.fixture(scope="module")
def artifacts(tiny_pooled, tmp_path_factory):
    """Artifact root holding two tiny pooled priors, ``tiny`` (the session's) and ``other``."""
    store, root, _ = tiny_pooled
    base = tmp_path_factory.mktemp("remote-tiny")
    shutil.copytree(root, base / "artifacts")
    priors_store.build("other", Population.pooled(), store=store, root=base / "artifacts",
                       params=DeriveParams(precision=False))
    return base / "artifacts"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty local cache (the ``cache`` setting)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CXP_CACHE", str(path))
    return path


def _assert_same(original, copy):
    assert copy.manifest == original.manifest
    assert copy.kinds == original.kinds and len(copy.kinds) > 3
    for kind in original.kinds:
        a, b = original[kind], copy[kind]
        if sp.issparse(a):
            assert a.dtype == b.dtype and a.shape == b.shape and (a != b).nnz == 0
        else:
            assert a.dtype == b.dtype and np.array_equal(np.asarray(a), np.asarray(b))
    assert copy.neurons.equals(original.neurons)
    names = [f["path"] for f in original.manifest["files"]] + ["manifest.json"]
    match, mismatch, errors = filecmp.cmpfiles(original.directory, copy.directory, names, shallow=False)
    assert (sorted(match), mismatch, errors) == (sorted(names), [], [])


def test_push_pull_load_s3_bit_for_bit(artifacts, s3, cache):
    server, options = s3
    original = priors_store.load("tiny", root=artifacts)
    result = remote.push("tiny", f"s3://{BUCKET}/priors", root=artifacts, storage_options=options)
    assert result.version == original.version
    assert result.uploaded[-1] == "manifest.json"  # the manifest goes last
    assert sorted(result.uploaded[:-1]) == sorted(f["path"] for f in original.manifest["files"])

    url = f"s3://{BUCKET}/priors/tiny@{original.version}"
    copy = priors_store.load(url, storage_options=options)
    _assert_same(original, copy)
    assert copy.directory == (cache / "priors" / f"s3@{server.get_host_and_port()[0]}_"
                              f"{server.get_host_and_port()[1]}" / BUCKET / "priors" / "tiny"
                              / original.version)
    # the index lists it
    import fsspec

    fs, _ = fsspec.core.url_to_fs(f"s3://{BUCKET}", **options)
    listing = json.loads(fs.cat_file(f"{BUCKET}/priors/index.json"))
    assert listing["names"]["tiny"] == {"latest": original.version, "versions": [original.version]}
    per_name = json.loads(fs.cat_file(f"{BUCKET}/priors/index/tiny.json"))
    assert per_name["latest"] == original.version
    assert per_name["versions"][original.version]["n_neurons"] == len(original)
    # latest resolves through the index, to the same cached copy
    latest = priors_store.load(f"s3://{BUCKET}/priors/tiny", storage_options=options)
    assert latest.directory == copy.directory and (copy.directory.parent / "latest").is_file()


def test_second_push_uploads_nothing(artifacts, s3, cache):
    server, options = s3
    url = f"s3://{BUCKET}/twice"
    first = remote.push("tiny", url, root=artifacts, storage_options=options)
    assert first.uploaded and first.index_written
    before = server.hook.writes()
    second = remote.push("tiny", url, root=artifacts, storage_options=options)
    assert second.uploaded == () and second.bytes == 0 and not second.index_written
    assert server.hook.writes() == before  # not one PUT, POST or DELETE


def test_remote_version_never_overwritten(artifacts, s3, cache):
    _, options = s3
    import fsspec

    url = f"s3://{BUCKET}/conflict"
    remote.push("tiny", url, root=artifacts, storage_options=options)
    version = priors_store.load("tiny", root=artifacts).version
    fs, _ = fsspec.core.url_to_fs(url, **options)
    key = f"{BUCKET}/conflict/tiny/{version}/manifest.json"
    manifest = json.loads(fs.cat_file(key))
    manifest["files"][0]["sha256"] = "0" * 64
    fs.pipe_file(key, json.dumps(manifest).encode())
    with pytest.raises(remote.RemoteError, match="never overwritten"):
        remote.push("tiny", url, root=artifacts, storage_options=options)
    assert json.loads(fs.cat_file(key)) == manifest


@pytest.mark.parametrize("edit", ["file", "truncate", "missing", "manifest", "manifest_version"])
def test_tampered_remote_refused(artifacts, s3, cache, edit):
    _, options = s3
    import fsspec

    base = f"s3://{BUCKET}/tamper-{edit}"
    remote.push("tiny", base, root=artifacts, storage_options=options)
    prior = priors_store.load("tiny", root=artifacts)
    fs, _ = fsspec.core.url_to_fs(base, **options)
    folder = f"{BUCKET}/tamper-{edit}/tiny/{prior.version}"
    files = f"{folder}/{build_id((prior.directory / 'manifest.json').read_bytes())}"  # its build
    victim = prior.manifest["kinds"]["distance_um"]["file"]
    if edit == "file":  # same size, one byte changed
        data = bytearray(fs.cat_file(f"{files}/{victim}"))
        data[-1] ^= 0xFF
        fs.pipe_file(f"{files}/{victim}", bytes(data))
        named = victim
    elif edit == "truncate":  # a partial upload
        fs.pipe_file(f"{files}/{victim}", fs.cat_file(f"{files}/{victim}")[:100])
        named = victim
    elif edit == "missing":
        fs.rm_file(f"{files}/{victim}")
        named = victim
    else:
        manifest = json.loads(fs.cat_file(f"{folder}/manifest.json"))
        if edit == "manifest":  # a consistent-looking hash for a changed file, say
            manifest["files"][0]["sha256"] = "1" * 64
        else:
            manifest["parameters"]["note"] = "edited"
        fs.pipe_file(f"{folder}/manifest.json", json.dumps(manifest).encode())
        named = "manifest.json"
    with pytest.raises(ArtifactIntegrityError, match=f"{prior.version}/{named}") as info:
        priors_store.load(f"{base}/tiny@{prior.version}", storage_options=options)
    assert info.value.path.endswith(f"/{named}")
    cached = remote.cache_dir(base, storage_options=options) / "tiny"
    assert not cached.exists() or not any(cached.iterdir())  # nothing cached, no temp left


def test_concurrent_pushes_of_different_names_both_listed(artifacts, s3, cache):
    _, options = s3
    import fsspec

    for round_ in range(3):
        url = f"s3://{BUCKET}/concurrent-{round_}"
        barrier = threading.Barrier(2)
        errors = []

        def push(name, url=url, barrier=barrier, errors=errors):
            try:
                barrier.wait()
                remote.push(name, url, root=artifacts, storage_options=options)
            except Exception as err:  # noqa: BLE001 (reported below)
                errors.append(err)

        threads = [threading.Thread(target=push, args=(n,)) for n in ("tiny", "other")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        fs, _ = fsspec.core.url_to_fs(url, **options)
        listing = json.loads(fs.cat_file(f"{BUCKET}/concurrent-{round_}/index.json"))
        assert sorted(listing["names"]) == ["other", "tiny"]


def test_interrupted_push_is_invisible_then_completed(artifacts, s3, cache):
    _, options = s3
    import fsspec

    url = f"s3://{BUCKET}/interrupted"
    version = remote.push("tiny", url, root=artifacts, storage_options=options).version
    fs, _ = fsspec.core.url_to_fs(url, **options)
    fs.rm_file(f"{BUCKET}/interrupted/tiny/{version}/manifest.json")  # as if the push died here
    with pytest.raises(ArtifactNotFoundError, match="does not exist"):
        remote.pull(f"{url}/tiny@{version}", storage_options=options)
    again = remote.push("tiny", url, root=artifacts, storage_options=options)
    assert again.uploaded[-1] == "manifest.json"
    assert remote.pull(f"{url}/tiny@{version}", storage_options=options).downloaded


def test_load_offline_from_cache(artifacts, aws_env, cache, caplog):
    server, options = _start_server("offline")
    try:
        original = priors_store.load("tiny", root=artifacts)
        remote.push("tiny", "s3://offline/p", root=artifacts, storage_options=options)
        priors_store.load("s3://offline/p/tiny", storage_options=options)  # fills the cache
        seen = sum(server.hook.requests.values())
        pinned = priors_store.load(f"s3://offline/p/tiny@{original.version[:8]}",
                                   storage_options=options)
        assert sum(server.hook.requests.values()) == seen  # a pinned, cached version: no remote call
    finally:
        server.stop()
    copy = priors_store.load(f"s3://offline/p/tiny@{original.version}", storage_options=options)
    _assert_same(original, copy)
    assert pinned.directory == copy.directory
    with caplog.at_level(logging.WARNING, logger="connectome_priors.priors_store.remote"):
        latest = priors_store.load("s3://offline/p/tiny", storage_options=options)
    assert latest.version == original.version
    assert "cannot reach" in caplog.text and "latest seen there before" in caplog.text
    with pytest.raises(remote.RemoteUnavailableError, match="cannot reach"):
        priors_store.load("s3://offline/p/other", storage_options=options)  # never cached


def test_file_url_push_pull_cli(artifacts, tmp_path, cache, capsys):
    original = priors_store.load("tiny", root=artifacts)
    url = (tmp_path / "shared" / "priors").as_uri()
    assert main(["priors", "push", "tiny", url, "--artifacts", str(artifacts)]) == 0
    assert "pushed tiny@" in capsys.readouterr().out
    assert main(["priors", "push", f"tiny@{original.version}", url, "--artifacts", str(artifacts)]) == 0
    assert "nothing uploaded" in capsys.readouterr().out
    assert main(["priors", "pull", f"{url}/tiny"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pulled tiny@{original.version}")
    assert main(["priors", "pull", f"{url}/tiny@{original.version}"]) == 0
    assert capsys.readouterr().out.startswith("already cached:")
    _assert_same(original, priors_store.load(f"{url}/tiny@{original.version}"))
    listing = json.loads((tmp_path / "shared" / "priors" / "index.json").read_text())
    assert listing["names"]["tiny"]["versions"] == [original.version]
    shared = tmp_path / "shared" / "priors"
    assert not [p for p in shared.rglob(".*")]  # no temporary left
    # a tampered local remote is refused too, naming the file
    (tmp_path / "c2").mkdir()
    build = build_id((original.directory / "manifest.json").read_bytes())
    victim = shared / "tiny" / original.version / build / "neurons.parquet"
    victim.write_bytes(victim.read_bytes()[:-1] + b"\0")
    with pytest.raises(ArtifactIntegrityError, match="neurons.parquet"):
        remote.pull(f"{url}/tiny@{original.version}", cache=tmp_path / "c2")


def test_storage_options_and_urls():
    from connectome_priors.priors_store.cli_remote import parse_storage_options

    assert parse_storage_options(["endpoint_url=http://127.0.0.1:9000", "anon=true", "n=3"]) == \
        {"endpoint_url": "http://127.0.0.1:9000", "anon": True, "n": 3}
    with pytest.raises(PriorsError, match="credentials are not taken from the command line"):
        parse_storage_options(["secret=abc"])
    with pytest.raises(PriorsError, match="KEY=VALUE"):
        parse_storage_options(["endpoint_url"])
    assert remote.split_url("s3://b/p/tiny@abc") == ("s3://b/p", "tiny", "abc")
    assert remote.split_url("s3://b/p/tiny/") == ("s3://b/p", "tiny", "latest")
    with pytest.raises(remote.RemoteError, match="pins version"):
        remote.split_url("s3://b/p/tiny@abc", "def")
    with pytest.raises(remote.RemoteError, match="not BASE_URL/NAME"):
        remote.split_url("s3://b/p/..")


def test_cache_dir_has_no_credentials(tmp_path):
    path = remote.cache_dir("s3://user:pw@bucket/a/b", cache=tmp_path,
                            storage_options={"endpoint_url": "http://k:s@127.0.0.1:9000"})
    assert path == tmp_path / "priors" / "s3@127.0.0.1_9000" / "bucket" / "a" / "b"
    assert remote._public("s3://user:pw@bucket/a") == "s3://bucket/a"
