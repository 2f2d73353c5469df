"""Transpedicular cannula trajectories: find the pedicles, place the tip in the anterior third, check the path.

All geometry is worked in the vertebra's local frame (voxel units of the model grid, isotropic):

    p(x, u, z) = P + x r + u a + z h

with P the posterior-wall landmark (mid-height, mid-sagittal), h the height axis, a the anterior axis made orthogonal
to h, and r = a x h the lateral axis (towards the patient's right in the RAS+ grid; ``u < 0`` is behind the wall).

Pedicles (rule, see docs/trajectory.md):

* AP slices ``u = -1, -2, ..., -PEDICLE_BAND_MM`` (mm behind the posterior wall); in each slice the posterior-element
  voxels (``Vertebra.posterior_mask``, resampled into the slice by nearest neighbour) are split at the midline
  (x of the canal's centroid in the band, else the wall landmark) and, on each side, the largest 2-D connected
  component is that side's section;
* a section is kept if its area is at least ``MIN_SECTION_FRACTION`` of the median area on its side (drops the
  slivers next to the body rim); the pedicle is the contiguous run of kept slices from the most anterior one back
  over ``PEDICLE_LENGTH_MM``, ending early where the area grows past ``PEDICLE_AREA_GROWTH`` times the run's least
  (behind it the sections grow into the laminae and facets); at least ``MIN_SECTIONS`` slices are needed: a run
  that is shorter starts again at the next kept slice behind its start, and where none is long enough there is no
  pedicle on that side;
* the pedicle axis is the least-squares line through the centroids of its sections; the width of a section is
  its widest transverse chord (along r); the isthmus is the section of least width (the middle one of ties).

Trajectory (one per pedicle used):

* tip: at ``TIP_AP_FRACTION`` of the AP depth D = (A - P).a from the posterior wall; laterally at the midline of
  the body at that depth (unipedicular) or ``BIPEDICULAR_TIP_OFFSET`` of the local half-width off the midline on the
  pedicle's side (bipedicular); in height at the middle of the body column there;
* line: through the tip and the pivot point q in the isthmus slice that maximises

      score(q) = min( min_slices sdf_section(line ∩ slice),  min_path d_canal(line) - R )

  (sdf positive inside the section, mm; d_canal the distance to the nearest canal voxel centre, mm; R = gauge/2):
  the path that stays deepest inside the pedicle and clear of the canal;
* entry: marching back from the isthmus along the line, the last posterior-element point before the line leaves the
  bone (gaps shorter than ``ENTRY_GAP_MM`` are bridged), at most ``ENTRY_MAX_MM`` behind the wall.

Checks: canal clearance c = min_path d_canal - R; c < 0 (a canal voxel within the cannula radius) raises
:class:`TrajectoryError`; c < ``CLEARANCE_WARN_MM`` is recorded as a warning. Bone fraction = the share of the
in-pedicle path (entry to the body surface) lying in posterior-element or body-rim voxels; below
``BONE_FRACTION_MIN`` raises, below ``BONE_FRACTION_WARN`` warns.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..constants import CANNULA_GAUGES, DEFAULT_CANNULA_GAUGE
from ..errors import InputError, ParameterError, check_range
from .labels import CANAL
from .vertebra import Vertebra

__all__ = [
    "Pedicle",
    "PedicleNotFoundError",
    "Trajectory",
    "TrajectoryError",
    "ap_fraction",
    "find_pedicles",
    "plan_trajectories",
]

PEDICLE_BAND_MM = 15.0  # pedicle sections are sought this far behind the posterior wall
MIN_SECTION_FRACTION = 0.5  # of the median section area on that side
MIN_SECTION_MM2 = 6.0  # smaller sections are noise
MIN_SECTIONS = 3
PEDICLE_LENGTH_MM = 6.0  # the pedicle sections taken from its body end backwards
PEDICLE_AREA_GROWTH = 2.0  # ... ending early where the section grows past this times the least (lamina, facets)
TIP_AP_FRACTION = 0.72  # of the AP depth from the posterior wall: anterior third, 70-75 %
BIPEDICULAR_TIP_OFFSET = 0.4  # of the body's local half-width, off the midline
ENTRY_MAX_MM = 30.0
ENTRY_GAP_MM = 2.0
CLEARANCE_WARN_MM = 1.0
BONE_FRACTION_WARN = 0.9
BONE_FRACTION_MIN = 0.5
DEFAULT_GAUGE_MM = CANNULA_GAUGES[DEFAULT_CANNULA_GAUGE][0] * 1e3  # outer diameter of the default cannula, 3.048 mm
_STEP = 0.25  # path sampling step, voxels


class PedicleNotFoundError(InputError):
    """No pedicle could be found in the posterior elements of the model."""


class TrajectoryError(InputError):
    """No safe transpedicular path: the cannula would breach the canal or miss the pedicle."""


@dataclass(frozen=True, eq=False)
class Pedicle:
    """One pedicle: its centre line and isthmus, in model voxel indices."""

    side: str
    isthmus_ijk: tuple[float, float, float]
    axis: tuple[float, float, float]  # unit, pointing anterior
    width_mm: float  # narrowest transverse width
    isthmus_u_mm: float  # isthmus position behind the posterior wall (negative)
    n_sections: int
    sections: dict  # u (voxels) -> boolean 2-D section (x, z) of the local frame (internal)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """A straight cannula path. Points in model voxel indices; ``direction`` is a unit vector (entry -> tip)."""

    side: str  # the pedicle used: 'left' or 'right'
    target: str  # where the tip lies: 'left', 'right' or 'midline'
    entry_ijk: tuple[float, float, float]
    tip_ijk: tuple[float, float, float]
    direction: tuple[float, float, float]
    length_mm: float
    gauge_mm: float
    tip_voxels: np.ndarray  # (N, 3) int: voxels within the cannula radius of the tip, inside the body
    canal_clearance_mm: float  # min over the path of (distance to the nearest canal voxel) - gauge/2
    pedicle_clearance_mm: float  # min over the pedicle sections of (depth of the axis inside the section) - gauge/2
    bone_fraction: float  # share of the in-pedicle path inside bone
    tip_ap_fraction: float  # (tip - posterior wall).a / AP depth
    pedicle_width_mm: float
    medial_angle_deg: float  # convergence towards the midline in the axial plane
    warnings: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------------------- frame


@dataclass(frozen=True)
class _Frame:
    origin: np.ndarray
    r: np.ndarray
    a: np.ndarray
    h: np.ndarray
    spacing_mm: float
    right_sign: float  # +1 if +r points to the patient's right
    wall_u: float  # u of the posterior-wall landmark (the origin is that landmark rounded to a voxel centre)
    depth: float  # AP depth, voxels: (anterior wall - posterior wall) . a

    def to_ijk(self, x, u, z) -> np.ndarray:
        x, u, z = np.broadcast_arrays(np.asarray(x, float), np.asarray(u, float), np.asarray(z, float))
        return (self.origin[:, None] + np.outer(self.r, x.ravel()) + np.outer(self.a, u.ravel())
                + np.outer(self.h, z.ravel())).reshape((3,) + x.shape)

    def to_local(self, ijk: np.ndarray) -> np.ndarray:
        d = np.asarray(ijk, float) - self.origin
        return np.array([d @ self.r, d @ self.a, d @ self.h])

    def side_of(self, x: float) -> str:
        return "right" if x * self.right_sign > 0 else "left"


def _frame(v: Vertebra) -> _Frame:
    lm = v.landmarks
    h = np.asarray(lm.height_axis, float)
    h /= np.linalg.norm(h)
    a = np.asarray(lm.anterior_axis, float)
    a = a - h * (a @ h)
    a /= np.linalg.norm(a)
    r = np.cross(a, h)
    world_r = np.asarray(v.affine_mm, float)[:3, :3] @ r
    wall = np.asarray(lm.posterior_wall_ijk, float)
    origin = np.round(wall)  # sections sampled on voxel centres where the axes are the grid's (phantoms)
    depth = float((np.asarray(lm.anterior_wall_ijk, float) - wall) @ a)
    return _Frame(origin, r, a, h, v.spacing_m[0] * 1e3, 1.0 if world_r[0] >= 0 else -1.0,
                  float((wall - origin) @ a), depth)


def _sample(mask: np.ndarray, ijk: np.ndarray, order: int = 0) -> np.ndarray:
    return ndimage.map_coordinates(mask.astype(np.float32), ijk, order=order, mode="constant", cval=0.0)


def ap_fraction(v: Vertebra, ijk) -> float:
    """AP position of a point as a fraction of the AP depth, from the posterior wall (0) to the anterior wall (1)."""
    f = _frame(v)
    return float((f.to_local(np.asarray(ijk, float))[1] - f.wall_u) / f.depth)


# ------------------------------------------------------------------------------------------------------- pedicles


def _half_extent_vox(v: Vertebra) -> int:
    return int(np.ceil(np.linalg.norm(v.shape) / 2))


def _midline_x(v: Vertebra, f: _Frame, band_vox: float) -> float:
    canal = np.argwhere(v.labels == CANAL)
    if len(canal):
        loc = np.array([(canal - f.origin) @ f.r, (canal - f.origin) @ f.a])
        sel = (loc[1] < 0) & (loc[1] >= -band_vox)
        if sel.any():
            return float(loc[0][sel].mean())
    return 0.0


def _pedicle_run(secs: list, s_mm: float) -> list:
    """The pedicle's sections: drop slivers, then the contiguous run from the most anterior kept section back over
    ``PEDICLE_LENGTH_MM``, ending early where the area grows past ``PEDICLE_AREA_GROWTH`` times the run's least.
    Where that run is shorter than ``MIN_SECTIONS`` (a small section at the body rim followed by the pedicle's base,
    more than twice its area: a body taken from the vertebra label without a body map ends a little in front of
    the pedicle on a coarse CT), the run starts at the next kept section behind it."""
    areas = np.array([m.sum() for _, m in secs], float)
    keep = {secs[i][0]: i for i, ar in enumerate(areas) if ar >= MIN_SECTION_FRACTION * np.median(areas)}
    run: list[int] = []
    for start in sorted(keep, reverse=True):
        u, run = start, []
        while u in keep and len(run) < int(round(PEDICLE_LENGTH_MM / s_mm)):
            i = keep[u]
            if run and areas[i] > PEDICLE_AREA_GROWTH * min(areas[j] for j in run):
                break
            run.append(i)
            u -= 1
        if len(run) >= MIN_SECTIONS:
            break
    return [secs[i] for i in run]


def find_pedicles(v: Vertebra) -> dict[str, Pedicle]:
    """The left and right pedicles of ``v`` (keys 'left', 'right'; a side is missing if not found)."""
    f = _frame(v)
    s = f.spacing_mm
    band = int(round(PEDICLE_BAND_MM / s))
    n = _half_extent_vox(v)
    xs = np.arange(-n, n + 1, dtype=float)
    zs = np.arange(-n, n + 1, dtype=float)
    mid = _midline_x(v, f, band)
    found: dict[str, list] = {"left": [], "right": []}
    min_area = MIN_SECTION_MM2 / s**2
    for u in range(-1, -band - 1, -1):
        X, Z = np.meshgrid(xs, zs, indexing="ij")
        sl = _sample(v.posterior_mask, f.to_ijk(X, np.full_like(X, u), Z)) > 0.5
        if not sl.any():
            continue
        parts, n_parts = ndimage.label(sl)
        if n_parts == 0:
            continue
        idx = np.arange(1, n_parts + 1)
        areas = ndimage.sum(sl, parts, idx)
        cx = np.asarray(ndimage.mean(X, parts, idx))
        for side_sign in (-1.0, 1.0):
            on_side = (cx - mid) * side_sign > 0
            if not on_side.any():
                continue
            k = idx[on_side][np.argmax(areas[on_side])]
            if areas[k - 1] < min_area:
                continue
            found[f.side_of(side_sign)].append((u, parts == k))
    out: dict[str, Pedicle] = {}
    for side, secs in found.items():
        if len(secs) < MIN_SECTIONS:
            continue
        keep = _pedicle_run(secs, s)
        if len(keep) < MIN_SECTIONS:
            continue
        cents, widths = [], []
        for u, m in keep:
            ii, kk = np.nonzero(m)
            cents.append(f.to_ijk(xs[ii].mean(), u, zs[kk].mean()))
            widths.append(m.sum(axis=0).max() * s)  # widest transverse chord (voxels along x at one z)
        cents = np.array(cents)
        c0 = cents.mean(axis=0)
        _, _, vt = np.linalg.svd(cents - c0)
        axis = vt[0] if vt[0] @ f.a > 0 else -vt[0]
        tied = np.flatnonzero(np.isclose(widths, min(widths)))
        j = int(tied[len(tied) // 2])
        out[side] = Pedicle(
            side=side, isthmus_ijk=tuple(float(c) for c in cents[j]), axis=tuple(float(c) for c in axis),
            width_mm=float(widths[j]), isthmus_u_mm=float((keep[j][0] - f.wall_u) * s), n_sections=len(keep),
            sections={u: m for u, m in keep},
        )
    return out


# ------------------------------------------------------------------------------------------------------- planning


def _run_through(mask_line: np.ndarray, centre: int) -> tuple[int, int]:
    """The [lo, hi] index range of the True run of ``mask_line`` containing (or nearest to) ``centre``."""
    on = np.flatnonzero(mask_line)
    if not len(on):
        return centre, centre
    c = int(on[np.argmin(np.abs(on - centre))])
    lo = c
    while lo - 1 >= 0 and mask_line[lo - 1]:
        lo -= 1
    hi = c
    while hi + 1 < len(mask_line) and mask_line[hi + 1]:
        hi += 1
    return lo, hi


def _tip_local(v: Vertebra, f: _Frame, side: str, approach: str, mid: float) -> tuple[np.ndarray, str]:
    body = v.body_mask
    u_tip = f.wall_u + TIP_AP_FRACTION * f.depth
    z_c = f.to_local(np.asarray(v.landmarks.centroid_ijk))[2]
    n = _half_extent_vox(v)
    t = np.arange(-n, n + 1, 0.5)
    row = _sample(body, f.to_ijk(t, np.full_like(t, u_tip), np.full_like(t, z_c))) > 0.5
    lo, hi = _run_through(row, int(np.argmin(np.abs(t - mid))))
    x_mid, half = 0.5 * (t[lo] + t[hi]), 0.5 * (t[hi] - t[lo])
    if approach == "unipedicular":
        x_tip, target = x_mid, "midline"
    else:
        sign = f.right_sign if side == "right" else -f.right_sign
        x_tip, target = x_mid + sign * BIPEDICULAR_TIP_OFFSET * half, side
    col = _sample(body, f.to_ijk(np.full_like(t, x_tip), np.full_like(t, u_tip), t)) > 0.5
    lo, hi = _run_through(col, int(np.argmin(np.abs(t - z_c))))
    return np.array([x_tip, u_tip, 0.5 * (t[lo] + t[hi])]), target


def _section_sdf(m: np.ndarray, s: float) -> np.ndarray:
    """Signed distance (mm) to the section's boundary (voxel faces, half a voxel from the centres), > 0 inside."""
    inside, outside = ndimage.distance_transform_edt(m), ndimage.distance_transform_edt(~m)
    return (np.where(m, inside - 0.5, 0.5 - outside) * s).astype(np.float32)


