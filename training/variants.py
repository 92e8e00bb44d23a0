"""The study's variants as arrays and penalties: :func:`build_variant` (torch).

The names' grammar, and the kinds of a prior each variant reads, are torch-free
(:mod:`training.grammar`, re-exported here); this module turns a parsed name and a prior's arrays
into initial recurrent matrices (:mod:`training.initializers`) and a penalty
(:mod:`training.regularizers`).
"""

from __future__ import annotations

import numpy as np
import torch

from .connectome import SEED_OFFSET, ConnectomeInit, DaleMask, connectome_family
from .grammar import (CONNECTOME_VARIANTS, CONTROLS, FUNCTIONAL_KINDS, VARIANTS, DistanceKind,
                      InitKind, Protocol, Variant, default_variants, missing_kinds, parse_variant,
                      required_kinds)
from .initializers import BioInit, bio_family, orthogonal
from .regularizers import Regularizer, penalty_distances

__all__ = ["InitKind", "DistanceKind", "Protocol", "Variant", "VARIANTS", "CONTROLS",
           "CONNECTOME_VARIANTS", "parse_variant", "build_variant", "build_constraint", "default_variants", "required_kinds",
           "missing_kinds", "FUNCTIONAL_KINDS"]

_BIO_INITS: dict[str, BioInit] = {"bio": "bio", "permuted": "permuted",
                                  "diagonal": "diagonal_only", "off_diagonal": "off_diagonal_only",
                                  "random_positive": "random_positive_matched"}


def _connectome(v: Variant, connectome_signed, cell_sign, *, runs: int, seed: int):
    if connectome_signed is None or cell_sign is None:
        raise ValueError(f"variant {v.name!r} reads the prior's 'cell_sign', 'connectome_signed'; "
                         "pass connectome_signed, cell_sign (found None)")
    init: ConnectomeInit = "connectome" if v.init == "connectome" else "connectome_permuted"
    return connectome_family(connectome_signed, cell_sign, init, runs=runs,
                             seed=seed + SEED_OFFSET)


def build_constraint(name: str, *, connectome_signed: np.ndarray | None = None,
                     cell_sign: np.ndarray | None = None, runs: int,
                     seed: int) -> DaleMask | None:
    """The weight constraint a variant trains under: the connectome's support and Dale signs
    for ``Wc`` variants (the same draws as :func:`build_variant` with the same ``seed``), ``None``
    for the others.

    Examples
    --------
    >>> build_constraint("W*D*C", runs=2, seed=0) is None
    True
    """
    v = parse_variant(name)
    if v.init not in ("connectome", "connectome_permuted"):
        return None
    _, support, sign = _connectome(v, connectome_signed, cell_sign, runs=runs, seed=seed)
    return DaleMask(support, sign)


