"""Declared recipes (priors_store/recipes.py), ``cxp priors rebuild`` (priors_store/rebuild.py),
the change report (priors_store/compare.py) and ``cxp refresh --rebuild``.

Two snapshots of one datastack come from ``files`` exports of the CAVE stand-in's tables at
materialization versions 1 and 2 (root ids changed between them), edited so that nuclei leave and
join, every L2/3 cell is gone in version 2, and synapses differ; the counts the report gives are
checked against pandas over the store's own tables.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from connectome_priors.cli import main
from connectome_priors.etl.errors import EtlError
from connectome_priors.etl.pipeline import run_etl
from connectome_priors.etl.cli import run_refresh
from connectome_priors.etl.sources.files import write_export
from connectome_priors.etl.store import Store
from connectome_priors.priors_store import DeriveParams, Population, build, load
from connectome_priors.priors_store.compare import diff, render_html, summary
from connectome_priors.priors_store.rebuild import RebuildLockedError, rebuild_lock, rebuild_recipes
from connectome_priors.priors_store.recipes import RecipeError, load_recipes, parse_recipes, recipes_path
from connectome_priors.testing.cave_standin import StandinCave, minnie_fixture
from tests.etl._cave import fast_config, fixture_versions  # fixture

#: Three recipes, one of each population kind, every one without the slow precision fit.
RECIPES = """\
[priors.pool]
pooled = true
no_precision = true

[priors.deep]
sql = "SELECT nucleus_id FROM neurons WHERE layer IN ('L5', 'L6')"
no_precision = true

