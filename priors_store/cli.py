"""``cxp priors build|rebuild|list|show|verify|export|diff``: a thin layer over :mod:`priors_store`.

It also gives ``cxp refresh`` (registered by the ETL stage, which cannot import this one) what its
``--rebuild`` needs: the ``--recipes`` and ``--artifacts`` options and the hook that runs
:func:`.rebuild.rebuild_recipes` once a refresh stored a new snapshot (:func:`_refresh_rebuild`).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from connectome_priors.kernel.settings import env_name
from connectome_priors.etl.store import Store

from .catalog import list_artifacts, resolve_version
from .compare import diff, render_markdown, summary, write_report
from .comparison import FLOAT_ATOL, FLOAT_RTOL
from .config import ARTIFACTS_ENV, artifact_root
from .distributed import ENGINES
from .errors import ArtifactIntegrityError, PriorsError
from .exporters import export
from .names import check_name, check_ref, parse_ref
from .pipeline import DeriveParams, build, build_per_field
from .population import Population
from .reader import load
from .rebuild import Outcome, RebuildError, rebuild_recipes
from .recipes import RECIPES_ENV, load_recipes
from .verification import verify, verify_rebuild

__all__ = ["register"]


def register(sub: argparse._SubParsersAction, add_store) -> None:
    """Add the ``priors`` command group to the ``cxp`` parser."""
    priors = sub.add_parser("priors", help="derive, publish, verify, load and export prior artifacts")
    psub = priors.add_subparsers(dest="priors_command", required=True)
    priors.set_defaults(handler=run)

    def common(p: argparse.ArgumentParser) -> None:
        add_store(p)
        p.add_argument("--artifacts", metavar="DIR", default=None,
                       help=f"artifact root (default: ${ARTIFACTS_ENV}, else <store>/artifacts)")

    b = psub.add_parser("build", help="derive every kind for a population and publish it")
    b.add_argument("name", help="artifact name, e.g. field_6_6_2")
    which = b.add_mutually_exclusive_group(required=True)
    which.add_argument("--fields", help="comma-separated fields, e.g. 6_6_2 or 6_6_2,5_6_8 "
                                        "('all': every field; needs --per-field)")
    which.add_argument("--pooled", action="store_true", help="every co-registered neuron of the snapshot")
    which.add_argument("--sql", help='a read-only query returning nucleus_id, e.g. "SELECT nucleus_id '
                                     "FROM neurons WHERE layer = 'L2/3'\"")
    b.add_argument("--per-field", action="store_true",
                   help="one artifact per field, named NAME_<session>_<scan>_<field>")
    b.add_argument("--jobs", type=int, default=1, help="with --per-field: worker processes")
    b.add_argument("--snapshot", default=None, help="snapshot id (default: the store's latest)")
    b.add_argument("--activity-snapshot", metavar="ID|auto", default=None,
                   help="take spike trains from this snapshot (e.g. an nwb one), joined on (session, "
                        "scan_idx, unit_id); 'auto': the latest snapshot that has them all "
                        "(default: only the population's snapshot)")
    b.add_argument("--no-precision", action="store_true", help="skip the (slow) precision matrix")
    b.add_argument("--seed", type=int, default=0, help="seed of module detection and precision CV")
    b.add_argument("--signed-measure", choices=("synapses", "size"), default="synapses",
                   help="magnitude of connectome_signed: synapse count (default) or summed "
                        "synapse size")
    b.add_argument("--engine", choices=list(ENGINES), default="local",
                   help="local (this process, default) or dask (distance row blocks on a Dask "
                        "cluster; same artifact, same version)")
    b.add_argument("--dask-scheduler", default=None, metavar="ADDR",
                   help=f"with --engine dask: 'local' or tcp://HOST:PORT of an existing scheduler "
                        f"(default ${env_name('dask_scheduler')}, else a LocalCluster of 2 worker "
                        "processes)")
    b.add_argument("--no-progress", action="store_true", help="hide progress bars")
    common(b)

    ls = psub.add_parser("list", help="list artifacts and versions")
    common(ls)

    show = psub.add_parser("show", help="print an artifact's manifest summary (and plots)")
    show.add_argument("ref", help="NAME[@VERSION]")
    show.add_argument("--plot", metavar="DIR", default=None, help="render PNGs into DIR")
    common(show)

    ver = psub.add_parser("verify", help="check every file of an artifact against its manifest")
    ver.add_argument("ref", help="NAME[@VERSION]")
    ver.add_argument("--rebuild", action="store_true",
                     help="also build the recipe again from the store and compare every kind "
                          "(integer kinds exactly, float kinds within rtol 1e-6, atol 1e-9; "
                          "precision within a relative Frobenius difference of 1e-2)")
    common(ver)

    exp = psub.add_parser("export", help="write an artifact as npz, safetensors or parquet")
    exp.add_argument("ref", help="NAME[@VERSION]")
    exp.add_argument("--format", choices=["npz", "safetensors", "parquet"], default="npz")
    exp.add_argument("--out", required=True, help="output file (npz/safetensors) or folder (parquet)")
    common(exp)

    dif = psub.add_parser("diff", help="compare two versions of an artifact")
    dif.add_argument("a", help="NAME@VERSION")
    dif.add_argument("b", help="NAME@VERSION (or just VERSION of the same name)")
    dif.add_argument("--format", choices=["json", "markdown"], default="json", dest="diff_format",
                     help="json (default: every number, every nucleus id) or markdown (the change "
                          "report `cxp priors rebuild` writes)")
    dif.add_argument("--out", metavar="DIR", default=None,
                     help="also write the change report (Markdown, HTML, a PNG) into DIR")
    common(dif)

    reb = psub.add_parser("rebuild", help="build every recipe of the recipe file (priors.toml) on "
                                          "the latest snapshot; skip those already built")
    reb.add_argument("--snapshot", default=None, help="snapshot id (default: the store's latest)")
    _recipe_options(reb)
    reb.add_argument("--no-push", action="store_true", help="do not push, whatever recipes say")
    reb.add_argument("--no-progress", action="store_true", help="hide progress bars")
    common(reb)
    refresh = sub.choices.get("refresh")  # `cxp refresh --rebuild` (etl/sources/cave/cli.py)
    if refresh is not None:
        _recipe_options(refresh, when="with --rebuild: ")
        refresh.add_argument("--artifacts", metavar="DIR", default=None,
                             help=f"with --rebuild: artifact root (default: ${ARTIFACTS_ENV}, else "
                                  "<store>/artifacts)")
        refresh.set_defaults(rebuild_hook=_refresh_rebuild)
    from .cli_remote import register as register_remote  # push, pull
    register_remote(psub, common)


def _recipe_options(p: argparse.ArgumentParser, *, when: str = "") -> None:
    p.add_argument("--recipes", metavar="FILE", default=None,
                   help=f"{when}recipe file (default: ${RECIPES_ENV}, else the config file's recipes, "
                        "else ~/.config/connectome-priors/priors.toml)")


def _root(args):
    return artifact_root(args.artifacts, store=Store(args.store).directory)


def _check_names(args: argparse.Namespace) -> None:
    """Refuse a bad artifact name or ref before the store or any artifact is opened (a name too
    long for a folder, with '/' or glob characters, ...): one line, exit 2."""
    cmd = args.priors_command
    if cmd == "build" and args.per_field and args.fields:
        fields = ["0_0_0"] if args.fields == "all" else args.fields.split(",")
        for f in fields:  # every name the build will publish ('all': the shortest possible)
            check_name(f"{args.name}_{f}", what=f"artifact name (--per-field: NAME_{f})")
    elif cmd == "build":
        check_name(args.name)
    elif cmd in ("show", "verify", "export"):
        check_ref(*parse_ref(args.ref))
    elif cmd == "diff":
        name_a, ver_a = parse_ref(args.a)
        check_ref(name_a, ver_a)
        check_ref(*parse_ref(args.b if "@" in args.b else f"{name_a}@{args.b}"))


def run(args: argparse.Namespace) -> None:
    """Execute a parsed ``cxp priors ...`` command (one function per command, :data:`COMMANDS`)."""
    _check_names(args)
    command = COMMANDS.get(args.priors_command)
    if command is None:  # pragma: no cover - argparse restricts the choices
        raise PriorsError(f"unknown priors command {args.priors_command!r}")
    command(args, _root(args))


def _build(args: argparse.Namespace, root: Path) -> None:
    """``cxp priors build``: one artifact, or one per field with ``--per-field``."""
    if args.per_field:
        _build_per_field(args, root)
        return
    which = {"snapshot": args.snapshot, "activity_snapshot": args.activity_snapshot}
    if args.fields:
        population = Population.of_fields(*args.fields.split(","), **which)
    elif args.pooled:
        population = Population.pooled(**which)
    else:
        population = Population.of_sql(args.sql, **which)
    params = DeriveParams(precision=not args.no_precision, precision_seed=args.seed,
                          module_seed=args.seed, signed_measure=args.signed_measure)
    m = build(args.name, population, store=args.store, root=root, params=params,
              engine=args.engine,
              scheduler=args.dask_scheduler if args.engine == "dask" else None,
              progress=not args.no_progress)
    print(f"published {m['name']}@{m['version']} ({m['population']['n_neurons']} neurons, "
          f"snapshot {m['source_snapshot']['snapshot_id']}) in {root / m['name'] / m['version']}")
    print("  kinds: " + ", ".join(sorted(m["kinds"])))
    if m["source_snapshot"].get("activity_snapshot"):
        act = m["source_snapshot"]["activity_snapshot"]
        print(f"  spikes from snapshot {act['snapshot_id']} (source {act['source']})")
    for reason in m["parameters"].get("skipped", {}).values():
        print(f"  skipped: {reason}")


def _build_per_field(args: argparse.Namespace, root: Path) -> None:
    """``cxp priors build NAME --fields ... --per-field``: one artifact per field."""
    if not args.fields:
        raise PriorsError("--per-field needs --fields (a list, or 'all')")
    if args.activity_snapshot:
        raise PriorsError("--activity-snapshot is not supported with --per-field yet; build the "
                          "fields one by one (--fields F --activity-snapshot ...)")
    if args.engine != "local":
        raise PriorsError("--engine dask is for one large build (e.g. --pooled); --per-field "
                          "builds small fields, in parallel with --jobs")
    params = DeriveParams(precision=not args.no_precision, precision_seed=args.seed,
                          module_seed=args.seed, signed_measure=args.signed_measure)
    fields = None if args.fields == "all" else args.fields.split(",")
    manifests = build_per_field(args.name, fields, store=args.store, root=root,
                                snapshot=args.snapshot, params=params, jobs=args.jobs,
                                progress=not args.no_progress)
    for m in manifests:
        print(f"published {m['name']}@{m['version']} ({m['population']['n_neurons']} neurons, "
              f"{len(m['kinds'])} kinds)")
    print(f"{len(manifests)} artifacts in {root}")


def _list(args: argparse.Namespace, root: Path) -> None:
    """``cxp priors list``: every valid version; the invalid ones fail the command, named."""
    invalid: list[ArtifactIntegrityError] = []
    table = list_artifacts(root, invalid=invalid)
    if table.empty:
        print(f"no {'valid ' if invalid else ''}artifacts under {root}")
    else:
        with pd.option_context("display.width", 200, "display.max_colwidth", 70):
            print(table.to_string(index=False))
    if invalid:
        raise ArtifactIntegrityError(
            f"{len(invalid)} artifact version(s) under {root} have a missing or edited manifest "
            "and are not listed: " + "; ".join(str(e) for e in invalid[:3])
            + (f"; and {len(invalid) - 3} more" if len(invalid) > 3 else ""),
            path=invalid[0].path, expected=invalid[0].expected, found=invalid[0].found)


def _show(args: argparse.Namespace, root: Path) -> None:
    """``cxp priors show``: the manifest summary, and PNGs with ``--plot``."""
    prior = load(*parse_ref(args.ref), root=root)
    _summary(prior)
    if args.plot:
        from .plots import plot_all  # matplotlib only when asked

        for path in plot_all(prior, args.plot):
            print(f"  wrote {path}")


def _verify(args: argparse.Namespace, root: Path) -> None:
    """``cxp priors verify``: every file's sha256, and a rebuild with ``--rebuild``."""
    directory = resolve_version(*parse_ref(args.ref), root=root)
    m = verify(directory)
    print(f"OK {m['name']}@{m['version']}: {len(m['files'])} files match their sha256")
    if args.rebuild:
        checked = verify_rebuild(directory, store=args.store, manifest=m)
        worst = max(checked, key=lambda c: c.max_abs_diff)
        print(f"OK rebuilt the recipe from snapshot {m['source_snapshot']['snapshot_id']}: "
              f"{len(checked)} kinds (neuron table included) match, "
              f"{sum(c.identical for c in checked)} byte-identical; integer kinds exactly, "
              f"float kinds within rtol {FLOAT_RTOL:g}, atol {FLOAT_ATOL:g}, precision by "
              f"norm (largest "
              f"|difference| {worst.max_abs_diff:.3g}, {worst.kind})")


