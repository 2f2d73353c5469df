"""Fracture reduction shared by vertebroplasty and kyphoplasty: the force balance of the depressed endplate fragment.

The fragment is the superior endplate with the compacted band pressed under it, over the columns where the endplate
lies below its reference (:func:`fragment_depression`: the height lost, measured along the level's axes, spread with
the shape of the Genant type; the reference is the posterior height, or the neighbours' for a crush), the same
fragment the balloon lifts. It is a rigid plate on a spring:

    lift = 0                                   if F <= R
    lift = min((F - R) / K, gap)                if F > R and K > 0            (rigid fragment on a spring [D])
    lift = gap                                 if F > R and K = 0            (a free fragment rises to the intact plane)

F is the upward force on the plate (balloon: p A_contact, in physics/balloon.py; cement: the pore pressure under the
plate, below), ``gap`` the depression (the plate stops at the intact plane: no over-correction), K the elastic
stiffness that resists the lift (0 for a fragment free to move: the spine above is free when the patient lies prone),
and R the resistance:

    R = F_preload + f_bridged sigma_t A_line

F_preload = the axial load held during the reduction (default 100 N, the cadaver reduction protocol of Rotter 2015,
physics/balloon.py; for a patient lying prone, the intradiscal pressure of 0.11 MPa lying prone, Wilke 1999 Spine
24:755 [M], over a ~12 cm^2 endplate gives the same order, ~130 N). The fracture's mobility sets f_bridged, the share
of the fracture line bridged by bone: 0 in an acute (mobile) fracture, 1 in a healed (chronic) one, whose bridging bone
must be broken in tension (sigma_t = 83/134 of the compressive yield of the model's bone at the fracture line: the
tissue tension/compression yield ratio of Bayraktar 2004 [C]). The fracture line is where the fracture-zone map of
:mod:`vertaug.anatomy.fracture` (``materials.fracture_zone``) marks a fracture line, band or damaged zone under the
fragment; without a zone map, the fragment's footprint.

Postural reduction (both arms, before any instrument): prone on bolsters the axial load falls from standing to lying
prone (intradiscal pressure 0.50 -> 0.11 MPa, Wilke 1999 [M]); the fragment rises by the elastic recovery of the bone
under it, dF / K_support with K_support the axial stiffness of the fragment's bone columns (voxels in series, the
model's E, weakened in the fracture zone). The larger, non-elastic postural reduction of mobile fractures is not
modelled: McKiernan 2003 (J Bone Miner Res 18:24, 65 fractures) found it only with an intravertebral cleft (35 % of
treated vertebrae; +8.41 mm anterior height), measured between the standing and the supine film; the model starts from
a supine CT, which already images the supine posture, and has no standing height to reduce from.

Hydraulic lift (vertebroplasty): the pore pressure of the injection acts on the underside of the fragment (the
endplate with its compacted band, balloon.FRAGMENT_ZONES; over a cleft, the pressure in the open cleft),
F_hyd = sum over the fragment's columns of p(voxel under the fragment) h^2 (Terzaghi: the full pore pressure acts on an
impermeable plate). The pressure field is taken at the end of the injection and scaled in time with the tip pressure;
once F_hyd > R (K = 0) the plate rises, and the gap it opens is filled by the cement injected after that moment:
lift = min(gap, V_after / A_fragment), whole voxels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vertaug.errors import ParameterError

__all__ = [
    "MOBILITIES",
    "FractureMobility",
    "Reduction",
    "endplate_area_m2",
    "fragment_depression",
    "fragment_of",
    "fragment_resistance_n",
    "hydraulic_reduction",
    "lift_labels",
    "lift_m",
    "mobility",
    "postural_reduction",
    "vertebroplasty_reduction",
]

#: intradiscal pressure lying prone and standing relaxed (Wilke 1999 Spine 24:755) [M]
PRONE_DISC_PRESSURE_PA = 0.11e6
STANDING_DISC_PRESSURE_PA = 0.50e6
#: tissue yield in tension / in compression (Bayraktar 2004: 83 / 134 MPa) [C]
TENSION_OVER_COMPRESSION_YIELD = 83.0 / 134.0


@dataclass(frozen=True)
class FractureMobility:
    """How free the fragment is: the share of its fracture line bridged by bone (0 acute, 1 healed)."""

    name: str
    bridged_fraction: float


MOBILITIES = {"acute": FractureMobility("acute", 0.0), "chronic": FractureMobility("chronic", 1.0)}


def mobility(name: str) -> FractureMobility:
    if name not in MOBILITIES:
        raise ParameterError(f"Unknown fracture mobility {name!r}.", f"use one of {', '.join(MOBILITIES)}.")
    return MOBILITIES[name]


@dataclass(frozen=True)
class Reduction:
    """One reduction step: the force balance and the lift it gives (SI; the lift in whole voxels too)."""

    kind: str  # 'postural' | 'hydraulic'
    force_n: float
    resistance_n: float
    lift_m: float
    lift_vox: int
    note: str


def lift_m(force_n: float, resistance_n: float, stiffness_n_per_m: float, gap_m: float) -> float:
    """Lift of a rigid fragment on a spring (module docstring): 0 below R, (F - R) / K up to the gap."""
    if force_n <= resistance_n or gap_m <= 0.0:
        return 0.0
    if stiffness_n_per_m <= 0.0:
        return float(gap_m)
    return float(min((force_n - resistance_n) / stiffness_n_per_m, gap_m))


def _fracture_line(model, cols: np.ndarray) -> np.ndarray:
    """Bool (nx, ny, nz): the fracture zone under the fragment's columns (without a zone map: their trabecular bone)."""
    from vertaug.model.labels import TRABECULAR
    from vertaug.model.materials import FRACTURED_ZONES

    zone = getattr(model.materials, "fracture_zone", None)
    if zone is not None and np.any(np.isin(zone, FRACTURED_ZONES)):
        return np.isin(zone, FRACTURED_ZONES) & cols[:, :, None]
    return (model.labels == TRABECULAR) & cols[:, :, None]


