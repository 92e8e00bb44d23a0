"""What the stand-in deployment is called and serves: datastack, aligned volume, server version,
voxel size, row cap, and the timestamp of each materialization version.

Examples
--------
>>> version_timestamp(1).isoformat()
'2024-01-08T00:00:00.000001+00:00'
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

__all__ = ["ALIGNED_VOLUME", "DATASTACK", "DEFAULT_ROW_CAP", "MAT_SERVER_VERSION", "VOXEL",
           "version_timestamp"]

DATASTACK = "minnie65_public"
ALIGNED_VOLUME = "minnie65_phase3"
MAT_SERVER_VERSION = "5.13.0"
#: Rows one query returns at most (the engine's ``QUERY_LIMIT_SIZE``).
DEFAULT_ROW_CAP = 200_000
#: Voxel size (nm) of every table's positions.
VOXEL = [4.0, 4.0, 40.0]


def version_timestamp(version: int) -> datetime:
    """When materialization ``version`` was taken (one a week from 2024-01-01, UTC)."""
    return datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=7 * version, microseconds=1)
