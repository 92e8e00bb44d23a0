"""Write small (or large) NWB files in the layout of DANDI 000402, with known embedded events.

Used by the tests (a few fields, a few dozen ROIs) and by ``bench/nwb_read.py`` (a ~1 GB file).
The data are SYNTHETIC: each ROI's fluorescence is ``baseline * (1 + c)`` with ``c`` an AR(1)
calcium trace (``c[t] = g c[t-1] + a`` at its event frames) plus optional seeded Gaussian noise.

The layout follows catalystneuro's MICrONS-to-nwb converter (``src/microns_to_nwb/tools/ophys/
ophys.py`` and ``tools/nwb_helpers.py``), which wrote the release:

- ``session_id`` ``"<session>-scan-<scan_idx>"``, subject ``17797``, session start 2018-03-<session>;
- device ``Microscope``; processing module ``ophys`` ("processed 2p data");
- per field ``<k>`` in ascending order: ``ImagingPlane<k>`` (``OpticalChannel``, 920 nm, GCaMP6,
  imaging rate NaN), ``ImageSegmentation/PlaneSegmentation<k>`` with ``id`` = mask ids 1..n (they
  restart in every field), ``image_mask`` and ``mask_type`` ('soma'/'artifact'); where any ROI of
  the field matched a cell also ``cave_ids`` (ragged, float64, ``[nan]`` when unmatched),
  ``pt_supervoxel_id``, ``pt_root_id``, ``pt_x/y/z_position``, all float64 with NaN for no match
  (a root id in float64 is rounded: only integers up to 2**53 are exact);
  ``Fluorescence/RoiResponseSeries<k>`` (frames x ROIs in mask order, unit 'n.a.', the scan's frame
  times as timestamps, the same for every field), ``SegmentationImages<k>`` (``correlation``,
  ``average``);
- trial tables ``/intervals/Trippy``, ``Clip``, ``Monet2``.

Not written (the reader does not use them; they are large): the raw ``TwoPhotonSeries<k>``, the
stimulus movie, eye tracking and treadmill.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..etl.sources.nwb.events import ar1_decay

__all__ = ["SynthField", "write_scan_file", "dandi_name", "unit_ids_of"]


@dataclass
class SynthField:
    """One imaging field of a synthetic scan file; its ROIs get mask ids 1..n in this order."""

    field: int
    """Field number (the <k> of PlaneSegmentation<k> / RoiResponseSeries<k>)."""
    event_frames: list[np.ndarray]
    """Per ROI, the frames of its events (one entry per ROI: its length is the ROI count)."""
    mask_type: list[str] | None = None
    """Per ROI 'soma' or 'artifact' (default all soma)."""
    pt_root_id: np.ndarray | None = None
    """Per ROI the true (int64) root id of its matched cell, 0 = no match; written as float64 with
    NaN for 0, as the release does. None (or all 0): the field has no structural columns."""
    pt_position: np.ndarray | None = None
    """(n, 3) positions in 4,4,40 nm voxels (with pt_root_id)."""
    amplitude: float = 1.0
    """Event amplitude (dF/F)."""
    extra: dict = field(default_factory=dict)
    """Unused; room for a test's own notes."""

    @property
    def n_rois(self) -> int:
        """Number of ROIs (soma and artifact)."""
        return len(self.event_frames)

    @property
    def mask_ids(self) -> np.ndarray:
        """The field's mask ids, 1..n."""
        return np.arange(1, self.n_rois + 1)


def unit_ids_of(fields: Sequence[SynthField]) -> dict[int, np.ndarray]:
    """Field -> the scan-wide unit id of each of its ROIs (the pipeline's numbering).

    Examples
    --------
    >>> fs = [SynthField(2, [[]] * 2), SynthField(1, [[]] * 3)]
    >>> {k: v.tolist() for k, v in unit_ids_of(fs).items()}
    {1: [1, 2, 3], 2: [4, 5]}
    """
    out, total = {}, 0
    for spec in sorted(fields, key=lambda f: f.field):
        out[spec.field] = total + spec.mask_ids
        total += spec.n_rois
    return out


