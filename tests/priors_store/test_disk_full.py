"""Issue 20: a full disk (ENOSPC, EDQUOT) while pulling into the cache, loading a URL, pushing to
a ``file://`` remote or reserving the distance matrices ends in one line naming the file, exit 2,
and leaves the state as it was: no partial cached copy (a copy cached before intact), no
published partial version.

The full disk is simulated by patching the lowest write function the code uses (as
``test_artifacts.py`` does): ``shutil.copyfile`` (fsspec's local download and the re-use of a
damaged copy's good files), ``Path.write_bytes`` (the cached manifest), ``os.rename`` (putting a
copy in place), ``open`` in :mod:`.remote_fs` and ``os.fsync`` (the ``file://`` remote's create-only
writes), ``atomic_write_bytes`` (the remote index), ``os.posix_fallocate`` (the memory maps)."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fsspec")

from connectome_priors import priors_store
from connectome_priors.cli import main
from connectome_priors.priors_store import remote, remote_fs
from connectome_priors.priors_store.cache import CacheError
from connectome_priors.priors_store.distance_writer import write_distance
from connectome_priors.priors_store.errors import ArtifactNotFoundError, PriorsError
from connectome_priors.etl.store import Store
from connectome_priors.priors_store.pipeline import DeriveParams, plan
from connectome_priors.priors_store.population import Population
from connectome_priors.priors_store.remote_index import build_id
from connectome_priors.priors_store.verification import verify
from connectome_priors.priors_store.writer import ArtifactWriter

FAST = DeriveParams(precision=False)
ENOSPC = os.strerror(errno.ENOSPC)


@pytest.fixture(scope="module")
def tiny(tiny_pooled, tmp_path_factory):
    """(store, artifact root, first version, second version) of ``tiny``: two versions of one name
    (other module seeds), the second one ``latest``."""
    store, shared, built = tiny_pooled
    root = tmp_path_factory.mktemp("disk-full") / "artifacts"
    shutil.copytree(shared, root)
    first = built["version"]
    # A remote's latest is the newest 'created' (whole seconds), then the larger version id: both
    # builds often fall in one second, so the second one's recipe is chosen to have the larger id
    # (ids are recipe hashes, the same on every run), and it is the latest however fast they ran.
    params = next(p for seed in range(1, 50)
                  if plan(Population.pooled(), Store(store),
                          params=(p := DeriveParams(precision=False, module_seed=seed))).version > first)
    second = priors_store.build("tiny", Population.pooled(), store=store, root=root,
                                params=params)["version"]
    assert second > first
    return store, root, first, second


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A fresh, empty local cache (the ``cache`` setting)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("CXP_CACHE", str(path))
    return path


def _url(tmp_path: Path) -> str:
    return (tmp_path / "shared" / "priors").as_uri()


def _tree(folder: Path) -> dict[str, str]:
    """Every file below ``folder`` (hidden ones too) with its sha256."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


