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
    with pytest.raises(UnsafeFileError, match=r"strings\.npy: element 1 is <U1; expected a numeric array"):
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