def dandi_name(session: int, scan_idx: int, subject: str = "17797") -> str:
    """The file name DANDI 000402 uses for a scan: ``sub-<subject>_ses-<s>-scan-<c>_behavior+image+ophys.nwb``."""
    return f"sub-{subject}_ses-{session}-scan-{scan_idx}_behavior+image+ophys.nwb"


def _trace_blocks(spec: SynthField, n_frames: int, g: float, noise: float, baseline: float,
                  rng: np.random.Generator, block: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (start_frame, (frames, rois) float32 fluorescence) blocks, carrying the AR(1) state."""
    n = spec.n_rois
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


def _as_float(values: np.ndarray, matched: np.ndarray) -> list[float]:
    """The converter's ``astype(np.float64)``, NaN where a ROI has no match."""
    return [float(v) if m else float("nan") for v, m in zip(values, matched)]


def _add_structural(ps, spec: SynthField) -> None:
    roots = np.asarray(spec.pt_root_id, dtype=np.int64)
    matched = roots != 0
    pos = spec.pt_position if spec.pt_position is not None else np.zeros((spec.n_rois, 3))
    ps.add_column(name="cave_ids", description=f"The identifier(s) in CAVE for field {spec.field}.",
                  data=[[float(1000 + j)] if m else [float("nan")] for j, m in enumerate(matched)],
                  index=True)
    ps.add_column(name="pt_supervoxel_id", description="The ID of the supervoxel from the watershed "
                  "segmentation that is under the pt_position.", data=_as_float(roots // 7, matched))
    ps.add_column(name="pt_root_id", description="The ID of the segment/root_id under the pt_position "
                  "from the Proofread Segmentation (v343).", data=_as_float(roots, matched))
    for axis, name in enumerate(("pt_x_position", "pt_y_position", "pt_z_position")):
        ps.add_column(name=name, description=f"The {name[3]} location in 4,4,40 nm voxels at a cell body "
                      "for the cell.", data=_as_float(pos[:, axis], matched))


def write_scan_file(path: str | os.PathLike, fields: Sequence[SynthField], *, session: int,
                    scan_idx: int, n_frames: int = 600, frame_rate_hz: float = 6.3009,
                    tau_s: float = 1.0, noise: float = 0.0, baseline: float = 100.0, seed: int = 0,
                    block_frames: int = 4096, session_id: str | None = None, mask_px: int = 8,
                    progress: bool = False) -> Path:
    """Write one synthetic scan file in the DANDI 000402 layout; return its path.

    Traces are written block by block (``block_frames`` frames at a time) into datasets that
    pynwb allocates, so a large file never needs its traces in memory. Every field shares the
    scan's frame times ``arange(n_frames) / frame_rate_hz`` (as in the release).

    Parameters
    ----------
    path
        Where to write (written to a temporary name first, then renamed).
    fields
        The imaging fields and their ROIs/events; written in ascending field order.
    session, scan_idx
        Written as ``session_id = "<session>-scan-<scan_idx>"`` (``session_id`` overrides it).
    n_frames, frame_rate_hz
        Length (frames) and rate (Hz) of the traces.
    tau_s
        Decay time constant (s) of the synthetic calcium.
    noise
        Gaussian noise SD as a fraction of ``baseline`` (0: exact AR(1) traces).
    seed
        Seed of the noise and of the file's identifier.
    mask_px
        Side (pixels) of the image masks and summary images.

    Examples
    --------
    >>> f = SynthField(1, [np.array([3, 9])], pt_root_id=np.array([864691135000000001]))
    >>> write_scan_file("/tmp/x/" + dandi_name(4, 7), [f], session=4, scan_idx=7)  # doctest: +SKIP
    """
    import h5py  # heavy imports only when writing
    from hdmf.backends.hdf5.h5_utils import H5DataIO
    from pynwb import NWBHDF5IO, NWBFile
    from pynwb.base import Images
    from pynwb.epoch import TimeIntervals
    from pynwb.file import Subject
    from pynwb.image import GrayscaleImage
    from hdmf.common import VectorData
    from pynwb.ophys import Fluorescence, ImageSegmentation, OpticalChannel, PlaneSegmentation
    from tqdm.auto import tqdm

    path = Path(path)
    rng = np.random.default_rng(seed)
    g = ar1_decay(frame_rate_hz, tau_s)
    fields = sorted(fields, key=lambda f: f.field)
    nwb = NWBFile(session_description="SYNTHETIC MICrONS-like scan (connectome-priors test data)",
                  identifier=str(uuid.UUID(int=int(np.random.default_rng([seed, session, scan_idx]).integers(0, 2**63)))),
                  session_start_time=datetime(2018, 3, max(1, min(int(session), 28)), tzinfo=timezone.utc),
                  session_id=session_id if session_id is not None else f"{session}-scan-{scan_idx}",
                  subject=Subject(subject_id="17797", species="Mus musculus", age="P75D/P81D", sex="M"),
                  related_publications="https://doi.org/10.1101/2021.07.28.454025")
    device = nwb.create_device(name="Microscope", description="two-photon random access mesoscope")
    ophys = nwb.create_processing_module(name="ophys", description="processed 2p data")
    segmentation = ImageSegmentation()
    ophys.add(segmentation)
    fluorescence = Fluorescence(name="Fluorescence")
    ophys.add(fluorescence)
    stamps = np.arange(n_frames) / frame_rate_hz
    for spec in fields:
        n = spec.n_rois
        plane = nwb.create_imaging_plane(
            name=f"ImagingPlane{spec.field}",
            optical_channel=OpticalChannel(name="OpticalChannel", description="an optical channel",
                                           emission_lambda=500.0),
            imaging_rate=np.nan, description=f"The imaging plane for field {spec.field} (SYNTHETIC).",
            device=device, excitation_lambda=920.0, indicator="GCaMP6", location="VISp,VISrl,VISlm,VISal",
            grid_spacing=[1e-6, 1e-6], grid_spacing_unit="meters",
            origin_coords=[0.0, 0.0, 2e-4 + 1e-5 * spec.field], origin_coords_unit="meters")
        masks = np.zeros((n, mask_px, mask_px), np.float32)
        for j in range(n):
            masks[j, j % mask_px, (j // mask_px) % mask_px] = 1.0
        # the converter adds image_mask and mask_type right after creating the table; current pynwb
        # wants a mask column at construction, so both are given there (same columns, same order)
        ps = PlaneSegmentation(
            name=f"PlaneSegmentation{spec.field}", imaging_plane=plane, id=spec.mask_ids.tolist(),
            description=f"The output from segmenting field {spec.field} (SYNTHETIC).",
            columns=[VectorData(name="image_mask", description="The image masks for each ROI.",
                                data=H5DataIO(masks, compression=True)),
                     VectorData(name="mask_type", description="The classification of mask as soma or "
                                "artifact.", data=list(spec.mask_type or ["soma"] * n))])
        segmentation.add_plane_segmentation(ps)
        if spec.pt_root_id is not None and np.any(np.asarray(spec.pt_root_id) != 0):
            _add_structural(ps, spec)
        region = ps.create_roi_table_region(region=list(range(n)), description=f"all rois in field {spec.field}")
        fluorescence.create_roi_response_series(
            name=f"RoiResponseSeries{spec.field}", rois=region, unit="n.a.",
            description=f"The fluorescence traces for field {spec.field}",
            data=H5DataIO(shape=(n_frames, n), dtype=np.float32,
                          chunks=(min(n_frames, 1024), max(1, min(n, 64)))),
            timestamps=stamps)
        images = [GrayscaleImage(name=name, data=np.zeros((mask_px, mask_px), np.float32))
                  for name in ("correlation", "average")]
        ophys.add(Images(name=f"SegmentationImages{spec.field}", images=images,
                         description=f"Correlation and average images for field {spec.field}."))
    total = n_frames / frame_rate_hz
    for k, name in enumerate(("Trippy", "Clip", "Monet2")):
        table = TimeIntervals(name=name, description=f"SYNTHETIC {name} stimulus trials")
        table.add_column("stimulus_type", "The type of stimulus.")
        table.add_interval(start_time=k * total / 3, stop_time=(k + 1) * total / 3,
                           stimulus_type=f"stimulus.{name}")
        nwb.add_time_intervals(table)
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