def _copyfile_fails(at: int = 1):
    """``shutil.copyfile`` failing as a full disk does in its ``at``-th call: half of the file is
    written, then ENOSPC naming the source as ``filename`` (as ``shutil``'s sendfile path does)."""
    real, calls = shutil.copyfile, []

    def fake(src, dst, *args, **kwargs):
        calls.append(dst)
        if len(calls) != at:
            return real(src, dst, *args, **kwargs)
        data = Path(src).read_bytes()
        Path(dst).write_bytes(data[:len(data) // 2])
        raise OSError(errno.ENOSPC, ENOSPC, str(src), None, str(dst))
    return fake


def _no_version_cached(folder: Path, *versions: str) -> None:
    """No copy of ``versions`` and no temporary of a pull in the cache folder ``folder``."""
    if not folder.exists():
        return
    names = {p.name for p in folder.iterdir()}
    assert not names & set(versions), names
    assert not [n for n in names if n.startswith(".")], names


# ------------------------------------------------------------------------------ pull, load(URL)


@pytest.mark.parametrize("at", [1, 3])
def test_disk_full_during_pull_caches_nothing_and_the_next_pull_works(tiny, tmp_path, cache,
                                                                      capsys, monkeypatch, at):
    _, root, _, second = tiny
    url = _url(tmp_path)
    remote.push(f"tiny@{second}", url, root=root)
    folder = remote.cache_dir(url, cache=cache) / "tiny"
    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", _copyfile_fails(at))
        assert main(["priors", "pull", f"{url}/tiny"]) == 2
    err = _one_line_error(capsys, f"cannot write {folder / second}/", ENOSPC,
                          "(errno 28) while pulling tiny@latest", "nothing partial was cached")
    build = build_id((root / "tiny" / second / "manifest.json").read_bytes())
    assert f"/{build}/" not in err  # the cache's file, not the remote's (shutil names the source)
    _no_version_cached(folder, second)
    assert not (folder / "latest").exists()
    assert main(["priors", "pull", f"{url}/tiny"]) == 0
    assert capsys.readouterr().out.startswith(f"pulled tiny@{second}")
    verify(priors_store.load(f"{url}/tiny@{second}").directory)


def test_disk_full_during_pull_keeps_the_copy_cached_before(tiny, tmp_path, cache, capsys,
                                                            monkeypatch):
    _, root, first, second = tiny
    url = _url(tmp_path)
    remote.push(f"tiny@{first}", url, root=root)
    assert main(["priors", "pull", f"{url}/tiny"]) == 0
    folder = remote.cache_dir(url, cache=cache) / "tiny"
    before = _tree(folder)
    assert (folder / "latest").read_text().strip() == first
    remote.push(f"tiny@{second}", url, root=root)  # now the remote's latest
    capsys.readouterr()
    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", _copyfile_fails(2))
        assert main(["priors", "pull", f"{url}/tiny"]) == 2
    _one_line_error(capsys, f"{folder / second}/", ENOSPC)
    assert _tree(folder) == before  # the first version and the latest pointer as they were
    assert main(["priors", "pull", f"{url}/tiny"]) == 0
    assert (folder / "latest").read_text().strip() == second
    assert {p.name for p in folder.iterdir()} == {first, second, "latest"}


def test_disk_full_repairing_a_damaged_copy_leaves_it_as_it_was(tiny, tmp_path, cache, capsys,
                                                                monkeypatch):
    _, root, _, second = tiny
    url = _url(tmp_path)
    remote.push(f"tiny@{second}", url, root=root)
    target = remote.pull(f"{url}/tiny@{second}").directory
    victim = target / "distance_um.npy"
    victim.write_bytes(victim.read_bytes()[:-4])  # damaged: the repair downloads it again
    before = _tree(target.parent)
    real = os.rename

    def rename_full(src, dst, *args, **kwargs):  # no room for the new folder's entry
        if Path(dst) == target and Path(src).name.startswith(f".{second}.tmp-"):
            raise OSError(errno.ENOSPC, ENOSPC, str(src), None, str(dst))
        return real(src, dst, *args, **kwargs)

    for patch in ((shutil, "copyfile", _copyfile_fails(1)),  # the re-use of a good file
                  (os, "rename", rename_full)):              # putting the repaired copy in place
        with monkeypatch.context() as m:
            m.setattr(*patch)
            assert main(["priors", "pull", f"{url}/tiny@{second}"]) == 2
        _one_line_error(capsys, f"cannot write {target}", ENOSPC)
        assert _tree(target.parent) == before
    result = remote.pull(f"{url}/tiny@{second}")
    assert result.repaired and result.directory == target
    verify(priors_store.load(f"{url}/tiny@{second}").directory)


def test_disk_full_in_load_url_names_the_file_and_caches_nothing(tiny, tmp_path, cache,
                                                                 monkeypatch):
    _, root, _, second = tiny
    url = _url(tmp_path)
    remote.push(f"tiny@{second}", url, root=root)
    folder = remote.cache_dir(url, cache=cache) / "tiny"
    real = Path.write_bytes

    def manifest_full(self, data):
        if self.name == "manifest.json":
            real(self, data[:10])
            raise OSError(errno.ENOSPC, ENOSPC)  # a write names no file
        return real(self, data)

    with monkeypatch.context() as m:
        m.setattr(Path, "write_bytes", manifest_full)
        with pytest.raises(CacheError, match=rf"cannot write {folder / second}/manifest\.json: "
                                             rf"No space left on device \(errno 28\)") as info:
            priors_store.load(f"{url}/tiny@{second}")
    assert info.value.errno == errno.ENOSPC and info.value.path.endswith("manifest.json")
    assert "\n" not in str(info.value)
    _no_version_cached(folder, second)
    with monkeypatch.context() as m:
        m.setattr(shutil, "copyfile", _copyfile_fails(1))
        with pytest.raises(CacheError, match="No space left on device"):
            priors_store.load(f"{url}/tiny@{second}")
    _no_version_cached(folder, second)
    assert priors_store.load(f"{url}/tiny@{second}").version == second


def test_edquot_is_reported_like_enospc(tiny, tmp_path, cache, monkeypatch):
    _, root, _, second = tiny
    url = _url(tmp_path)
    remote.push(f"tiny@{second}", url, root=root)

    def quota(src, dst, *args, **kwargs):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), str(src), None, str(dst))

    monkeypatch.setattr(shutil, "copyfile", quota)
    with pytest.raises(CacheError, match=rf"{os.strerror(errno.EDQUOT)} \(errno {errno.EDQUOT}\)"
                                         r" while pulling.*Free space"):
        remote.pull(f"{url}/tiny@{second}")


