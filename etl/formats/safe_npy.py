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
        if module.startswith("numpy") and name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct  # noqa: PLC0415 (allow-listed)

            return _reconstruct
        return getattr(np, name)

    def persistent_load(self, pid):  # pragma: no cover - numpy never emits persistent ids
        raise UnsafeFileError(f"{self._path}: refused persistent id in pickle", path=str(self._path))


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
    with open(path, "rb") as fh:
        shape, dtype = _read_header(fh, path)
        if dtype != np.dtype(object):
            arr = np.fromfile(fh, dtype=dtype, count=int(np.prod(shape)))
            return list(arr.reshape(shape))
        try:
            obj = _RestrictedUnpickler(io.BufferedReader(fh), path).load()
        except UnsafeFileError:
            raise
        except Exception as err:  # a malformed pickle: report, never trust
            raise UnsafeFileError(f"{path}: not a valid pickled NumPy object array: {err}",
                                  path=str(path)) from err
    if not isinstance(obj, np.ndarray) or obj.shape != shape:
        raise UnsafeFileError(f"{path}: header promises an array of shape {shape}; "
                              f"the pickle holds {type(obj).__name__}", path=str(path))
    out = []
    for i, item in enumerate(obj.ravel()):
        if not isinstance(item, np.ndarray) or item.dtype.kind not in "iuf":
            kind = item.dtype if isinstance(item, np.ndarray) else type(item).__name__
            raise UnsafeFileError(f"{path}: element {i} is {kind}; expected a numeric array",
                                  path=str(path))
        out.append(item)
    return out


def load_plain_array(path: str | Path) -> np.ndarray:
    """Load a non-object ``.npy`` (never unpickles); refuse object arrays with a clear error."""
    path = Path(path)
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise UnsafeFileError(f"{path}: holds an object (pickled) array; expected a plain numeric "
                              f"array: {err}", path=str(path)) from err


def _read_header(fh, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = npy_format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except ValueError as err:
        raise SourceError(f"{path}: not a .npy file: {err}", path=str(path)) from err
    if fortran and len(shape) > 1:
        raise SourceError(f"{path}: Fortran-ordered arrays are not supported", path=str(path))
    return shape, dtype
