"""Variant and task names without torch: the grammar that :class:`training.config.ExperimentConfig`
validates with, and what each variant reads from a prior (docs/method.md#protocol).

A variant name is ``<init>[<distance>[<communicability>]]``: init ``W`` (orthogonal), ``W*``
(biological) or ``W!`` (biological, permuted); distance ``D`` (grid) or ``D*`` (real); then ``C``
(the ``WDC`` penalty) or ``C*`` (the ``C*`` penalty). No distance means the L1 penalty; a distance
alone the ``WD`` penalty.

The corrected protocol's controls (docs/method.md#flaw-6: ``W*`` is dominated by its
diagonal) change only the initialization of the headline variant ``W*D*C``: ``Wdiag`` keeps only
the diagonal of each ``W*`` draw, ``Woff`` only its off-diagonal part, ``Wrand`` scatters its
non-zero values at random positions (:mod:`training.initializers`).

The connectome-constrained variants (issue 24) initialize from the EM wiring itself and keep
Dale's law throughout training (:mod:`training.connectome`): ``Wc`` (the signed synapse count or
size, scaled), combined with the penalty suffixes (``WcD*``, ``WcD*C``), and the control ``Wc!``
(each cell's connections moved to random targets). They read only wiring kinds, so they run on a
structure-only prior.

Each part of a name reads its own kinds of the prior artifact (:func:`required_kinds`): a
structure-only prior (built without spike trains, so without ``w_bio_modulation``) trains every
variant with the orthogonal init ``W``, and none of the biological ones. The arrays and penalties
themselves are built by :func:`training.variants.build_variant` (torch).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from .errors import UnknownVariantError

__all__ = ["CONNECTOME_VARIANTS", "CONNECTOME_KINDS", "CONTROLS", "DistanceKind", "FUNCTIONAL_KINDS", "InitKind", "Protocol",
           "RegularizerKind", "TASK_NAMES", "VARIANTS", "Variant", "default_variants",
           "missing_kinds", "parse_variant", "required_kinds"]

#: ``"corrected"`` (held-out test accuracy, real distances) or ``"paper"`` (the study's protocol).
Protocol = Literal["corrected", "paper"]

#: The task names (:data:`training.tasks.TASKS` holds their generators).
TASK_NAMES: tuple[str, ...] = ("T1", "T2", "T3")

#: The eleven variants in the study's canonical order.
VARIANTS: tuple[str, ...] = ("W*D*C", "WD*C", "WDC", "WD*", "WD", "W", "W*D*C*", "WD*C*",
                             "W*DC*", "W!D*C", "W!D*C*")

#: The corrected protocol's initialization controls of ``W*D*C``.
CONTROLS: tuple[str, ...] = ("WdiagD*C", "WoffD*C", "WrandD*C")

#: The connectome-constrained variants: Wc init (and Dale's law during training), with penalties,
#: and the control Wc!.
CONNECTOME_VARIANTS: tuple[str, ...] = ("Wc", "WcD*", "WcD*C", "Wc!")

#: Kinds the connectome-constrained inits read (wiring kinds: every prior has them).
CONNECTOME_KINDS: tuple[str, ...] = ("cell_sign", "connectome_signed")

#: Kinds a prior holds only when every neuron has a spike train from one scan
#: (:mod:`priors_store.pipeline`); a structure-only prior has none of them.
FUNCTIONAL_KINDS: tuple[str, ...] = ("correlation", "sttc", "precision", "w_bio_modulation",
                                     "modules_functional")

InitKind = Literal["orthogonal", "bio", "permuted", "diagonal", "off_diagonal", "random_positive",
                   "connectome", "connectome_permuted"]
RegularizerKind = Literal["L1", "WD", "WDC", "C*"]
#: ``"grid"`` (the study's ``D``) or ``"real"`` (soma distances, ``D*``).
DistanceKind = Literal["grid", "real"]

_GRAMMAR = re.compile(r"^W(?P<init>[*!]?|diag|off|rand|c!?)(?:D(?P<dist>\*?)(?P<comm>C\*?)?)?$")
_INITS: dict[str, InitKind] = {"": "orthogonal", "*": "bio", "!": "permuted", "diag": "diagonal",
                               "off": "off_diagonal", "rand": "random_positive",
                               "c": "connectome", "c!": "connectome_permuted"}
#: Every canonical name.
_CANONICAL = VARIANTS + CONTROLS + CONNECTOME_VARIANTS
_REGULARIZERS: dict[str | None, RegularizerKind] = {None: "WD", "C": "WDC", "C*": "C*"}


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
        Refuse well-formed names that are not among the study's eleven, the controls or the
        connectome variants (e.g. ``"W*D"``).

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
    if match is None or (canonical_only and name not in _CANONICAL):
        raise UnknownVariantError(
            f"unknown variant {name!r}; expected one of {', '.join(_CANONICAL)} "
            "(W/W*/W!/Wdiag/Woff/Wrand/Wc/Wc! init, optional D/D* distance, optional C/C* "
            "communicability term)", name=str(name), known=_CANONICAL)
    init = _INITS[match["init"]]
    if match["dist"] is None:
        return Variant(name, init, None, "L1")
    distance: DistanceKind = "real" if match["dist"] == "*" else "grid"
    return Variant(name, init, distance, _REGULARIZERS[match["comm"]])


def required_kinds(variant: str, *, protocol: Protocol = "corrected") -> set[str]:
    """The kinds of a prior artifact that a variant reads.

    ``W*``, ``W!``, ``Wdiag``, ``Woff`` and ``Wrand`` initialize from ``w_bio_modulation`` (a
    functional kind: only priors whose neurons all have spike trains from one scan hold it);
    ``Wc`` and ``Wc!`` read ``connectome_signed`` and ``cell_sign`` (wiring kinds);
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
    if v.init in ("connectome", "connectome_permuted"):
        kinds.update(CONNECTOME_KINDS)
    elif v.init != "orthogonal":
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
