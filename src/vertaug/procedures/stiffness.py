"""Stiffness and strength of the level before and after each procedure (voxel FE, physics/mechanics.py).

Modulus of a treated voxel by the Voigt (iso-strain) rule of its constituents: the bone's apparent modulus of the treated
model (compacted shell included) plus the cement volume fraction times the cement modulus,
``E = E_bone + f_cement * E_cement`` with ``E_cement`` = 1937 MPa (materials.CEMENT_MODULUS_PA): the cement fills the
marrow space (f_cement = saturation x porosity), so the bone skeleton keeps its own modulus and the two phases act in
parallel. The Voigt rule is an upper bound; in a trabecular voxel filled with cement the cement is the continuous phase,
so it is close. Load case: compression between 2 mm PMMA end caps cast onto the endplates
(mechanics.compression_between_end_caps, embed=True), bonded.

Strength: the Pistoia criterion (2 % of the bone voxels over 0.7 % effective strain) counted on every voxel that holds
bone (E_bone > 0), with or without cement. Under the iso-strain rule the bone in a cemented voxel strains with the
voxel, so it is loaded bone like any other; and vertebroplasty removes no bone, so the count (the "2 %") refers to the
same bone before and after. Voxels of cement alone (the kyphoplasty cavity, E_bone = 0) are not bone and are not
counted. Only the body (labels 1, 2, 3, 5, 6, 7) is meshed: the disc and posterior elements are not part of this
load case.
"""

from __future__ import annotations

import numpy as np

from ..model.materials import CEMENT_MODULUS_PA
from ..physics import mechanics

__all__ = ["state_modulus", "stiffness_states"]

BODY_LABELS = (1, 2, 3, 5, 6, 7)
#: Cement below this volume fraction of a voxel is ignored (a trace at the front; it stiffens nothing, and moduli
#: spanning many decades in one model slow the solver and can overflow its single-precision smoother).
MIN_CEMENT_FRACTION = 0.01


def state_modulus(model, cement_fraction: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(E_pa of the body, bone mask for the strength criterion) for a model and its cement.

    The bone mask is every body voxel with bone (E_bone > 0), cemented or not (see the module docstring).
    """
    body = np.isin(model.labels, BODY_LABELS)
    e = np.where(body, np.asarray(model.E, dtype=float), 0.0)
    bone = body & (e > 0)
    if cement_fraction is not None:
        f = np.clip(np.asarray(cement_fraction, dtype=float), 0.0, 1.0)
        in_body = body & (f >= MIN_CEMENT_FRACTION)
        e = e + np.where(in_body, f * CEMENT_MODULUS_PA, 0.0)
    return e, bone


def stiffness_states(before, outcomes: dict) -> dict[str, dict]:
    """{"pre-treatment": {...}, "VP": {...}, "KP": {...}} with stiffness_n_per_mm and strength_n."""
    states = {"pre-treatment": state_modulus(before)}
    for name, out in outcomes.items():
        if out is not None:
            states[name] = state_modulus(out.model_after, out.cement_fraction)
    rows = mechanics.augmentation_table({k: v[0] for k, v in states.items()}, before.spacing_m,
                                        bone_masks={k: v[1] for k, v in states.items()})
    return {r.state: {"stiffness_n_per_mm": r.stiffness_n_per_mm, "strength_n": r.strength_n,
                      "iterations": r.iterations, "solve_time_s": r.solve_time_s} for r in rows}
