"""The README's connectome-constrained example (docs/examples/connectome_rnn.py), run as printed:
after training, the model's recurrent weight holds Dale's law and the wiring's support, checked
against the prior's own kinds (not against the constraint that enforced them)."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

from connectome_priors import priors_store
from connectome_priors.priors_store.pipeline import DeriveParams
from connectome_priors.priors_store.population import Population

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "connectome_rnn.py"


def test_readme_shows_the_connectome_example_verbatim():
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert any(block == EXAMPLE.read_text() for block in blocks), (
        f"README.md has no ```python block equal to {EXAMPLE.relative_to(REPO)}")


@pytest.fixture(scope="module")
def pooled(tiny_prior, tmp_path_factory) -> Path:
    """Artifact root holding 'pooled': every neuron of the tests' tiny synthetic store (89, 9 of
    them inhibitory, one inhibitory connection), structure kinds only."""
    root = tmp_path_factory.mktemp("connectome-example")
    priors_store.build("pooled", Population.pooled(), store=tiny_prior[0], root=root,
                       params=DeriveParams(precision=False), progress=False)
    return root


def test_connectome_example_trains_with_dale_signs_and_the_wiring_support(pooled, monkeypatch,
                                                                         capsys):
    monkeypatch.setenv("CXP_ARTIFACTS", str(pooled))
    monkeypatch.setattr(sys, "argv", [str(EXAMPLE), "pooled", "0"])
    capsys.readouterr()
    names = runpy.run_path(str(EXAMPLE), run_name="__main__")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 11 and all(line.startswith(f"epoch {e}: task loss ")
                                    for e, line in enumerate(lines[:-1])), lines
    last = re.fullmatch(r"held-out accuracy (\d\.\d{3}), Dale/support violations (\d+)", lines[-1])
    assert last and last[2] == "0", lines[-1]

    prior = names["prior"]
    w = names["rnn"].weight_hh_l0.detach().numpy().T  # torch's [post, pre] -> [pre, post]
    wiring = prior["connectome"].toarray() != 0
    sign = np.asarray(prior["cell_sign"])
    assert (sign == -1).any() and (wiring[sign == -1]).any(), "tiny prior lacks inhibitory wiring"
    assert np.all(w[~wiring] == 0)                       # nothing grows off the connectome
    assert np.all(w[sign == -1] <= 0) and np.all(w[sign == 1] >= 0)  # Dale, after training
    assert (w[sign == -1][wiring[sign == -1]] < 0).any()  # inhibitory weights survive, signed
