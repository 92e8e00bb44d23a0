"""``kernel.version``: the recorded code version is this package's commit, never the commit of a
repository that merely encloses the installed package (issue 20, provenance)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import connectome_priors
from connectome_priors.kernel import version as version_mod
from connectome_priors.kernel.version import UNKNOWN, code_version

PACKAGE = Path(connectome_priors.__file__).resolve().parent
HAS_GIT = shutil.which("git") is not None
pytestmark = [pytest.mark.skipif(not HAS_GIT, reason="needs the git command"), pytest.mark.processes]


def _git(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.org", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@example.org")
    return subprocess.run(["git", "-C", str(cwd), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


@pytest.fixture
def other_repo(tmp_path):
    """A git repository of another project, with a commit (and its 12-digit hash)."""
    repo = tmp_path / "other"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "pyproject.toml").write_text('[project]\nname = "someone-elses-project"\n')
    (repo / "README").write_text("not connectome-priors\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "other project")
    return repo, _git(repo, "rev-parse", "--short=12", "HEAD")


def _install_copy(site: Path, *, version_file: str | None = None) -> None:
    """Simulate an install: copy the package tree (without any version file) into ``site``."""
    shutil.copytree(PACKAGE, site / "connectome_priors",
                    ignore=shutil.ignore_patterns("__pycache__", "_version.py"))
    if version_file is not None:
        (site / "connectome_priors" / "_version.py").write_text(version_file)


def _recorded(site: Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["PYTHONPATH"] = str(site)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    code = ("import connectome_priors.kernel.version as v, pathlib, sys; "
            f"assert pathlib.Path(v.__file__).is_relative_to({str(site)!r}), v.__file__; "
            "print(v.code_version())")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.mark.parametrize("where", ["", ".venv/lib/python3.11/site-packages"])
def test_an_enclosing_repository_is_never_recorded(other_repo, where):
    repo, other_commit = other_repo
    site = repo / where if where else repo
    site.mkdir(parents=True, exist_ok=True)
    _install_copy(site)
    recorded = _recorded(site, repo)
    assert other_commit not in recorded and other_commit[:7] not in recorded
    assert recorded == UNKNOWN


def test_the_version_file_written_at_build_time_is_recorded(other_repo):
    repo, other_commit = other_repo
    site = repo / "site"
    _install_copy(site, version_file="version = '0.1.1.dev7+gabcdef012345.d20260101'\n"
                                      "commit = 'gabcdef0123456789abcdef0123456789abcdef0'\n"
                                      "dirty = True\n")
    assert _recorded(site, repo) == "connectome-priors 0.1.1.dev7+gabcdef012345.dirty"
    (site / "connectome_priors" / "_version.py").write_text(
        "version = '0.1.0'\ncommit = 'g0123456789ab'\ndirty = False\n")
    assert _recorded(site, repo) == "connectome-priors 0.1.0+g0123456789ab"


def test_a_version_file_without_a_commit_is_unknown(other_repo):
    repo, _ = other_repo
    site = repo / "site"
    _install_copy(site, version_file="version = '0.1.0'\ncommit = None\ndirty = False\n")
    assert _recorded(site, repo) == UNKNOWN


def test_a_copied_checkout_of_this_project_inside_another_repository_is_not_ours(other_repo):
    """pyproject.toml names connectome-priors, but the work tree's top is the other repository."""
    repo, other_commit = other_repo
    site = repo / "vendored"
    _install_copy(site)
    (site / "pyproject.toml").write_text('[project]\nname = "connectome-priors"\n')
    assert version_mod._own_checkout(site) is None
    assert other_commit not in _recorded(site, repo)


def test_own_checkout_records_its_head_and_dirty_state():
    root = PACKAGE.parent.parent if PACKAGE.parent.name == "src" else PACKAGE.parent
    if not (root / ".git").exists():
        pytest.skip("not running from a git checkout of connectome-priors")
    head = _git(root, "rev-parse", "--short=12", "HEAD")
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    assert version_mod._own_checkout(root) == (head, dirty)
    assert f"+g{head}" in code_version()
    assert code_version().startswith("connectome-priors ")
