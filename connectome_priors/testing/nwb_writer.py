"""Write small (or large) NWB files in the layout of DANDI 000402, with known embedded events.

Used by the tests (a few fields, a few dozen ROIs) and by ``bench/nwb_read.py`` (a ~1 GB file).
The data are SYNTHETIC: each ROI's fluorescence is ``baseline * (1 + c)`` with ``c`` an AR(1)
calcium trace (``c[t] = g c[t-1] + a`` at its event frames) plus optional seeded Gaussian noise, so
the event rule of :mod:`etl.sources.nwb.events` recovers the event frames exactly when noise is 0.

Layout written (as published): ``/processing/ophys/Fluorescence/RoiResponseSeries<field>`` (time x
ROIs, float32, with timestamps, ``rois`` pointing into the plane segmentation),
``/processing/ophys/ImageSegmentation/PlaneSegmentation<field>`` (``id``, ``image_mask``,
``mask_type``; optionally ``pt_root_id``, ``pt_supervoxel_id``, ``pt_x/y/z_position`` and a ragged
``cave_ids``), ``/intervals/Clip``, ``session_id`` ``"<session>-scan-<scan_idx>"``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..etl.sources.nwb.events import ar1_decay

__all__ = ["SynthField", "write_scan_file", "dandi_name"]


@dataclass
class SynthField:
    """One imaging field of a synthetic scan file."""

    field: int
    """Field number (the <field> of RoiResponseSeries<field>)."""
    unit_ids: np.ndarray
    """ROI ids (PlaneSegmentation id), unique within the scan."""
    event_frames: list[np.ndarray]
    """Per ROI, the frames of its events."""
    mask_type: list[str] | None = None
    """Per ROI 'soma' or 'artifact' (default all soma)."""
    pt_root_id: np.ndarray | None = None
    """Per ROI root id as the file gives it (0 = none); None: no structural columns."""
    pt_position: np.ndarray | None = None
    """(n, 3) positions in 4,4,40 nm voxels (with pt_root_id)."""
    amplitude: float = 1.0
    """Event amplitude (dF/F)."""
    extra: dict = field(default_factory=dict)
    """Unused; room for a test's own notes."""


def dandi_name(session: int, scan_idx: int, subject: str = "17797") -> str:
    """The file name DANDI 000402 uses for a scan: ``sub-<subject>_ses-<s>-scan-<c>_behavior+image+ophys.nwb``."""
    return f"sub-{subject}_ses-{session}-scan-{scan_idx}_behavior+image+ophys.nwb"


def _timestamps(spec: SynthField, n_frames: int, rate: float, n_fields: int) -> np.ndarray:
    return (np.arange(n_frames) + (spec.field - 1) / max(n_fields, 1)) / rate


