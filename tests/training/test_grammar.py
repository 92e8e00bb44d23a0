"""The torch-free half of training: configs and variant names without importing torch."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from connectome_priors.training.errors import UnknownTaskError, UnknownVariantError
from connectome_priors.training.grammar import TASK_NAMES, parse_variant


def test_experiment_config_is_built_without_importing_torch():
    code = ("import sys\n"
            "from connectome_priors.training.config import ExperimentConfig\n"
            "cfg = ExperimentConfig(variants=('W*D*C', 'W'))\n"
            "assert cfg.variants == ('W*D*C', 'W')\n"
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=os.environ.copy(), check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_config_refuses_unknown_names_without_torch():
    from connectome_priors.training.config import ExperimentConfig

    with pytest.raises(UnknownTaskError, match="T4"):
        ExperimentConfig(tasks=("T4",))
    with pytest.raises(UnknownVariantError, match="W\\*D"):
        ExperimentConfig(variants=("W*D",))


def test_task_names_are_the_generators_names():
    from connectome_priors.training.tasks import TASKS

    assert tuple(TASKS) == TASK_NAMES


def test_variants_module_reexports_the_grammar():
    from connectome_priors.training import variants

    assert variants.parse_variant is parse_variant