def fragment_resistance_n(model, depression: np.ndarray, mobility_name: str, preload_n: float) -> tuple[float, str]:
    """R = preload + bridged share x tensile yield x fracture-line area under the fragment (module docstring); the
    line crosses each of its columns once (one voxel face), at the median compressive yield of its voxels there."""
    mob = mobility(mobility_name)
    cols = depression > 0
    if mob.bridged_fraction == 0.0 or not cols.any():
        return float(preload_n), f"{mob.name} fracture: resistance = preload {preload_n:.0f} N"
    line = _fracture_line(model, cols)
    h = np.asarray(model.spacing_m, float)
    sy = np.asarray(model.yield_pa, float)
    crossed = np.argwhere(line.any(axis=2))
    sy_sum = sum(float(np.median(sy[i, j][line[i, j]])) for i, j in crossed)
    bridge = mob.bridged_fraction * TENSION_OVER_COMPRESSION_YIELD * sy_sum * h[0] * h[1]
    return float(preload_n + bridge), (f"{mob.name} fracture: resistance = preload {preload_n:.0f} N + bridging bone "
                                       f"{bridge:.0f} N ({len(crossed)} columns in tension)")


def _support_stiffness_n_per_m(model, cols: np.ndarray) -> float:
    """Axial stiffness of the fragment's bone columns: sum E_col A / H_col, 1/E_col = mean 1/E (voxels in series)."""
    from vertaug.model.labels import BODY

    h = np.asarray(model.spacing_m, float)
    e_all = np.asarray(model.materials.E_pa, float)
    k = 0.0
    for i, j in np.argwhere(cols):
        body = np.isin(model.labels[i, j], BODY)
        e = e_all[i, j][body]
        if e.size == 0 or np.any(e <= 0):
            continue  # a cleft or void in the column: no continuous support
        k += (1.0 / np.mean(1.0 / e)) * h[0] * h[1] / (e.size * h[2])
    return k


def postural_reduction(model, depression: np.ndarray, endplate_area_m2: float) -> Reduction:
    """Prone on bolsters: elastic recovery of the fragment's support when the load falls from standing to prone."""
    cols = depression > 0
    h_z = float(model.spacing_m[2])
    if not cols.any():
        return Reduction("postural", 0.0, 0.0, 0.0, 0, "no depressed fragment: no postural reduction")
    d_force = (STANDING_DISC_PRESSURE_PA - PRONE_DISC_PRESSURE_PA) * endplate_area_m2
    k = _support_stiffness_n_per_m(model, cols)
    gap = float(depression[cols].max()) * h_z
    lift = gap if k <= 0 else min(d_force / k, gap)
    n = int(np.floor(lift / h_z + 1e-9))
    return Reduction("postural", d_force, 0.0, lift, n,
                     f"postural reduction (prone on bolsters): load -{d_force:.0f} N on a support of "
                     f"{k / 1e6:.3g} N/mm -> {lift * 1e3:.3g} mm ({n} voxel(s))")


