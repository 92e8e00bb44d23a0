"""The first rows of a CSV or CSV.gz file, with clear errors for text that is not UTF-8 and for
gzip streams that are corrupted or truncated (shared by the ``files`` source and the synapse
aggregation inputs)."""

from __future__ import annotations

import csv
import gzip
import itertools
import zlib
from pathlib import Path

from ..errors import SourceError

__all__ = ["first_rows"]


def first_rows(path: str | Path, n: int, *, expected: str = "CSV text") -> list[list[str]]:
    """Up to ``n`` parsed rows from the start of ``path`` (gzip-compressed when named ``.gz``).

    Raises
    ------
    SourceError
        Naming the file, and the byte and offset that is not UTF-8, or the gzip/OS failure;
        ``expected`` says what the file should hold.
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            return list(itertools.islice(csv.reader(fh), n))
    except UnicodeDecodeError as err:
        raise SourceError(f"{path}: not UTF-8 text (byte {err.object[err.start:err.start + 1]!r} at "
                          f"offset {err.start} of the decoded data); expected {expected} in UTF-8",
                          path=str(path)) from err
    except (OSError, EOFError, zlib.error, csv.Error) as err:
        raise SourceError(f"cannot read {path}: {gzip_reason(path, err)}", path=str(path)) from err


def gzip_reason(path: Path, err: Exception) -> str:
    """``err`` explained: a corrupted or truncated gzip stream is named as such."""
    if path.name.endswith(".gz") and isinstance(err, (EOFError, zlib.error, gzip.BadGzipFile)):
        return f"corrupted or truncated gzip stream ({err}); expected a complete .csv.gz export"
    return str(err)
