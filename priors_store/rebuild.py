"""``cxp priors rebuild``: build every declared recipe on the newest snapshot, with change reports.

For each recipe of the recipe file (:mod:`.recipes`), in file order:

1. pin its population to the snapshot (the store's latest, or the one asked for), resolve it and
   compute the **recipe version** the build would publish (:func:`planned_version`: the version
   names the recipe, not the numbers, so it is known before anything is derived);
2. if that version is published already, skip it (``skipped``); else build it (``built``);
3. for a built recipe whose ``latest`` named another version before, compare the two
   (:func:`.compare.diff`) and write the change report beside the new version:
   ``<artifacts>/<name>/<version>.changes.md`` (``.html``, ``.png``), outside the version folder,
   whose files are exactly its manifest's;
4. push to the recipe's ``push`` URL (also a skipped one: a push is a no-op when the remote has
   the version, and a push that failed last time is retried).

A recipe that fails (its population is empty on the new snapshot, a push fails, ...) is recorded
with its message and the next one runs; :class:`RebuildError` names every failure at the end. The
whole run holds an ``flock`` on ``<artifacts>/.rebuild.lock`` (non-blocking: a second rebuild of
the same artifact root is refused at once with :class:`RebuildLockedError`), so two schedulers
never interleave their builds.

Examples
--------
>>> result = rebuild_recipes(load_recipes("priors.toml"), store="/data/cxp")   # doctest: +SKIP
>>> [(o.name, o.status, o.version) for o in result.outcomes]                   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from connectome_priors.etl.store import Store
from connectome_priors.kernel.locks import exclusive

from .compare import diff, write_report
from .config import artifact_root
from .errors import PriorsError
from .names import LATEST
from .pipeline import DeriveParams, build, plan
from .population import Population
from .reader import load
from .recipes import Recipe

__all__ = ["LOCK_NAME", "Outcome", "RebuildError", "RebuildLockedError", "RebuildResult",
           "Status", "planned_version", "rebuild_lock", "rebuild_recipes", "report_stem"]

LOCK_NAME = ".rebuild.lock"
Status = Literal["built", "skipped", "failed"]


class RebuildLockedError(PriorsError):
    """Another rebuild of the same artifact root is running. ``path`` is the lock file."""

    def __init__(self, message: str, *, path: str) -> None:
        self.path = path
        super().__init__(message)


class RebuildError(PriorsError):
    """One or more recipes failed. ``failures``: {recipe name: message}; ``result``: the whole run."""

    def __init__(self, message: str, *, failures: dict[str, str], result: RebuildResult) -> None:
        self.failures, self.result = failures, result
        super().__init__(message)


@dataclass
class Outcome:
    """What the rebuild did with one recipe."""

    name: str
    status: Status
    """``built`` (a new version), ``skipped`` (its version exists) or ``failed``."""
    version: str | None = None
    """The recipe version on this snapshot (``None`` when it could not be computed)."""
    previous: str | None = None
    """The version ``latest`` named before this rebuild (``None``: the first build)."""
    error: str | None = None
    """Why it failed (build or push)."""
    report: dict | None = None
    """:func:`.compare.diff` of ``previous`` and ``version`` (built recipes with a previous version)."""
    report_files: list[Path] = field(default_factory=list)
    """The change report's files."""
    pushed: str | None = None
    """Where the version was pushed (the remote folder), when the recipe says ``push``."""
    notes: list[str] = field(default_factory=list)
    """Other things worth saying (the build published another version than planned, ...)."""


@dataclass
class RebuildResult:
    """Every recipe's outcome, in file order, and the snapshot they were built on."""

    snapshot: str
    outcomes: list[Outcome]

    @property
    def failures(self) -> dict[str, str]:
        """{recipe name: message} of the failed recipes."""
        return {o.name: o.error or "failed" for o in self.outcomes if o.status == "failed"}

    @property
    def built(self) -> list[str]:
        """Names of the recipes built (new versions)."""
        return [o.name for o in self.outcomes if o.status == "built"]


def rebuild_lock(root: str | os.PathLike):
    """Hold the artifact root's rebuild lock (non-blocking; :class:`RebuildLockedError` if taken)."""
    directory = Path(root)
    path = directory / LOCK_NAME
    return exclusive(path, lambda holder: RebuildLockedError(
        f"another rebuild of the priors in {directory} is running (pid {holder}, lock {path}); "
        "this one stops without building anything", path=str(path)))


