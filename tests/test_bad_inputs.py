"""The adversary table: each bad input makes ``cxp`` exit 2 with a message naming the file and what
was expected and found, and never with a traceback (issue 15)."""

from __future__ import annotations

import json
import re
import os
import pickle
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format
import pandas as pd
import pytest

from connectome_priors.cli import main
from connectome_priors.priors_store.writer import ArtifactWriter
from tests.conftest import write_field

FIELD = "4_7_2"


# --- inputs: each returns the cxp argv that must fail ------------------------------------------

def _blueprint(tmp: Path) -> tuple[Path, list[str]]:
    d = write_field(tmp / "release", FIELD, n=30)
    return d, ["etl", "--source", "blueprint", str(tmp / "release"), "--store", str(tmp / "store"),
               "--no-progress"]


def empty_field_list(tmp):
    _, argv = _blueprint(tmp)
    return [*argv, "--fields", ""]


def empty_npy(tmp):
    d, argv = _blueprint(tmp)
    (d / f"unit_ids_{FIELD}.npy").write_bytes(b"")
    return argv


def truncated_npy(tmp):
    d, argv = _blueprint(tmp)
    path = d / f"unit_ids_{FIELD}.npy"
    path.write_bytes(path.read_bytes()[:-4])
    return argv


def truncated_npy_header(tmp):
    d, argv = _blueprint(tmp)
    path = d / f"unit_ids_{FIELD}.npy"
    path.write_bytes(path.read_bytes()[:20])
    return argv


def npy_declaring_1e11_by_3(tmp):
    d, argv = _blueprint(tmp)
    with open(d / f"root_ids_{FIELD}.npy", "wb") as fh:
        npy_format.write_array_header_1_0(fh, {"descr": "<i8", "fortran_order": False,
                                               "shape": (100_000_000_000, 3)})
        fh.write(np.arange(30, dtype=np.int64).tobytes())
    return argv


def pickle_declaring_2e8_objects(tmp):
    d, argv = _blueprint(tmp)
    _tiny_object_npy(d / f"positions_{FIELD}.npy", header_n=200_000_000, pickle_n=200_000_000)
    return argv


def connectome_csv_not_utf8(tmp):
    d, argv = _blueprint(tmp)
    path = d / f"connectome_{FIELD}.csv"
    path.write_bytes(path.read_bytes().replace(b",0,", b",\xff\xfe,", 1))
    return argv


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    from connectome_priors.etl.sources.files import write_export
    from connectome_priors.testing.cave_standin import minnie_fixture

    raw = minnie_fixture(n_cells=160, n_synapses=6000, versions=(1,), seed=3)[1]
    d = tmp_path_factory.mktemp("exports") / "v1300"
    for table, df in raw.items():
        write_export(df, d, table, form="export")
    return d


def _files(tmp: Path, exports: Path) -> tuple[Path, list[str]]:
    d = tmp / exports.name
    shutil.copytree(exports, d)
    return d, ["etl", "--source", "files", str(d), "--store", str(tmp / "store"), "--no-progress"]


def export_header_not_utf8(tmp, exports):
    d, argv = _files(tmp, exports)
    path = d / "synapses_pni_2_merged_header.csv"
    path.write_bytes(path.read_bytes().replace(b"valid", b"v\xe9lid", 1))
    return argv


def gzip_corrupted_mid_stream(tmp, exports):
    d, argv = _files(tmp, exports)
    path = d / "synapses_pni_2_merged.csv.gz"
    data = bytearray(path.read_bytes())
    middle = int(len(data) * 0.8)  # past the rows the header check samples
    data[middle:middle + 64] = bytes(64)
    path.write_bytes(bytes(data))
    return argv


def gzip_truncated(tmp, exports):
    d, argv = _files(tmp, exports)
    path = d / "nucleus_detection_v0_merged.csv.gz"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    return argv


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """A small published artifact (two dense kinds, one label kind, the neuron table)."""
    root = tmp_path_factory.mktemp("artifacts")
    rng = np.random.default_rng(0)
    with ArtifactWriter(root, "tiny") as w:
        w.array("distance_um", rng.random((4, 4)).astype(np.float32), description="soma distance")
        w.array("correlation", rng.random((4, 4)), description="Pearson")
        w.labels("modules_wiring", np.array([0, 0, 1, 1]), stats={"n_modules": 2})
        w.table("neurons.parquet", pd.DataFrame({"nucleus_id": [1, 2, 3, 4]}))
        m = w.commit(population={"kind": "fields", "fields": ["1_1_1"], "sql": None, "n_neurons": 4},
                     source_snapshot={"snapshot_id": "synthetic-0", "source": "synthetic",
                                      "content_hash": "0" * 64, "synthetic": True},
                     parameters={"seed": 0})
    return root, m


