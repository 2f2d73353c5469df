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
counted. Only the body (``model.labels.BODY``) is meshed: the disc and posterior elements are not part of this
load case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..model.labels import BODY
from ..model.materials import CEMENT_MODULUS_PA
from ..physics import mechanics

__all__ = ["MechanicsState", "state_mechanics", "state_modulus", "strain_at_failure_load"]

#: Cement below this volume fraction of a voxel is ignored (a trace at the front; it stiffens nothing, and moduli
#: spanning many decades in one model slow the solver and can overflow its single-precision smoother).
MIN_CEMENT_FRACTION = 0.01


def state_modulus(model, cement_fraction: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(E_pa of the body, bone mask for the strength criterion) for a model and its cement.

    The bone mask is every body voxel with bone (E_bone > 0), cemented or not (see the module docstring).
    """
    body = np.isin(model.labels, BODY)
    e = np.where(body, np.asarray(model.E, dtype=float), 0.0)
    bone = body & (e > 0)
    if cement_fraction is not None:
        f = np.clip(np.asarray(cement_fraction, dtype=float), 0.0, 1.0)
        in_body = body & (f >= MIN_CEMENT_FRACTION)
        e = e + np.where(in_body, f * CEMENT_MODULUS_PA, 0.0)
    return e, bone


def strain_at_failure_load(result: mechanics.MechanicsResult, shape: tuple) -> np.ndarray:
    """Effective strain (%) of each bone voxel at the Pistoia failure load, on the input grid of ``shape``.

    The solved case scaled to F_fail: strain = 0.7 % x EES / EES_98 (EES_98: the 98th percentile over the bone); the
    voxels at or above 0.7 % are the 2 % of the bone that yields first. 0 outside the bone and where nothing was
    solved (caps are cut away: element (i, j, cap_layers + k) of the solved model is voxel origin + (i, j, k)).
    """
    ees = np.asarray(result.effective_strain, dtype=np.float64)
    bone = np.asarray(result.bone_mask, dtype=bool)
    out = np.zeros(shape, np.float32)
    if not bone.any():
        return out
    q = mechanics.critical_effective_strain(result)
    if not q > 0:
        return out
    pct = np.where(bone, 100.0 * mechanics.PISTOIA_CRITICAL_STRAIN * ees / q, 0.0)
    c = result.cap_layers
    pct = pct[:, :, c:pct.shape[2] - c] if c else pct
    o = [int(v) for v in result.origin_index]
    dst = tuple(slice(a, min(a + n, s)) for a, n, s in zip(o, pct.shape, shape))
    src = tuple(slice(0, d.stop - d.start) for d in dst)
    out[dst] = pct[src].astype(np.float32)
    return out


@dataclass(frozen=True, eq=False)
class MechanicsState:
    """Voxel-FE result of one state of the level (untreated, or treated with its cement)."""

    stiffness_n_per_mm: float
    strength_n: float
    iterations: int
    solve_time_s: float
    #: effective strain (%) at the Pistoia failure load on the model grid (None when not asked for)
    strain_at_failure_pct: np.ndarray | None = None

    def to_dict(self) -> dict[str, float]:
        """The scalars (JSON)."""
        return {"stiffness_n_per_mm": float(self.stiffness_n_per_mm), "strength_n": float(self.strength_n),
                "iterations": int(self.iterations), "solve_time_s": float(self.solve_time_s)}


def state_mechanics(model, cement_fraction: np.ndarray | None = None, field: bool = True) -> MechanicsState:
    """Stiffness (N/mm), strength (N), iterations, solve time and (``field``) the strain at the failure load (%) on
    the model grid, of one state: the model and its cement (None: untreated)."""
    e, bone = state_modulus(model, cement_fraction)
    load = mechanics.compression_between_end_caps(cap_thickness_m=2e-3)
    r = mechanics.solve_stiffness(e, model.spacing_m, load_case=load, bone_mask=bone)
    strain = strain_at_failure_load(r, tuple(np.shape(model.labels))) if field else None
    return MechanicsState(r.stiffness_n_per_mm, mechanics.strength_n(r), r.iterations, r.solve_time_s, strain)
