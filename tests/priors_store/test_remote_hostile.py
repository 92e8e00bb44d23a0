"""Hostile remotes and caches for priors_store/remote.py (issue 20), against moto's real S3 server
on 127.0.0.1 and file:// remotes.

- two builds of one version pushed at once, one pusher stopped at a named pause point
  (``CXP_PAUSE_AT``, connectome_priors/kernel/pause.py) and killed there or let go: 20 tries;
- a tampered index (``latest`` a path, ``../``, an int; a list for an object; deep nesting; 17 MiB;
  an entry's ``created`` pinning an old version) and tampered manifests;
- a poisoned cache (changed, truncated, missing, extra and linked files, a linked version folder,
  another build's copy, a linked name folder, a ``latest`` pointer out of the cache);
- credentials in URLs and options, and remotes that refuse (read-only, S3 403, no bucket, a
  reserved or 300-character name, glob characters in a version): one line, exit 2.

Whatever happens, no pull returns bytes other than the first published build's.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectome_priors.testing import moto_s3
from connectome_priors.testing.pauses import pause_env, release, wait_reached

pytest.importorskip("fsspec")
pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")

import fsspec  # noqa: E402

from connectome_priors import priors_store  # noqa: E402
from connectome_priors.cli import main  # noqa: E402
from connectome_priors.kernel import pause  # noqa: E402
from connectome_priors.priors_store import remote  # noqa: E402
from connectome_priors.priors_store.manifest import content_digest, recipe_version  # noqa: E402
from connectome_priors.priors_store.errors import ArtifactIntegrityError  # noqa: E402
from connectome_priors.priors_store.remote_fs import INDEX_LIMIT, MANIFEST_LIMIT, Remote  # noqa: E402
from connectome_priors.priors_store.remote_index import build_id  # noqa: E402

BUCKET = "cxp-hostile"
#: Objects in this bucket cannot be written: the server answers S3's 403 AccessDenied.
READ_ONLY = "cxp-read-only"
FAST = moto_s3.FAST
SECRET = "SECRETxyz123"
A_CREATED, B_CREATED, V2_CREATED = ("2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00",
                                    "2026-03-01T00:00:00+00:00")
FORK = multiprocessing.get_context("fork")
_DENIED = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code>'
           b'<Message>Access Denied</Message><RequestId>cxp</RequestId></Error>')


def _hostile(environ, start_response, app):
    """Object writes to :data:`READ_ONLY` get S3's 403 AccessDenied; the rest goes to moto."""
    path = environ.get("PATH_INFO", "")
    if (environ["REQUEST_METHOD"] in ("PUT", "POST", "DELETE")
            and path.startswith(f"/{READ_ONLY}/") and len(path) > len(READ_ONLY) + 2):
        start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                         ("Content-Length", str(len(_DENIED)))])
        return [_DENIED]
    return app(environ, start_response)


@pytest.fixture(scope="module", autouse=True)
def aws_env(tmp_path_factory):
    """Dummy credentials and no user AWS configuration (nothing but 127.0.0.1 is contacted)."""
    with moto_s3.offline_aws(tmp_path_factory.mktemp("aws"), unset=(pause.ENV_AT,)):
        yield


@pytest.fixture(scope="module")
def s3(aws_env):
    """Storage options of a moto S3 server on 127.0.0.1 with buckets BUCKET and READ_ONLY."""
    server = moto_s3.start_s3(BUCKET, READ_ONLY, hook=_hostile)
    yield server.options
    server.stop()


# ------------------------------------------------------------------------------- the builds


