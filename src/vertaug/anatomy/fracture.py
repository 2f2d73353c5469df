"""Virtual osteoporotic compression fracture of a real vertebra (CT + segmentation in, fractured CT + maps out).

``fracture_level(ct, seg, level, kind, grade)`` returns a :class:`FracturedLevel`: a new CT (HU), multilabel
segmentation and ``vertebrae_body`` map on the input grid, and a fracture-zone map (``ZONE_*``: 0 intact, 1 compacted
band, 2 fracture line, 3 cleft, 4 damaged: overloaded bone between the band and mid-height, unchanged on CT). Everything is measured in the level's own frame, taken from the morphometry of the
intact level (``anatomy/morphometry.py``): the height axis ``h`` (bisector of the endplate normals, from the
neighbours' centroids), the anterior axis ``a`` and the lateral axis ``l = h x a``; never the world axes.

Method (each constant below):

1. Columns. The body mask is resampled in the (l, a, h) frame (trilinear, threshold 0.5, as the morphometry does) and
   the extent of each column along ``h`` gives the superior and inferior endplate positions ``z_top(l, a)``, ``z_bot(l, a)`` and
   the local height ``H = z_top - z_bot``; ``u`` is the fraction of the anterior-posterior depth from the posterior
   wall and ``x`` the lateral offset from the mid-sagittal plane.
2. Genant type -> endplate depression ``delta(u, x)`` (Genant et al. 1993, J Bone Miner Res 8:1137-1148: wedge =
   anterior height loss, biconcave = central (mid) height loss of the endplates, crush = loss of the whole body
   including the posterior height), with amplitude ``A``:

   * wedge: superior endplate, ``delta = A max(0, u - 0.15) / 0.70`` (hinged at the posterior measurement position,
     posterior wall intact: AO Spine OF2 / OF3 depend only on the wall, Schnake et al. 2018, Global Spine J
     8(2 Suppl):46S-49S);
   * biconcave: both endplates, ``delta = A/2 b`` each, ``b = max(0, 1 - ((u - 0.5)/0.35)^2 - (x/(0.6 W))^2)`` (the
     phantom's dish, ``anatomy/phantom.py``; both endplates = AO OF4);
   * crush: superior endplate, ``delta = A H`` (a uniform axial strain ``A`` of every column: the whole body, posterior
     wall included, loses the same fraction; the anterior/posterior ratio of the level is kept).

3. Amplitude. ``A`` is searched so that the level's own morphometry -- the same measurement as ``vertaug morpho``
   (15/50/85 % positions, sub-voxel CT endplates, Genant deformity = 1 - Ha/Hp, 1 - Hm/Hp, 1 - Hp/Hp_ref) --
   reports the target deformity: the middle of Genant's band for a grade (0.225, 0.325, 0.50, as the phantom) or the
   ``deformity`` given. Each trial builds the fractured CT (steps 4-8) and measures it with
   ``measure_body_heights(..., ct=)`` along the intact level's axes (a few hundred ms); the target is bracketed from
   the linear first guess (steps of ``SEARCH_GROWTH``) and bisected. The best candidates are then checked with the
   whole-spine measurement, which has the last word (the fractured level's centroid steers its neighbours' height
   axes and so the crush reference). At clinical voxel sizes (the bundled CT is 3 mm) an open-loop amplitude misses
   Genant's 5 %-wide grade-1 band: the new endplate moves in voxel steps, seen through the partial volume of the CT.
4. Compaction, bone mass conserved. The crushed bone of each column is not removed: the layer of height ``delta``
   above the new endplate and a band of thickness ``t = max(delta, one voxel)`` under it are pressed into the band,
   ``z' = z_lo + (z - z_lo) / r``, ``r = (t + delta) / t``, so ``BMD'(z) = r BMD(z_lo + r (z - z_lo))`` (1-D mass
   conservation, a compacted sclerotic band under the depressed endplate, with the endplate pushed to its top). The
   compaction of trabecular bone into a denser band is the crushable-foam behaviour of cancellous bone (Gibson &
   Ashby, Cellular Solids, 2nd ed. 1997, ch. 11; the "condensation" band of acute fractures on radiographs). The band
   never exceeds what remains of the column. Bone mass ``M = sum max(BMD, 0) V`` over the body (BMD from HU through
   ``model.materials`` calibration) is then made exact by adding the remainder (voxel rounding, cracks, cleft)
   uniformly to the band; the correction is recorded (``mass_correction_fraction``).
5. Vacated voxels (above the new endplate) leave the vertebra label and become disc in the body map (label 2), with
   the median HU of the disc: the nucleus follows the depressed endplate.
6. Fracture lines (zone 2), 1 voxel wide: an endplate break (a crack plane through the band and the new endplate,
   opening to the disc: AO OF2-OF4 all involve the endplate; route D of cement leakage) at a seeded position in the
   depressed region, and on request a cortical break (``"anterior"``, ``"lateral"``, ``"posterior"``: a vertical crack
   through the shell from the superior endplate down to mid-height; posterior = AO OF3 wall involvement). CT: partial
   volume of a ``CRACK_WIDTH_MM`` gap of blood (``CRACK_FLUID_HU``) in the voxel.
7. Cleft (zone 3, optional): an intravertebral vacuum cleft (Kummell disease; gas on CT, ``CLEFT_GAS_HU``, darker than
   the model's cleft threshold ``model.vertebra.CLEFT_HU``) of ``CLEFT_THICKNESS_MM`` under the superior band, in the
   collapsed region. Only on a fractured level (grade >= 1).
8. Damaged zone (4): in every collapsed column, the bone between the band and the mid-height plane. Trabeculae yield
   well before the apparent yield strain and their reloading modulus falls with the strain reached (Morgan, Yeh &
   Keaveny 2005; Keaveny, Wachtel & Kopperdahl 1999), so the overloaded region of a collapse is wider than its visible
   compacted band; it is taken to reach mid-height, the extent of the band-like bone-marrow oedema under the fractured
   endplate of acute fractures on MRI [M]. It looks intact on CT (no HU change).
9. Posterior elements (vertebra label outside the body) are never changed.

Mechanical weakening of zones 1, 2 and 4 is applied by the model (``model.materials.FRACTURED_MODULUS_FACTOR``), not here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from ..errors import FractureError, LevelNotFoundError, ParameterError
from .io import Volume, check_same_grid
from .levels import BODY_LABEL, DISC_LABEL, label_table, normalize_level
from .morphometry import (
    MEASUREMENT_POSITIONS,
    _body_mask,
    _centroid_mm,
    _frame,
    genant_from_heights,
    genant_grade,
    measure_body_heights,
    measure_volumes,
)

__all__ = [
    "CORTICAL_BREAKS",
    "GRADE_DEFORMITY",
    "KINDS",
    "ZONE_BAND",
    "ZONE_CLEFT",
    "ZONE_CRACK",
    "ZONE_DAMAGED",
    "ZONE_INTACT",
    "ZONE_NAMES",
    "FracturedLevel",
    "bone_mass_mg",
    "fracture_level",
    "level_deformities",
]

KINDS = ("wedge", "biconcave", "crush")
CORTICAL_BREAKS = ("anterior", "lateral", "posterior")
#: Target deformity of a Genant grade: the middle of its band (Genant 1993: 20-25, 25-40, > 40 %), as the phantom.
GRADE_DEFORMITY = {1: 0.225, 2: 0.325, 3: 0.50}
#: Above this height loss the level is a vertebra plana: not made (the remaining body would be under a voxel or two).
MAX_DEFORMITY = 0.80

ZONE_INTACT = 0
ZONE_BAND = 1
ZONE_CRACK = 2
ZONE_CLEFT = 3
ZONE_DAMAGED = 4
ZONE_NAMES = {ZONE_INTACT: "intact", ZONE_BAND: "compacted band", ZONE_CRACK: "fracture line", ZONE_CLEFT: "cleft",
              ZONE_DAMAGED: "damaged"}

#: Wedge hinge: the posterior measurement position (fraction of the AP depth from the posterior wall).
WEDGE_HINGE_U = MEASUREMENT_POSITIONS["posterior"]
#: Biconcave dish: AP half-extent (fraction of depth) and lateral scale (fraction of width), as the phantom.
DISH_AP_HALF = 0.35
DISH_LATERAL = 0.6
#: Crack: gap width (mm) inside a voxel and its fluid (acute: blood / oedema, HU of blood).
CRACK_WIDTH_MM = 1.0
CRACK_FLUID_HU = 40.0
#: Endplate crack plane: half-length (mm) around the seeded point.
CRACK_HALF_LENGTH_MM = 8.0
#: Kummell cleft: thickness (mm, at least one voxel), gas HU, AP and lateral semi-axes (fractions of depth, width).
CLEFT_THICKNESS_MM = 3.0
CLEFT_GAS_HU = -700.0
CLEFT_AP_SEMI = 0.22
CLEFT_LATERAL_SEMI = 0.25
#: HU of the disc where the body map gives no disc voxel to measure.
DISC_HU_DEFAULT = 90.0
#: Amplitude search: the bracket grows (or shrinks) the linear first guess by this factor, at most this many times;
#: then bisection, at most this many steps, until the bracket is this fraction of the amplitude or a hit lies within
#: DEFORMITY_TOLERANCE of the target.
SEARCH_GROWTH = 1.25
SEARCH_BRACKET_STEPS = 8
SEARCH_BISECTIONS = 12
SEARCH_AMPLITUDE_RTOL = 1e-3
#: Best candidates checked with the whole-spine morphometry.
VERIFY_CANDIDATES = 4
#: ... and a candidate that passes within this of the target ends the checks.
VERIFY_TOLERANCE = 0.05
DEFORMITY_TOLERANCE = 0.01
#: Step of the column resampling (mm), at most this and at most half the smallest voxel.
COLUMN_STEP_MM = 1.0


@dataclass(frozen=True, eq=False)
class FracturedLevel:
    """A level after a virtual fracture: volumes on the input grid and the parameters used (SI-free: mm, HU, mg)."""

    ct: Volume
    seg: Volume
    body: Volume
    zone: Volume
    level: str
    kind: str
    grade: int
    deformity_target: float
    deformity_measured: float
    amplitude: float
    cleft: bool
    endplate_break: bool
    cortical_break: str | None
    seed: int
    numbering: str
    bone_mass_before_mg: float
    bone_mass_after_mg: float
    mass_correction_fraction: float
    zone_voxels: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    #: the morphometry of the whole scan before and after the fracture (fracture_level measures both; the report
    #: pipeline takes them from here instead of measuring the same volumes again)
    spine_before: object = None
    spine_after: object = None

    def summary_line(self) -> str:
        """One line: level, type, grade, measured deformity, bone mass before and after."""
        return (f"virtual fracture of {self.level}: {self.kind} grade {self.grade} (measured deformity "
                f"{self.deformity_measured:.3f}); bone mass {self.bone_mass_before_mg:.0f} -> "
                f"{self.bone_mass_after_mg:.0f} mg")

    def parameters(self) -> dict:
        """The inputs and key results, for ``inputs=`` of the pipeline and for provenance."""
        return {
            "level": self.level, "type": self.kind, "grade": self.grade,
            "deformity_target": round(self.deformity_target, 4),
            "deformity_measured": round(self.deformity_measured, 4),
            "amplitude": round(self.amplitude, 4) if self.kind == "crush" else None,
            "amplitude_mm": None if self.kind == "crush" else round(self.amplitude, 3),
            "cleft": self.cleft, "endplate_break": self.endplate_break, "cortical_break": self.cortical_break,
            "seed": self.seed, "numbering": self.numbering,
            "bone_mass_before_mg": round(self.bone_mass_before_mg, 2),
            "bone_mass_after_mg": round(self.bone_mass_after_mg, 2),
            "mass_correction_fraction": round(self.mass_correction_fraction, 5),
            "zone_voxels": dict(self.zone_voxels), "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------------------------------- checks


def _check_inputs(kind, grade, deformity, cleft, cortical_break) -> tuple[str, int, float]:
    kind = str(kind).strip().lower()
    if kind not in KINDS:
        raise ParameterError(f"Unknown fracture type {kind!r}.", f"use one of {', '.join(KINDS)} (Genant types).")
    if cortical_break is not None and cortical_break not in CORTICAL_BREAKS:
        raise ParameterError(f"Unknown cortical break {cortical_break!r}.",
                             f"use one of {', '.join(CORTICAL_BREAKS)}, or none.")
    if deformity is not None:
        try:
            d = float(deformity)
        except (TypeError, ValueError):
            raise ParameterError(f"Deformity {deformity!r} is not a number.", "give a height-loss fraction, e.g. 0.3.") from None
        if not math.isfinite(d) or d <= 0.0:
            if cleft:
                raise ParameterError(f"A cleft was asked on a level with deformity {deformity!r} (no fracture).",
                                     "give a deformity of at least 0.20 (Genant grade 1) or drop --cleft.")
            raise ParameterError(f"Deformity {deformity!r} is not a height loss.", "give a fraction in (0, 0.8].")
        if d > MAX_DEFORMITY:
            raise FractureError(f"A deformity of {d:g} is deeper than the body allows (vertebra plana).",
                                f"give a deformity up to {MAX_DEFORMITY:g} (grade 3 is > 0.40).")
        g = genant_grade(d)
        if cleft and g == 0:
            raise ParameterError(f"A cleft was asked on a grade-0 level (deformity {d:g} < 0.20).",
                                 "give a deformity of at least 0.20 (Genant grade 1) or drop --cleft.")
        return kind, int(g), d
    if isinstance(grade, bool) or grade not in GRADE_DEFORMITY:
        if grade == 0 and cleft:
            raise ParameterError("A cleft was asked on a grade-0 level (no fracture).",
                                 "give --grade 1, 2 or 3, or drop --cleft.")
        raise ParameterError(f"Genant grade {grade!r} is outside 1..3.",
                             "give --grade 1 (mild, 20-25 %), 2 (moderate, 25-40 %) or 3 (severe, > 40 %).")
    return kind, int(grade), GRADE_DEFORMITY[int(grade)]


# ------------------------------------------------------------------------------------------------------- geometry


def bone_mass_mg(ct_hu: np.ndarray, mask: np.ndarray, voxel_volume_mm3: float, calibration=None) -> float:
    """Bone mineral mass (mg) of a mask: sum of max(BMD, 0) x voxel volume, BMD from HU by the materials calibration."""
    from ..model.materials import DEFAULT_CALIBRATION

    cal = calibration or DEFAULT_CALIBRATION
    bmd = cal.intercept_mg_cm3 + cal.slope_mg_cm3_per_hu * ct_hu[mask].astype(np.float64)
    return float(np.maximum(bmd, 0.0).sum() * voxel_volume_mm3 * 1e-3)


@dataclass(frozen=True)
class _Columns:
    """Column maps of the body in the level frame: top/bottom (mm along h) per (l, a) cell."""

    l0: float
    a0: float
    step: float
    top: np.ndarray
    bot: np.ndarray
    valid: np.ndarray
    a_post: float
    depth: float
    l_mid: float
    width: float


def _columns(body: np.ndarray, affine, centre, h, a, lat, spacing) -> _Columns:
    step = min(COLUMN_STEP_MM, 0.5 * float(min(spacing)))
    pts = np.argwhere(body)
    world = (affine[:3, :3] @ pts.T).T + affine[:3, 3] - centre
    half = np.abs(world @ np.stack([lat, a, h], axis=1)).max(axis=0) + 2 * float(max(spacing))
    axes = [np.arange(-hv, hv + step / 2, step) for hv in half]
    L, A, H = np.meshgrid(*axes, indexing="ij")
    xyz = centre + L[..., None] * lat + A[..., None] * a + H[..., None] * h
    inv = np.linalg.inv(affine)
    ijk = xyz @ inv[:3, :3].T + inv[:3, 3]
    vals = ndimage.map_coordinates(body.astype(np.float32), ijk.reshape(-1, 3).T, order=1, mode="constant", cval=0.0)
    m = vals.reshape(L.shape) >= 0.5
    valid = m.any(axis=2)
    top = np.full(valid.shape, np.nan)
    bot = np.full(valid.shape, np.nan)
    h_ax = axes[2]
    # the column's extent (first to last body sample): a hole in the mask (a vein channel left out of the
    # segmentation) must not move the endplate
    nh = m.shape[2]
    first = np.argmax(m, axis=2)
    last = nh - 1 - np.argmax(m[:, :, ::-1], axis=2)
    bot[valid] = h_ax[first[valid]] - step / 2
    top[valid] = h_ax[last[valid]] + step / 2
    l_idx = np.flatnonzero(valid.any(axis=1))
    l_lo, l_hi = axes[0][l_idx[0]] - step / 2, axes[0][l_idx[-1]] + step / 2
    width, l_mid = float(l_hi - l_lo), float(0.5 * (l_lo + l_hi))
    # AP extent as the morphometry takes it: central band of the width, central half of the height
    band = np.abs(axes[0] - l_mid) <= max(0.1 * width, step)
    slab = m[band]
    h_idx = np.flatnonzero(slab.any(axis=(0, 1)))
    h_lo, h_hi = h_ax[h_idx[0]], h_ax[h_idx[-1]]
    mid = np.abs(h_ax - 0.5 * (h_lo + h_hi)) <= max(0.25 * (h_hi - h_lo), step)
    a_idx = np.flatnonzero(slab[:, :, mid].any(axis=(0, 2)))
    a_post, a_ant = axes[1][a_idx[0]] - step / 2, axes[1][a_idx[-1]] + step / 2
    return _Columns(float(axes[0][0]), float(axes[1][0]), step, top, bot, valid, float(a_post),
                    float(a_ant - a_post), l_mid, width)


def _lookup(cols: _Columns, lv: np.ndarray, av: np.ndarray):
    """top, bot of the nearest valid column for each (l, a)."""
    _, (ix, iy) = ndimage.distance_transform_edt(~cols.valid, return_indices=True)
    il = np.clip(np.rint((lv - cols.l0) / cols.step).astype(int), 0, cols.valid.shape[0] - 1)
    ia = np.clip(np.rint((av - cols.a0) / cols.step).astype(int), 0, cols.valid.shape[1] - 1)
    jl, ja = ix[il, ia], iy[il, ia]
    return cols.top[jl, ja], cols.bot[jl, ja]


def _depressions(kind: str, amp: float, u, x, height, width):
    """(delta_top, delta_bottom) in mm for each voxel's column."""
    if kind == "wedge":
        return amp * np.maximum(0.0, u - WEDGE_HINGE_U) / (1.0 - 2 * WEDGE_HINGE_U), np.zeros_like(u)
    if kind == "biconcave":
        b = np.maximum(0.0, 1.0 - ((u - 0.5) / DISH_AP_HALF) ** 2 - (x / (DISH_LATERAL * width)) ** 2)
        return 0.5 * amp * b, 0.5 * amp * b
    return amp * height, np.zeros_like(u)


