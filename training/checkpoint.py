"""Checkpoints of trained models: safetensors (no pickle) with the config and the prior's identity.

One file per task x variant holds the state dict of the batched model (every run stacked on the
leading dimension) and, as string metadata, everything needed to know what it is: the experiment
config, task, variant, run seeds, the prior artifact's ``name@version`` (the version is the
artifact's content hash) and the code version. :func:`load_checkpoint` rebuilds the model.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from connectome_priors.kernel.files import atomic_path

from .errors import TrainingError
from .model import BatchedRNN, ModelConfig

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "checkpoint_name"]

_STATE = ("W", "W_in", "b", "W_out", "b_out")


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    model: BatchedRNN
    """The trained models, all runs (``model.config.runs``)."""
    metadata: dict
    """task, variant, seeds, positive_only, prior (``name@version``), config, code_version."""


def checkpoint_name(task: str, variant: str) -> str:
    """File name of a task x variant checkpoint (``*`` -> ``x``, ``!`` -> ``p``)."""
    return f"{task}__{variant.replace('*', 'x').replace('!', 'p')}.safetensors"


def save_checkpoint(path: str | os.PathLike, model: BatchedRNN, *, task: str, variant: str,
                    seeds: list[int], prior: str, config: dict, code_version: str) -> Path:
    """Write ``model``'s state and its provenance to ``path`` (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    meta = {"task": task, "variant": variant, "seeds": json.dumps([int(s) for s in seeds]),
            "positive_only": json.dumps(bool(model.config.positive_only)), "prior": prior,
            "config": json.dumps(config, sort_keys=True), "code_version": code_version}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=meta)
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Rebuild the batched model of a checkpoint written by :func:`save_checkpoint`.

    Raises
    ------
    TrainingError
        If the file is missing, not safetensors, or lacks a tensor or metadata key.
    """
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
        state = load_file(str(path))
    except (FileNotFoundError, SafetensorError, OSError) as err:
        raise TrainingError(f"checkpoint {path}: cannot read it as safetensors ({err})") from err
    missing = [k for k in _STATE if k not in state]
    missing += [k for k in ("task", "variant", "seeds", "positive_only", "prior", "config")
                if k not in meta]
    if missing:
        raise TrainingError(f"checkpoint {path}: missing {', '.join(missing)}; expected tensors "
                            f"{', '.join(_STATE)} and the metadata written by save_checkpoint")
    seeds = json.loads(meta["seeds"])
    r, n_in, n = state["W_in"].shape
    cfg = ModelConfig(n_units=n, n_in=n_in, n_classes=state["W_out"].shape[-1], runs=r,
                      positive_only=json.loads(meta["positive_only"]))
    model = BatchedRNN(cfg, state["W"], seeds=seeds)
    model.load_state_dict(state)
    meta["seeds"] = seeds
    meta["config"] = json.loads(meta["config"])
    meta["positive_only"] = cfg.positive_only
    return Checkpoint(model=model, metadata=meta)