[priors.f571]
fields = ["5_7_1"]
no_precision = true
seed = 2
"""
#: What each recipe selects, written independently of priors_store/population.py.
SELECTS = {
    "pool": "SELECT DISTINCT nucleus_id FROM functional_units WHERE nucleus_id IS NOT NULL",
    "deep": "SELECT nucleus_id FROM neurons WHERE layer IN ('L5', 'L6')",
    "f571": "SELECT nucleus_id FROM functional_units WHERE session = 5 AND scan_idx = 7 "
            "AND field = 1 AND nucleus_id IS NOT NULL",
}


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> tuple[Path, Path]:
    """Folders ``v1`` and ``v2`` of ``files`` exports (the folder name is the version)."""
    raw = minnie_fixture(n_cells=160, n_synapses=2500, versions=(1, 2), seed=3)
    rng = np.random.default_rng(11)
    coreg = raw[1]["coregistration_manual_v4"].target_id.to_numpy()
    types = raw[1]["aibs_metamodel_celltypes_v661"]
    l23 = types.target_id[types.cell_type == "23P"].to_numpy()
    others = np.setdiff1d(coreg, l23)
    invalid = {1: others[:3], 2: np.concatenate([others[3:7], l23])}  # join in v2 / leave in v2
    base = tmp_path_factory.mktemp("exports")
    for version, tables in raw.items():
        for table, df in tables.items():
            if table == "nucleus_detection_v0":
                df = df.copy()
                df.loc[df.id.isin(invalid[version]), "valid"] = False
            elif table == "synapses_pni_2":  # a different tenth of the synapses missing in each
                df = df[rng.random(len(df)) > 0.1]
            write_export(df, base / f"v{version}", table)
    return base / "v1", base / "v2"


@pytest.fixture
def recipes(tmp_path) -> Path:
    path = tmp_path / "priors.toml"
    path.write_text(RECIPES)
    return path


def _rebuild(store: Path, recipes: Path, *extra: str) -> int:
    return main(["priors", "rebuild", "--store", str(store), "--recipes", str(recipes),
                 "--no-progress", *extra])


def _versions(root: Path, name: str) -> set[str]:
    return {p.name for p in (root / name).iterdir() if p.is_dir()}


def _edges(store: Store, sid: str, nuclei: set[int]) -> dict[tuple[int, int], int]:
    conns = store.sql("SELECT pre_nucleus_id, post_nucleus_id, n_synapses FROM connections",
                      snapshot=sid)
    inside = conns.pre_nucleus_id.isin(nuclei) & conns.post_nucleus_id.isin(nuclei)
    return {(int(a), int(b)): int(n) for a, b, n in conns[inside].itertuples(index=False)}


# ------------------------------------------------------------------------------ the recipe file

def test_recipes_parse_with_build_defaults():
    recipes = parse_recipes(RECIPES + '\n[priors.v1_l23]\nsql = "SELECT 1 AS nucleus_id"\n'
                            'push = "file:///shared/priors"\n', path="p.toml")
    assert [r.name for r in recipes] == ["pool", "deep", "f571", "v1_l23"]
    pool, _, f571, l23 = recipes
    assert pool.population.kind == "pooled" and pool.population.snapshot is None
    assert f571.population.fields == ("5_7_1",) and f571.params.module_seed == 2 == \
        f571.params.precision_seed and not f571.params.precision
    assert l23.params.precision and l23.push == "file:///shared/priors" and pool.push is None
    assert f571.on("snap-1").snapshot == "snap-1"


@pytest.mark.parametrize(("text", "match"), [
    ('[priors.a]\npooled = true\nno_precison = true\n',
     r"p\.toml: \[priors\.a\] has unknown key 'no_precison'; known keys: sql, fields, pooled"),
    ('[priors.a]\npooled = true\n[other]\nx = 1\n', r"p\.toml: unknown top-level key 'other'"),
    ('[priors.a]\nno_precision = true\n', r"\[priors\.a\] needs exactly one of sql, fields, pooled; "
                                          r"found none"),
    ('[priors.a]\npooled = true\nsql = "SELECT 1"\n', r"found \['sql', 'pooled'\]"),
    ('[priors.a]\nfields = "6_6_2"\n', r"priors\.a\.fields must be a non-empty list"),
    ('[priors.a]\nfields = ["6-6-2"]\n', r"priors\.a\.fields: fields must look like '6_6_2'"),
    ('[priors.a]\npooled = false\n', r"priors\.a\.pooled must be true"),
    ('[priors.a]\npooled = true\nseed = true\n', r"priors\.a\.seed must be an integer; found bool"),
    ('[priors.a]\npooled = true\nno_precision = "yes"\n', r"no_precision must be true or false"),
    ('[priors.a]\npooled = true\npush = "bucket/priors"\n', r"priors\.a\.push must be a URL"),
    ('[priors.a]\nsql = " "\n', r"priors\.a\.sql is empty"),
    ('[priors."a/b"]\npooled = true\n', r"\[priors\.a/b\]: recipe name 'a/b' is not allowed|a/b"),
    ('[priors]\n', r"p\.toml declares no recipe"),
    ('priors = 3\n', r"p\.toml declares no recipe"),
    ('[priors.a]\npooled = true\n[priors.a]\n', r"p\.toml is not valid TOML"),
])
def test_recipe_file_is_read_strictly(text, match):
    with pytest.raises(RecipeError, match=match) as caught:
        parse_recipes(text, path="p.toml")
    assert "\n" not in str(caught.value) and caught.value.path == "p.toml"


def test_a_bad_recipe_file_is_one_line_and_exit_2(tmp_path, capsys):
    bad = tmp_path / "priors.toml"
    bad.write_text('[priors.a]\npooled = true\nkinds = ["connectome"]\n')
    assert _rebuild(tmp_path / "store", bad) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "unknown key 'kinds'" in err
    assert not (tmp_path / "store").exists()  # refused before the store was opened
    assert _rebuild(tmp_path / "store", tmp_path / "none.toml") == 2
    assert "recipe file" in capsys.readouterr().err


def test_recipe_file_path_comes_from_the_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("CXP_RECIPES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    config = tmp_path / "config.toml"
    config.write_text("")
    monkeypatch.setenv("CXP_CONFIG", str(config))
    assert recipes_path() == tmp_path / "xdg" / "connectome-priors" / "priors.toml"
    config.write_text(f'recipes = "{tmp_path / "from-file.toml"}"\n')
    assert recipes_path() == tmp_path / "from-file.toml"
    monkeypatch.setenv("CXP_RECIPES", str(tmp_path / "from-env.toml"))
    assert recipes_path() == tmp_path / "from-env.toml"
    assert recipes_path(tmp_path / "arg.toml") == tmp_path / "arg.toml"
    (tmp_path / "from-env.toml").write_text(RECIPES)
    assert [r.name for r in load_recipes()] == ["pool", "deep", "f571"]


# ---------------------------------------------------------------------------------- the rebuild

def test_rebuild_on_a_new_snapshot_builds_each_recipe_with_a_change_report(exports, recipes,
                                                                            tmp_path, capsys):
    store_dir = tmp_path / "store"
    store, root = Store(store_dir), store_dir / "artifacts"
    s1 = run_etl("files", exports[0], store=store)["snapshot_id"]
    assert _rebuild(store_dir, recipes) == 0
    first = {name: (root / name / "latest").read_text().strip() for name in SELECTS}
    assert "3 built, 0 skipped, 0 failed" in capsys.readouterr().out
    s2 = run_etl("files", exports[1], store=store)["snapshot_id"]
    assert s2 != s1
    assert _rebuild(store_dir, recipes) == 0
    out = capsys.readouterr().out
    assert "3 built, 0 skipped, 0 failed" in out and f"snapshot {s2}" in out
    for name, select in SELECTS.items():
        new = (root / name / "latest").read_text().strip()
        assert new != first[name] and _versions(root, name) == {first[name], new}
        manifest = json.loads((root / name / new / "manifest.json").read_text())
        assert manifest["source_snapshot"]["snapshot_id"] == s2
        report_md = root / name / f"{new}.changes.md"
        assert report_md.is_file() and (root / name / f"{new}.changes.html").is_file()
        assert f"{name}@{first[name]} -> {name}@{new}" in report_md.read_text()
        # the report's numbers, and what pandas says over the two snapshots' tables
        capsys.readouterr()
        assert main(["priors", "diff", f"{name}@{first[name]}", new, "--store", str(store_dir)]) == 0
        report = json.loads(capsys.readouterr().out)
        before = set(store.sql(select, snapshot=s1).nucleus_id.astype(int))
        after = set(store.sql(select, snapshot=s2).nucleus_id.astype(int))
        assert report["neurons"]["added"] == sorted(after - before)
        assert report["neurons"]["removed"] == sorted(before - after)
        ea, eb = _edges(store, s1, before), _edges(store, s2, after)
        c = report["connectome"]
        assert (c["n_a"], c["n_b"]) == (len(ea), len(eb))
        assert c["n_added"] == len(eb.keys() - ea.keys())
        assert c["n_removed"] == len(ea.keys() - eb.keys())
        assert c["n_changed"] == sum(ea[k] != eb[k] for k in ea.keys() & eb.keys())
        moved = pd.Series([eb.get(k, 0) - ea.get(k, 0) for k in ea.keys() | eb.keys()])
        assert {int(k): v for k, v in report["connectome"]["synapse_change_counts"].items()} == \
            moved[moved != 0].value_counts().to_dict()
        ari = report["modules"]["modules_wiring"]["adjusted_rand_index"]
        assert ari is None or -1 <= ari <= 1
        assert f"neurons +{len(after - before)} -{len(before - after)}" in out  # printed in short
    capsys.readouterr()
    assert main(["priors", "diff", f"pool@{first['pool']}", (root / "pool" / "latest").read_text()
                 .strip(), "--store", str(store_dir), "--format", "markdown",
                 "--out", str(tmp_path / "report")]) == 0
    md = capsys.readouterr().out
    assert "## Neurons (by nucleus id)" in md and "| added | " in md and "adjusted Rand index" in md
    assert {p.suffix for p in (tmp_path / "report").iterdir()} == {".md", ".html", ".png"}
    # nothing new: a second rebuild builds nothing (and says so)
    assert _rebuild(store_dir, recipes) == 0
    out = capsys.readouterr().out
    assert "0 built, 3 skipped, 0 failed" in out
    assert all(len(_versions(root, name)) == 2 for name in SELECTS)


def test_the_change_report_counts_real_changes(exports, tmp_path):
    """The fixture's edits are visible: nuclei leave and join, edges are added, removed, changed."""
    store = Store(tmp_path / "store")
    run_etl("files", exports[0], store=store)
    recipes = parse_recipes(RECIPES, path="p.toml")[:1]
    rebuild_recipes(recipes, store=store)
    run_etl("files", exports[1], store=store)
    [o] = rebuild_recipes(recipes, store=store).outcomes
    assert o.status == "built" and o.report is not None
    n, c = o.report["neurons"], o.report["connectome"]
    assert n["n_added"] >= 1 and n["n_removed"] >= 5  # 3 joined (if co-registered), L2/3 left
    assert c["n_added"] > 0 and c["n_removed"] > 0 and c["n_changed"] > 0
    assert o.report_files[0].name == f"{o.version}.changes.md"