@dataclass
class _Frame:
    name: str
    label: int
    vert: np.ndarray
    body0: np.ndarray
    idx: tuple  # indices of the body voxels
    lv: np.ndarray
    av: np.ndarray
    hv: np.ndarray
    u: np.ndarray
    x: np.ndarray
    top: np.ndarray
    bot: np.ndarray
    h: np.ndarray
    a: np.ndarray
    lat: np.ndarray
    centre: np.ndarray
    cols: _Columns
    on_column: np.ndarray


def _build(ct: Volume, kind, amp, fr: _Frame, min_band_mm: float):
    """Apply a depression of amplitude ``amp``: new body mask, band/vacated masks and compacted HU (no cracks yet)."""
    height = fr.top - fr.bot
    d_top, d_bot = _depressions(kind, amp, fr.u, fr.x, height, fr.cols.width)
    # rim columns of a voxel or two, and voxels off their column (thin bone the column sampling does not see), are left
    inside = (height > 2 * min_band_mm) & fr.on_column
    # a column keeps at least one band of bone: the rim of a deep wedge flattens onto it instead of vanishing
    room = np.maximum(height - min_band_mm, 0.0)
    over = np.maximum(d_top + d_bot - room, 0.0)
    share = np.where(d_top + d_bot > 0, d_top / np.maximum(d_top + d_bot, 1e-9), 1.0)
    d_top = np.where(inside, d_top - over * share, 0.0)
    d_bot = np.where(inside, d_bot - over * (1.0 - share), 0.0)
    remaining = height - d_top - d_bot
    t_top = np.where(d_top > 0, np.maximum(d_top, min_band_mm), 0.0)
    t_bot = np.where(d_bot > 0, np.maximum(d_bot, min_band_mm), 0.0)
    room = np.maximum(remaining, 1e-6)
    scale = np.minimum(1.0, room / np.maximum(t_top + t_bot, 1e-9))
    t_top, t_bot = t_top * scale, t_bot * scale
    new_top, new_bot = fr.top - d_top, fr.bot + d_bot
    vacated = ((d_top > 0) & (fr.hv > new_top)) | ((d_bot > 0) & (fr.hv < new_bot))
    vacated |= _islands(fr, vacated)
    band_top = (~vacated) & (d_top > 0) & (fr.hv >= new_top - t_top)
    band_bot = (~vacated) & (d_bot > 0) & (fr.hv <= new_bot + t_bot)
    src_h = fr.hv.copy()
    r_top = np.where(t_top > 0, (t_top + d_top) / np.maximum(t_top, 1e-9), 1.0)
    r_bot = np.where(t_bot > 0, (t_bot + d_bot) / np.maximum(t_bot, 1e-9), 1.0)
    lo = new_top - t_top
    src_h = np.where(band_top, lo + (fr.hv - lo) * r_top, src_h)
    hi = new_bot + t_bot
    src_h = np.where(band_bot, hi - (hi - fr.hv) * r_bot, src_h)
    ratio = np.where(band_top, r_top, np.where(band_bot, r_bot, 1.0))
    return vacated, band_top | band_bot, src_h, ratio, new_top, new_bot, t_top, t_bot


