"""Drop-in PyTorch components: a prior's initialization and penalties for any recurrent model.

:class:`~training.model.BatchedRNN` is our own model; these work on the recurrent weight of any
module (``torch.nn.RNN``'s ``weight_hh_l0``, an ``nn.Linear`` used as recurrence, a custom cell):

- :func:`bio_init_` fills a weight in place with a member of the W* family (``"bio"`` = W*,
  ``"permuted"`` = W!, and the controls ``"diagonal_only"``, ``"off_diagonal_only"``,
  ``"random_positive_matched"``), from an explicit ``seed`` or ``generator``.
- :class:`DistancePenalty` (the study's ``WD*`` form, ``lambda * sum |W| * D``),
  :class:`WiringDistanceCommunicability` (``WD*C``, ``lambda * sum |W| * D * C(|W|)``, with C
  recomputed from the weight and differentiated through the matrix exponential) and
  :class:`CommunicabilityPenalty` (``C*``, ``lambda * sum |W| * D + lambda_EMD *
  mean |sort(C(|W|)) - sort(C_empirical)|``, matching the prior's empirical communicability)
  are ``nn.Module`` subclasses whose ``forward(weight)`` returns a scalar to add to the loss.
- :func:`connectome_init_` (also ``bio_init_(..., init="connectome")``) fills a weight from the
  EM wiring: the prior's synapse count (or summed size) signed by the presynaptic cell's class,
  scaled to a spectral radius; ``"connectome_permuted"`` is its control (``Wc!``).
  :class:`ConnectomeConstraint` keeps a weight on the connectome's support and Dale signs during
  training (``torch.nn.utils.parametrize``), optionally with a learned scale per cell-type pair
  (flyvis-style): :mod:`training.connectome`, exactly what the ``Wc`` variants train under.

One implementation: the initializations are :func:`training.initializers.bio_family` and the
penalties the functions of :mod:`training.regularizers`, exactly what our training uses (a
float32 or float64 weight gets the same value as :class:`~training.regularizers.Regularizer`).

Orientation: prior matrices are [pre, post] (row i is the presynaptic unit). ``torch.nn.RNN``
computes ``W_hh @ h``, so its ``weight_hh_l0`` (and an ``nn.Linear``'s ``weight``) is
[hidden_out, hidden_in] = [post, pre], the transpose. ``orientation="torch"`` (the default) reads
and writes weights in that layout; ``orientation="pre_post"`` for weights used as ``h @ W``
(like ``BatchedRNN``). Communicability normalizes by out-strengths, so the orientation changes
the ``C`` penalties' values, not only their layout.

Neuron order: unit i of the weight is neuron i of ``prior.neurons``. Pass ``units=`` (the nucleus
ids of the model's units, in order) to re-index the prior to the model (``prior.select``); a
weight of another size, or ids the prior lacks, raise :class:`~training.errors.TrainingError`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, cast

import numpy as np
import torch
from torch import nn

from .config import Protocol
from .connectome import SEED_OFFSET, ConnectomeInit, DaleMask, connectome_family
from .errors import TrainingError
from .initializers import BioInit, bio_family
from .regularizers import (DistanceKind, communicability, communicability_match_penalty,
                           distance_penalty, distance_terms, penalty_distances,
                           sorted_communicability, wiring_communicability_penalty,
                           wiring_communicability_terms)

if TYPE_CHECKING:
    from connectome_priors.priors_store.prior import Prior

__all__ = ["Orientation", "bio_init_", "connectome_init_", "ConnectomeConstraint",
           "DistancePenalty", "WiringDistanceCommunicability", "CommunicabilityPenalty"]

#: ``"torch"``: [post, pre] (``nn.RNN.weight_hh_l0``, ``nn.Linear.weight``); ``"pre_post"``:
#: [pre, post] like the prior's matrices.
Orientation = Literal["torch", "pre_post"]


def _check_orientation(orientation: str) -> None:
    if orientation not in ("torch", "pre_post"):
        raise TrainingError(f"unknown orientation {orientation!r}; expected 'torch' (a [post, pre] "
                            "weight such as nn.RNN.weight_hh_l0) or 'pre_post' (a [pre, post] "
                            "weight used as h @ W)")


def _select(prior: Prior, units: Sequence[int] | None) -> Prior:
    """The prior re-indexed to the model's units (``units`` = nucleus ids in the model's order)."""
    if units is None:
        return prior
    ids = np.asarray(units, dtype=np.int64).ravel()
    values, counts = np.unique(ids, return_counts=True)
    dup = values[counts > 1]
    if len(dup):
        raise TrainingError(f"units holds {len(dup)} nucleus id(s) more than once, e.g. "
                            f"{dup[:5].tolist()}; expected one id per unit of the model")
    try:
        return prior.select(ids)
    except KeyError as err:
        raise TrainingError(f"units do not match prior {prior.name}@{prior.version}: "
                            f"{err.args[0] if err.args else err}; expected the nucleus ids of the "
                            "model's units, all from prior.neurons.nucleus_id") from err


def _kind(prior: Prior, kind: str, user: str) -> np.ndarray:
    if kind not in prior:
        raise TrainingError(f"{user} needs the kind {kind!r}, which prior "
                            f"{prior.name}@{prior.version} lacks (it has {prior.kinds}); build "
                            "the prior from a population with the data for it")
    return np.asarray(prior[kind], dtype=np.float64)


def _check_weight(weight: torch.Tensor, n: int, ref: str, user: str, *,
                  batched: bool) -> None:
    shape = tuple(weight.shape)
    ok = (weight.dim() == 2 or (batched and weight.dim() == 3)) and shape[-2:] == (n, n)
    if not ok:
        raise TrainingError(f"{user} was built from prior {ref} with {n} units and expects a "
                            f"recurrent weight of shape ({n}, {n})"
                            f"{' or (R, %d, %d)' % (n, n) if batched else ''}; found shape "
                            f"{shape}. Give the model {n} recurrent units in the prior's neuron "
                            "order, or pass units= (the nucleus ids of the model's units)")


def bio_init_(weight: torch.Tensor, prior: Prior, init: BioInit | ConnectomeInit = "bio", *,
              seed: int | None = None, generator: torch.Generator | None = None,
              mean: float = 0.1, floor: float = 0.01, radius: float | None = 0.95,
              orientation: Orientation = "torch",
              units: Sequence[int] | None = None) -> torch.Tensor:
    """Fill a recurrent weight in place with the prior's biological initialization (W* family).

    ``W* = lognormal(-0.5, 0.5) * w_bio_modulation``, scaled to mean ``mean``, non-zero entries
    floored at ``floor``, scaled to spectral radius ``radius`` (docs/method.md#initializations); ``init``
    picks W* itself or a transform of it, exactly as our variants build them
    (:func:`training.initializers.bio_family`).

    Parameters
    ----------
    weight
        ``(N, N)`` recurrent weight, e.g. ``rnn.weight_hh_l0``; N = units of the (selected) prior.
    prior
        A loaded prior (``priors_store.load``) with ``w_bio_modulation``.
    init
        ``"bio"`` (W*), ``"permuted"`` (W!: rows and columns permuted together),
        ``"diagonal_only"``, ``"off_diagonal_only"`` (rescaled to ``radius``) or
        ``"random_positive_matched"`` (W*'s values at random places, W*'s radius);
        ``"connectome"`` or ``"connectome_permuted"``: :func:`connectome_init_` (``mean`` and
        ``floor`` do not apply).
    seed
        Seed of the draw; with the same seed, ``weight`` equals run 0 of
        ``build_variant(..., seed=seed)`` (transposed for ``orientation="torch"``).
    generator
        A ``torch.Generator`` to draw the seed from instead (advances it); give exactly one of
        ``seed`` and ``generator``.
    mean, floor
        Target mean of all entries, and the smallest non-zero entry, before the radius scaling.
    radius
        Target spectral radius; ``None`` skips the scaling.
    orientation
        ``"torch"`` ([post, pre], ``nn.RNN``/``nn.Linear``) or ``"pre_post"``.
    units
        Nucleus ids of the model's units, in order; the prior is re-indexed to them.

    Returns
    -------
    torch.Tensor
        ``weight``, filled (no autograd history).

    Raises
    ------
    TrainingError
        If the weight's size does not match the prior's units, ``units`` are not in the prior,
        the prior has no ``w_bio_modulation``, or neither / both of ``seed`` and ``generator``.

    Examples
    --------
    >>> rnn = torch.nn.RNN(3, len(prior), nonlinearity="relu")    # doctest: +SKIP
    >>> bio_init_(rnn.weight_hh_l0, prior, seed=0)                 # doctest: +SKIP
    """
    if init in ("connectome", "connectome_permuted"):
        return connectome_init_(weight, prior, init, seed=seed, generator=generator,
                                radius=radius, orientation=orientation, units=units)
    _check_orientation(orientation)
    if (seed is None) == (generator is None):
        raise TrainingError("bio_init_ needs exactly one source of randomness: seed=<int> or "
                            "generator=<torch.Generator>; found "
                            f"{'both' if seed is not None else 'neither'}")
    if generator is not None:
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    prior = _select(prior, units)
    ref = f"{prior.name}@{prior.version}"
    _check_weight(weight, len(prior), ref, "bio_init_", batched=False)
    wb = _kind(prior, "w_bio_modulation", "bio_init_")
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    try:
        w = bio_family(wb, cast(BioInit, init), runs=1, seed=int(seed), mean=mean, floor=floor, radius=radius,
                       dtype=dtype)[0]  # (N, N) [pre, post]
    except ValueError as err:
        raise TrainingError(f"bio_init_ from prior {ref}: {err}") from err
    if orientation == "torch":
        w = w.T  # [post, pre]
    with torch.no_grad():
        weight.copy_(w)
    return weight


def _connectome_kinds(prior: Prior, user: str) -> tuple[np.ndarray, np.ndarray]:
    """The prior's ``(N, N)`` signed wiring and ``(N,)`` Dale signs."""
    if "connectome_signed" not in prior:
        _kind(prior, "connectome_signed", user)  # raises, naming the kinds the prior has
    signed = prior["connectome_signed"]
    dense = signed.toarray() if hasattr(signed, "toarray") else np.asarray(signed)
    return np.asarray(dense, dtype=np.float64), _kind(prior, "cell_sign", user)


def connectome_init_(weight: torch.Tensor, prior: Prior,
                     init: ConnectomeInit = "connectome", *, seed: int | None = None,
                     generator: torch.Generator | None = None, radius: float | None = 0.95,
                     orientation: Orientation = "torch",
                     units: Sequence[int] | None = None) -> torch.Tensor:
    """Fill a recurrent weight in place from the EM wiring, signed by Dale's law.

    ``W[pre, post] = c * sign(pre) * measure[pre, post]``: the measure is the prior's synapse
    count or summed synapse size (``connectome_signed``, chosen when the prior was built), the
    sign +1 for an excitatory presynaptic cell and -1 for an inhibitory one (``cell_sign``; cells
    of unknown class keep +), zero where there is no connection, ``c`` setting the spectral
    radius to ``radius`` (:func:`training.connectome.connectome_family`). ``"connectome_permuted"``
    (the ``Wc!`` control) moves every cell's connections to random targets. Keep the weight on
    the wiring while training with :class:`ConnectomeConstraint`.

    Parameters
    ----------
    weight
        ``(N, N)`` recurrent weight, e.g. ``rnn.weight_hh_l0``.
    prior
        A loaded prior with ``connectome_signed`` and ``cell_sign`` (every prior built since
        derivation version 2; no activity kind is needed).
    init
        ``"connectome"`` (``Wc``) or ``"connectome_permuted"`` (``Wc!``).
    seed, generator
        Exactly one: the seed of the permutation (``"connectome"`` draws nothing but takes one
        too, like :func:`bio_init_`); with ``seed``, ``weight`` equals run 0 of
        ``build_variant("Wc...", ..., seed=seed)`` (transposed for ``"torch"``).
    radius
        Target spectral radius; ``None`` keeps the raw measure.
    orientation, units
        As in :func:`bio_init_`.

    Returns
    -------
    torch.Tensor
        ``weight``, filled (no autograd history).

    Raises
    ------
    TrainingError
        If the weight's size does not match the prior's units, ``units`` are not in the prior,
        the prior lacks the kinds, or neither / both of ``seed`` and ``generator``.

    Examples
    --------
    >>> rnn = torch.nn.RNN(3, len(prior), nonlinearity="relu")    # doctest: +SKIP
    >>> connectome_init_(rnn.weight_hh_l0, prior, seed=0)          # doctest: +SKIP
    """
    _check_orientation(orientation)
    if (seed is None) == (generator is None):
        raise TrainingError("connectome_init_ needs exactly one source of randomness: "
                            "seed=<int> or generator=<torch.Generator>; found "
                            f"{'both' if seed is not None else 'neither'}")
    if seed is None:  # then a generator was given
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator))
    prior = _select(prior, units)
    ref = f"{prior.name}@{prior.version}"
    _check_weight(weight, len(prior), ref, "connectome_init_", batched=False)
    signed, signs = _connectome_kinds(prior, "connectome_init_")
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    try:
        w = connectome_family(signed, signs.astype(np.int64), init, runs=1,
                              seed=int(seed) + SEED_OFFSET,
                              radius=radius, dtype=dtype)[0][0]  # (N, N) [pre, post]
    except ValueError as err:
        raise TrainingError(f"connectome_init_ from prior {ref}: {err}") from err
    if orientation == "torch":
        w = w.T
    with torch.no_grad():
        weight.copy_(w)
    return weight