@dataclass(frozen=True)
class Builds:
    """Local artifact roots: ``a`` holds tiny@v1 (build A) and tiny@v2, ``b`` another build of
    tiny@v1 (one float differs in its last bit), ``reserved`` a prior named index.json."""

    a: Path
    b: Path
    reserved: Path
    v1: str
    v2: str

    def raw(self, root: Path, version: str) -> bytes:
        return (root / "tiny" / version / "manifest.json").read_bytes()

    def files(self, root: Path, version: str) -> dict[str, str]:
        return _hashes(root / "tiny" / version)


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def _variant(src: Path, root: Path, name: str, *, created: str, params: dict | None = None,
             flip: str | None = None) -> str:
    """Copy the artifact folder ``src`` to ``root/name/<version>``: with ``params`` added to the
    recipe (a new version), the last element of the .npy ``flip`` changed in its lowest bit (another
    build of the same version), ``created`` set. Returns the version."""
    manifest = json.loads((src / "manifest.json").read_text())
    manifest.update(name=name, created=created)
    if params:
        manifest["parameters"] = {**manifest["parameters"], **params}
        manifest["version"] = recipe_version(manifest)
    folder = root / name / manifest["version"]
    shutil.copytree(src, folder)
    if flip:
        data = bytearray((folder / flip).read_bytes())
        data[-4] ^= 1  # lowest mantissa bit of the last float32
        (folder / flip).write_bytes(bytes(data))
        for entry in manifest["files"]:
            if entry["path"] == flip:
                entry["sha256"] = hashlib.sha256(data).hexdigest()
        manifest["content_sha256"] = content_digest(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    (root / name / "latest").write_text(manifest["version"] + "\n")
    priors_store.verify(folder)
    return manifest["version"]


@pytest.fixture(scope="module")
def builds(tiny_pooled, tmp_path_factory) -> Builds:
    _, root, built = tiny_pooled
    base = tmp_path_factory.mktemp("hostile-builds")
    src = root / "tiny" / built["version"]
    a, b, reserved = base / "a", base / "b", base / "reserved"
    v1 = _variant(src, a, "tiny", created=A_CREATED)
    v2 = _variant(src, a, "tiny", created=V2_CREATED, params={"note": "second recipe"})
    assert _variant(src, b, "tiny", created=B_CREATED, flip="distance_um.npy") == v1
    _variant(src, reserved, "index.json", created=A_CREATED)
    (a / "tiny" / "latest").write_text(v2 + "\n")
    return Builds(a, b, reserved, v1, v2)


# ------------------------------------------------------------------------------ the remotes


@dataclass
class Where:
    """A fresh remote: its URL, storage options, and raw access that bypasses remote.py."""

    url: str
    options: dict

    def __post_init__(self) -> None:
        self.fs, self.root = fsspec.core.url_to_fs(self.url, skip_instance_cache=True, **self.options)

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def cat(self, rel: str) -> bytes:
        self.fs.invalidate_cache()
        return self.fs.cat_file(self.path(rel))

    def pipe(self, rel: str, data: bytes) -> None:  # a hostile overwrite
        if "file" in self.fs.protocol:
            Path(self.path(rel)).parent.mkdir(parents=True, exist_ok=True)
        self.fs.pipe_file(self.path(rel), data)

    def keys(self) -> list[str]:
        self.fs.invalidate_cache()
        try:
            return sorted(str(k)[len(self.root) + 1:] for k in self.fs.find(self.root))
        except FileNotFoundError:
            return []

    def cli(self) -> list[str]:
        return [f"--storage-option={k}={json.dumps(v) if not isinstance(v, str) else v}"
                for k, v in self.options.items()]


@pytest.fixture(params=["file", "s3"])
def protocol(request) -> str:
    """Every test using :func:`where` runs on file:// and S3 (unless it parametrizes this)."""
    return request.param


@pytest.fixture
def where(request, tmp_path, protocol) -> Where:
    """A fresh, empty remote of ``protocol``."""
    if protocol == "file":
        return Where((tmp_path / "remote").as_uri(), {})
    return Where(f"s3://{BUCKET}/{uuid.uuid4().hex[:12]}", request.getfixturevalue("s3"))


def _pushed(builds: Builds, where: Where, *versions: str) -> None:
    for version in versions:
        assert remote.push(f"tiny@{version}", where.url, root=builds.a,
                           storage_options=where.options).uploaded


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_refusal(rc: int, out: str, err: str) -> None:
    assert rc == 2, (out, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_create_only_writes_never_replace(where, tmp_path):
    """The installed s3fs/botocore and moto honour ``If-None-Match: *`` (a conditional PutObject,
    not look-then-write); on file:// a hard link never replaces. No temporary is left."""
    r = Remote(where.url, where.options)
    assert r.create_bytes(b"first", "k", "x") and not r.create_bytes(b"second", "k", "x")
    (tmp_path / "f").write_bytes(b"a file")
    assert not r.create_file(tmp_path / "f", "k", "x") and r.create_file(tmp_path / "f", "k", "y")
    assert where.cat("k/x") == b"first" and where.cat("k/y") == b"a file"
    assert where.keys() == ["k/x", "k/y"]
    if where.url.startswith("s3://"):
        with pytest.raises(FileExistsError):  # the server refuses: 412 PreconditionFailed
            where.fs.pipe_file(where.path("k/x"), b"third", mode="create")
        assert where.cat("k/x") == b"first"


# --------------------------------------------------------- concurrent pushes, one stopped


def _push_child(ref: str, url: str, root: Path, options: dict, env: dict) -> None:
    os.environ.update(env)
    try:
        remote.push(ref, url, root=root, storage_options=options)
    except BaseException:  # noqa: BLE001 (the exit status tells the test)
        os._exit(1)
    os._exit(0)


def _stopped_push(ref: str, url: str, root: Path, options: dict, point: str, folder: Path):
    """A forked ``push`` that stops at ``point`` (returned once it has written its marker)."""
    child = FORK.Process(target=_push_child, args=(ref, url, root, options, pause_env(point, folder)))
    child.start()
    try:
        wait_reached(point, folder, alive=child.is_alive, timeout_s=60)  # the event, not a guess
    except AssertionError:
        child.kill()
        raise
    return child


#: (point, what happens to the stopped pusher A) - A is stopped there while B pushes to the end.
STOPS = [("push:start", "release"), ("push:after-file:1", "kill"), ("push:mid-file:2", "kill"),
         ("push:after-file:3", "release"), ("push:before-manifest", "kill"),
         ("push:before-manifest", "release"), ("push:mid-manifest", "kill"),
         ("push:after-manifest", "kill"), ("push:after-manifest", "release"),
         ("push:after-index", "kill")]


@pytest.mark.processes
@pytest.mark.parametrize(("point", "action"), STOPS, ids=[f"{p}-{a}" for p, a in STOPS])
def test_same_version_pushed_twice_one_pusher_stopped(builds, where, tmp_path, point, action):
    """Items 2: two builds of one version pushed at once, A stopped at ``point`` while B pushes,
    then A killed (SIGKILL) or let go. Exactly one complete build is published, the first one;
    every pull returns it; pushing either again changes nothing."""
    v1 = builds.v1
    a_first = point in ("push:after-manifest", "push:after-index")
    first, other = (builds.a, builds.b) if a_first else (builds.b, builds.a)
    pusher = _stopped_push(f"tiny@{v1}", where.url, builds.a, where.options, point, tmp_path / "pause")
    try:
        early = None
        if a_first:  # already published: pulled before B pushes
            early = remote.pull(f"{where.url}/tiny@{v1}", cache=tmp_path / "early",
                                storage_options=where.options)
            assert _hashes(early.directory) == builds.files(builds.a, v1)
        b = remote.push(f"tiny@{v1}", where.url, root=builds.b, storage_options=where.options)
        assert b.published is not a_first and b.same_build is not a_first
    finally:
        if action == "kill":
            pusher.kill()
        else:
            release(point, tmp_path / "pause")
        pusher.join(60)
    assert pusher.exitcode == (-9 if action == "kill" else 0)

    want = builds.files(first, v1)
    for cache, ref in (("c1", f"tiny@{v1}"), ("c1", "tiny"), ("c1", f"tiny@{v1[:6]}"),
                       ("early", "tiny")):
        got = remote.pull(f"{where.url}/{ref}", cache=tmp_path / cache, storage_options=where.options)
        assert got.version == v1 and _hashes(got.directory) == want, (cache, ref)
    for root in (builds.a, builds.b):  # pushing again publishes and uploads nothing
        again = remote.push(f"tiny@{v1}", where.url, root=root, storage_options=where.options)
        assert not again.published and again.uploaded == ()
        assert again.same_build is (root == first)
    again = remote.pull(f"{where.url}/tiny@{v1}", cache=tmp_path / "c1", storage_options=where.options)
    assert not again.downloaded and _hashes(again.directory) == want
    manifests = [k for k in where.keys() if k.endswith("/manifest.json")]
    assert manifests == [f"tiny/{v1}/manifest.json"]
    assert where.cat(f"tiny/{v1}/manifest.json") == builds.raw(first, v1)
    index = json.loads(where.cat("index/tiny.json"))
    assert index["latest"] == v1
    assert index["versions"][v1]["manifest_sha256"] == \
        hashlib.sha256(builds.raw(first, v1)).hexdigest()
    assert json.loads(where.cat("index.json"))["names"] == {"tiny": {"latest": v1, "versions": [v1]}}
    other_build = build_id(builds.raw(other, v1))
    if action == "release":  # the loser removed its staging prefix
        assert not [k for k in where.keys() if k.startswith(f"tiny/{v1}/{other_build}/")]


def _exit_at(point: str, folder: Path, target, *args) -> int:
    """Run ``target(*args)`` in a forked process that ends itself at ``point`` (as if killed
    there: ``os._exit``, nothing cleaned up); return its exit status."""
    child = FORK.Process(target=target, args=(*args, pause_env(point, folder, action="exit")))
    child.start()
    child.join(60)
    assert pause.marker(point, folder).exists(), f"never reached {point}"
    return child.exitcode


@pytest.mark.processes
def test_killed_push_resumes_checking_what_it_staged(builds, where, tmp_path):
    """A push killed after staging 3 files, whose staged objects are then damaged (one changed,
    one truncated): pushing again re-checks them by sha256 instead of trusting their names,
    replaces the bad ones and publishes the right build."""
    v1 = builds.v1
    status = _exit_at("push:after-file:3", tmp_path / "pause", _push_child, f"tiny@{v1}", where.url,
                      builds.a, where.options)
    assert status == pause.EXIT_STATUS
    build = build_id(builds.raw(builds.a, v1))
    staged = sorted(k for k in where.keys() if k.startswith(f"tiny/{v1}/{build}/")
                    and not k.rsplit("/", 1)[1].startswith("."))
    assert len(staged) == 3 and f"tiny/{v1}/manifest.json" not in where.keys()
    with pytest.raises(priors_store.ArtifactNotFoundError):  # unpublished: invisible
        remote.pull(f"{where.url}/tiny", cache=tmp_path / "c0", storage_options=where.options)
    changed = bytearray(where.cat(staged[0]))
    changed[-1] ^= 0xFF
    where.pipe(staged[0], bytes(changed))
    where.pipe(staged[1], where.cat(staged[1])[:10])
    again = remote.push(f"tiny@{v1}", where.url, root=builds.a, storage_options=where.options)
    assert again.published and len(again.uploaded) == len(builds.files(builds.a, v1)) - 3
    got = remote.pull(f"{where.url}/tiny", cache=tmp_path / "c1", storage_options=where.options)
    assert _hashes(got.directory) == builds.files(builds.a, v1)


def _pull_child(url: str, cache: str, options: dict, env: dict) -> None:
    os.environ.update(env)
    remote.pull(url, cache=cache, storage_options=options)
    os._exit(0)


@pytest.mark.processes
def test_killed_pull_leaves_no_partial_copy(builds, tmp_path):
    """A pull killed after downloading 2 files leaves only a hidden temporary; the next pull
    downloads and verifies the whole version."""
    where = Where((tmp_path / "remote").as_uri(), {})
    _pushed(builds, where, builds.v1)
    cache = tmp_path / "cache"
    status = _exit_at("pull:after-file:2", tmp_path / "pause", _pull_child, f"{where.url}/tiny",
                      str(cache), {})
    assert status == pause.EXIT_STATUS
    folder = remote.cache_dir(where.url, cache=cache) / "tiny"
    assert [p.name.startswith(".") for p in folder.iterdir()] == [True]
    got = remote.pull(f"{where.url}/tiny", cache=cache)
    assert got.downloaded and _hashes(got.directory) == builds.files(builds.a, builds.v1)


def test_broken_published_version_reported_not_hidden(builds, where, tmp_path, capsys):
    """Item 2's end state as the old protocol left it (files beside the manifest, one truncated by
    a pusher killed mid-file): a push names the file (one line, exit 2) instead of "nothing
    uploaded", a pull refuses it, nothing is overwritten; an intact remote of that layout reads."""
    v1, v2 = builds.v1, builds.v2
    for version in (v1, v2):
        folder = builds.a / "tiny" / version
        for entry in json.loads(builds.raw(builds.a, version))["files"]:
            data = (folder / entry["path"]).read_bytes()
            if version == v1 and entry["path"] == "distance_um.npy":
                data = data[:len(data) // 2]
            where.pipe(f"tiny/{version}/{entry['path']}", data)
        where.pipe(f"tiny/{version}/manifest.json", builds.raw(builds.a, version))
    truncated = where.cat(f"tiny/{v1}/distance_um.npy")
    rc, out, err = _cli(capsys, "priors", "push", f"tiny@{v1}", where.url, "--artifacts",
                        str(builds.a), *where.cli())
    _one_line_refusal(rc, out, err)
    assert "distance_um.npy" in err and "never overwritten" in err
    with pytest.raises(ArtifactIntegrityError, match=f"{v1}/distance_um.npy"):
        remote.pull(f"{where.url}/tiny@{v1}", cache=tmp_path / "c", storage_options=where.options)
    assert where.cat(f"tiny/{v1}/distance_um.npy") == truncated
    got = remote.pull(f"{where.url}/tiny", cache=tmp_path / "c", storage_options=where.options)
    assert got.version == v2 and _hashes(got.directory) == builds.files(builds.a, v2)


# ------------------------------------------------------------------------- a tampered index


def _deep(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"]" * depth


def _tamper_index(kind: str, builds: Builds, where: Where) -> None:
    v1, v2 = builds.v1, builds.v2
    index = json.loads(where.cat("index/tiny.json"))
    if kind == "latest-absolute":  # another local artifact
        index["latest"] = str(builds.a / "tiny" / v1)
    elif kind == "latest-dotdot":
        index["latest"] = "../../../../../../.."
    elif kind == "latest-int":
        index["latest"] = 7
    elif kind == "versions-list":
        index["versions"] = [v1, v2]
    elif kind == "created-pin":  # an entry's created pins latest to the old version
        index["versions"][v1]["created"] = "2999-01-01T00:00:00+00:00"
        index["latest"] = v1
    elif kind == "deep":
        where.pipe("index/tiny.json", _deep())
        where.pipe("index.json", b'{"names": ' + _deep() + b"}")
        return
    elif kind == "oversized":  # 17 MiB, naming the old version
        index["latest"] = v1
        where.pipe("index/tiny.json", json.dumps(index).encode() + b" " * (INDEX_LIMIT + 2**20))
        return
    elif kind == "listing-types":
        where.pipe("index.json", json.dumps({"format": 2, "names": [1, 2]}).encode())
        return
    where.pipe("index/tiny.json", json.dumps(index).encode())


INDEX_TAMPERS = ["latest-absolute", "latest-dotdot", "latest-int", "versions-list", "created-pin",
                 "deep", "oversized", "listing-types"]
#: Run on S3 in the default run too (the rest on S3 with -m slow; all on file://).
FAST_ON_S3 = {"latest-absolute", "created-pin", "deep"}


@pytest.mark.parametrize(("protocol", "kind"), [
    *[("file", k) for k in INDEX_TAMPERS],
    *[pytest.param("s3", k, marks=() if k in FAST_ON_S3 else pytest.mark.slow) for k in INDEX_TAMPERS]])
def test_tampered_index_is_not_trusted_and_repaired(builds, where, tmp_path, capsys, kind):
    """Item 4 and the wrong-typed/oversized index: pull resolves latest from the manifests (never
    a path), the CLI exits 0, and the next push re-derives the index."""
    v1, v2 = builds.v1, builds.v2
    _pushed(builds, where, v1, v2)
    _tamper_index(kind, builds, where)
    got = remote.pull(f"{where.url}/tiny", cache=tmp_path / "c", storage_options=where.options)
    assert got.version == v2 and got.directory == remote.cache_dir(
        where.url, cache=tmp_path / "c", storage_options=where.options) / "tiny" / v2
    assert _hashes(got.directory) == builds.files(builds.a, v2)
    rc, out, err = _cli(capsys, "priors", "pull", f"{where.url}/tiny", "--cache",
                        str(tmp_path / "c2"), *where.cli())
    assert rc == 0 and out.startswith(f"pulled tiny@{v2}"), err
    again = remote.push(f"tiny@{v1}", where.url, root=builds.a, storage_options=where.options)
    assert again.index_written and again.uploaded == ()
    index = json.loads(where.cat("index/tiny.json"))
    assert index["latest"] == v2 and sorted(index["versions"]) == sorted([v1, v2])
    assert index["versions"][v1]["created"] == A_CREATED  # from the manifest, not the index
    listing = json.loads(where.cat("index.json"))
    assert listing["names"] == {"tiny": {"latest": v2, "versions": sorted([v1, v2])}}
    assert remote.reindex(where.url, storage_options=where.options) == listing


def test_created_pin_does_not_survive_reindex(builds, where):
    """An entry's ``created`` no longer pins ``latest`` through reindexing (item 4)."""
    _pushed(builds, where, builds.v1, builds.v2)
    _tamper_index("created-pin", builds, where)
    listing = remote.reindex(where.url, storage_options=where.options)
    assert listing["names"]["tiny"]["latest"] == builds.v2
    assert json.loads(where.cat("index/tiny.json"))["latest"] == builds.v2


# --------------------------------------------------------------------- tampered manifests


MANIFEST_TAMPERS = ["oversized", "deep", "other-version", "not-an-object", "stray-keys"]


@pytest.mark.parametrize(("protocol", "kind"), [
    *[("file", k) for k in MANIFEST_TAMPERS],
    *[pytest.param("s3", k, marks=() if k in ("oversized", "deep") else pytest.mark.slow)
      for k in MANIFEST_TAMPERS]])
def test_tampered_manifests_refused_one_line(builds, where, tmp_path, capsys, kind):
    """Manifests over 4 MiB, nested too deeply, of another version or not an object are refused
    (pull: one line, exit 2); latest skips them; the index lists them as refused."""
    v1, v2 = builds.v1, builds.v2
    _pushed(builds, where, v1, v2)
    key = f"tiny/{v1}/manifest.json"
    if kind == "oversized":  # a valid manifest, padded past the limit
        where.pipe(key, builds.raw(builds.a, v1) + b" " * MANIFEST_LIMIT)
    elif kind == "deep":
        where.pipe(key, b'{"name": ' + _deep() + b"}")
    elif kind == "other-version":
        where.pipe(key, builds.raw(builds.a, v2))
    elif kind == "not-an-object":
        where.pipe(key, b"[1, 2, 3]")
    else:  # manifests at keys that are no version
        where.pipe("tiny/latest/manifest.json", builds.raw(builds.a, v2))
        where.pipe("tiny/0123456789abcdef/manifest.json", b"{}")
    if kind != "stray-keys":
        with pytest.raises(ArtifactIntegrityError, match=f"{v1}/manifest.json"):
            remote.pull(f"{where.url}/tiny@{v1}", cache=tmp_path / "c0", storage_options=where.options)
        rc, out, err = _cli(capsys, "priors", "pull", f"{where.url}/tiny@{v1}", "--cache",
                            str(tmp_path / "c1"), *where.cli())
        _one_line_refusal(rc, out, err)
    got = remote.pull(f"{where.url}/tiny", cache=tmp_path / "c2", storage_options=where.options)
    assert got.version == v2 and _hashes(got.directory) == builds.files(builds.a, v2)
    remote.push(f"tiny@{v2}", where.url, root=builds.a, storage_options=where.options)
    index = json.loads(where.cat("index/tiny.json"))
    assert index["latest"] == v2
    if kind == "stray-keys":
        assert set(index["refused"]) == {"latest", "0123456789abcdef"}
        assert sorted(index["versions"]) == sorted([v1, v2])
    else:
        assert list(index["refused"]) == [v1] and list(index["versions"]) == [v2]


# ------------------------------------------------------------------------ a poisoned cache


def _poison(kind: str, target: Path, builds: Builds, outside: Path) -> None:
    victim = target / "distance_um.npy"
    if kind == "flip-byte":
        data = bytearray(victim.read_bytes())
        data[-1] ^= 0xFF
        victim.write_bytes(bytes(data))
    elif kind == "truncate":
        victim.write_bytes(victim.read_bytes()[:50])
    elif kind == "remove-file":
        victim.unlink()
    elif kind == "extra-file":
        (target / "extra.npy").write_bytes(b"x")
    elif kind == "file-symlink":  # right bytes, but outside the cache
        shutil.copy(victim, outside / "distance_um.npy")
        victim.unlink()
        victim.symlink_to(outside / "distance_um.npy")
    elif kind == "version-symlink":  # another build's valid copy, outside the cache
        shutil.rmtree(target)
        target.symlink_to(builds.b / "tiny" / builds.v1)
    elif kind == "manifest-truncated":
        (target / "manifest.json").write_bytes((target / "manifest.json").read_bytes()[:30])
    elif kind == "manifest-deleted":
        (target / "manifest.json").unlink()


POISONS = ["flip-byte", "truncate", "remove-file", "extra-file", "file-symlink", "version-symlink",
           "manifest-truncated", "manifest-deleted"]


@pytest.mark.parametrize("kind", POISONS)
def test_poisoned_cache_is_repaired(builds, tmp_path, capsys, kind):
    """Medium item: a damaged cached copy is found and repaired (by `pull` and by `load`), never
    reported verified; links out of the cache are removed, never followed or written through."""
    where = Where((tmp_path / "remote").as_uri(), {})
    _pushed(builds, where, builds.v1)
    cache, v1 = tmp_path / "cache", builds.v1
    url = f"{where.url}/tiny@{v1}"
    target = remote.pull(url, cache=cache).directory
    want = builds.files(builds.a, v1)
    outside = tmp_path / "outside"
    outside.mkdir()
    before_b = _hashes(builds.b / "tiny" / v1)
    for how in ("cli", "load"):
        _poison(kind, target, builds, outside)
        if how == "cli":
            rc, out, err = _cli(capsys, "priors", "pull", url, "--cache", str(cache))
            assert rc == 0 and out.startswith(f"repaired tiny@{v1}"), (out, err)
        else:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("CXP_CACHE", str(cache))
                prior = priors_store.load(url)
            assert prior.directory == target
        assert not target.is_symlink() and _hashes(target) == want
        assert not any(p.is_symlink() for p in target.iterdir())
    assert _hashes(builds.b / "tiny" / v1) == before_b  # nothing written through a link
    assert remote.pull(url, cache=cache).downloaded is False


def test_cache_holding_another_build_is_refused(builds, tmp_path, capsys):
    """A complete cached copy of another build of the version than the remote publishes is refused
    (one line, exit 2) and left as it is: a published version never changes."""
    where = Where((tmp_path / "remote").as_uri(), {})
    _pushed(builds, where, builds.v1)
    cache, v1 = tmp_path / "cache", builds.v1
    target = remote.pull(f"{where.url}/tiny@{v1}", cache=cache).directory
    shutil.rmtree(target)
    shutil.copytree(builds.b / "tiny" / v1, target)
    rc, out, err = _cli(capsys, "priors", "pull", f"{where.url}/tiny", "--cache", str(cache))
    _one_line_refusal(rc, out, err)
    assert "another build" in err
    assert _hashes(target) == builds.files(builds.b, v1)


def test_cache_links_above_a_version_refused(builds, tmp_path, capsys):
    """A symbolic link between the cache root and a version is refused in one line; nothing is
    written through it."""
    where = Where((tmp_path / "remote").as_uri(), {})
    _pushed(builds, where, builds.v1)
    cache = tmp_path / "cache"
    folder = remote.cache_dir(where.url, cache=cache) / "tiny"
    folder.parent.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    folder.symlink_to(outside)
    rc, out, err = _cli(capsys, "priors", "pull", f"{where.url}/tiny", "--cache", str(cache))
    _one_line_refusal(rc, out, err)
    assert "symbolic link" in err and list(outside.iterdir()) == []


def test_offline_latest_pointer_out_of_the_cache_ignored(builds, s3, tmp_path):
    """The cached ``latest`` pointer must be a version id: one leading out of the cache (to another
    local artifact) is not followed when the remote is unreachable."""
    dead = {"endpoint_url": "http://127.0.0.1:9", **FAST}
    base = f"s3://{BUCKET}/offline"
    folder = remote.cache_dir(base, cache=tmp_path / "cache", storage_options=dead) / "tiny"
    folder.mkdir(parents=True)
    (folder / "latest").write_text(os.path.relpath(builds.a / "tiny" / builds.v1, folder) + "\n")
    with pytest.raises(remote.RemoteUnavailableError, match="cannot reach"):
        remote.pull(f"{base}/tiny", cache=tmp_path / "cache", storage_options=dead)


# ------------------------------------------------------------- credentials and refusals


@pytest.mark.parametrize("argv", [
    ["push", "tiny", f"s3://AKIAEXAMPLE:{SECRET}@bucket/p"],
    ["pull", f"s3://AKIAEXAMPLE:{SECRET}@bucket/p/tiny"],
    ["push", "tiny", f"file://user:{SECRET}@/p"],
    ["pull", f"file://user:{SECRET}@/p/tiny"],
    ["pull", "file:///p/tiny", "-o", f'client_kwargs={{"aws_secret_access_key": "{SECRET}"}}'],
    ["pull", "file:///p/tiny", "-o", f'config_kwargs={{"a": [{{"session_token": "{SECRET}"}}]}}'],
    ["pull", "file:///p/tiny", "-o", f"endpoint_url=http://u:{SECRET}@127.0.0.1:9"],
], ids=["s3-url-push", "s3-url-pull", "file-url-push", "file-url-pull", "client-kwargs",
        "nested-token", "endpoint-password"])
def test_credentials_refused_without_echo(builds, tmp_path, monkeypatch, capsys, argv):
    """Medium item: URLs and storage options with credentials are refused in one line, exit 2,
    without echoing them; ``file://user:SECRET@/p`` writes nothing (not even to ./user:SECRET@)."""
    monkeypatch.chdir(tmp_path)
    extra = ["--artifacts", str(builds.a)] if argv[0] == "push" else ["--cache", str(tmp_path / "c")]
    rc, out, err = _cli(capsys, "priors", *argv, *extra)
    _one_line_refusal(rc, out, err)
    assert SECRET not in out + err and "credential" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    with pytest.raises(remote.RemoteError) as info:
        remote.push("tiny", f"s3://AKIAEXAMPLE:{SECRET}@bucket/p", root=builds.a)
    assert SECRET not in str(info.value) and SECRET not in info.value.url


def test_reserved_name_refused_and_remote_intact(builds, tmp_path, capsys):
    """A prior named ``index.json`` cannot break a file:// remote: refused, nothing written; the
    remote keeps working."""
    where = Where((tmp_path / "remote").as_uri(), {})
    rc, out, err = _cli(capsys, "priors", "push", "index.json", where.url, "--artifacts",
                        str(builds.reserved))
    _one_line_refusal(rc, out, err)
    assert where.keys() == []
    rc, out, err = _cli(capsys, "priors", "pull", f"{where.url}/index.json", "--cache",
                        str(tmp_path / "c"))
    _one_line_refusal(rc, out, err)
    _pushed(builds, where, builds.v1)
    assert json.loads(where.cat("index.json"))["names"] == \
        {"tiny": {"latest": builds.v1, "versions": [builds.v1]}}


@pytest.mark.parametrize("ref", ["tiny@[", "tiny@*", "tiny@[0-9]*", "tiny@../x", "a" * 300,
                                 "tiny@" + "f" * 300],
                         ids=["bracket", "star", "class", "dotdot", "name-300", "version-300"])
def test_bad_refs_refused_one_line(builds, tmp_path, capsys, ref):
    """Glob characters in a version and a 300-character name: one line, exit 2."""
    where = Where((tmp_path / "remote").as_uri(), {})
    _pushed(builds, where, builds.v1)
    rc, out, err = _cli(capsys, "priors", "pull", f"{where.url}/{ref}", "--cache", str(tmp_path / "c"))
    _one_line_refusal(rc, out, err)


def test_long_names_refused_one_line(builds, tmp_path, capsys):
    """A 300-character artifact name or remote folder: one line, exit 2, nothing written."""
    long_base = (tmp_path / ("b" * 300) / "p").as_uri()
    rc, out, err = _cli(capsys, "priors", "push", "tiny", long_base, "--artifacts", str(builds.a))
    _one_line_refusal(rc, out, err)
    rc, out, err = _cli(capsys, "priors", "push", "a" * 300, (tmp_path / "r").as_uri(),
                        "--artifacts", str(builds.a))
    _one_line_refusal(rc, out, err)
    assert not (tmp_path / "r").exists()


def test_s3_refusals_one_line(builds, s3, tmp_path, capsys):
    """S3 403 AccessDenied and a missing bucket: one line, exit 2; nothing written."""
    options = [f"--storage-option=endpoint_url={s3['endpoint_url']}",
               f"--storage-option=config_kwargs={json.dumps(FAST['config_kwargs'])}"]
    rc, out, err = _cli(capsys, "priors", "push", "tiny", f"s3://{READ_ONLY}/p", "--artifacts",
                        str(builds.a), *options)
    _one_line_refusal(rc, out, err)
    assert "permission denied" in err
    fs, _ = fsspec.core.url_to_fs(f"s3://{READ_ONLY}", skip_instance_cache=True, **s3)
    assert fs.find(READ_ONLY) == []
    for argv in (["push", "tiny", "s3://cxp-no-such-bucket/p", "--artifacts", str(builds.a)],
                 ["pull", "s3://cxp-no-such-bucket/p/tiny", "--cache", str(tmp_path / "c")]):
        rc, out, err = _cli(capsys, "priors", *argv, *options)
        _one_line_refusal(rc, out, err)
        assert "bucket" in err


def _read_only_child(url: str, root: str, conn) -> None:
    os.setgid(65534)
    os.setuid(65534)
    try:
        remote.push("tiny", url, root=root)
    except Exception as err:  # noqa: BLE001 (reported to the test)
        conn.send((type(err).__name__, isinstance(err, priors_store.PriorsError), str(err)))
    else:
        conn.send(("ok", False, ""))
    conn.close()
    os._exit(0)


@pytest.mark.processes
def test_read_only_file_remote_refused_one_line(builds):
    """A read-only file:// remote: one RemoteError line (exit 2 from the CLI), nothing written."""
    top = Path(tempfile.mkdtemp(prefix="cxp-ro-"))
    try:
        top.chmod(0o755)
        shutil.copytree(builds.a, top / "artifacts")
        for path in [top / "artifacts", *(top / "artifacts").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        shared = top / "shared"
        shared.mkdir(mode=0o555)
        if os.geteuid() == 0:  # root writes anywhere: push as nobody
            # warm up in this process: the forked child (as nobody) may not be able to read the
            # checkout's files (a clone in a private temporary folder), so it must need none
            remote.push("tiny", (top / "warm").as_uri(), root=top / "artifacts")
            parent, child_end = FORK.Pipe()
            child = FORK.Process(target=_read_only_child,
                                 args=(shared.as_uri(), str(top / "artifacts"), child_end))
            child.start()
            kind, ours, message = parent.recv()
            child.join(60)
            if kind == "PermissionError" and str(shared) not in message:
                pytest.skip(f"the checkout is not readable by user nobody here ({message})")
        else:
            with pytest.raises(remote.RemoteError) as info:
                remote.push("tiny", shared.as_uri(), root=top / "artifacts")
            kind, ours, message = type(info.value).__name__, True, str(info.value)
        assert (kind, ours) == ("RemoteError", True), message
        assert "permission denied" in message and "\n" not in message
        assert list(shared.iterdir()) == []
    finally:
        shutil.rmtree(top, ignore_errors=True)