def _islands(fr: _Frame, vacated: np.ndarray) -> np.ndarray:
    """Voxels of the body left outside its largest (face-connected) component by the cut: fragments of bone above the
    new endplate where the staircase of the voxel grid crosses it. They go with the vacated voxels (their bone mass
    into the band), as the morphometry would drop them anyway."""
    box = _bbox(fr.body0, 1)
    kept = np.zeros(fr.body0.shape, bool)
    kept[fr.idx[0][~vacated], fr.idx[1][~vacated], fr.idx[2][~vacated]] = True
    lab, n = ndimage.label(kept[box])
    if n <= 1:
        return np.zeros_like(vacated)
    main = 1 + int(np.argmax(np.bincount(lab.ravel())[1:]))
    offs = [b.start for b in box]
    in_main = lab[fr.idx[0] - offs[0], fr.idx[1] - offs[1], fr.idx[2] - offs[2]] == main
    return ~vacated & ~in_main


@dataclass(frozen=True)
class _Trial:
    """One amplitude tried: its deformity of the asked type by the default measurement, and whether it hits."""

    amplitude: float
    deformity: float
    hits: bool  # the asked Genant type and grade


class _Trials:
    """The amplitudes tried: each builds the fractured CT as :func:`fracture_level` returns it (band, cracks, cleft,
    mass) and measures the level with THE height measurement (``measure_body_heights`` with the CT's sub-voxel
    endplates, the morphometry's default) along the intact level's axes. Calling it returns deformity - target."""

    def __init__(self, ct, seg, body, fr: _Frame, kind, grade, target, hp_ref, cleft, endplate_break, cortical_break,
                 seed, numbering, min_band, calibration):
        self.args = (ct, seg, body, fr, kind)
        self.rest = (cleft, endplate_break, cortical_break, seed)
        self.grade, self.target, self.hp_ref = grade, target, hp_ref
        self.numbering, self.min_band, self.calibration = numbering, min_band, calibration
        self.done: dict[float, _Trial] = {}

    def build(self, amp: float) -> FracturedLevel:
        ct, seg, body, fr, kind = self.args
        cleft, endplate_break, cortical_break, seed = self.rest
        return _apply(ct, seg, body, fr, kind, amp, self.grade, self.target, math.nan, cleft, endplate_break,
                      cortical_break, seed, np.random.default_rng(seed), self.numbering, self.min_band,
                      self.calibration, [])

    def __call__(self, amp: float) -> float:
        amp = float(amp)
        if amp not in self.done:
            ct, _seg, _body, fr, kind = self.args
            result = self.build(amp)
            body_new = fr.body0 & (result.seg.data == fr.label)
            bh = measure_body_heights(body_new, ct.affine_mm, fr.h, fr.a, ct=result.ct.data)
            if bh is None:
                raise FractureError(f"The fractured body of {fr.name} has no measurable mid-sagittal extent.",
                                    "ask a lower grade or deformity.")
            g = genant_from_heights(bh.anterior_mm, bh.middle_mm, bh.posterior_mm, self.hp_ref)
            d = float(g[f"deformity_{kind}"])
            self.done[amp] = _Trial(amp, d, g["genant_type"] == kind and genant_grade(d) == self.grade)
        return self.done[amp].deformity - self.target

    def ranked(self) -> list[_Trial]:
        """Hits first, then by distance to the target."""
        return sorted(self.done.values(), key=lambda t: (not t.hits, abs(t.deformity - self.target)))

    def close_enough(self) -> bool:
        return any(t.hits and abs(t.deformity - self.target) <= DEFORMITY_TOLERANCE for t in self.done.values())


