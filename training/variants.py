"""The study's eleven variants, named by what they combine (METHOD.md section 3).

A name is ``<init>[<distance>[<communicability>]]``: init ``W`` (orthogonal), ``W*`` (biological)
or ``W!`` (biological, permuted); distance ``D`` (grid) or ``D*`` (real); then ``C`` (the ``WDC``
penalty) or ``C*`` (the ``C*`` penalty). No distance means the L1 penalty; a distance alone the
``WD`` penalty.

The corrected protocol's controls (METHOD.md section 4, flaw 6: ``W*`` is dominated by its
diagonal) change only the initialization of the headline variant ``W*D*C``: ``Wdiag`` keeps only
the diagonal of each ``W*`` draw, ``Woff`` only its off-diagonal part (both rescaled to spectral
radius 0.95), ``Wrand`` scatters its non-zero values at random positions with the same spectral
radius (:mod:`training.initializers`).

Each part of a name reads its own kinds of the prior artifact (:func:`required_kinds`): a
structure-only prior (built without spike trains, so without ``w_bio_modulation``) trains every
variant with the orthogonal init ``W``, and none of the biological ones.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from .config import CONTROLS, VARIANTS, Protocol
from .errors import UnknownVariantError
from .initializers import BioInit, bio_family, orthogonal
from .regularizers import DistanceKind, Regularizer, RegularizerKind, penalty_distances

__all__ = ["InitKind", "DistanceKind", "Protocol", "Variant", "VARIANTS", "CONTROLS",
           "parse_variant", "build_variant", "default_variants", "required_kinds",
           "missing_kinds", "FUNCTIONAL_KINDS"]

#: Kinds a prior holds only when every neuron has a spike train from one scan
#: (:mod:`priors_store.pipeline`); a structure-only prior has none of them.
FUNCTIONAL_KINDS: tuple[str, ...] = ("correlation", "sttc", "precision", "w_bio_modulation",
                                     "modules_functional")

InitKind = Literal["orthogonal", "bio", "permuted", "diagonal", "off_diagonal", "random_positive"]

_GRAMMAR = re.compile(r"^W(?P<init>[*!]?|diag|off|rand)(?:D(?P<dist>\*?)(?P<comm>C\*?)?)?$")
_INITS: dict[str, InitKind] = {"": "orthogonal", "*": "bio", "!": "permuted", "diag": "diagonal",
                               "off": "off_diagonal", "rand": "random_positive"}
_BIO_INITS: dict[str, BioInit] = {"bio": "bio", "permuted": "permuted",
                                  "diagonal": "diagonal_only", "off_diagonal": "off_diagonal_only",
                                  "random_positive": "random_positive_matched"}


def default_variants(protocol: Protocol) -> tuple[str, ...]:
    """What ``--variants all`` means: the eleven, plus :data:`CONTROLS` under ``corrected``."""
    return VARIANTS + CONTROLS if protocol == "corrected" else VARIANTS


@dataclass(frozen=True)
class Variant:
    """One variant: its initialization, distance kind and regularizer."""

    name: str
    """Canonical name, e.g. ``"W*D*C"``."""
    init: InitKind
    """Initialization of the recurrent matrix."""
    distance: DistanceKind | None
    """Distances used by the penalty (``None`` for the L1 penalty)."""
    regularizer: RegularizerKind
    """Penalty kind."""


def parse_variant(name: str, *, canonical_only: bool = True) -> Variant:
    """Parse a variant name into its initialization, distance kind and regularizer.

    Parameters
    ----------
    name
        A name such as ``"W*D*C"``.
    canonical_only
        Refuse well-formed names that are not among the study's eleven or the controls
        (e.g. ``"W*D"``).

    Returns
    -------
    Variant

    Raises
    ------
    UnknownVariantError
        If the name does not parse (or is not canonical while ``canonical_only``).

    Examples
    --------
    >>> parse_variant("W!D*C*")
    Variant(name='W!D*C*', init='permuted', distance='real', regularizer='C*')
    """
    match = _GRAMMAR.match(name) if isinstance(name, str) else None
    if match is None or (canonical_only and name not in VARIANTS + CONTROLS):
        raise UnknownVariantError(
            f"unknown variant {name!r}; expected one of {', '.join(VARIANTS + CONTROLS)} "
            "(W/W*/W!/Wdiag/Woff/Wrand init, optional D/D* distance, optional C/C* "
            "communicability term)", name=str(name), known=VARIANTS + CONTROLS)
    init = _INITS[match["init"]]
    if match["dist"] is None:
        return Variant(name, init, None, "L1")
    distance: DistanceKind = "real" if match["dist"] == "*" else "grid"
    regularizer: RegularizerKind = {None: "WD", "C": "WDC", "C*": "C*"}[match["comm"]]
    return Variant(name, init, distance, regularizer)


def required_kinds(variant: str, *, protocol: Protocol = "corrected") -> set[str]:
    """The kinds of a prior artifact that a variant reads.

    ``W*``, ``W!``, ``Wdiag``, ``Woff`` and ``Wrand`` initialize from ``w_bio_modulation`` (a
    functional kind: only priors whose neurons all have spike trains from one scan hold it);
    ``D*`` reads ``distance_um`` (under the ``paper`` protocol it reads the voxel positions of
    ``neurons.parquet`` instead, flaw 4); ``C*`` compares with ``communicability``. ``W``
    (orthogonal), ``D`` (grid distances) and ``C`` (communicability of W itself) need only N.

    Parameters
    ----------
    variant
        A well-formed variant name (canonical or not, e.g. ``"W*D"``).
    protocol
        ``"corrected"`` or ``"paper"``.

    Returns
    -------
    set of str
        Kind names, empty when the variant needs none.

    Raises
    ------
    UnknownVariantError
        If the name does not parse.
    ValueError
        If ``protocol`` is unknown.

    Examples
    --------
    >>> sorted(required_kinds("W*D*C"))
    ['distance_um', 'w_bio_modulation']
    >>> required_kinds("WDC")
    set()
    """
    if protocol not in ("corrected", "paper"):
        raise ValueError(f"unknown protocol {protocol!r}; expected 'corrected' or 'paper'")
    v = parse_variant(variant, canonical_only=False)
    kinds: set[str] = set()
    if v.init != "orthogonal":
        kinds.add("w_bio_modulation")
    if v.distance == "real" and protocol == "corrected":
        kinds.add("distance_um")
    if v.regularizer == "C*":
        kinds.add("communicability")
    return kinds


def missing_kinds(variants: Iterable[str], kinds: Iterable[str], *,
                  protocol: Protocol = "corrected") -> dict[str, tuple[str, ...]]:
    """The kinds that ``variants`` need and ``kinds`` lacks, each with the variants needing it.

    Parameters
    ----------
    variants
        Variant names, in the order to report them.
    kinds
        The kinds a prior holds (``prior.kinds``).
    protocol
        ``"corrected"`` or ``"paper"`` (:func:`required_kinds`).

    Returns
    -------
    dict
        ``{kind: (variant, ...)}`` sorted by kind; empty when every variant can run.

    Examples
    --------
    >>> missing_kinds(["W", "W*D*C", "WD*C*"], ["distance_um", "communicability"])
    {'w_bio_modulation': ('W*D*C',)}
    """
    have = set(kinds)
    out: dict[str, list[str]] = {}
    for v in dict.fromkeys(variants):
        for kind in sorted(required_kinds(v, protocol=protocol) - have):
            out.setdefault(kind, []).append(v)
    return {k: tuple(out[k]) for k in sorted(out)}


def build_variant(name: str, *, w_bio_modulation: np.ndarray | None = None,
                  distance_um: np.ndarray | None = None,
                  communicability_empirical: np.ndarray | None = None, runs: int, seed: int,
                  protocol: Protocol = "corrected", strength: float = 0.3,
                  emd_strength: float = 0.1, positions_vox: np.ndarray | None = None,
                  n_units: int | None = None) -> tuple[torch.Tensor, Regularizer]:
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
             "communicability": communicability_empirical}
    absent = sorted(k for k in required_kinds(name, protocol=protocol) if given[k] is None)
    if absent:
        args = ", ".join("communicability_empirical" if k == "communicability" else k
                         for k in absent)
        raise ValueError(f"variant {name!r} reads the prior's {', '.join(map(repr, absent))}; "
                         f"pass {args} (found None)")
    shapes = {np.shape(a) for a in given.values() if a is not None}
    if n_units is not None:
        shapes.add((int(n_units), int(n_units)))
    if positions_vox is not None and np.ndim(positions_vox) == 2:
        shapes.add((len(positions_vox),) * 2)
    n = next(iter(shapes))[0] if len(shapes) == 1 and len(next(iter(shapes))) == 2 else 0
    if shapes != {(n, n)} or n == 0:
        raise ValueError(f"w_bio_modulation, distance_um and communicability_empirical must all "
                         f"be the same square (N, N), N matching n_units and the rows of "
                         f"positions_vox where given; found shapes {sorted(shapes)}"
                         + ("" if shapes else " (nothing sets N: pass n_units)"))
    if v.init == "orthogonal":
        w = orthogonal(n, runs=runs, seed=seed)
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
