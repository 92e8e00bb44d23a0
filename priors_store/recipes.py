"""Declared priors: ``priors.toml``, the recipes ``cxp priors rebuild`` builds on each new snapshot.

The file (path from the ``recipes`` setting: ``--recipes``, ``$CXP_RECIPES``, the config file,
default ``$XDG_CONFIG_HOME/connectome-priors/priors.toml``) holds one table per prior, named as the
artifact, with what ``cxp priors build`` takes::

    [priors.v1_l23]
    sql = "SELECT nucleus_id FROM neurons WHERE layer = 'L2/3'"
    no_precision = true

    [priors.field_6_6_2]
    fields = ["6_6_2"]
    seed = 1
    push = "s3://lab-bucket/priors"

Keys: exactly one population, ``sql`` (a query returning ``nucleus_id``), ``fields`` (a list of
``session_scan_field`` names) or ``pooled = true``; then optionally ``no_precision`` (bool, skip
the precision matrix), ``seed`` (int, module detection and precision CV), ``activity_snapshot``
(a snapshot id or ``"auto"``: where spike trains come from) and ``push`` (a base URL the new
version is pushed to). The file is read strictly: an unknown key, a value of the wrong type or a
recipe without (or with two) populations is refused with :class:`RecipeError`, naming the file
and the key, before anything is built.

Examples
--------
>>> r = parse_recipes('[priors.pool]\\npooled = true\\nno_precision = true\\n', path="priors.toml")
>>> r[0].name, r[0].population.kind, r[0].params.precision
('pool', 'pooled', False)
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

from connectome_priors.kernel.settings import env_name, resolve

from .errors import PriorsError
from .names import check_name
from .pipeline import DeriveParams
from .population import Population

__all__ = ["POPULATION_KEYS", "RECIPES_ENV", "OPTION_KEYS", "Recipe", "RecipeError", "load_recipes",
           "parse_recipes", "recipes_path"]

#: Environment variable naming the recipe file.
RECIPES_ENV = env_name("recipes")
#: The keys that choose a recipe's population (exactly one per recipe).
POPULATION_KEYS = ("sql", "fields", "pooled")
#: The other keys a recipe may have, with the type each takes.
OPTION_KEYS: dict[str, type] = {"no_precision": bool, "seed": int, "activity_snapshot": str,
                                "push": str}


class RecipeError(PriorsError):
    """The recipe file is missing, not TOML, or declares a recipe wrongly. ``path`` is the file,
    ``key`` the offending key (``priors.<name>.<key>``; ``None`` for the whole file)."""

    def __init__(self, message: str, *, path: str, key: str | None = None) -> None:
        self.path, self.key = path, key
        super().__init__(" ".join(message.split()))  # one line, whatever the TOML parser said


@dataclass(frozen=True)
class Recipe:
    """One declared prior: what ``cxp priors build NAME ...`` would be given."""

    name: str
    """Artifact name (the table's name in ``[priors.<name>]``)."""
    population: Population
    """The population, not pinned to a snapshot (the rebuild pins it to the one it builds on)."""
    params: DeriveParams
    """Derivation parameters (``no_precision``, ``seed``)."""
    push: str | None = None
    """Base URL each new version is pushed to, or ``None``."""

    def on(self, snapshot: str) -> Population:
        """The population pinned to ``snapshot``."""
        return replace(self.population, snapshot=snapshot)


def recipes_path(path: str | os.PathLike | None = None) -> Path:
    """``path`` if given, else ``$CXP_RECIPES``, else the config file's ``recipes``, else
    ``$XDG_CONFIG_HOME/connectome-priors/priors.toml``."""
    return resolve("recipes", path)


def load_recipes(path: str | os.PathLike | None = None) -> list[Recipe]:
    """Read and check the recipe file (see :func:`recipes_path`); return its recipes in file order.

    Raises
    ------
    RecipeError
        The file is missing or unreadable, not TOML, declares no recipe, or a recipe is wrong.
    """
    file = recipes_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe file {file} does not exist; write one ([priors.NAME] tables "
                          f"with sql/fields/pooled) or point --recipes / ${RECIPES_ENV} at it",
                          path=str(file)) from None
    except (OSError, UnicodeDecodeError) as err:
        raise RecipeError(f"recipe file {file} could not be read as UTF-8: {err}",
                          path=str(file)) from err
    return parse_recipes(text, path=file)


def parse_recipes(text: str, *, path: str | os.PathLike = "priors.toml") -> list[Recipe]:
    """Parse the text of a recipe file; ``path`` names it in messages. See the module docstring."""
    where = str(path)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"recipe file {where} is not valid TOML: {err}", path=where) from err
    unknown = sorted(set(data) - {"priors"})
    if unknown:
        raise RecipeError(f"recipe file {where}: unknown top-level key {unknown[0]!r}; expected only "
                          "[priors.NAME] tables", path=where, key=unknown[0])
    tables = data.get("priors")
    if not isinstance(tables, dict) or not tables:
        raise RecipeError(f"recipe file {where} declares no recipe; expected at least one "
                          "[priors.NAME] table with sql, fields or pooled", path=where, key="priors")
    return [_recipe(name, body, where) for name, body in tables.items()]


