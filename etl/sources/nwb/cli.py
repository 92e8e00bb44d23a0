"""The ``nwb`` options of ``cxp etl`` (kept here so the shared CLI module only wires them in)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ...errors import EtlError
from .download import DandiConfig, download_scans
from .events import EventRule

__all__ = ["add_arguments", "resolve_arguments", "describe"]


def add_arguments(etl: argparse.ArgumentParser) -> None:
    """Add ``--download``, the DANDI and the event-rule options to the ``cxp etl`` parser."""
    g = etl.add_argument_group("nwb (DANDI 000402 scan files)")
    g.add_argument("more_paths", nargs="*", default=[], metavar="PATH",
                   help="nwb: further .nwb files or folders")
    g.add_argument("--download", metavar="SCANS", default=None,
                   help="nwb: fetch these scans from DANDI first, e.g. 4-7,5-3 (session-scan_idx) "
                        "or asset paths; resumable, sha256-checked, cached")
    g.add_argument("--cache", metavar="DIR", default=None,
                   help="nwb: download cache (default: $CXP_NWB_CACHE, else ~/.cache/connectome-priors/dandi)")
    g.add_argument("--dandi-version", default=DandiConfig.version,
                   help=f"nwb: dandiset version (default {DandiConfig.version})")
    g.add_argument("--dandi-api", default=DandiConfig.api_url, help="nwb: DANDI API root")
    g.add_argument("--event-threshold", type=float, default=EventRule.threshold,
                   help="nwb: peak threshold on the deconvolved trace (default 0.01, the study's)")
    g.add_argument("--tau-s", type=float, default=EventRule.tau_s,
                   help="nwb: calcium decay time constant of the AR(1) deconvolution (s, default 1.0)")
    g.add_argument("--deconvolution", choices=["oasis", "ar1"], default=EventRule.method,
                   help="nwb: deconvolution of fluorescence: oasis (OASIS, default) or ar1 (closed-form inverse)")
    g.add_argument("--trace", choices=["fluorescence", "deconvolved"], default=EventRule.input,
                   help="nwb: the series hold fluorescence (deconvolve first; default) or deconvolved activity")


def resolve_arguments(args: argparse.Namespace, *, progress: bool) -> tuple[list[str] | None, EventRule | None]:
    """(paths, event rule) for ``cxp etl``: downloads first when ``--download`` is given.

    For sources other than ``nwb`` it returns (None, None) and refuses nwb-only arguments.
    """
    extra = list(args.more_paths)
    if args.source != "nwb":
        if extra or args.download:
            raise EtlError(f"source {args.source!r} takes at most one PATH and no --download "
                           "(those are for --source nwb)")
        return None, None
    paths = ([args.path] if args.path else []) + extra
    if args.download:
        config = DandiConfig(api_url=args.dandi_api, version=args.dandi_version,
                             cache_dir=Path(args.cache) if args.cache else None)
        scans = [s for s in args.download.split(",") if s.strip()]
        paths += [str(p) for p in download_scans(scans, config=config, progress=progress)]
    try:
        rule = EventRule(threshold=args.event_threshold, tau_s=args.tau_s, input=args.trace,
                         method=args.deconvolution)
    except ValueError as err:
        raise EtlError(str(err)) from err
    return paths, rule


def describe(snap: dict) -> str:
    """Lines for ``cxp etl`` after an ``nwb`` snapshot: dropped root ids and per-field agreement of
    the derived unit ids with the store's co-registration (empty when there is nothing to say)."""
    import json

    report = json.loads(snap["report"]) if isinstance(snap.get("report"), str) else snap.get("report", {})
    lines = []
    if report.get("root_ids_dropped_float64"):
        lines.append(f"  root ids: {report['root_ids_dropped_float64']:,} stored as null (float64 in the "
                     "file, not exact above 2**53)")
    coreg = report.get("coregistration", {})
    if coreg.get("status") == "compared":
        lines.append(f"  unit ids vs co-registration of {coreg['snapshot_id']} (need "
                     f">= {100 * coreg['threshold']:.0f}% per field):")
        lines += [f"    {r['line']}" for r in coreg["fields"]]
        if coreg["implausible"]:
            lines.append(f"  WARNING: implausible unit mapping in field(s) {', '.join(coreg['implausible'])}: "
                         "a join with that snapshot will be refused")
    return "\n".join(lines)
