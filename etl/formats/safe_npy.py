"""Read ``.npy`` files that hold pickled object arrays, without unrestricted unpickling.

The study released positions and spike times as ``(N,)`` object arrays of numeric arrays, which
NumPy can only read with ``allow_pickle=True`` — i.e. by running whatever the pickle asks for. This
reader parses the ``.npy`` header itself and unpickles with an allow-list of exactly the three
globals NumPy's own array pickles need (``numpy...multiarray._reconstruct``, ``numpy.ndarray``,
``numpy.dtype``). Any other global (``os.system``, ``builtins.eval``, ...) is refused before it is
looked up, so nothing it names can run. The result is then checked: every element must be a
numeric (integer or floating) array.
"""

from __future__ import annotations

import io
import math
import os
import pickle
from pathlib import Path

import numpy as np
import numpy.lib.format as npy_format

from ..errors import SourceError, UnsafeFileError

__all__ = ["load_numeric_object_array", "load_plain_array"]

_ALLOWED = {
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path) -> None:
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise UnsafeFileError(
                f"{self._path}: refused to unpickle: it names {module}.{name}, but only NumPy array "
                "reconstruction is allowed (a pickle that names other callables can run code)",
                path=str(self._path))
        if name == "_reconstruct":
            return _guarded_reconstruct
        if name == "dtype":
            return _guarded_dtype
        return _Guarded  # numpy.ndarray: only ever the subtype argument of _reconstruct

    def persistent_load(self, pid):  # pragma: no cover - numpy never emits persistent ids
        raise UnsafeFileError(f"{self._path}: refused persistent id in pickle", path=str(self._path))


class _BadState(ValueError):
    """A pickled array or dtype state that NumPy would trust blindly (and may crash on)."""


#: dtype codes a numeric object array's pickle may construct (its elements and the outer 'O8').
_DTYPE_CODES = {f"{k}{n}" for k, sizes in (("i", (1, 2, 4, 8)), ("u", (1, 2, 4, 8)),
                                            ("f", (2, 4, 8))) for n in sizes} | {"O8", "b1"}


