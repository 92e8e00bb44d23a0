"""The restricted reader decodes the release's object arrays and refuses anything else."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format
import pytest

from connectome_priors.etl.errors import SourceError, UnsafeFileError
from connectome_priors.etl.formats.safe_npy import load_numeric_object_array, load_plain_array


def _object_npy(path: Path, payload: bytes, n: int) -> None:
    """Write a .npy whose header says (n,) object array and whose body is ``payload``."""
    with open(path, "wb") as fh:
        npy_format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (n,)})
        fh.write(payload)


class _RunsCode:
    """A pickle of this calls os.system when loaded by an unrestricted unpickler."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_decodes_numeric_object_arrays(tmp_path):
    obj = np.empty(3, dtype=object)
    obj[0], obj[1], obj[2] = np.array([1, 2, 3]), np.array([4.5, 5.5]), np.array([], dtype=float)
    np.save(tmp_path / "a.npy", obj, allow_pickle=True)
    out = load_numeric_object_array(tmp_path / "a.npy")
    assert [a.tolist() for a in out] == [[1, 2, 3], [4.5, 5.5], []]


def test_refuses_a_pickle_that_would_run_code_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_RunsCode(marker), protocol=4)
    _object_npy(tmp_path / "evil.npy", payload, 1)
    # the crafted file is live: an unrestricted load would create the marker (checked in a copy)
    with pytest.raises(UnsafeFileError, match=r"evil\.npy: refused to unpickle: it names posix\.system"):
        load_numeric_object_array(tmp_path / "evil.npy")
    assert not marker.exists()
    # control: numpy's unrestricted reader does run it, so the test above can fail
    np.load(tmp_path / "evil.npy", allow_pickle=True)
    assert marker.exists()


def test_refuses_builtins_eval_inside_an_otherwise_valid_array(tmp_path):
    marker = tmp_path / "ran"
    obj = np.empty(2, dtype=object)
    obj[0] = np.array([1.0])
    obj[1] = _RunsCode(marker)
    with open(tmp_path / "mixed.npy", "wb") as fh:
        npy_format.write_array_header_1_0(fh, {"descr": "|O", "fortran_order": False, "shape": (2,)})
        pickle.dump(obj, fh, protocol=4)
    with pytest.raises(UnsafeFileError, match=r"refused to unpickle"):
        load_numeric_object_array(tmp_path / "mixed.npy")
    assert not marker.exists()


def test_refuses_non_numeric_elements(tmp_path):
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = np.array([1.0]), np.array(["a", "b"])
    np.save(tmp_path / "strings.npy", obj, allow_pickle=True)
    with pytest.raises(UnsafeFileError, match=r"strings\.npy: not a valid pickled NumPy object array: "
                                              r"dtype 'U1' is not a numeric \(or object\) dtype"):
        load_numeric_object_array(tmp_path / "strings.npy")


def test_refuses_plain_python_objects(tmp_path):
    obj = np.empty(1, dtype=object)
    obj[0] = [1, 2, 3]  # a list, not an array
    np.save(tmp_path / "list.npy", obj, allow_pickle=True)
    with pytest.raises(UnsafeFileError, match=r"element 0 is list; expected a numeric array"):
        load_numeric_object_array(tmp_path / "list.npy")


def test_shape_mismatch_between_header_and_pickle(tmp_path):
    obj = np.empty(2, dtype=object)
    obj[0], obj[1] = np.array([1]), np.array([2])
    _object_npy(tmp_path / "short.npy", pickle.dumps(obj, protocol=4), 5)
    with pytest.raises(UnsafeFileError, match=r"header promises an array of shape \(5,\)"):
        load_numeric_object_array(tmp_path / "short.npy")


def test_not_an_npy(tmp_path):
    (tmp_path / "x.npy").write_bytes(b"hello world")
    with pytest.raises(SourceError, match=r"x\.npy: not a \.npy file"):
        load_numeric_object_array(tmp_path / "x.npy")