def hydraulic_reduction(model, depression: np.ndarray, pressure_pa: np.ndarray, tip_pressure_pa: np.ndarray,
                        injected_m3: np.ndarray, resistance_n: float) -> Reduction:
    """Cement pore pressure under the fragment against its resistance (module docstring)."""
    from vertaug.physics.balloon import _top_endplate_insert

    cols = depression > 0
    h = np.asarray(model.spacing_m, float)
    if not cols.any():
        return Reduction("hydraulic", 0.0, resistance_n, 0.0, 0, "no depressed fragment: no hydraulic lift")
    p = np.nan_to_num(np.asarray(pressure_pa, float), nan=0.0)
    force = 0.0
    for i, j in np.argwhere(cols):
        z = _top_endplate_insert(model.labels, i, j, getattr(model.materials, "fracture_zone", None))
        if z is not None and z >= 1:
            force += max(float(p[i, j, z - 1]), 0.0) * h[0] * h[1]
    tip = np.nanmax(np.atleast_2d(np.asarray(tip_pressure_pa, float)), axis=1) if np.size(tip_pressure_pa) else []
    gap = float(depression[cols].max()) * h[2]
    if len(tip) == 0 or tip[-1] <= 0 or force <= resistance_n:
        return Reduction("hydraulic", force, resistance_n, 0.0, 0,
                         f"hydraulic lift: pore pressure under the fragment {force:.0f} N <= resistance "
                         f"{resistance_n:.0f} N: no lift")
    f_t = force * np.asarray(tip) / tip[-1]  # the pressure field scales with the tip pressure
    first = int(np.argmax(f_t > resistance_n))
    v_after = float(injected_m3[-1] - injected_m3[first])
    area = float(cols.sum()) * h[0] * h[1]
    lift = lift_m(force, resistance_n, 0.0, min(gap, v_after / area))
    n = int(np.floor(lift / h[2] + 1e-9))
    return Reduction("hydraulic", force, resistance_n, lift, n,
                     f"hydraulic lift: pore pressure under the fragment {force:.0f} N > resistance {resistance_n:.0f} "
                     f"N; {v_after * 1e6:.2f} mL injected after that fill a gap of {lift * 1e3:.2g} mm ({n} voxel(s))")


def lift_labels(model, depression: np.ndarray, n_vox: int) -> np.ndarray:
    """Labels with the fragment raised by ``n_vox`` voxels at its most depressed column and by the same share of
    their depression elsewhere (balloon.hinged_target), as the balloon lifts."""
    from vertaug.physics.balloon import _lift_step, hinged_target

    st = {"labels": np.asarray(model.labels).copy(), "hu": np.asarray(model.hu, np.float32).copy(),
          "post": np.asarray(model.posterior_mask, bool).copy(), "cavity": np.zeros(model.labels.shape, bool),
          "gap": np.zeros(model.labels.shape, bool), "bvtv": np.asarray(model.bvtv, float).copy(),
          "E": np.asarray(model.materials.E_pa, float).copy(), "yield": np.asarray(model.yield_pa, float).copy()}
    zone = getattr(model.materials, "fracture_zone", None)
    if zone is not None:
        st["zone"] = np.asarray(zone).copy()
    lifted = np.zeros_like(depression)
    for k in range(1, max(int(n_vox), 0) + 1):
        target = hinged_target(depression, k)
        if not np.any(target - lifted > 0):
            break
        _lift_step(st, target, lifted)
    return st["labels"]