def _export(args: argparse.Namespace, root: Path) -> None:
    """``cxp priors export``."""
    prior = load(*parse_ref(args.ref), root=root)
    path = export(prior, args.out, fmt=args.format)
    print(f"exported {prior.name}@{prior.version} ({len(prior.kinds)} kinds) to {path}")


def _diff(args: argparse.Namespace, root: Path) -> None:
    """``cxp priors diff A B``: JSON or Markdown, and the report files with ``--out``."""
    name_a, ver_a = parse_ref(args.a)
    name_b, ver_b = parse_ref(args.b if "@" in args.b else f"{name_a}@{args.b}")
    report = diff(load(name_a, ver_a, root=root), load(name_b, ver_b, root=root))
    if args.diff_format == "markdown":
        print(render_markdown(report))
    else:
        print(json.dumps(report, indent=2, default=str))
    if args.out:
        b = report["b"]["ref"].replace("@", "_")
        for path in write_report(report, args.out, f"{report['a']['ref'].replace('@', '_')}-{b}"):
            print(f"  wrote {path}")


def _rebuild_all(args: argparse.Namespace, root: Path) -> None:
    """``cxp priors rebuild``: every recipe of the recipe file."""
    _rebuild(args, root, snapshot=args.snapshot, recipes=load_recipes(args.recipes))


