"""The ``files`` source: static table exports in one folder (:mod:`.layout`: which file is which
table; :mod:`.read`: reading one export; :mod:`.source`: the folder -> canonical tables;
:mod:`.stream`: one large synapse export -> ``connections`` in checkpointed chunks; :mod:`.write`:
writing exports for tests and demos)."""

from .layout import ExportFile, Inventory, find_table, inventory
from .read import SAMPLE_ROWS, check_header, columns_of, read_export, stream_export
from .source import find_exports, read_files
from .write import write_export

__all__ = ["SAMPLE_ROWS", "ExportFile", "Inventory", "check_header", "columns_of", "find_exports",
           "find_table", "inventory", "read_export", "read_files", "stream_export", "write_export"]