def _search_amplitude(f: _Trials, amp0: float, amp_max: float) -> None:
    """Bracket the target from the linear first guess ``amp0`` (steps of ``SEARCH_GROWTH``), then bisect. The measured
    deformity grows with the amplitude in small steps (the voxel staircase of the new endplate, seen through the
    partial volume of the CT), so bisection ends on the step that crosses the target, or earlier on a hit within
    ``DEFORMITY_TOLERANCE``. Every amplitude tried stays in ``f``."""
    a = min(amp0, amp_max)
    lo, hi = 0.0, None
    if f(a) >= 0:
        hi = a
        for _ in range(SEARCH_BRACKET_STEPS):
            a /= SEARCH_GROWTH
            if f(a) < 0:
                lo = a
                break
            hi = a
    else:
        lo = a
        for _ in range(SEARCH_BRACKET_STEPS):
            if a >= amp_max:
                break
            a = min(a * SEARCH_GROWTH, amp_max)
            if f(a) >= 0:
                hi = a
                break
            lo = a
    if hi is None:
        return  # the deepest amplitude allowed measures less than the target: the closest is reported
    for _ in range(SEARCH_BISECTIONS):
        if f.close_enough() or hi - lo <= SEARCH_AMPLITUDE_RTOL * hi:
            break
        mid = 0.5 * (lo + hi)
        if f(mid) >= 0:
            hi = mid
        else:
            lo = mid


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