def planned_version(population: Population, store: Store, *,
                    params: DeriveParams = DeriveParams()) -> str:
    """The version :func:`.pipeline.build` will publish for ``population`` (pinned to a snapshot)
    and ``params``, from :func:`.pipeline.plan` (nothing derived).

    Raises
    ------
    PopulationError
        The population cannot be resolved (empty on this snapshot, unknown field, ...).
    """
    return plan(population, store, params=params).version


def report_stem(version: str) -> str:
    """File stem of the change report written beside version ``version``."""
    return f"{version}.changes"


def rebuild_recipes(recipes: list[Recipe], *, store: Store | str | os.PathLike | None = None,
                    root: str | os.PathLike | None = None, snapshot: str | None = None,
                    push: bool = True, storage_options: dict | None = None,
                    on_outcome: Callable[[Outcome], None] | None = None,
                    progress: bool = False) -> RebuildResult:
    """Build every recipe on ``snapshot`` (default: the store's latest), skipping those whose
    version is published; see the module docstring.

    ``on_outcome`` is called with each recipe's :class:`Outcome` as soon as it is done (the CLI
    prints it). ``push=False`` skips every push. Returns the outcomes; a failed recipe does not
    raise (see :class:`RebuildError`, which the CLI raises from the result).

    Raises
    ------
    RebuildLockedError
        Another rebuild holds the artifact root's lock.
    StoreError
        The store holds no snapshot.
    """
    store = store if isinstance(store, Store) else Store(store)
    root = artifact_root(root, store=store.directory)
    with rebuild_lock(root):
        sid = snapshot or store.latest_snapshot()
        outcomes = []
        for recipe in recipes:
            outcome = _one(recipe, store, root, sid, push=push, storage_options=storage_options,
                           progress=progress)
            outcomes.append(outcome)
            if on_outcome is not None:
                on_outcome(outcome)
        return RebuildResult(snapshot=sid, outcomes=outcomes)


def _one(recipe: Recipe, store: Store, root: Path, sid: str, *, push: bool,
         storage_options: dict | None, progress: bool) -> Outcome:
    pointer = root / recipe.name / LATEST
    previous = pointer.read_text(errors="replace").strip() if pointer.is_file() else None
    out = Outcome(recipe.name, "failed", previous=previous)
    population = recipe.on(sid)
    try:
        out.version = planned_version(population, store, params=recipe.params)
        if (root / recipe.name / out.version).is_dir():
            out.status = "skipped"
        else:
            m = build(recipe.name, population, store=store, root=root, params=recipe.params,
                      progress=progress)
            if m["version"] != out.version:  # keep going: the build is published and valid
                out.notes.append(f"the build published {m['version']}, not the planned "
                                 f"{out.version}: planned_version and pipeline.build disagree "
                                 "(report this); the next rebuild will build it again")
                out.version = m["version"]
            out.status = "built"
    except Exception as err:  # noqa: BLE001 (one failing recipe must not stop the others)
        out.status = "failed"
        out.error = _message(err)
        return out
    if out.status == "built" and previous and previous != out.version:
        try:
            old = load(recipe.name, previous, root=root)
            out.report = diff(old, load(recipe.name, out.version, root=root))
            out.report_files = write_report(out.report, root / recipe.name, report_stem(out.version))
        except Exception as err:  # noqa: BLE001
            out.status = "failed"
            out.error = (f"built {recipe.name}@{out.version}, but its change report against "
                         f"{previous} failed: {_message(err)}")
    if push and recipe.push:
        from .remote import push as push_version  # fsspec only when pushing

        try:
            res = push_version(f"{recipe.name}@{out.version}", recipe.push, root=root,
                               storage_options=storage_options)
            out.pushed = res.url
            if not res.published:
                out.notes.append(f"{res.url} already held this version; nothing uploaded")
        except Exception as err:  # noqa: BLE001
            done = "built" if out.status == "built" else "already published"
            out.error = (f"{recipe.name}@{out.version} is {done}, but the push to {recipe.push} "
                         f"failed: {_message(err)}") if out.status != "failed" else \
                f"{out.error}; the push to {recipe.push} failed too: {_message(err)}"
            out.status = "failed"
    return out


def _message(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text if text and not isinstance(err, (KeyError, ValueError, TypeError, OSError)) \
        else f"{type(err).__name__}: {text}"