def test_plain_loader_refuses_object_arrays(tmp_path):
    obj = np.empty(1, dtype=object)
    obj[0] = np.array([1])
    np.save(tmp_path / "ids.npy", obj, allow_pickle=True)
    with pytest.raises(UnsafeFileError, match=r"ids\.npy: holds an object \(pickled\) array"):
        load_plain_array(tmp_path / "ids.npy")
    np.save(tmp_path / "ok.npy", np.arange(4))
    assert load_plain_array(tmp_path / "ok.npy").tolist() == [0, 1, 2, 3]


def test_header_declaring_2e8_objects_in_263_bytes_is_refused_before_reading(tmp_path):
    obj = np.empty(1, dtype=object)
    obj[0] = np.array([1.0])
    payload = pickle.dumps(obj, protocol=4)
    _object_npy(tmp_path / "big.npy", payload, 200_000_000)
    with pytest.raises(SourceError, match=r"big\.npy: header declares 200,000,000 objects \(shape "
                                          r"\(200000000,\)\) but only \d+ bytes follow it"):
        load_numeric_object_array(tmp_path / "big.npy")


@pytest.mark.parametrize("cut, match", [
    (0, r"not a \.npy file"),
    (20, r"not a \.npy file"),
    (-1, r"header declares shape \(4,\) of int64 \(32 bytes of data\); found 31 bytes after the header: "
         r"the file is truncated"),
])
def test_plain_loader_refuses_empty_and_truncated_files(tmp_path, cut, match):
    np.save(tmp_path / "ok.npy", np.arange(4, dtype=np.int64))
    data = (tmp_path / "ok.npy").read_bytes()
    (tmp_path / "bad.npy").write_bytes(data[:cut] if cut >= 0 else data[:cut])
    with pytest.raises(SourceError, match=r"bad\.npy: " + match):
        load_plain_array(tmp_path / "bad.npy")


def test_plain_loader_refuses_a_header_larger_than_the_file(tmp_path):
    with open(tmp_path / "huge.npy", "wb") as fh:
        npy_format.write_array_header_1_0(fh, {"descr": "<f8", "fortran_order": False,
                                               "shape": (100_000_000_000, 3)})
        fh.write(b"\0" * 64)
    with pytest.raises(SourceError, match=r"huge\.npy: header declares shape \(100000000000, 3\) of "
                                          r"float64 \(2,400,000,000,000 bytes of data\); found 64 bytes"):
        load_plain_array(tmp_path / "huge.npy")


from hypothesis import given, settings, strategies as st  # noqa: E402


def _valid_files() -> dict[str, bytes]:
    import io

    plain, obj = io.BytesIO(), io.BytesIO()
    np.save(plain, np.arange(6, dtype=np.int64).reshape(2, 3))
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = np.array([1, 2, 3]), np.array([4.5])
    np.save(obj, arr, allow_pickle=True)
    return {"plain": plain.getvalue(), "object": obj.getvalue()}


_FILES = _valid_files()


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["plain", "object"]), data=st.data())
def test_random_corruption_is_read_or_refused_never_crashes(tmp_path_factory, kind, data):
    """Flip bytes of a valid .npy (header or body): either an array comes back or SourceError."""
    raw = bytearray(_FILES[kind])
    limit = len(raw) - 1 if data.draw(st.booleans(), label="anywhere") else 140  # mostly the header
    for _ in range(data.draw(st.integers(1, 3), label="n_changes")):
        raw[data.draw(st.integers(0, limit), label="offset")] = data.draw(st.integers(0, 255), label="byte")
    if data.draw(st.booleans(), label="truncate"):
        raw = raw[:data.draw(st.integers(0, len(raw)), label="length")]
    path = tmp_path_factory.mktemp("fuzz") / "f.npy"
    path.write_bytes(bytes(raw))
    loader = load_plain_array if kind == "plain" else load_numeric_object_array
    try:
        loader(path)
    except SourceError:
        pass