def test_local_disk_full_while_downloading_from_s3_is_a_cache_error(tiny, tmp_path, cache,
                                                                     monkeypatch):
    """The download's own ``open`` in s3fs fails: the local disk, not the remote, is named."""
    pytest.importorskip("s3fs")
    pytest.importorskip("moto.server")
    import s3fs.core

    from tests.priors_store.test_remote import _start_server

    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    for var, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_EC2_METADATA_DISABLED", "true"),
                       ("AWS_CONFIG_FILE", str(tmp_path / "aws")),
                       ("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws"))):
        monkeypatch.setenv(var, value)
    server, options = _start_server("cxp-full")
    try:
        _, root, _, second = tiny
        url = "s3://cxp-full/priors"
        remote.push(f"tiny@{second}", url, root=root, storage_options=options)
        folder = remote.cache_dir(url, cache=cache, storage_options=options) / "tiny"
        monkeypatch.setattr(s3fs.core, "open", _open_fails(10, mode="w"), raising=False)
        with pytest.raises(CacheError, match=rf"cannot write {folder / second}/\S+: No space left "
                                             r"on device \(errno 28\) while pulling"):
            remote.pull(f"{url}/tiny@{second}", storage_options=options)
        _no_version_cached(folder, second)
        monkeypatch.undo()
        assert remote.pull(f"{url}/tiny@{second}", storage_options=options,
                           cache=cache).version == second
    finally:
        server.stop()


def test_disk_full_at_the_latest_pointer_keeps_the_complete_copy(tiny, tmp_path, cache,
                                                                 monkeypatch):
    _, root, _, second = tiny
    url = _url(tmp_path)
    remote.push(f"tiny@{second}", url, root=root)

    def pointer_full(path, text):
        raise OSError(errno.ENOSPC, ENOSPC)

    with monkeypatch.context() as m:
        m.setattr(remote, "atomic_write_text", pointer_full)
        with pytest.raises(CacheError, match=rf"pulled tiny@{second} into .*, but cannot write "
                                             r".*tiny/latest: No space left on device"):
            remote.pull(f"{url}/tiny")
    result = remote.pull(f"{url}/tiny")
    assert not result.downloaded and result.version == second


# -------------------------------------------------------------------------------- push, file://


def _open_fails(after: int, *, only: str | None = None, mode: str = "x"):
    """``open`` whose files opened with ``mode`` in their mode (:mod:`.remote_fs` creates with
    ``xb``) fail with ENOSPC once ``after`` bytes have been written in all (only files whose
    temporary is named after ``only``, when given)."""
    written = [0]

    class Full:
        def __init__(self, fh) -> None:
            self.fh = fh

        def write(self, data) -> int:
            room = max(after - written[0], 0)
            if room < len(data):
                self.fh.write(data[:room])
                written[0] += room
                raise OSError(errno.ENOSPC, ENOSPC)
            written[0] += len(data)
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.fh.close()

    def fake(path, how="r", *args, **kwargs):
        fh = open(path, how, *args, **kwargs)
        if mode not in how or (only and not Path(path).name.startswith(f".{only}.")):
            return fh
        return Full(fh)
    return fake


def _published(shared: Path, version: str) -> bool:
    return (shared / "tiny" / version / "manifest.json").exists()


@pytest.mark.parametrize("case", ["first file", "mid-way", "manifest", "fsync"])
def test_disk_full_during_push_publishes_nothing_and_the_next_push_works(tiny, tmp_path, cache,
                                                                         capsys, monkeypatch, case):
    _, root, _, second = tiny
    url = _url(tmp_path)
    shared = tmp_path / "shared" / "priors"
    with monkeypatch.context() as m:
        if case == "fsync":
            calls, real = [], os.fsync

            def fsync_full(fd):  # NFS and delayed allocation report a full disk at fsync
                calls.append(fd)
                if len(calls) == 2:
                    raise OSError(errno.ENOSPC, ENOSPC)
                return real(fd)
            m.setattr(os, "fsync", fsync_full)
        else:
            after = {"first file": 100, "mid-way": 12_000, "manifest": 100}[case]
            m.setattr(remote_fs, "open", _open_fails(after, only="manifest.json"
                                                     if case == "manifest" else None),
                      raising=False)
        assert main(["priors", "push", f"tiny@{second}", url, "--artifacts", str(root)]) == 2
    err = _one_line_error(capsys, f"cannot write {shared}/tiny/{second}/", ENOSPC, "(errno 28)",
                          f"while pushing tiny@{second}; nothing was published")
    if case == "manifest":
        assert f"/tiny/{second}/manifest.json: " in err
    assert not _published(shared, second)
    assert not [p for p in shared.rglob(".*")]  # no temporary left
    with pytest.raises(ArtifactNotFoundError):
        remote.pull(f"{url}/tiny@{second}")
    assert main(["priors", "push", f"tiny@{second}", url, "--artifacts", str(root)]) == 0
    assert "pushed tiny@" in capsys.readouterr().out
    loaded = priors_store.load(f"{url}/tiny@{second}")
    verify(loaded.directory)
    assert loaded.manifest == priors_store.load("tiny", second, root=root).manifest