def _section_depth_mm(sdfs: dict, tip_l: np.ndarray, d: np.ndarray, n_half: int) -> np.ndarray:
    """Min over the pedicle sections of the signed depth (mm) where each line tip + t d crosses them."""
    depth = np.full(len(d), np.inf)
    for u, sdf in sdfs.items():
        t = (u - tip_l[1]) / d[:, 1]
        x = tip_l[0] + t * d[:, 0] + n_half
        z = tip_l[2] + t * d[:, 2] + n_half
        depth = np.minimum(depth, ndimage.map_coordinates(sdf, np.array([x, z]), order=1, mode="nearest"))
    return depth


def _scores(f, sdfs, tip_l, pivots_l, canal_dist_mm, radius_mm, n_half):
    """Score (mm) of the lines tip -> pivot for each pivot (rows of ``pivots_l``, local coords)."""
    d = pivots_l - tip_l  # (P, 3)
    pedicle = _section_depth_mm(sdfs, tip_l, d, n_half)
    # canal along the path from the tip back to ENTRY_MAX_MM behind the wall
    u_end = -ENTRY_MAX_MM / f.spacing_mm
    tt = np.arange(0.0, 1.0 + 1e-9, 1.0 / 200)
    t_end = (u_end - tip_l[1]) / d[:, 1]
    pts = tip_l[None, None, :] + (tt[None, :, None] * t_end[:, None, None]) * d[:, None, :]
    ijk = f.to_ijk(pts[..., 0], pts[..., 1], pts[..., 2])
    dist = ndimage.map_coordinates(canal_dist_mm, ijk.reshape(3, -1), order=1, mode="nearest").reshape(pts.shape[:2])
    canal = dist.min(axis=1) - radius_mm
    return np.minimum(pedicle - radius_mm, canal)