#: The function of each ``cxp priors`` command (``push`` and ``pull``: :mod:`.cli_remote`).
COMMANDS: dict[str, Callable[[argparse.Namespace, Path], None]] = {
    "build": _build, "list": _list, "show": _show, "verify": _verify, "export": _export,
    "diff": _diff, "rebuild": _rebuild_all,
}


def _rebuild(args: argparse.Namespace, root, *, snapshot: str | None, recipes) -> None:
    """Run the recipes, print each outcome as it comes, then a tally; raise if any failed."""
    result = rebuild_recipes(recipes, store=args.store, root=root, snapshot=snapshot,
                             push=not getattr(args, "no_push", False), on_outcome=_print_outcome,
                             progress=not args.no_progress)
    counts = {s: sum(o.status == s for o in result.outcomes) for s in ("built", "skipped", "failed")}
    print(f"rebuild on snapshot {result.snapshot}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
          + f" ({len(recipes)} recipes, artifacts in {root})")
    failures = result.failures
    if failures:
        raise RebuildError(f"{len(failures)} of {len(recipes)} recipes failed: "
                           + "; ".join(f"{k}: {v}" for k, v in failures.items()),
                           failures=failures, result=result)


def _print_outcome(o: Outcome) -> None:
    if o.status == "failed":
        print(f"FAILED  {o.name}: {o.error}")
    elif o.status == "skipped":
        print(f"skipped {o.name}@{o.version}: already built on this snapshot")
    else:
        print(f"built   {o.name}@{o.version}" + (f" (previous {o.previous})" if o.previous else
                                                  " (first version)"))
    if o.report is not None:
        print(f"  changes: {summary(o.report)}")
    for path in o.report_files:
        if path.suffix == ".md":
            print(f"  report:  {path}")
    if o.pushed:
        print(f"  pushed:  {o.pushed}")
    for note in o.notes:
        print(f"  note:    {note}")
    sys.stdout.flush()  # a cron log shows each recipe as it finishes


