"""Static tools read the installed package as it is: from a file outside the repository, jedi
(IPython, Jupyter, editors) and mypy resolve public names to their definitions in the one
physical tree (issue 21). The editable install is a plain path, so no import hook is involved."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import connectome_priors

REPO = Path(__file__).resolve().parents[2]

# name as a user imports it -> (file that defines it, text of its defining line)
PUBLIC = {
    "Store": ("from connectome_priors.etl.store import Store", "etl/store.py", "class Store"),
    "load": ("from connectome_priors import load", "priors_store/", "def load("),
    "bio_init_": ("from connectome_priors.training.components import bio_init_",
                  "training/components.py", "def bio_init_("),
}


def _outside_file(tmp_path: Path) -> tuple[Path, str]:
    code = "\n".join(imp for imp, _, _ in PUBLIC.values()) + "\n" + "\n".join(
        f"reveal_type({name})" for name in PUBLIC) + "\n"
    path = tmp_path / "user_script.py"
    path.write_text(code)
    return path, code


def test_jedi_goes_to_each_definition_in_the_tree(tmp_path):
    jedi = pytest.importorskip("jedi")
    path, code = _outside_file(tmp_path)
    lines = code.splitlines()
    script = jedi.Script(code, path=path, project=jedi.Project(tmp_path))
    for name, (_, where, defining) in PUBLIC.items():
        row = next(i for i, line in enumerate(lines, 1) if line.startswith(f"reveal_type({name})"))
        found = script.goto(row, len("reveal_type(") + 1, follow_imports=True)
        assert found, f"jedi found no definition of {name}"
        module = Path(str(found[0].module_path))
        homes = (REPO.resolve(), Path(connectome_priors.__file__).resolve().parent)  # editable or not
        assert any(module.resolve().is_relative_to(home) for home in homes), (name, module)
        assert where in module.as_posix(), (name, module)
        text = module.read_text().splitlines()[found[0].line - 1]
        assert defining in text, (name, module, found[0].line, text)


@pytest.mark.processes  # starts mypy
def test_mypy_reveals_each_signature_from_outside_the_repository(tmp_path):
    path, _ = _outside_file(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-m", "mypy", str(path), "--ignore-missing-imports",
                           "--no-error-summary", "--cache-dir", str(REPO / ".cxp" / "mypy-cache")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    notes = [line for line in done.stdout.splitlines() if "Revealed type" in line]
    assert len(notes) == len(PUBLIC), done.stdout + done.stderr
    assert not [line for line in done.stdout.splitlines() if ": error:" in line], done.stdout
    assert "def (" in notes[0] and "connectome_priors.etl.store.Store" in notes[0], notes[0]
    assert "def (name: str" in notes[1] and ".Prior\"" in notes[1], notes[1]
    assert "def (weight: torch" in notes[2], notes[2]