def test_diff_of_two_builds_of_the_same_spikes(copy, small_store):
    """Same snapshot, another module seed: no neuron or edge moved, functional matrices agree."""
    _, m, root = copy
    other = build("f662", Population.of_fields("6_6_2"), store=small_store, root=root,
                  params=DeriveParams(precision=False, module_seed=7))
    d = diff(load("f662", m["version"], root=root), load("f662", other["version"], root=root))
    n = m["population"]["n_neurons"]
    assert d["neurons"] == {"n_a": n, "n_b": n, "n_common": n, "added": [], "removed": [],
                            "n_added": 0, "n_removed": 0}
    c = d["connectome"]
    assert c["n_unchanged"] == c["n_a"] == c["n_b"] == m["kinds"]["connectome"]["stats"][
        "n_connections"] and c["n_added"] == c["n_removed"] == c["n_changed"] == 0
    assert set(d["functional"]) == {"correlation", "sttc", "w_bio_modulation"}
    for kind, v in d["functional"].items():
        assert v["pearson_r"] == pytest.approx(1.0) and v["max_abs_difference"] == 0, kind
        assert v["n_pairs"] + v["n_pairs_nan"] == n * (n - 1)
    assert set(d["modules"]) == {"modules_wiring", "modules_functional"}
    assert all(-1 <= v["adjusted_rand_index"] <= 1 and v["n_neurons"] == n
               for v in d["modules"].values())
    assert "correlation r 1.000" in summary(d) and "modules_functional ARI" in summary(d)
    page = render_html(d)
    assert page.startswith("<!DOCTYPE html>") and "Functional matrices" in page