# ------------------------------------------------------------------------------------------------------- entry point


def fracture_level(
    ct: Volume,
    seg: Volume,
    level: str,
    kind: str = "wedge",
    grade: int | None = 2,
    deformity: float | None = None,
    cleft: bool = False,
    endplate_break: bool = True,
    cortical_break: str | None = None,
    seed: int = 0,
    body: Volume | None = None,
    numbering: str = "v2",
    calibration=None,
) -> FracturedLevel:
    """Fracture ``level`` of a CT virtually (module docstring); ``deformity`` (height-loss fraction) overrides ``grade``.

    Raises an :class:`~vertaug.errors.InputError` (one line, with the fix) for an unknown type, a grade outside 1..3, a
    cleft without a fracture, a level that is absent or has no body, or a fracture deeper than the body.
    """
    kind, grade_asked, target = _check_inputs(kind, grade, deformity, cleft, cortical_break)
    name = normalize_level(level)
    table = label_table(numbering)
    check_same_grid(ct, seg)
    if body is not None:
        check_same_grid(ct, body)
    if name not in table or not np.any(seg.data == table[name]):
        raise LevelNotFoundError(f"Level {name} is not in the segmentation '{seg.source}' (numbering {numbering}).",
                                 "choose a level that is present, or check --numbering (v2, v1 or verse).")
    spine = measure_volumes(ct, seg, body, numbering)
    morph = spine.levels[name]
    if not morph.evaluable:
        raise LevelNotFoundError(f"Level {name} has no measurable body: {morph.reason}.",
                                 "choose a level whose vertebral body lies wholly inside the scan.")
    hp_ref = morph.height_posterior_mm / (1.0 - morph.deformity_crush) if np.isfinite(morph.deformity_crush) else np.nan
    if kind == "crush" and not np.isfinite(hp_ref):
        raise FractureError(f"A crush fracture of {name} cannot be graded: no evaluable neighbour gives the reference "
                            "posterior height (Genant crush = 1 - Hp / Hp of the neighbours).",
                            "choose a level with an intact neighbour in the scan, or a wedge or biconcave type.")
    fr = _frame_of(ct, seg, body, name, table[name], morph)
    spacing = np.array(ct.spacing_mm)
    min_band = float(spacing.max())

    # --- closed loop on the amplitude (module docstring, step 3)
    if kind == "wedge":
        amp = morph.height_anterior_mm - (1 - target) * morph.height_posterior_mm
    elif kind == "biconcave":
        amp = morph.height_middle_mm - (1 - target) * morph.height_posterior_mm
    else:
        amp = 1.0 - (1 - target) * hp_ref / morph.height_posterior_mm
    left_mm = (1 - target) * (hp_ref if kind == "crush" else morph.height_posterior_mm)
    if left_mm < 2 * min_band:
        raise FractureError(
            f"A {kind} deformity of {target:.2f} is deeper than the body of {name}: {left_mm:.1f} mm would remain, "
            f"less than a compacted band of two voxels ({2 * min_band:.1f} mm).", "ask a lower grade or deformity.")
    current = {"wedge": morph.deformity_wedge, "biconcave": morph.deformity_biconcave, "crush": morph.deformity_crush}
    if current[kind] >= target - DEFORMITY_TOLERANCE or amp <= 0:
        raise FractureError(f"{name} already measures a {kind} deformity of {current[kind]:.2f} >= the {target:.3f} "
                            "asked.", "ask a higher grade or deformity.")
    measure = _Trials(ct, seg, body, fr, kind, grade_asked, target, hp_ref, cleft, endplate_break, cortical_break,
                      seed, numbering, min_band, calibration)
    amp_max = 1.0 if kind == "crush" else float(np.nanmax(fr.top - fr.bot))
    _search_amplitude(measure, amp, amp_max)
    # the whole-spine measurement (what `vertaug morpho` prints) has the last word: the fractured level's centroid
    # steers its neighbours' height axes and so the crush reference, and its own anterior axis; check the best
    # candidates with it
    chosen = None
    for t in measure.ranked()[:VERIFY_CANDIDATES]:
        result = measure.build(t.amplitude)
        spine_after = measure_volumes(result.ct, result.seg, result.body, numbering)
        m = spine_after[name]
        d_full = getattr(m, f"deformity_{kind}") if m.evaluable else float("nan")
        passed = m.evaluable and m.genant_type == kind and m.genant_grade == grade_asked
        score = (passed, -abs(d_full - target) if np.isfinite(d_full) else -np.inf)
        if chosen is None or score > chosen[0]:
            chosen = (score, result, d_full, spine_after)
        if passed and abs(d_full - target) <= VERIFY_TOLERANCE:
            break
    (passed, _), result, d_full, spine_after = chosen
    notes = list(result.notes)
    if not passed:
        notes.append(f"no amplitude tried measures {kind} grade {grade_asked}: the closest measures {kind} "
                     f"deformity {d_full:.3f} (asked {target:.3f}); the level's heights are quantised by its voxels")
    return replace(result, deformity_measured=float(d_full), notes=tuple(notes), spine_before=spine,
                   spine_after=spine_after)


