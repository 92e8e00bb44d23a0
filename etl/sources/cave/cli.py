"""Command-line options of the ``cave`` source (``cxp etl --source cave``) and ``cxp refresh``.

``cxp refresh --rebuild`` rebuilds the declared priors after a refresh that stored a new snapshot.
Building priors is a later stage, which this one does not import (layers: priors_store > etl):
the priors stage's CLI sets ``rebuild_hook`` on the refresh parser (``set_defaults``), and
:func:`run_refresh` calls it. ``rebuild_hook(args)`` runs before the pull (it reads and checks the
recipe file, so a broken one fails first) and returns ``after(snapshot_row)``, called only when
the refresh stored a new snapshot.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from ...errors import EtlError
from ...profiles import load_profile
from .client import TOKEN_ENV, CaveConfig

__all__ = ["add_arguments", "config_from_args", "describe", "register_refresh", "run_refresh"]


def _version(text: str) -> int | str:
    if text == "latest":
        return text
    try:
        return int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--version takes a number or 'latest', not {text!r}") from err


def _common(p: argparse.ArgumentParser, *, with_version: bool) -> None:
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


def add_arguments(etl: argparse.ArgumentParser) -> None:
    """Add the ``cave`` options to ``cxp etl``."""
    _common(etl, with_version=True)


def config_from_args(args: argparse.Namespace) -> CaveConfig | None:
    """The :class:`CaveConfig` of parsed arguments (None unless ``--source cave`` or refresh)."""
    if getattr(args, "source", "cave") != "cave":
        return None
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


def register_refresh(sub, add_store: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add ``cxp refresh``."""
    p = sub.add_parser("refresh", help="pull the newest CAVE materialization if the store lacks it "
                                       "(for cron / systemd timers)")
    _common(p, with_version=False)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.add_argument("--rebuild", action="store_true",
                   help="after storing a new snapshot, build every recipe of the recipe file on it "
                        "(as `cxp priors rebuild`); nothing when the store was up to date")
    add_store(p)


def run_refresh(args: argparse.Namespace) -> None:
    """``cxp refresh``: exit 0 and say so when the newest version is already stored."""
    from .refresh import refresh  # noqa: PLC0415

    after = None
    if getattr(args, "rebuild", False):
        hook = getattr(args, "rebuild_hook", None)
        if hook is None:
            raise EtlError("--rebuild needs the priors stage's command line (run `cxp refresh "
                           "--rebuild`, which registers it); nothing was refreshed")
        after = hook(args)
    config = config_from_args(args)
    out = refresh(config, store=args.store, progress=not args.no_progress,
                  on_pull=lambda v: print(f"pulling {config.datastack} materialization v{v} ...",
                                          file=sys.stderr, flush=True))
    if not out["pulled"]:
        print(f"up to date: {config.datastack} materialization v{out['version']} is already stored "
              f"in {out['store']}; nothing to do" + ("; no rebuild" if after else ""))
        return
    verb = "stored" if out["created"] else "already stored (same content hash), nothing written:"
    counts = json.loads(out["row_counts"])
    print(f"{verb} snapshot {out['snapshot_id']} ({config.datastack} v{out['version']}) in {out['store']}")
    print("  " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    print(describe(out))
    if after is not None:
        if out["created"]:
            sys.stdout.flush()
            after(out)
        else:
            print("no new snapshot; no rebuild")