def _column_frame(model, foot: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per body column (i, j): u, the fraction of the AP depth from the posterior wall, and x, the lateral offset from
    the body's mid-plane (mm), both in the level's own frame (model/heights.model_axes); and the body width (mm)."""
    from vertaug.model.heights import model_axes

    h_ax, a_ax = model_axes(model)
    a_ax = a_ax - (a_ax @ h_ax) * h_ax
    a_ax /= np.linalg.norm(a_ax)
    lat = np.cross(h_ax, a_ax)
    aff = np.asarray(model.affine_mm, float)
    ij = np.argwhere(foot)
    zc = 0.5 * (model.labels.shape[2] - 1)
    world = np.c_[ij, np.full(len(ij), zc)] @ aff[:3, :3].T + aff[:3, 3]
    pa, pl = world @ a_ax, world @ lat
    u = np.zeros(foot.shape)
    x = np.zeros(foot.shape)
    u[foot] = (pa - pa.min()) / max(float(np.ptp(pa)), 1e-9)
    x[foot] = pl - 0.5 * (pl.min() + pl.max())
    return u, x, float(np.ptp(pl))


def fragment_depression(model, fractured: bool | None = None) -> tuple[np.ndarray, float, str]:
    """Depression of the superior endplate per column (whole voxels along array axis 2, the lift direction), the
    reference height (mm) and a note. Zero everywhere when the level is not fractured (Genant grade 0).

    The height lost is measured the one way (model/heights.py, along the level's axes, 15/50/85 % of the AP depth) and
    spread over the endplate with the shape of the Genant type (the same shapes as anatomy/fracture.py):

        wedge:      delta = (Hp - Ha) clip((u - 0.15) / 0.70, 0, 1)        (hinged at the posterior measurement)
        biconcave:  delta = (Hp - Hm) / 2 max(0, 1 - ((u - 0.5)/0.35)^2 - (x / 0.6 W)^2)   (superior half of the dish)
        crush:      delta = Hp_ref - Hp, Hp_ref = Hp / (1 - D_crush)        (the neighbours' posterior height, Genant)

    Hp, Hm, Ha are the model's posterior, middle and anterior heights, D_crush the crush deformity of the level's
    morphometry (1 - Hp / mean posterior height of the neighbours). The reference is the posterior height for wedge
    and biconcave, the neighbours for crush (Genant 1993). delta (mm, along the height axis) is converted to voxels
    along array axis 2 (delta / (h cos tilt)) and rounded.
    """
    from vertaug.anatomy.fracture import DISH_AP_HALF, DISH_LATERAL, WEDGE_HINGE_U
    from vertaug.model.heights import crush_reference_mm, model_heights
    from vertaug.model.labels import BODY

    foot = np.isin(model.labels, BODY).any(axis=2)
    dep = np.zeros(foot.shape, int)
    m = getattr(model, "morphometry", None)
    if fractured is None:
        fractured = bool(m is not None and m.genant_grade is not None and m.genant_grade >= 1)
    if not fractured or not foot.any():
        return dep, float("nan"), "no fracture at this level: no fragment to reduce"
    hb = model_heights(model)
    kind = m.genant_type if m is not None and m.genant_type in ("wedge", "biconcave", "crush") else "wedge"
    u, x, width = _column_frame(model, foot)
    hp, ref = hb.posterior_mm, hb.posterior_mm
    if kind == "wedge":
        delta = max(hp - hb.anterior_mm, 0.0) * np.clip((u - WEDGE_HINGE_U) / (1.0 - 2 * WEDGE_HINGE_U), 0.0, 1.0)
    elif kind == "biconcave":
        b = np.maximum(0.0, 1.0 - ((u - 0.5) / DISH_AP_HALF) ** 2 - (x / (DISH_LATERAL * width)) ** 2)
        delta = 0.5 * max(hp - hb.middle_mm, 0.0) * b
    else:
        ref = crush_reference_mm(model, hb)
        ref = ref if np.isfinite(ref) else hp
        delta = np.full(foot.shape, max(ref - hp, 0.0))
    cos_tilt = abs(float(np.asarray(model.landmarks.height_axis, float)[2]))
    step_mm = float(model.spacing_m[2]) * 1e3 * max(cos_tilt, 1e-3)
    dep[foot] = np.rint(np.nan_to_num(delta[foot]) / step_mm).astype(int)
    return dep, float(ref), (f"{kind} fracture: reference height {ref:.1f} mm ("
                             f"{'neighbours' if kind == 'crush' else 'posterior height'}); endplate depressed by up to "
                             f"{dep.max() * step_mm:.1f} mm")


def fragment_of(model, fractured: bool | None = None) -> np.ndarray:
    """Depression per column (voxels along axis 2) of a fractured model, else zeros (:func:`fragment_depression`)."""
    return fragment_depression(model, fractured)[0]


def endplate_area_m2(model) -> float:
    """Axial footprint of the body (columns holding a body label) x voxel face area."""
    from vertaug.model.labels import BODY

    h = np.asarray(model.spacing_m, float)
    return float(np.isin(model.labels, BODY).any(axis=2).sum()) * h[0] * h[1]


def vertebroplasty_reduction(model, inj, mobility_name: str = "acute", preload_n: float = 100.0):
    """Postural then hydraulic reduction of a vertebroplasty (``inj``: the flow.InjectionResult).
    Returns (labels after, notes, (postural, hydraulic) Reductions)."""
    dep = fragment_of(model)
    post = postural_reduction(model, dep, endplate_area_m2(model))
    res_n, why = fragment_resistance_n(model, dep, mobility_name, preload_n)
    hyd = hydraulic_reduction(model, np.maximum(dep - post.lift_vox, 0), inj.pressure_pa, inj.tip_pressure_pa,
                              inj.injected_m3, res_n)
    n = post.lift_vox + hyd.lift_vox
    labels = lift_labels(model, dep, n) if n > 0 else np.asarray(model.labels)
    return labels, [post.note, why, hyd.note], (post, hyd)