def test_disk_full_push_error_carries_the_path_and_errno(tiny, tmp_path, monkeypatch):
    _, root, _, second = tiny
    shared = tmp_path / "shared" / "priors"
    monkeypatch.setattr(remote_fs, "open", _open_fails(0), raising=False)
    with pytest.raises(remote.RemoteError, match="No space left on device") as info:
        remote.push(f"tiny@{second}", _url(tmp_path), root=root)
    assert info.value.errno == errno.ENOSPC
    assert info.value.path.startswith(f"{shared}/tiny/{second}/")
    assert not _published(shared, second)


def test_disk_full_writing_the_index_after_publishing(tiny, tmp_path, cache, capsys, monkeypatch):
    _, root, _, second = tiny
    url = _url(tmp_path)
    shared = tmp_path / "shared" / "priors"

    def index_full(path, data):
        raise OSError(errno.ENOSPC, ENOSPC)

    with monkeypatch.context() as m:
        m.setattr(remote_fs, "atomic_write_bytes", index_full)
        assert main(["priors", "push", f"tiny@{second}", url, "--artifacts", str(root)]) == 2
    _one_line_error(capsys, f"cannot write {shared}/index/tiny.json: {ENOSPC}",
                    f"while indexing tiny@{second}, which is published complete", "push again")
    assert _published(shared, second) and not (shared / "index.json").exists()
    assert remote.pull(f"{url}/tiny").version == second  # latest is read from the manifests
    assert main(["priors", "push", f"tiny@{second}", url, "--artifacts", str(root)]) == 0
    assert "nothing uploaded (index repaired)" in capsys.readouterr().out
    assert (shared / "index.json").exists()


# ------------------------------------------------------------------------- the distance memmaps


@pytest.mark.parametrize("at", [1, 2])
def test_disk_full_reserving_a_distance_matrix_names_it_and_publishes_nothing(tiny, tmp_path,
                                                                              monkeypatch, at):
    store = tiny[0]
    calls = []

    def no_space(fd, offset, length):
        calls.append(length)
        if len(calls) == at:
            raise OSError(errno.ENOSPC, ENOSPC)

    monkeypatch.setattr(os, "posix_fallocate", no_space, raising=False)
    kind = ("distance_um", "distance_minmax")[at - 1]
    with pytest.raises(PriorsError, match=rf"cannot write .*/\.tmp-[^/]+/{kind}\.npy: No space "
                                          r"left on device \(errno 28\) while building artifact "
                                          r"big; nothing partial was published.*Free space") as info:
        priors_store.build("big", Population.pooled(), store=store, root=tmp_path, params=FAST)
    assert info.value.errno == errno.ENOSPC and "\n" not in str(info.value)
    assert not (tmp_path / "big").exists() or list((tmp_path / "big").iterdir()) == []


def test_write_distance_bytes_are_those_of_a_plain_memmap(tmp_path):
    rng = np.random.default_rng(0)
    pos = rng.uniform(0, 500, size=(37, 3))
    with ArtifactWriter(tmp_path, "d") as writer:
        write_distance(pos, writer, block=8)
        got = {f: writer.path(f).read_bytes() for f in ("distance_um.npy", "distance_minmax.npy")}
    d = np.sqrt(((pos[:, None, :] - pos[None, :, :]) ** 2).sum(-1)).astype(np.float32)
    np.fill_diagonal(d, 0.0)
    for fname, value in (("distance_um.npy", d), ("distance_minmax.npy", d / d.max())):
        plain = np.lib.format.open_memmap(tmp_path / fname, mode="w+", dtype=np.float32,
                                          shape=value.shape)
        plain[:] = np.load(io.BytesIO(got[fname]))
        plain.flush()
        del plain
        assert (tmp_path / fname).read_bytes() == got[fname]
        assert np.load(tmp_path / fname) == pytest.approx(value, rel=1e-5, abs=1e-3)