def _plan_one(v: Vertebra, f: _Frame, ped: Pedicle, approach: str, radius_mm: float, mid: float,
              canal_dist_mm: np.ndarray) -> Trajectory:
    s = f.spacing_mm
    n = _half_extent_vox(v)
    tip_l, target = _tip_local(v, f, ped.side, approach, mid)
    sdfs = {u: _section_sdf(m, s) for u, m in ped.sections.items()}
    u_i = int(round(ped.isthmus_u_mm / s + f.wall_u))
    ii, kk = np.nonzero(ndimage.binary_dilation(ped.sections[u_i], iterations=2))
    piv = np.stack([ii - n, np.full(len(ii), u_i), kk - n], axis=1).astype(float)
    sc = _scores(f, sdfs, tip_l, piv, canal_dist_mm, radius_mm, n)
    best = piv[int(np.argmax(sc))]
    g = np.arange(-1.0, 1.01, 0.25)
    fine = np.array([[best[0] + dx, u_i, best[2] + dz] for dx in g for dz in g])
    sc = _scores(f, sdfs, tip_l, fine, canal_dist_mm, radius_mm, n)
    pivot = fine[int(np.argmax(sc))]
    d_l = (pivot - tip_l) / np.linalg.norm(pivot - tip_l)  # tip -> back
    tip = f.to_ijk(*tip_l).ravel()
    back = f.to_ijk(*(tip_l + d_l)).ravel() - tip  # unit in ijk (orthonormal frame)
    piv_ijk = f.to_ijk(*pivot).ravel()
    # entry: march back from the pivot while in bone (bridging short gaps), at most ENTRY_MAX_MM behind the wall
    pm = v.posterior_mask
    entry = piv_ijk.copy()
    p, gap = piv_ijk.copy(), 0.0
    while True:
        p = p + _STEP * back
        if f.to_local(p)[1] < -ENTRY_MAX_MM / s:
            break
        q = np.round(p).astype(int)
        inside = np.all(q >= 0) and np.all(q < pm.shape) and pm[tuple(q)]
        if inside:
            entry, gap = p.copy(), 0.0
        else:
            gap += _STEP * s
            if gap > ENTRY_GAP_MM:
                break
    length_vox = float(np.linalg.norm(tip - entry))
    direction = (tip - entry) / length_vox
    nstep = int(np.ceil(length_vox / _STEP)) + 1
    path = entry[:, None] + np.outer(direction, np.linspace(0.0, length_vox, nstep))
    clearance = float(ndimage.map_coordinates(canal_dist_mm, path, order=1, mode="nearest").min() - radius_mm)
    body = v.body_mask
    in_body = _sample(body, path) > 0.5
    first = int(np.argmax(in_body)) if in_body.any() else nstep
    bone = pm | ndimage.binary_dilation(body)
    in_ped = path[:, :first]
    bone_frac = float((_sample(bone, in_ped) > 0.5).mean()) if first > 0 else 1.0
    ped_clear = float(_section_depth_mm(sdfs, tip_l, d_l[None, :], n)[0] - radius_mm)
    where = f"{ped.side} {approach} path of {v.level}"
    if clearance < 0:
        raise TrajectoryError(
            f"The {where} breaches the spinal canal: the cannula (outer radius {radius_mm:.2f} mm) overlaps the "
            f"canal by {-clearance:.1f} mm.",
            "use a smaller gauge (13 G, gauge_mm=2.413), the other approach, or check the canal label of the model.")
    if bone_frac < BONE_FRACTION_MIN:
        raise TrajectoryError(
            f"The {where} runs outside bone for {100 * (1 - bone_frac):.0f} % of its in-pedicle length.",
            "check the posterior elements of the model (posterior_mask) or use the other approach.")
    warnings = []
    if clearance < CLEARANCE_WARN_MM:
        warnings.append(f"canal clearance {clearance:.2f} mm is below {CLEARANCE_WARN_MM:g} mm")
    if bone_frac < BONE_FRACTION_WARN:
        warnings.append(f"only {100 * bone_frac:.0f} % of the in-pedicle path is inside bone")
    if ped_clear < 0:
        warnings.append(f"the cannula wall leaves the pedicle section by {-ped_clear:.2f} mm")
    tip_vox = _tip_voxels(body, tip, radius_mm / s)
    axial = np.array([direction @ f.r, direction @ f.a])
    toward_mid = -np.sign(f.to_local(entry)[0] - mid)
    medial = float(np.degrees(np.arctan2(toward_mid * axial[0], axial[1])))
    return Trajectory(
        side=ped.side, target=target, entry_ijk=tuple(float(c) for c in entry), tip_ijk=tuple(float(c) for c in tip),
        direction=tuple(float(c) for c in direction), length_mm=length_vox * s, gauge_mm=2 * radius_mm,
        tip_voxels=tip_vox, canal_clearance_mm=clearance, pedicle_clearance_mm=ped_clear, bone_fraction=bone_frac,
        tip_ap_fraction=ap_fraction(v, tip), pedicle_width_mm=ped.width_mm, medial_angle_deg=medial,
        warnings=tuple(warnings),
    )