def _refresh_rebuild(args: argparse.Namespace):
    """``cxp refresh --rebuild``: read the recipes now (a bad file fails before the pull), and
    return what runs after a refresh that stored a new snapshot."""
    recipes = load_recipes(args.recipes)

    def after(snap: dict) -> None:
        root = artifact_root(args.artifacts, store=Store(args.store).directory)
        _rebuild(args, root, snapshot=snap["snapshot_id"], recipes=recipes)

    return after


def _summary(prior) -> None:
    """Print ``prior``'s manifest: recipe, snapshot and one line per kind."""
    m = prior.manifest
    snap = m["source_snapshot"]
    print(f"{m['name']}@{m['version']}  created {m['created']}  by {m['code_version']}")
    print(f"  population: {json.dumps(m['population'])}")
    print(f"  snapshot:   {snap['snapshot_id']} (source {snap['source']}"
          f"{', SYNTHETIC data' if snap.get('synthetic') else ''}"
          f"{', version ' + str(snap['materialization_version']) if snap.get('materialization_version') else ''})")
    if snap.get("activity_snapshot"):
        print(f"  activity:   {snap['activity_snapshot']['snapshot_id']} (source "
              f"{snap['activity_snapshot']['source']}; spikes joined on session, scan_idx, unit_id)")
    sizes = {f["path"]: f for f in m["files"]}
    for kind in prior.kinds:
        entry = m["kinds"][kind]
        f = sizes[entry["file"]]
        shape = "x".join(map(str, f.get("shape", []))) or "sparse"
        stats = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                          for k, v in entry.get("stats", {}).items())
        print(f"  {kind:<20} {shape:<12} {f['bytes'] / 2**20:8.2f} MiB  {stats}")