def _trace_blocks(spec: SynthField, n_frames: int, g: float, noise: float, baseline: float,
                  rng: np.random.Generator, block: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start_frame, (frames, rois) float32 fluorescence) blocks, carrying the AR(1) state."""
    n = len(spec.unit_ids)
    drive = [np.asarray(f, dtype=np.int64) for f in spec.event_frames]
    state = np.zeros(n)
    for start in range(0, n_frames, block):
        stop = min(start + block, n_frames)
        s = np.zeros((stop - start, n))
        for j, frames in enumerate(drive):
            hit = frames[(frames >= start) & (frames < stop)] - start
            s[hit, j] = spec.amplitude
        c = np.empty_like(s)
        for t in range(len(s)):
            state = g * state + s[t]
            c[t] = state
        f = baseline * (1.0 + c)
        if noise > 0:
            f += rng.normal(0.0, noise * baseline, size=f.shape)
        yield start, f.astype(np.float32)


def write_scan_file(path: str | os.PathLike, fields: Sequence[SynthField], *, session: int,
                    scan_idx: int, n_frames: int = 600, frame_rate_hz: float = 6.3009,
                    tau_s: float = 1.0, noise: float = 0.0, baseline: float = 100.0, seed: int = 0,
                    block_frames: int = 4096, session_id: str | None = None,
                    progress: bool = False) -> Path:
    """Write one synthetic scan file in the DANDI 000402 layout; return its path.

    Traces are written block by block (``block_frames`` frames at a time) into datasets that
    pynwb allocates, so a large file never needs its traces in memory.

    Parameters
    ----------
    fields
        The imaging fields and their ROIs/events.
    session, scan_idx
        Written as ``session_id = "<session>-scan-<scan_idx>"`` (``session_id`` overrides it).
    noise
        Gaussian noise SD as a fraction of ``baseline`` (0: exact AR(1) traces).
    seed
        Seed of the noise.
    """
    import h5py  # noqa: PLC0415 (heavy imports only when writing)
    from hdmf.backends.hdf5.h5_utils import H5DataIO  # noqa: PLC0415
    from pynwb import NWBHDF5IO, NWBFile  # noqa: PLC0415
    from pynwb.epoch import TimeIntervals  # noqa: PLC0415
    from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel  # noqa: PLC0415
    from tqdm.auto import tqdm  # noqa: PLC0415

    path = Path(path)
    rng = np.random.default_rng(seed)
    g = ar1_decay(frame_rate_hz, tau_s)
    nwb = NWBFile(session_description="SYNTHETIC MICrONS-like scan (connectome-priors test data)",
                  identifier=f"synthetic-{session}-{scan_idx}-{seed}",
                  session_start_time=datetime(2018, 1, 1, tzinfo=timezone.utc),
                  session_id=session_id if session_id is not None else f"{session}-scan-{scan_idx}")
    device = nwb.create_device(name="Microscope", description="two-photon random access mesoscope")
    ophys = nwb.create_processing_module(name="ophys", description="processed 2p data")
    segmentation = ImageSegmentation()
    fluorescence = Fluorescence()
    ophys.add(segmentation)
    ophys.add(fluorescence)
    stamps = {}
    for spec in fields:
        n = len(spec.unit_ids)
        plane = nwb.create_imaging_plane(
            name=f"ImagingPlane{spec.field}", description=f"field {spec.field}",
            optical_channel=OpticalChannel(name="OpticalChannel", description="green", emission_lambda=509.0),
            device=device, excitation_lambda=920.0, indicator="GCaMP6s", location="VISp",
            imaging_rate=frame_rate_hz)
        ps = segmentation.create_plane_segmentation(
            name=f"PlaneSegmentation{spec.field}", imaging_plane=plane,
            description=f"The output from segmenting field {spec.field} (SYNTHETIC)")
        ps.add_column("mask_type", "The classification of mask as soma or artifact.")
        structural = spec.pt_root_id is not None
        if structural:
            for name in ("pt_supervoxel_id", "pt_root_id", "pt_x_position", "pt_y_position",
                         "pt_z_position"):
                ps.add_column(name, f"{name} from CAVE materialization 343 (SYNTHETIC)")
        # hdmf cannot type a ragged column whose every row is empty: a field that matches no cell
        # (possible in synthetic files only) goes without it; the reader does not use it
        cave_ids = structural and bool(np.any(np.asarray(spec.pt_root_id) != 0))
        if cave_ids:
            ps.add_column("cave_ids", "CAVE ids of the matched cells (ragged)", index=True)
        kinds = spec.mask_type or ["soma"] * n
        pos = spec.pt_position if spec.pt_position is not None else np.zeros((n, 3))
        for j in range(n):
            row = {"id": int(spec.unit_ids[j]), "image_mask": np.ones((2, 2), np.float32),
                   "mask_type": kinds[j]}
            if structural:
                root = int(spec.pt_root_id[j])
                row.update(pt_supervoxel_id=root // 7 if root else 0, pt_root_id=root,
                           pt_x_position=int(pos[j, 0]), pt_y_position=int(pos[j, 1]),
                           pt_z_position=int(pos[j, 2]))
                if cave_ids:
                    row["cave_ids"] = [root] if root else []
            ps.add_row(**row)
        region = ps.create_roi_table_region(region=list(range(n)), description=f"all rois in field {spec.field}")
        stamps[spec.field] = _timestamps(spec, n_frames, frame_rate_hz, len(fields))
        fluorescence.create_roi_response_series(
            name=f"RoiResponseSeries{spec.field}", rois=region, unit="a.u.",
            description=f"The fluorescence traces for field {spec.field}",
            data=H5DataIO(shape=(n_frames, n), dtype=np.float32,
                          chunks=(min(n_frames, 1024), max(1, min(n, 64)))),
            timestamps=stamps[spec.field])
    clips = TimeIntervals(name="Clip", description="SYNTHETIC stimulus epochs")
    total = n_frames / frame_rate_hz
    for k in range(3):
        clips.add_row(start_time=k * total / 3, stop_time=(k + 1) * total / 3)
    nwb.add_time_intervals(clips)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # ends in .nwb, as pynwb prefers
    with NWBHDF5IO(str(tmp), mode="w") as io:
        io.write(nwb)
    with h5py.File(tmp, "r+") as h5:
        for spec in tqdm(fields, desc="write traces", unit="field", disable=not progress):
            ds = h5[f"processing/ophys/Fluorescence/RoiResponseSeries{spec.field}/data"]
            for start, block in _trace_blocks(spec, n_frames, g, noise, baseline, rng, block_frames):
                ds[start:start + len(block)] = block
    os.replace(tmp, path)
    return path