def _artifact_copy(tmp: Path, artifact) -> tuple[Path, dict, list[str]]:
    root, m = artifact
    copy = tmp / "artifacts"
    shutil.copytree(root, copy)
    return copy / "tiny" / m["version"], m, ["--store", str(tmp / "store"), "--artifacts", str(copy)]


def _edit_manifest(directory: Path, edit) -> None:
    path = directory / "manifest.json"
    m = json.loads(path.read_text())
    edit(m)
    path.write_text(json.dumps(m, indent=2, sort_keys=True))


def list_over_empty_manifest(tmp, artifact):
    d, _, opts = _artifact_copy(tmp, artifact)
    (d / "manifest.json").write_text("{}")
    return ["priors", "list", *opts]


def show_manifest_path_escaping(tmp, artifact):
    d, _, opts = _artifact_copy(tmp, artifact)
    _edit_manifest(d, lambda m: m["files"][0].update(path="../../etc/hostname"))
    return ["priors", "show", "tiny", *opts]


def verify_kind_file_escaping(tmp, artifact):
    d, _, opts = _artifact_copy(tmp, artifact)
    _edit_manifest(d, lambda m: m["kinds"]["distance_um"].update(file="../../etc/hostname"))
    return ["priors", "verify", "tiny", *opts]


def verify_kind_remapped(tmp, artifact):
    d, _, opts = _artifact_copy(tmp, artifact)
    _edit_manifest(d, lambda m: m["kinds"]["distance_um"].update(file="correlation.npy"))
    return ["priors", "verify", "tiny", *opts]


def verify_outside_the_root(tmp, artifact):
    _, _, opts = _artifact_copy(tmp, artifact)
    outside = tmp / "outside" / "NAME" / "0123456789abcdef"
    outside.mkdir(parents=True)
    (outside.parent / "latest").write_text("0123456789abcdef\n")
    return ["priors", "verify", "../outside/NAME", *opts]


def not_utf8_manifest(tmp, artifact):
    d, _, opts = _artifact_copy(tmp, artifact)
    (d / "manifest.json").write_bytes(b'{"name": "\xff"}')
    return ["priors", "show", "tiny", *opts]


ROWS = [
    (empty_field_list, r"fields \[''\] name no field"),
    (empty_npy, r"unit_ids_4_7_2\.npy: not a \.npy file"),
    (truncated_npy, r"unit_ids_4_7_2\.npy: header declares shape \(30,\) of int64 \(240 bytes of "
                    r"data\); found 236 bytes after the header: the file is truncated"),
    (truncated_npy_header, r"unit_ids_4_7_2\.npy: not a \.npy file"),
    (npy_declaring_1e11_by_3, r"root_ids_4_7_2\.npy: header declares shape \(100000000000, 3\) of "
                              r"int64 \(2,400,000,000,000 bytes of data\); found 240 bytes"),
    (pickle_declaring_2e8_objects, r"positions_4_7_2\.npy: header declares 200,000,000 objects "
                                   r"\(shape \(200000000,\)\) but only \d+ bytes follow it"),
    (connectome_csv_not_utf8, r"field 4_7_2: connectome_4_7_2\.csv is not UTF-8 text \(byte b'\\xff'"),
    (export_header_not_utf8, r"export header .*synapses_pni_2_merged_header\.csv is not UTF-8 text"),
    (gzip_corrupted_mid_stream, r"synapses_pni_2_merged\.csv\.gz: corrupted or truncated gzip stream"),
    (gzip_truncated, r"nucleus_detection_v0_merged\.csv\.gz: corrupted or truncated gzip stream"),
    (list_over_empty_manifest, r"1 artifact version\(s\) .* missing or edited manifest .*manifest\.json: "
                               r"manifest field \(top level\): 'manifest_version' is a required property"),
    (show_manifest_path_escaping, r"manifest\.json: manifest field files/0/path: '\.\./\.\./etc/hostname' "
                                  r"does not match"),
    (verify_kind_file_escaping, r"manifest\.json: kinds\.distance_um\.file is '\.\./\.\./etc/hostname'; "
                                r"the build writes kind 'distance_um' \(npy\) to 'distance_um\.npy'"),
    (verify_kind_remapped, r"kinds\.distance_um\.file is 'correlation\.npy'; the build writes kind "
                           r"'distance_um' \(npy\) to 'distance_um\.npy': the manifest was edited"),
    (verify_outside_the_root, r"artifact name '\.\./outside/NAME' is not allowed"),
    (not_utf8_manifest, r"manifest\.json: not valid UTF-8 JSON"),
]