def level_deformities(ct: Volume, seg: Volume, level: str, body: Volume | None = None, numbering: str = "v2",
                      spine=None) -> dict[str, float]:
    """Genant deformities by type (``wedge``, ``biconcave``, ``crush``) of ``level`` before a fracture, as
    :func:`fracture_level` measures them before it refuses a level that already measures the asked deformity: THE
    height measurement (sub-voxel CT endplates) of the level's body along the axes of ``spine``, the whole-spine
    morphometry of the same masks (measured here when not given). The axes come from the masks and the crush reference
    from the neighbours, so one ``spine`` serves every HU scaling of the level alone (the trial's density draw).
    NaN for a level that cannot be measured."""
    name = normalize_level(level)
    spine = spine if spine is not None else measure_volumes(ct, seg, body, numbering)
    nan = {k: math.nan for k in KINDS}
    m = spine.levels.get(name)
    if m is None or not m.evaluable:
        return nan
    vert = np.asarray(seg.data) == label_table(numbering)[name]
    body0 = _body_mask(vert, body, ct.spacing_mm, ct.affine_mm, m.height_axis)
    bh = measure_body_heights(body0, ct.affine_mm, m.height_axis, m.anterior_axis, ct=ct.data)
    if bh is None:
        return nan
    hp_ref = m.height_posterior_mm / (1.0 - m.deformity_crush) if np.isfinite(m.deformity_crush) else math.nan
    g = genant_from_heights(bh.anterior_mm, bh.middle_mm, bh.posterior_mm, hp_ref)
    return {k: float(g[f"deformity_{k}"]) for k in KINDS}