def test_a_recipe_empty_on_the_new_snapshot_fails_alone(exports, tmp_path, capsys):
    recipes = tmp_path / "priors.toml"
    recipes.write_text('[priors.v1_l23]\nsql = "SELECT nucleus_id FROM neurons WHERE layer = \'L2/3\'"\n'
                       'no_precision = true\n\n[priors.pool]\npooled = true\nno_precision = true\n')
    store_dir, root = tmp_path / "store", tmp_path / "store" / "artifacts"
    run_etl("files", exports[0], store=store_dir)
    assert _rebuild(store_dir, recipes) == 0
    l23_before = _versions(root, "v1_l23")
    run_etl("files", exports[1], store=store_dir)
    capsys.readouterr()
    assert _rebuild(store_dir, recipes) == 2
    captured = capsys.readouterr()
    assert "FAILED  v1_l23: population" in captured.out and "selects no neuron" in captured.out
    assert "built   pool@" in captured.out and "1 built, 0 skipped, 1 failed" in captured.out
    assert captured.err.count("\n") == 1
    assert "1 of 2 recipes failed: v1_l23: population" in captured.err
    assert _versions(root, "v1_l23") == l23_before
    assert len(_versions(root, "pool")) == 2  # the other recipe was built


def test_two_rebuilds_cannot_interleave(exports, recipes, tmp_path, capsys):
    store_dir = tmp_path / "store"
    run_etl("files", exports[0], store=store_dir)
    with rebuild_lock(store_dir / "artifacts"):
        with pytest.raises(RebuildLockedError, match="another rebuild of the priors in .* is running"):
            rebuild_recipes(load_recipes(recipes), store=store_dir)
        assert _rebuild(store_dir, recipes) == 2
        assert "another rebuild" in capsys.readouterr().err
    assert [p.name for p in (store_dir / "artifacts").iterdir()] == [".rebuild.lock"]  # nothing built
    assert _rebuild(store_dir, recipes) == 0  # released