class _DTypeProxy:
    """Stands in for a pickled ``numpy.dtype`` until its state is checked (no subarray, no fields)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype

    def __setstate__(self, state) -> None:
        if (not isinstance(state, tuple) or len(state) < 5 or state[1] not in ("<", ">", "|", "=")
                or any(x is not None for x in state[2:5])):
            raise _BadState(f"dtype state {state!r:.80} is not that of a plain numeric dtype")
        if state[1] in "<>" and self.dtype.itemsize > 1 and self.dtype.kind != "O":
            self.dtype = self.dtype.newbyteorder(state[1])


def _guarded_dtype(spec, align=False, copy=True) -> _DTypeProxy:
    if not isinstance(spec, str) or spec not in _DTYPE_CODES:
        raise _BadState(f"dtype {spec!r:.40} is not a numeric (or object) dtype")
    return _DTypeProxy(np.dtype(spec))


class _Guarded(np.ndarray):
    """An ndarray whose pickled state is checked against its shape before NumPy sees it.

    NumPy's ``ndarray.__setstate__`` trusts the shape: a state declaring (2e8,) elements with a
    two-item list reads past the list (a crash), and a large shape allocates before failing.
    """

    def __setstate__(self, state) -> None:
        if not isinstance(state, tuple) or len(state) != 5:
            raise _BadState("array state is not (version, shape, dtype, fortran, data)")
        version, shape, dtype, fortran, data = state
        if isinstance(dtype, _DTypeProxy):
            dtype = dtype.dtype
        if (not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape)
                or not isinstance(dtype, np.dtype) or not isinstance(fortran, bool)):
            raise _BadState(f"array state declares shape {shape!r:.60} and dtype {dtype!r:.40}")
        count = math.prod(shape)
        if dtype == np.dtype(object):
            if not isinstance(data, list) or len(data) != count:
                found = f"{len(data)} items" if isinstance(data, list) else type(data).__name__
                raise _BadState(f"array state declares shape {shape} of objects but holds {found}")
        elif not isinstance(data, bytes) or len(data) != count * dtype.itemsize:
            found = f"{len(data)} bytes" if isinstance(data, bytes) else type(data).__name__
            raise _BadState(f"array state declares shape {shape} of {dtype} "
                            f"({count * dtype.itemsize} bytes) but holds {found}")
        super().__setstate__((version, shape, dtype, fortran, data))


def _guarded_reconstruct(subtype, shape, dtype):
    from numpy._core.multiarray import _reconstruct  # allow-listed

    if subtype is not _Guarded or not isinstance(dtype, bytes) or shape != (0,):
        raise _BadState("_reconstruct called with other arguments than NumPy's array pickles use")
    return _reconstruct(_Guarded, shape, dtype)


def load_numeric_object_array(path: str | Path) -> list[np.ndarray]:
    """Decode an ``(N,)`` object ``.npy`` of numeric arrays without running arbitrary code.

    Parameters
    ----------
    path
        The ``.npy`` file.

    Returns
    -------
    list of numpy.ndarray
        The N element arrays (integer or floating dtype).

    Raises
    ------
    UnsafeFileError
        If the pickle names anything but NumPy's array reconstruction, or an element is not a
        numeric array.
    SourceError
        If the file is not a readable ``.npy``.
    """
    path = Path(path)
    with _open(path) as fh:
        shape, dtype, fortran = _read_header(fh, path)
        _check_size(fh, path, shape, dtype)
        if dtype != np.dtype(object):
            if fortran and len(shape) > 1:
                raise SourceError(f"{path}: Fortran-ordered arrays are not supported", path=str(path))
            arr = np.fromfile(fh, dtype=dtype, count=math.prod(shape))
            return list(arr.reshape(shape))
        try:
            obj = _RestrictedUnpickler(io.BufferedReader(fh), path).load()
        except UnsafeFileError:
            raise
        except Exception as err:  # a malformed pickle: report, never trust
            raise UnsafeFileError(f"{path}: not a valid pickled NumPy object array: {err}",
                                  path=str(path)) from err
    if not isinstance(obj, np.ndarray) or obj.shape != shape:
        found = f"shape {obj.shape}" if isinstance(obj, np.ndarray) else type(obj).__name__
        raise UnsafeFileError(f"{path}: header promises an array of shape {shape}; "
                              f"the pickle holds {found}", path=str(path))
    out = []
    for i, item in enumerate(obj.ravel()):
        if not isinstance(item, np.ndarray) or item.dtype.kind not in "iuf":
            kind = item.dtype if isinstance(item, np.ndarray) else type(item).__name__
            raise UnsafeFileError(f"{path}: element {i} is {kind}; expected a numeric array",
                                  path=str(path))
        out.append(item.view(np.ndarray))
    return out


def load_plain_array(path: str | Path) -> np.ndarray:
    """Load a non-object ``.npy`` (never unpickles); refuse object arrays with a clear error.

    The header is read first and the data's size checked against the file's before anything is
    allocated: an empty, truncated or padded file, or one whose header declares more data than
    it holds (say shape (1e11, 3)), raises :class:`SourceError` naming the file.
    """
    path = Path(path)
    with _open(path) as fh:
        shape, dtype, _ = _read_header(fh, path)
        if dtype.hasobject:
            raise UnsafeFileError(f"{path}: holds an object (pickled) array of shape {shape}; "
                                  "expected a plain numeric array", path=str(path))
        _check_size(fh, path, shape, dtype)
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as err:
        raise SourceError(f"{path}: cannot read the .npy data: {err}", path=str(path)) from err


def _open(path: Path):
    try:
        return open(path, "rb")
    except OSError as err:
        raise SourceError(f"cannot open {path}: {err.strerror or err}", path=str(path)) from err


def _read_header(fh, path: Path) -> tuple[tuple[int, ...], np.dtype, bool]:
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as err:  # NumPy's header parser raises many kinds on bad input
        raise SourceError(f"{path}: not a .npy file: {err}", path=str(path)) from err
    if not all(type(n) is int and n >= 0 for n in shape):
        raise SourceError(f"{path}: not a .npy file: header shape {shape!r} is not a tuple of "
                          "non-negative integers", path=str(path))
    return shape, dtype, bool(fortran)


def _check_size(fh, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
    """Refuse a header whose declared data cannot be what follows it in the file."""
    held = os.fstat(fh.fileno()).st_size - fh.tell()
    count = math.prod(shape)
    if dtype.hasobject:  # a pickle spends at least one byte per element
        if count > held:
            raise SourceError(f"{path}: header declares {count:,} objects (shape {shape}) but only "
                              f"{held:,} bytes follow it; the file is truncated or its header is "
                              "corrupted", path=str(path))
        return
    need = count * dtype.itemsize
    if need != held:
        raise SourceError(f"{path}: header declares shape {shape} of {dtype} ({need:,} bytes of "
                          f"data); found {held:,} bytes after the header: the file is "
                          f"{'truncated' if held < need else 'padded'} or its header is corrupted",
                          path=str(path))