def build_variant(name: str, *, w_bio_modulation: np.ndarray | None = None,
                  distance_um: np.ndarray | None = None,
                  communicability_empirical: np.ndarray | None = None, runs: int, seed: int,
                  protocol: Protocol = "corrected", strength: float = 0.3,
                  emd_strength: float = 0.1, positions_vox: np.ndarray | None = None,
                  n_units: int | None = None, connectome_signed: np.ndarray | None = None,
                  cell_sign: np.ndarray | None = None) -> tuple[torch.Tensor, Regularizer]:
    """Initial recurrent matrices and the penalty of a variant, from a prior's arrays.

    Only the arrays the variant reads (:func:`required_kinds`) are required; the others may be
    ``None`` (a structure-only prior has no ``w_bio_modulation``).

    Parameters
    ----------
    name
        A canonical variant name.
    w_bio_modulation, distance_um, communicability_empirical
        ``(N, N)`` arrays of the prior artifact ([pre, post]; distances in um), or ``None`` where
        the variant does not read them.
    runs
        Runs R.
    seed
        Seed of the initialization (the permutation of ``W!`` uses ``seed + 1``, the scattering
        of ``Wrand`` ``seed + 2``; every bio-based init starts from the same ``W*`` draws).
    protocol
        ``"corrected"`` (grid distances min-max normalized, L1 scaled by ``strength``) or
        ``"paper"`` (L1 coefficient 1, raw integer grid distances, real distances from scrambled
        coordinates: flaws 2, 3 and 4).
    strength, emd_strength
        lambda and lambda_EMD.
    positions_vox
        ``(N, 3)`` soma positions in voxels, in the prior's order: required by the ``paper``
        protocol's ``D*`` (flaw 4).
    n_units
        N, where no array given sets it (e.g. ``W`` with every array ``None``).
    connectome_signed, cell_sign
        The prior's ``(N, N)`` signed wiring and ``(N,)`` Dale signs, read by the ``Wc`` variants
        (:func:`training.connectome.connectome_family`; ``Wc!`` permutes with ``seed + 4``).

    Returns
    -------
    tuple
        ``(R, N, N)`` float32 initial weights and the :class:`~training.regularizers.Regularizer`.

    Raises
    ------
    UnknownVariantError
        If ``name`` is not a canonical variant.
    ValueError
        If ``protocol`` is unknown, an array the variant reads is ``None``, or the arrays (and
        ``n_units``) disagree in size.

    Examples
    --------
    >>> w, reg = build_variant("WD", w_bio_modulation=np.ones((4, 4)), distance_um=np.ones((4, 4)),
    ...                        communicability_empirical=np.ones((4, 4)), runs=2, seed=0)
    >>> tuple(w.shape), reg.kind
    ((2, 4, 4), 'WD')
    """
    if protocol not in ("corrected", "paper"):
        raise ValueError(f"unknown protocol {protocol!r}; expected 'corrected' or 'paper'")
    v = parse_variant(name)
    given = {"w_bio_modulation": w_bio_modulation, "distance_um": distance_um,
             "communicability": communicability_empirical,
             "connectome_signed": connectome_signed, "cell_sign": cell_sign}
    absent = sorted(k for k in required_kinds(name, protocol=protocol) if given[k] is None)
    if absent:
        args = ", ".join("communicability_empirical" if k == "communicability" else k
                         for k in absent)
        raise ValueError(f"variant {name!r} reads the prior's {', '.join(map(repr, absent))}; "
                         f"pass {args} (found None)")
    shapes = {np.shape(a) for k, a in given.items() if a is not None and k != "cell_sign"}
    if n_units is not None:
        shapes.add((int(n_units), int(n_units)))
    if positions_vox is not None and np.ndim(positions_vox) == 2:
        shapes.add((len(positions_vox),) * 2)
    n = next(iter(shapes))[0] if len(shapes) == 1 and len(next(iter(shapes))) == 2 else 0
    if shapes != {(n, n)} or n == 0:
        raise ValueError(f"w_bio_modulation, distance_um, communicability_empirical and "
                         f"connectome_signed must all "
                         f"be the same square (N, N), N matching n_units and the rows of "
                         f"positions_vox where given; found shapes {sorted(shapes)}"
                         + ("" if shapes else " (nothing sets N: pass n_units)"))
    if cell_sign is not None and np.shape(cell_sign) != (n,):
        raise ValueError(f"cell_sign must hold one sign per unit ({n}); found shape "
                         f"{np.shape(cell_sign)}")
    if v.init == "orthogonal":
        w = orthogonal(n, runs=runs, seed=seed)
    elif v.init in ("connectome", "connectome_permuted"):
        w = _connectome(v, connectome_signed, cell_sign, runs=runs, seed=seed)[0]
    else:
        w = bio_family(w_bio_modulation, _BIO_INITS[v.init], runs=runs, seed=seed)
    if v.distance == "real" and protocol == "paper" and positions_vox is None:
        raise ValueError(f"variant {name!r} under the paper protocol needs positions_vox "
                         "(its D* reproduces the study's scrambled coordinates, flaw 4)")
    d = (None if v.distance is None else
         penalty_distances(v.distance, distance_um=distance_um, protocol=protocol,
                           positions_vox=positions_vox, n_units=n))
    reg = Regularizer(v.regularizer, strength=strength, distance=d,
                      empirical_communicability=(communicability_empirical
                                                 if v.regularizer == "C*" else None),
                      emd_strength=emd_strength, paper_l1=protocol == "paper")
    return w, reg