class ConnectomeConstraint(DaleMask):
    """Keep a recurrent weight on the connectome: zero without a connection, the presynaptic
    cell's sign (Dale's law) on every connection, optionally a learned scale per cell-type pair.

    ``forward(W) = support * sign(pre) * |W|`` (cells of unknown class: ``support * W``), times
    ``scale[type(pre), type(post)]`` with ``learn_scale=True`` (initialized to 1, one parameter
    per pair of the prior's ``connectome_type_pair``). Register it as a parametrization, so the
    model trains the raw weight and always uses the constrained one::

        torch.nn.utils.parametrize.register_parametrization(rnn, "weight_hh_l0",
                                                           ConnectomeConstraint(prior))

    For flyvis' model exactly (only the signs, the measure and the pair scales), initialize with
    :func:`connectome_init_` first and freeze the raw weight
    (``rnn.parametrizations.weight_hh_l0.original.requires_grad_(False)``).

    Parameters
    ----------
    prior
        A loaded prior with ``connectome_signed`` and ``cell_sign`` (and
        ``connectome_type_pair`` with ``learn_scale``).
    learn_scale
        Learn one scale per cell-type pair.
    orientation, units
        As in :func:`bio_init_`.

    Examples
    --------
    >>> from torch.nn.utils import parametrize                      # doctest: +SKIP
    >>> connectome_init_(rnn.weight_hh_l0, prior, seed=0)           # doctest: +SKIP
    >>> parametrize.register_parametrization(rnn, "weight_hh_l0",
    ...                                      ConnectomeConstraint(prior))  # doctest: +SKIP
    """

    def __init__(self, prior: Prior, *, learn_scale: bool = False,
                 orientation: Orientation = "torch",
                 units: Sequence[int] | None = None) -> None:
        _check_orientation(orientation)
        prior = _select(prior, units)
        signed, signs = _connectome_kinds(prior, "ConnectomeConstraint")
        pair = n_pairs = None
        if learn_scale:
            if "connectome_type_pair" not in prior:
                _kind(prior, "connectome_type_pair", "ConnectomeConstraint(learn_scale=True)")
            pairs = prior["connectome_type_pair"]
            pair = torch.from_numpy(np.asarray(pairs.toarray(), dtype=np.int64))
            n_pairs = int(prior.stats("connectome_type_pair")["n_types"]) ** 2
        super().__init__(torch.from_numpy(signed != 0), torch.from_numpy(signs),
                         type_pair=pair, n_pairs=n_pairs)
        self.prior_ref = f"{prior.name}@{prior.version}"
        """``name@version`` of the prior."""
        self.n_units = len(prior)
        self.orientation = orientation

    def _pre_post(self, weight: torch.Tensor) -> torch.Tensor:
        _check_weight(weight, self.n_units, self.prior_ref, "ConnectomeConstraint", batched=True)
        return weight.transpose(-2, -1) if self.orientation == "torch" else weight

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The constrained weight, in ``weight``'s orientation."""
        out = super().forward(self._pre_post(weight))
        return out.transpose(-2, -1) if self.orientation == "torch" else out

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        """What a parametrization stores when a weight is assigned: the weight itself (a weight
        on the support with the cells' signs is its own constrained value)."""
        return weight

    def violations(self, weight: torch.Tensor) -> torch.Tensor:
        """Entries of ``weight`` (in its orientation) off the support or of the wrong sign."""
        return super().violations(self._pre_post(weight))

    def extra_repr(self) -> str:
        return (f"prior={self.prior_ref}, n_units={self.n_units}, "
                f"orientation={self.orientation!r}, " + super().extra_repr())