def test_rebuild_pushes_where_a_recipe_says(exports, tmp_path, capsys):
    remote = tmp_path / "remote"
    recipes = tmp_path / "priors.toml"
    recipes.write_text(f'[priors.f571]\nfields = ["5_7_1"]\nno_precision = true\n'
                       f'push = "{remote.as_uri()}"\n')
    store_dir = tmp_path / "store"
    run_etl("files", exports[0], store=store_dir)
    assert _rebuild(store_dir, recipes) == 0
    version = (store_dir / "artifacts" / "f571" / "latest").read_text().strip()
    assert (remote / "f571" / version / "manifest.json").is_file()
    assert "pushed:" in capsys.readouterr().out
    assert _rebuild(store_dir, recipes, "--no-push") == 0
    assert "pushed:" not in capsys.readouterr().out


# ------------------------------------------------------------------------- cxp refresh --rebuild

def test_refresh_rebuild_builds_after_a_new_materialization_only(isolated_home, tmp_path, capsys):
    recipes = tmp_path / "priors.toml"
    recipes.write_text("[priors.pool]\npooled = true\nno_precision = true\n")
    store_dir = tmp_path / "s"
    root = store_dir / "artifacts"
    with StandinCave(fixture_versions()) as cave:
        args = ["refresh", "--rebuild", "--server", cave.url, "--store", str(store_dir),
                "--recipes", str(recipes), "--no-progress"]
        run_etl("cave", store=store_dir, cave=fast_config(cave.url, version=1))
        assert _rebuild(store_dir, recipes) == 0
        first = _versions(root, "pool")
        bad = tmp_path / "bad.toml"
        bad.write_text("[priors.pool]\npooled = 1\n")
        before = cave.query_count
        assert main([*args[:-3], "--recipes", str(bad), "--no-progress"]) == 2  # checked first
        assert "pooled must be true" in capsys.readouterr().err and cave.query_count == before
        assert main(args) == 0  # version 2 is new: pulled, then rebuilt
        out = capsys.readouterr().out
        assert "stored snapshot cave-" in out and "1 built, 0 skipped, 0 failed" in out
        second = _versions(root, "pool")
        assert len(second) == 2 and first < second
        new = (root / "pool" / "latest").read_text().strip()
        assert (root / "pool" / f"{new}.changes.md").is_file()
        before = cave.query_count
        assert main(args) == 0  # nothing new: nothing built
        out = capsys.readouterr().out
        assert "is already stored" in out and "no rebuild" in out and "built" not in out
        assert _versions(root, "pool") == second and cave.query_count == before


def test_refresh_rebuild_without_the_priors_stage_is_refused():
    """The ETL stage cannot build priors itself (layers): without the hook `--rebuild` is refused."""
    with pytest.raises(EtlError, match="--rebuild needs the priors stage's command line"):
        run_refresh(argparse.Namespace(rebuild=True))
