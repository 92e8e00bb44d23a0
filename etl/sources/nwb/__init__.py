"""Source ``nwb``: activity from the MICrONS NWB release on DANDI (dandiset 000402).

:func:`read_nwb` reads scan files into ``functional_units`` and ``spikes`` (keyed by session,
scan_idx, unit_id, to join a ``cave`` snapshot's co-registration); :class:`EventRule` is the
documented event rule; :func:`download_scans` fetches scan files from the DANDI archive into a
cache, resumable and sha256-checked.
"""

from .download import DandiConfig, DownloadError, download_scans
from ...unit_ids import MIN_AGREEMENT, field_agreement, unit_offsets
from .events import EventRule, deconvolve_ar1, deconvolve_oasis, detect_peaks
from .reader import NwbLayoutError, read_nwb

__all__ = ["DandiConfig", "DownloadError", "EventRule", "MIN_AGREEMENT", "NwbLayoutError", "deconvolve_ar1",
           "deconvolve_oasis", "detect_peaks", "download_scans", "field_agreement", "read_nwb", "unit_offsets"]