class _PriorPenalty(nn.Module):
    """A penalty on a recurrent weight with the prior's distances (shared plumbing)."""

    _label = "penalty"

    def __init__(self, prior: Prior, *, strength: float = 0.3, distance: DistanceKind = "real",
                 protocol: Protocol = "corrected", orientation: Orientation = "torch",
                 units: Sequence[int] | None = None) -> None:
        super().__init__()
        _check_orientation(orientation)
        prior = _select(prior, units)
        self.prior_ref = f"{prior.name}@{prior.version}"
        """``name@version`` of the prior."""
        self.nucleus_ids: tuple[int, ...] = tuple(int(i) for i in prior.neurons.nucleus_id)
        """Neuron of each unit, in the weight's order."""
        self.n_units = len(prior)
        self.strength = float(strength)
        self.distance_kind = distance
        self.protocol = protocol
        self.orientation = orientation
        positions = None
        if distance == "real" and protocol == "paper":
            cols = ["x_vox", "y_vox", "z_vox"]
            if not set(cols) <= set(prior.neurons.columns):
                raise TrainingError(f"the paper protocol's D* needs voxel positions {cols}, "
                                    f"which prior {self.prior_ref}'s neurons table lacks")
            positions = prior.neurons[cols].to_numpy(np.float64)
        try:
            d = penalty_distances(distance, distance_um=_kind(prior, "distance_um", self._label),
                                  protocol=protocol, positions_vox=positions)
        except ValueError as err:
            raise TrainingError(f"{self._label} from prior {self.prior_ref}: {err}") from err
        # not persistent: the prior defines it, a model's state dict need not carry N x N floats
        self.register_buffer("distance", torch.from_numpy(d), persistent=False)  # (N, N) f64

    def _pre_post(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight as [pre, post] (checked against the prior's size)."""
        _check_weight(weight, self.n_units, self.prior_ref, self._label, batched=True)
        return weight.transpose(-2, -1) if self.orientation == "torch" else weight

    def _oriented(self, m: torch.Tensor) -> torch.Tensor:
        """A [pre, post] map back in the weight's orientation."""
        return m.transpose(-2, -1) if self.orientation == "torch" else m

    def extra_repr(self) -> str:
        return (f"prior={self.prior_ref}, n_units={self.n_units}, strength={self.strength}, "
                f"distance={self.distance_kind!r}, protocol={self.protocol!r}, "
                f"orientation={self.orientation!r}")


class DistancePenalty(_PriorPenalty):
    """``strength * sum |W| * D``: the study's ``WD*`` (``distance="real"``) or ``WD`` penalty.

    Parameters
    ----------
    prior
        A loaded prior with ``distance_um``.
    strength
        lambda (the study's 0.3).
    distance
        ``"real"`` (D*: soma distances) or ``"grid"`` (D).
    protocol
        ``"corrected"`` (min-max normalized distances) or ``"paper"`` (the study's flaws 3-4).
    orientation
        ``"torch"`` ([post, pre]) or ``"pre_post"``.
    units
        Nucleus ids of the model's units, in order.

    Examples
    --------
    >>> pen = DistancePenalty(prior)                                # doctest: +SKIP
    >>> loss = task_loss + pen(rnn.weight_hh_l0)                    # doctest: +SKIP
    """

    _label = "DistancePenalty"

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The penalty: a scalar for an ``(N, N)`` weight, ``(R,)`` for ``(R, N, N)``."""
        w = self._pre_post(weight)
        return distance_penalty(w, self.distance.to(w), strength=self.strength)

    def penalty_map(self, weight: torch.Tensor) -> torch.Tensor:
        """Per-entry terms ``strength * |W| * D``, in the weight's orientation (sum: forward)."""
        w = self._pre_post(weight)
        return self._oriented(self.strength * distance_terms(w, self.distance.to(w)))


class _CommunicabilityBased(_PriorPenalty):
    def communicability(self, weight: torch.Tensor) -> torch.Tensor:
        """The weight's communicability ``C(|W|)`` (out-strength normalized), in its orientation."""
        return self._oriented(communicability(self._pre_post(weight)))


class WiringDistanceCommunicability(_CommunicabilityBased):
    """``strength * sum |W| * D * C(|W|)``: the study's ``WD*C`` (``distance="real"``) or ``WDC``.

    C is the weight's own communicability ``expm(S^-1/2 |W| S^-1/2)`` (S = out-strengths, zero
    diagonal), recomputed at every call and differentiated through the matrix exponential.
    Parameters as :class:`DistancePenalty`.

    Examples
    --------
    >>> pen = WiringDistanceCommunicability(prior)                  # doctest: +SKIP
    >>> loss = task_loss + pen(rnn.weight_hh_l0)                    # doctest: +SKIP
    """

    _label = "WiringDistanceCommunicability"

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The penalty: a scalar for an ``(N, N)`` weight, ``(R,)`` for ``(R, N, N)``."""
        w = self._pre_post(weight)
        return wiring_communicability_penalty(w, self.distance.to(w), strength=self.strength)

    def penalty_map(self, weight: torch.Tensor) -> torch.Tensor:
        """Per-entry terms ``strength * |W| * D * C(|W|)`` in the weight's orientation."""
        w = self._pre_post(weight)
        return self._oriented(self.strength * wiring_communicability_terms(w, self.distance.to(w)))


class CommunicabilityPenalty(_CommunicabilityBased):
    """The study's ``C*`` penalty: distance term plus matching the prior's communicability.

    ``strength * sum |W| * D + emd_strength * mean |sort(C(|W|)) - sort(C_empirical)|``, where
    C_empirical is the prior's ``communicability`` (from the EM wiring) and the second term is a
    1-D earth mover's distance between the value distributions of the two matrices.

    Parameters
    ----------
    prior
        A loaded prior with ``distance_um`` and ``communicability``.
    strength, emd_strength
        lambda and lambda_EMD (the study's 0.3 and 0.1).
    distance, protocol, orientation, units
        As in :class:`DistancePenalty`.

    Examples
    --------
    >>> pen = CommunicabilityPenalty(prior)                         # doctest: +SKIP
    >>> loss = task_loss + pen(rnn.weight_hh_l0)                    # doctest: +SKIP
    """

    _label = "CommunicabilityPenalty"

    def __init__(self, prior: Prior, *, strength: float = 0.3, emd_strength: float = 0.1,
                 distance: DistanceKind = "real", protocol: Protocol = "corrected",
                 orientation: Orientation = "torch",
                 units: Sequence[int] | None = None) -> None:
        prior = _select(prior, units)
        super().__init__(prior, strength=strength, distance=distance, protocol=protocol,
                         orientation=orientation, units=None)
        self.emd_strength = float(emd_strength)
        target = sorted_communicability(_kind(prior, "communicability", self._label))
        self.register_buffer("target_sorted", target, persistent=False)  # (N*N,) float64

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        """The penalty: a scalar for an ``(N, N)`` weight, ``(R,)`` for ``(R, N, N)``."""
        w = self._pre_post(weight)
        return communicability_match_penalty(w, self.distance.to(w), self.target_sorted.to(w),
                                             strength=self.strength,
                                             emd_strength=self.emd_strength)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", emd_strength={self.emd_strength}"