def _frame_of(ct: Volume, seg: Volume, body: Volume | None, name: str, label: int, morph) -> _Frame:
    vert = seg.data == label
    body0 = _body_mask(vert, body, ct.spacing_mm, ct.affine_mm, morph.height_axis)
    if not body0.any():
        raise LevelNotFoundError(f"Level {name} has no vertebral body in the segmentation.",
                                 "give the vertebrae_body map (--body) or a segmentation with the body labelled.")
    h = np.asarray(morph.height_axis, float)
    a, lat = _frame(h, morph.anterior_axis)
    centre = _centroid_mm(body0, ct.affine_mm)
    cols = _columns(body0, ct.affine_mm, centre, h, a, lat, ct.spacing_mm)
    idx = np.nonzero(body0)
    world = (ct.affine_mm[:3, :3] @ np.stack(idx).astype(float)).T + ct.affine_mm[:3, 3] - centre
    lv, av, hv = world @ lat, world @ a, world @ h
    top, bot = _lookup(cols, lv, av)
    u = (av - cols.a_post) / cols.depth
    x = lv - cols.l_mid
    il = np.clip(np.rint((lv - cols.l0) / cols.step).astype(int), 0, cols.valid.shape[0] - 1)
    ia = np.clip(np.rint((av - cols.a0) / cols.step).astype(int), 0, cols.valid.shape[1] - 1)
    tol = 0.87 * float(max(ct.spacing_mm))  # half a voxel diagonal
    on_column = cols.valid[il, ia] & (hv <= top + tol) & (hv >= bot - tol)
    return _Frame(name, label, vert, body0, idx, lv, av, hv, u, x, top, bot, h, a, lat, centre, cols, on_column)


def _compact(ct, fr: _Frame, band, src_h, ratio, cal) -> np.ndarray:
    """HU of the scan with the band compacted: BMD'(z) = r BMD(source point along the height axis)."""
    hu = np.asarray(ct.data, dtype=np.float32).copy()
    ix = fr.idx
    src = np.stack([i[band] for i in ix]).astype(float).T
    shift = (src_h[band] - fr.hv[band])[:, None] * fr.h[None, :]
    inv = np.linalg.inv(ct.affine_mm)
    src_ijk = src + shift @ inv[:3, :3].T
    hu_src = ndimage.map_coordinates(np.asarray(ct.data, np.float32), src_ijk.T, order=1, mode="nearest")
    bmd_src = cal.intercept_mg_cm3 + cal.slope_mg_cm3_per_hu * hu_src.astype(np.float64)
    bmd_new = np.maximum(bmd_src, 0.0) * ratio[band]
    hu[ix[0][band], ix[1][band], ix[2][band]] = ((bmd_new - cal.intercept_mg_cm3) / cal.slope_mg_cm3_per_hu)
    return hu


def _vacate(ct, seg, body, fr: _Frame, vacated, hu):
    """Vacated voxels become disc (HU of the scan's disc): (labels, body map, body mask after), ``hu`` in place."""
    seg_new = np.asarray(seg.data).copy()
    body_map = np.zeros(ct.shape, np.uint8) if body is None else np.asarray(body.data).astype(np.uint8).copy()
    disc_hu = DISC_HU_DEFAULT
    if body is not None and np.any(body.data == DISC_LABEL):
        disc_hu = float(np.median(ct.data[body.data == DISC_LABEL]))
    vac = tuple(i[vacated] for i in fr.idx)
    seg_new[vac] = 0
    body_map[vac] = DISC_LABEL
    hu[vac] = disc_hu
    body_new = fr.body0.copy()
    body_new[vac] = False
    body_map[body_new] = BODY_LABEL
    return seg_new, body_map, body_new


def _endplate_crack(fr: _Frame, kind, rng, alive, new_top, new_bot, t_top, t_bot, s_max) -> np.ndarray:
    """A crack plane through the band and the new endplate (both endplates for a biconcave fracture), per column."""
    u_seed = {"wedge": 0.70, "biconcave": 0.50, "crush": 0.50}[kind] + rng.uniform(-0.1, 0.1)
    x_seed = rng.uniform(-0.2, 0.2) * fr.cols.width
    theta = rng.uniform(0.0, math.pi)
    l_s = fr.cols.l_mid + x_seed
    a_s = fr.cols.a_post + u_seed * fr.cols.depth
    n = np.array([math.cos(theta), math.sin(theta)])
    dl, da = fr.lv - l_s, fr.av - a_s
    near_plane = np.abs(dl * n[0] + da * n[1]) <= s_max / 2
    along = np.hypot(dl, da) <= CRACK_HALF_LENGTH_MM
    top_layer = fr.hv >= new_top - np.maximum(t_top, s_max) - s_max
    crack = alive & near_plane & along & top_layer
    if kind == "biconcave":
        crack |= alive & near_plane & along & (fr.hv <= new_bot + np.maximum(t_bot, s_max) + s_max)
    return crack


def _cortical_crack(fr: _Frame, cortical_break, rng, alive, body_new, mid, spacing, notes) -> np.ndarray:
    """A vertical crack through the named wall's shell in the upper half of the body."""
    s_max = float(spacing.max())
    side = 1.0 if rng.uniform() < 0.5 else -1.0
    d2 = {"anterior": (0.0, 1.0), "posterior": (0.0, -1.0), "lateral": (side, 0.0)}[cortical_break]
    c_l, c_a = fr.cols.l_mid, fr.cols.a_post + 0.5 * fr.cols.depth
    dl, da = fr.lv - c_l, fr.av - c_a
    outward = dl * d2[0] + da * d2[1] > 0
    plane = np.abs(-dl * d2[1] + da * d2[0]) <= s_max / 2
    depth_out = ndimage.distance_transform_edt(body_new, sampling=spacing)[fr.idx]
    shell = depth_out <= s_max * 1.01
    crack = alive & outward & plane & shell & (fr.hv >= mid)
    where = "" if cortical_break != "lateral" else ", right" if side > 0 else ", left"
    notes.append(f"cortical break ({cortical_break}{where}): {int(crack.sum())} voxels")
    return crack


