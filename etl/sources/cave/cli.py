"""Command-line options of the ``cave`` source, shared by ``cxp etl --source cave`` and
``cxp refresh`` (whose command lives with the ETL stage's, in :mod:`connectome_priors.etl.cli`)."""

from __future__ import annotations

import argparse
import json

from ...profiles import load_profile
from .client import TOKEN_ENV, CaveConfig

__all__ = ["add_arguments", "config_from_args", "describe"]


def _version(text: str) -> int | str:
    if text == "latest":
        return text
    try:
        return int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--version takes a number or 'latest', not {text!r}") from err


def add_arguments(p: argparse.ArgumentParser, *, with_version: bool = True) -> None:
    """Add the ``cave`` options to a parser (``cxp etl``; ``cxp refresh`` without ``--version``)."""
    d = CaveConfig()
    p.add_argument("--server", default=None, metavar="URL",
                   help=f"cave: CAVE server (default {d.server}); token from ${TOKEN_ENV} or "
                        "~/.cloudvolume/secrets/cave-secret.json")
    p.add_argument("--datastack", default=None,
                   help=f"cave: datastack (default {d.datastack}); files: the datastack the export "
                        "is of, recorded on the snapshot (default: none recorded)")
    if with_version:
        p.add_argument("--version", type=_version, default="latest", dest="cave_version",
                       help="cave: materialization version N, or 'latest' (recorded as its number)")
    p.add_argument("--profile", default=None, metavar="NAME|FILE",
                   help="cave, files: the datastack profile naming each role's table and columns: "
                        "a built-in (minnie65_public, the default; v1dd_public; pinky100_v185) or "
                        "a TOML file; it also gives the datastack and voxel size unless "
                        "--datastack says otherwise")
    p.add_argument("--neurons", default=d.neurons,
                   choices=["coregistered_excitatory", "coregistered", "excitatory", "neurons", "all"],
                   help="cave, files: which cells (default: co-registered excitatory neurons; "
                        "'all' for exports without cell types or co-registration)")
    p.add_argument("--functional-table", default=d.functional_table,
                   choices=["digital_twin_properties_bcm_coreg_v4", "functional_properties_v3_bcm"],
                   help="cave: tuning table (angles normalized to degrees either way)")
    p.add_argument("--auto-coregistration", action="store_true",
                   help="cave: add units of the automated co-registration table")
    p.add_argument("--timeout", type=float, default=d.timeout_s, help="cave: per-request timeout, s")
    p.add_argument("--retries", type=int, default=d.retries, help="cave: retries on timeouts/5xx")
    p.add_argument("--chunk-size", type=int, default=d.chunk_size,
                   help="cave: presynaptic root ids per synapse query")


def config_from_args(args: argparse.Namespace) -> CaveConfig:
    """The :class:`CaveConfig` of parsed arguments (``cxp etl --source cave``, ``cxp refresh``)."""
    server = args.server or CaveConfig().server
    profile = load_profile(args.profile) if args.profile is not None else None
    datastack = args.datastack or (profile.datastack if profile else None) or CaveConfig().datastack
    return CaveConfig(server=server, datastack=datastack,
                      version=getattr(args, "cave_version", "latest"), neurons=args.neurons,
                      functional_table=args.functional_table,
                      auto_coregistration=args.auto_coregistration, timeout_s=args.timeout,
                      retries=args.retries, chunk_size=args.chunk_size, profile=args.profile,
                      voxel_nm=profile.voxel_size_nm if profile else CaveConfig().voxel_nm)


def describe(snap: dict) -> str:
    """One line on a stored CAVE snapshot: version, timestamp, exclusions."""
    report = json.loads(snap["report"]) if isinstance(snap.get("report"), str) else snap.get("report", {})
    return (f"  {snap.get('datastack')} materialization v{snap.get('materialization_version')} "
            f"({snap.get('materialization_timestamp')}); excluded nuclei: "
            f"{report.get('excluded_root_id_zero', 0)} with root id 0, "
            f"{report.get('excluded_multi_nucleus_nuclei', 0)} sharing a root id")