def _recipe(name: str, body, where: str) -> Recipe:
    key = f"priors.{name}"
    if not isinstance(body, dict):
        raise RecipeError(f"recipe file {where}: {key} must be a table ([{key}]); found "
                          f"{type(body).__name__}", path=where, key=key)
    try:
        check_name(name, what="recipe name")
    except PriorsError as err:
        raise RecipeError(f"recipe file {where}: [{key}]: {err}", path=where, key=key) from err
    known = (*POPULATION_KEYS, *OPTION_KEYS)
    for k in body:
        if k not in known:
            raise RecipeError(f"recipe file {where}: [{key}] has unknown key {k!r}; known keys: "
                              f"{', '.join(known)}", path=where, key=f"{key}.{k}")
    chosen = [k for k in POPULATION_KEYS if k in body]
    if len(chosen) != 1:
        raise RecipeError(f"recipe file {where}: [{key}] needs exactly one of sql, fields, pooled; "
                          f"found {chosen or 'none'}", path=where, key=key)

    def value(k: str, kind: type, what: str):
        v = body.get(k)
        if v is not None and (not isinstance(v, kind) or (kind is int and isinstance(v, bool))):
            raise RecipeError(f"recipe file {where}: {key}.{k} must be {what}; found "
                              f"{type(v).__name__} {v!r}", path=where, key=f"{key}.{k}")
        return v

    activity = value("activity_snapshot", str, "a snapshot id or 'auto'")
    which = chosen[0]
    try:
        if which == "sql":
            sql = value("sql", str, "a query returning nucleus_id")
            if not sql.strip():
                raise RecipeError(f"recipe file {where}: {key}.sql is empty; expected a query "
                                  "returning nucleus_id", path=where, key=f"{key}.sql")
            population = Population.of_sql(sql, activity_snapshot=activity)
        elif which == "fields":
            fields = body["fields"]
            if not isinstance(fields, list) or not fields or \
                    not all(isinstance(f, str) for f in fields):
                raise RecipeError(f"recipe file {where}: {key}.fields must be a non-empty list of "
                                  f"field names like \"6_6_2\"; found {fields!r}", path=where,
                                  key=f"{key}.fields")
            population = Population.of_fields(*fields, activity_snapshot=activity)
        else:
            if body["pooled"] is not True:
                raise RecipeError(f"recipe file {where}: {key}.pooled must be true (leave it out "
                                  f"otherwise); found {body['pooled']!r}", path=where,
                                  key=f"{key}.pooled")
            population = Population.pooled(activity_snapshot=activity)
    except RecipeError:
        raise
    except PriorsError as err:  # a field name Population refuses
        raise RecipeError(f"recipe file {where}: {key}.{which}: {err}", path=where,
                          key=f"{key}.{which}") from err
    no_precision = value("no_precision", bool, "true or false")
    seed = value("seed", int, "an integer")
    seed = 0 if seed is None else seed
    params = DeriveParams(precision=not no_precision, precision_seed=seed, module_seed=seed)
    push = value("push", str, "a base URL (e.g. s3://bucket/priors)")
    if push is not None and "://" not in push:
        raise RecipeError(f"recipe file {where}: {key}.push must be a URL like s3://bucket/priors "
                          f"or file:///shared/priors; found {push!r}", path=where, key=f"{key}.push")
    return Recipe(name=name, population=population, params=params, push=push)