def _tiny_object_npy(path: Path, *, header_n: int, pickle_n: int) -> None:
    """A .npy of a 2-element object array whose header and pickle declare other lengths."""
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0])
    payload = pickle.dumps(obj, protocol=4)
    at = payload.index(b"K\x02\x85")  # the outer array's shape (2,) inside its state
    payload = payload[:at] + b"J" + struct.pack("<i", pickle_n) + b"\x85" + payload[at + 3:]
    with open(path, "wb") as fh:
        npy_format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False,
                                               "shape": (header_n,)})
        fh.write(payload)


@pytest.mark.parametrize("make, message", ROWS, ids=[r[0].__name__ for r in ROWS])
def test_bad_input_exits_2_with_a_message_and_no_traceback(make, message, tmp_path, capsys, request):
    extra = [request.getfixturevalue(name) for name in make.__code__.co_varnames[1:make.__code__.co_argcount]]
    argv = make(tmp_path, *extra)
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    line = captured.err.strip()
    assert line.startswith(f"cxp {argv[0]}: error: "), line
    assert len(line.splitlines()) == 1, line
    assert re.search(message, line), line
    if argv[0] == "etl":
        assert not (tmp_path / "store" / "store.duckdb").exists()  # nothing stored


def test_debug_flag_shows_the_traceback(tmp_path, artifact):
    argv = verify_kind_remapped(tmp_path, artifact)
    from connectome_priors.priors_store.errors import ArtifactIntegrityError

    with pytest.raises(ArtifactIntegrityError, match=r"kinds\.distance_um\.file"):
        main(["--debug", *argv])


def test_pickle_state_longer_than_its_list_is_refused_before_numpy_reads_it(tmp_path):
    """Header (2,) passes the size check; the pickle's own shape (2e8,) would crash NumPy."""
    from connectome_priors.etl.errors import UnsafeFileError
    from connectome_priors.etl.formats.safe_npy import load_numeric_object_array

    path = tmp_path / "positions.npy"
    _tiny_object_npy(path, header_n=2, pickle_n=200_000_000)
    assert path.stat().st_size < 500
    with pytest.raises(UnsafeFileError, match=r"positions\.npy: not a valid pickled NumPy object array: "
                                              r"array state declares shape \(200000000,\) of objects "
                                              r"but holds 2 items"):
        load_numeric_object_array(path)


def test_keyboard_interrupt_exits_130(tmp_path, monkeypatch, capsys):
    import connectome_priors.priors_store.cli as priors_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(priors_cli, "run", interrupted)
    assert main(["priors", "list", "--store", str(tmp_path / "s"), "--artifacts", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "Traceback" not in err


def _cxp(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "CXP_STORE": str(kw.pop("store"))}
    return subprocess.Popen([sys.executable, "-m", "connectome_priors.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store holding the three-neuron snapshot of tests.conftest."""
    from connectome_priors.etl.store import Store
    from tests.conftest import tiny_source

    path = tmp_path_factory.mktemp("store") / "store"
    Store(path).load(tiny_source())
    return path


@pytest.mark.processes
@pytest.mark.parametrize("argv", [["status"], ["priors", "list"]])
def test_closed_pipe_is_one_line_and_exit_2(store, artifact, argv):
    """``cxp status | head -1``: the reader goes away before cxp writes; one line, no traceback."""
    root, _ = artifact
    extra = ["--artifacts", str(root)] if argv[0] == "priors" else []
    proc = _cxp(*argv, *extra, store=store)
    proc.stdout.close()  # the reader is gone before cxp has written anything
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "broken pipe" in err, err


@pytest.mark.processes
def test_closed_pipe_after_the_first_line(tmp_path, artifact):
    """As ``| head -1`` does: read one line, then close."""
    root, _ = artifact
    proc = _cxp("priors", "list", "--artifacts", str(root), store=tmp_path / "store")
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert first and "Traceback" not in err and "Exception ignored" not in err, err
    assert rc in (0, 2)


def test_lenient_blueprint_skips_an_unsafe_field(tmp_path):
    """``--mode lenient`` skips a field whose pickle the restricted reader refuses; strict aborts."""
    write_field(tmp_path / "release", "4_7_2", n=30, seed=1)
    bad = write_field(tmp_path / "release", "5_3_4", n=30, seed=2)
    _tiny_object_npy(bad / "positions_5_3_4.npy", header_n=2, pickle_n=200_000_000)
    store = tmp_path / "store"
    assert main(["etl", "--source", "blueprint", str(tmp_path / "release"), "--store", str(store),
                 "--no-progress"]) == 2
    assert main(["etl", "--source", "blueprint", str(tmp_path / "release"), "--store", str(store),
                 "--mode", "lenient", "--no-progress"]) == 0
    from connectome_priors.etl.store import Store

    report = json.loads(Store(store).snapshots().iloc[-1].report)
    assert report["fields_loaded"] == ["4_7_2"]
    assert "positions_5_3_4.npy: not a valid pickled NumPy object array" in report["fields_skipped"]["5_3_4"]