def _cleft(fr: _Frame, kind, alive, zone_cols, new_top, t_top, s_max, notes) -> np.ndarray:
    """A Kummell cleft: a flat ellipsoidal gas gap of CLEFT_THICKNESS_MM under the superior band."""
    u_c = 0.65 if kind == "wedge" else 0.5
    l_c, a_c = fr.cols.l_mid, fr.cols.a_post + u_c * fr.cols.depth
    ell = ((fr.lv - l_c) / (CLEFT_LATERAL_SEMI * fr.cols.width)) ** 2 + (
        (fr.av - a_c) / (CLEFT_AP_SEMI * fr.cols.depth)) ** 2 <= 1.0
    thick = max(CLEFT_THICKNESS_MM, s_max)
    under = new_top - t_top
    layer = (fr.hv < under) & (fr.hv >= under - thick)
    cl = alive & ell & layer & np.isin(zone_cols, (ZONE_INTACT, ZONE_DAMAGED))
    if not cl.any():
        notes.append("cleft: no voxel fits under the band")
    return cl


def _conserve_mass(hu, zone, body_new, mass_before, vv, cal) -> tuple[float, float]:
    """Exact mass: the remainder goes uniformly into the band (or the body where no band exists); ``hu`` in place.
    Returns (mass before the correction, mass after), mg."""
    mass_mid = bone_mass_mg(hu, body_new, vv, cal)
    target_zone = (zone == ZONE_BAND) if np.any(zone == ZONE_BAND) else (body_new & (zone == ZONE_INTACT))
    mass_after = mass_mid
    for _ in range(4):  # a voxel below zero BMD counts only once it is above: repeat until exact
        delta_bmd = (mass_before - mass_after) * 1e3 / vv / max(int(target_zone.sum()), 1)
        hu[target_zone] += delta_bmd / cal.slope_mg_cm3_per_hu
        mass_after = bone_mass_mg(hu, body_new, vv, cal)
        if abs(mass_after - mass_before) <= 1e-9 * mass_before:
            break
    return mass_mid, mass_after


def _mark(zone, fr: _Frame, cols: np.ndarray, value: int) -> None:
    """Set ``zone`` to ``value`` at the voxels of the level's columns where ``cols`` is True."""
    ix = fr.idx
    zone[ix[0][cols], ix[1][cols], ix[2][cols]] = value


def _apply(ct, seg, body, fr: _Frame, kind, amp, grade, target, d_measured, cleft, endplate_break, cortical_break,
           seed, rng, numbering, min_band, calibration, notes) -> FracturedLevel:
    from ..model.materials import DEFAULT_CALIBRATION

    cal = calibration or DEFAULT_CALIBRATION
    vv = ct.voxel_volume_mm3
    vacated, band, src_h, ratio, new_top, new_bot, t_top, t_bot = _build(ct, kind, amp, fr, min_band)
    mass_before = bone_mass_mg(np.asarray(ct.data, dtype=np.float32), fr.body0, vv, cal)
    hu = _compact(ct, fr, band, src_h, ratio, cal)
    seg_new, body_map, body_new = _vacate(ct, seg, body, fr, vacated, hu)
    zone = np.zeros(ct.shape, np.uint8)
    _mark(zone, fr, band, ZONE_BAND)
    mid = 0.5 * (new_top + new_bot)
    d_top, d_bot = fr.top - new_top, new_bot - fr.bot
    damaged = (~vacated) & (~band) & (((d_top > 0) & (fr.hv >= mid)) | ((d_bot > 0) & (fr.hv <= mid)))
    _mark(zone, fr, damaged, ZONE_DAMAGED)
    spacing = np.array(ct.spacing_mm)
    s_max = float(spacing.max())
    alive = ~vacated
    if endplate_break:
        _mark(zone, fr, _endplate_crack(fr, kind, rng, alive, new_top, new_bot, t_top, t_bot, s_max), ZONE_CRACK)
    if cortical_break is not None:
        _mark(zone, fr, _cortical_crack(fr, cortical_break, rng, alive, body_new, mid, spacing, notes), ZONE_CRACK)
    cracked = zone == ZONE_CRACK
    w = min(1.0, CRACK_WIDTH_MM / float(np.mean(spacing)))
    hu[cracked] = hu[cracked] * (1 - w) + CRACK_FLUID_HU * w
    if cleft:
        cl = _cleft(fr, kind, alive, zone[fr.idx], new_top, t_top, s_max, notes)
        _mark(zone, fr, cl, ZONE_CLEFT)
        hu[fr.idx[0][cl], fr.idx[1][cl], fr.idx[2][cl]] = CLEFT_GAS_HU
    mass_mid, mass_after = _conserve_mass(hu, zone, body_new, mass_before, vv, cal)
    counts = {ZONE_NAMES[k]: int((zone == k).sum()) for k in (ZONE_BAND, ZONE_CRACK, ZONE_CLEFT, ZONE_DAMAGED)}
    counts["vacated"] = int(vacated.sum())
    src = f"{ct.source}|fracture:{fr.name}:{kind}:g{grade}"
    return FracturedLevel(
        ct=Volume(hu, ct.affine_mm, src), seg=Volume(seg_new, seg.affine_mm, src),
        body=Volume(body_map, ct.affine_mm, src), zone=Volume(zone, ct.affine_mm, src), level=fr.name, kind=kind,
        grade=grade, deformity_target=target, deformity_measured=float(d_measured), amplitude=float(amp),
        cleft=bool(cleft), endplate_break=bool(endplate_break), cortical_break=cortical_break, seed=int(seed),
        numbering=numbering, bone_mass_before_mg=mass_before, bone_mass_after_mg=mass_after,
        mass_correction_fraction=float((mass_before - mass_mid) / mass_before) if mass_before else 0.0,
        zone_voxels=counts, notes=tuple(notes),
    )