def _tip_voxels(body: np.ndarray, tip: np.ndarray, radius_vox: float) -> np.ndarray:
    r = int(np.ceil(radius_vox)) + 1
    c = np.round(tip).astype(int)
    g = np.stack(np.meshgrid(*[np.arange(ci - r, ci + r + 1) for ci in c], indexing="ij"), axis=-1).reshape(-1, 3)
    g = g[np.all(g >= 0, axis=1) & np.all(g < body.shape, axis=1)]
    near = np.linalg.norm(g - tip, axis=1) <= max(radius_vox, 0.5 * np.sqrt(3))
    g = g[near]
    return g[body[tuple(g.T)]].astype(np.int64)


def plan_trajectories(v: Vertebra, approach: str = "bipedicular", gauge_mm: float = DEFAULT_GAUGE_MM,
                      side: str = "auto") -> list[Trajectory]:
    """Plan the cannula path(s) of ``approach`` ('bipedicular': two, one per pedicle; 'unipedicular': one).

    ``gauge_mm`` is the cannula's outer diameter (default 11 G, 3.048 mm). For 'unipedicular', ``side`` picks the
    pedicle ('left' or 'right'); 'auto' takes the side with the larger canal clearance.
    """
    if approach not in ("bipedicular", "unipedicular"):
        raise ParameterError(f"approach={approach!r} is unknown.", "use 'bipedicular' or 'unipedicular'.")
    if side not in ("auto", "left", "right"):
        raise ParameterError(f"side={side!r} is unknown.", "use 'auto', 'left' or 'right'.")
    gauge_mm = check_range("gauge_mm", gauge_mm, 0.5, 6.0, "mm", "give the cannula's outer diameter, e.g. 3.048 (11 G).")
    peds = find_pedicles(v)
    need = ["left", "right"] if approach == "bipedicular" else ([side] if side != "auto" else ["left", "right"])
    missing = [sd for sd in need if sd not in peds]
    if (approach == "bipedicular" or side != "auto") and missing or not peds:
        raise PedicleNotFoundError(
            f"No {' or '.join(missing or need)} pedicle found in the posterior elements of {v.level} "
            f"({int(v.posterior_mask.sum())} posterior-element voxels within {PEDICLE_BAND_MM:g} mm behind the "
            "posterior wall were searched).",
            "build the model from a segmentation that includes the posterior elements (the full vertebra label, not "
            "only the body), or use the unipedicular approach on the side that has a pedicle.")
    f = _frame(v)
    mid = _midline_x(v, f, PEDICLE_BAND_MM / f.spacing_mm)
    canal = v.labels == CANAL
    # distance to the canal's boundary: to the nearest canal voxel centre less half a voxel (its face)
    canal_dist = ((ndimage.distance_transform_edt(~canal) - 0.5) * f.spacing_mm if canal.any()
                  else np.full(canal.shape, 1e3)).astype(np.float32)
    radius = gauge_mm / 2
    if approach == "bipedicular":
        return [_plan_one(v, f, peds[sd], approach, radius, mid, canal_dist) for sd in ("left", "right")]
    plans, errors = [], []
    for sd in [x for x in need if x in peds]:
        try:
            plans.append(_plan_one(v, f, peds[sd], approach, radius, mid, canal_dist))
        except TrajectoryError as e:
            errors.append(e)
    if not plans:
        raise errors[0]
    return [max(plans, key=lambda t: t.canal_clearance_mm)]
