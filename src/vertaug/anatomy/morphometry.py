"""Vertebral body morphometry from a CT and its segmentation.

For every level of the label map: anterior, middle and posterior body heights (mm), body volume (mL), mean and median HU
of the trabecular core, wedge angle (deg), Genant semi-quantitative grade and morphology type, the QM ratios and a CT
density class. A level that cannot be measured (cut by the field of view, no body voxels, S1) is returned with NaNs and
the reason, never measured wrongly.

Method (each choice is a module constant below). Every direction comes from the anatomy, none from the image axes, so
the result does not change when the same voxels are given a rotated affine (tilted patient, tilted gantry):

1. Body mask: the vertebra label AND the ``vertebrae_body`` label (TotalSegmentator) where that file is given. Without
   it, the vertebra label is projected along the level's height axis; the vertebral canal is the hole of that projection
   (the ring of pedicles and laminae), and the body is the part of the vertebra in front of the canal's anterior wall
   (pedicles, laminae, transverse and spinous processes all lie behind it), largest component. The anterior direction
   for this cut runs from the canal centre to the deepest point of the vertebra (maximum of its distance transform,
   inside the body). If no canal is found (posterior elements cut by the field of view or not segmented), the vertebra
   opened by ``BODY_OPENING_MM`` (pedicles, laminae and processes are thinner and vanish), grown back inside the label.
   ``LevelMorphometry.body_source`` says which was used.
2. Local frame: the height axis ``h`` joins the body centroids of the neighbouring levels (cranial minus caudal; one
   neighbour and this level if only one exists; the body's least principal axis if none, the only case where the
   image's superior axis picks the sign). The anterior axis ``a`` runs from the canal centre to the body centroid
   (else from the posterior elements' centroid; the image's anterior axis only as a last resort, with a note), made
   orthogonal to ``h``; ``l = h x a`` is lateral.
   ``h`` follows the spine's curve at the level, i.e. the bisector of the two endplate normals, so heights are measured
   perpendicular to the endplates (for a wedged body: to their mean plane).
3. The body mask is resampled in that frame (trilinear, threshold 0.5, step ``SAMPLE_STEP_VOXELS`` voxel). In the
   mid-sagittal band (``|l|`` within ``LATERAL_BAND_FRACTION`` of the body width) heights are measured. The walls are
   read on the mid-sagittal line from a robust curve (``WALL_TERMS``: quadratic across, the posterior wall's concavity
   at the canal) through the ends of the lines along ``a`` over the central ``WALL_LATERAL_FRACTION`` of the width, in
   the central ``MID_HEIGHT_FRACTION`` of the body's height, each wall then read again from the lines at the
   mid-height of the body next to it (the columns within ``WALL_ZONE_FRACTION`` of the depth, starting
   ``WALL_RIM_VOXELS`` inside the wall: a steep wedge's low anterior wall lies below the body's mid-height). A curve
   over many lines, not the outermost voxel (before issue 23) nor the median of a few central lines (issue 23's first
   fix), so that the steps of a resampled mask's rim average out; and the wall's height from columns clear of the
   rim, whose runs those steps cut short (under a 20 deg axial rotation L1's posterior wall was read 1.6 mm back and its
   grade flipped). Heights are taken along ``h`` at ``MEASUREMENT_POSITIONS`` of the depth between the
   walls from the posterior wall (15 / 50 / 85 %, as TotalSegmentator's spine report), as the median over the band's
   columns of the length of the body run through the column. Each height carries a standard uncertainty: the
   quantisation of the mask's two faces (voxel extent along ``h``, s_h^2/12 each) or the CT edge fit's (3b), plus the
   spread of the columns (scaled MAD / sqrt(n)).
3b. Sub-voxel endplates per line (``endplates="ct"``): each face is replaced by a partial-volume fit of the CT
   along the line (:func:`_ct_edge`: bone step + thin endplate, Gaussian slice profile, the model sampled at the voxel
   centres and interpolated linearly as the line is; within one voxel of the face; the line reaching no further out
   than half-way to the next vertebra of the segmentation, so that a thin posterior disc's far endplate does not
   enter the fit), which is not quantised to the slices. The model's endplate is ``ENDPLATE_THICKNESS_MM`` thick; a
   thicker dense plate reads up to half its excess inside each face (docs/anatomy.md has the phantom errors at 1, 2
   and 3 mm slices: within a third of the slice). ``endplates="mask"`` keeps the mask's faces. The deformity carries the heights' propagated uncertainty and a
   ``grade_borderline`` flag when a band edge lies within one standard uncertainty.
3c. ``method="totalseg"``: heights as TotalSegmentator's spine report takes them (:func:`measure_body_heights_totalseg`,
   constants ``TS_*``): single chords in the sagittal slice (normal to ``l``) whose three heights differ most, at
   15 / 50 / 85 % of the AP chord of the body eroded by 3 mm; ``ratio_min_max`` < 0.8 is that report's flag.
3d. ``endplates="surface"`` (the default; :mod:`vertaug.anatomy.endplates`): the endplates as surfaces. The CT edge
   model of 3b is fitted along columns every half voxel over the central half of the width and 5..95 % of the depth
   between the walls of step 3 (about each column's mask face, searched within a voxel of a smooth surface through the
   faces, so a resampled mask's stepped rim does not set a height), the points fitted by robust least-squares surfaces
   and read by local planes at the Genant positions. Under resampled rotations of the bundled CT it keeps every L1..L5
   height within 1.7 mm (one voxel is 3 mm) and L1's wedge deformity within 0.207..0.240 (with the median walls before
   the wall curve of step 3: 2.4 mm, 0.208..0.264); the per-line fit of 3b moved a height by up to 2.3 mm and L1 within
   0.228..0.353 with the median walls (docs/anatomy.md).
4. Wedge angle: the angle between the superior and inferior endplate lines, each through its points at the posterior and
   anterior positions; positive when the anterior height is the smaller (kyphotic).
5. HU: mean and median over the body eroded by ``HU_CORE_EROSION_MM`` (away from cortex and endplates).
6. Genant (Genant 1993, docs/references.md): wedge deformity 1 - Ha/Hp, biconcave
   1 - Hm/Hp (reference: the posterior height of the same body), crush 1 - Hp/Hp_ref with Hp_ref the mean posterior height
   of the evaluable neighbours. The largest deformity names the type; grade 0 below 20 %, 1 for 20-25 %, 2 for 25-40 %,
   3 above 40 %. Genant defined the method for T4..L4; other levels are graded with a note.
7. CT density class on the trabecular core: Pickhardt et al. 2013 (Ann Intern Med 158:588) at L1, in 1867 adults of one
   US academic centre with DXA within 6 months: <= 160 HU was 90 % sensitive and <= 110 HU > 90 % specific for DXA
   osteoporosis. "normal" above 160 HU, "osteoporosis" at or below 110 HU, "osteopenia" (indeterminate) between.
   Defined at L1; other levels get a note (docs/anatomy.md: level-specific reference values).

Sources: Genant HK et al. 1993 J Bone Miner Res 8:1137; Pickhardt PJ et al. 2013 Ann Intern Med 158:588; Silva MJ et
al. 1994 Bone 15:409 (endplate thickness ~0.35 mm in L1 over age 45); TotalSegmentator (Wasserthal et al. 2023 Radiol
Artif Intell 5:e230024), spine_report/measure_verte_height.py (the 15/50/85 % method of 3c).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.special import erf

from ..errors import EmptyMaskError, LevelNotFoundError, ParameterError
from .endplates import (
    COLUMN_STEP_VOXELS,
    EDGE_MIN_CONTRAST_HU,
    EDGE_MODEL_ERROR_VOXELS,
    EDGE_SEARCH_VOXELS,
    EDGE_SIGMA_MIN_MM,
    EDGE_SIGMA_VOXELS,
    EDGE_WINDOW_MM,
    ENDPLATE_THICKNESS_MM,
    FIT_LATERAL_FRACTION,
    FIT_U_RANGE,
    LOCAL_HALF_VOXELS,
    SURFACE_TERMS,
    ColumnGrid,
    LineSampler,
    ct_surface,
    fit_surface,
    local_surface,
)
from .io import Volume, load_ct, load_labels
from .levels import BODY_LABEL, LEVELS, in_genant_range, label_table, normalize_level

__all__ = [
    "BodyHeights",
    "LevelMorphometry",
    "SpineMorphometry",
    "measure_body_heights",
    "measure_spine",
    "measure_volumes",
    "genant_from_heights",
    "density_class",
]

#: Fractions of the anterior-posterior body extent, from the posterior wall, where heights are measured.
MEASUREMENT_POSITIONS = {"posterior": 0.15, "middle": 0.50, "anterior": 0.85}
#: Central fraction of the body width (lateral) over which columns are sampled; the height is their median.
LATERAL_BAND_FRACTION = 0.20
#: Half-width of the AP window (fraction of the AP extent) around each measurement position.
AP_WINDOW_FRACTION = 0.03
#: The AP extent is taken in this central fraction of the body's height (clear of endplate rims and osteophytes).
MID_HEIGHT_FRACTION = 0.5
#: Resampling step of the body mask in the local frame, as a fraction of the smallest voxel spacing.
SAMPLE_STEP_VOXELS = 0.25
#: ... but never finer than this (mm): finer sampling costs time and adds nothing at clinical resolution.
MIN_SAMPLE_STEP_MM = 0.25
#: Erosion of the body before HU statistics (mm), to stay clear of the cortex and endplates.
HU_CORE_EROSION_MM = 4.0
#: Opening radius (mm) that separates the body from the posterior elements when no body segmentation is given.
BODY_OPENING_MM = 8.0
#: Genant semi-quantitative grade thresholds on the deformity (height reduction fraction).
GENANT_THRESHOLDS = (0.20, 0.25, 0.40)
#: Pickhardt 2013 L1 trabecular attenuation thresholds (Ann Intern Med 158:588): <= 160 HU was 90 % sensitive and
#: <= 110 HU more than 90 % specific for DXA osteoporosis. Above 160: "normal"; <= 110: "osteoporosis"; between:
#: "osteopenia" (indeterminate). (The 135 / 90 HU used before are not in that paper's results.)
PICKHARDT_NORMAL_HU = 160.0
PICKHARDT_OSTEOPOROSIS_HU = 110.0
#: A level cut by the field of view still steers its neighbours' height axis if this fraction of a typical body is in view.
NEIGHBOUR_MIN_VOLUME_FRACTION = 0.5
#: Grid of the projected vertebra in which the canal is sought (mm; at least half the smallest voxel spacing).
CANAL_GRID_MM = 1.0
#: Smallest hole accepted as the canal (mm^2); an adult lumbar or thoracic canal is ~150-300 mm^2, a C-level ~200.
CANAL_MIN_AREA_MM2 = 40.0
#: Posterior elements whose centroid lies closer than this to the body's (mm) do not define an anterior direction.
POSTERIOR_MIN_OFFSET_MM = 5.0
#: Each wall is re-read from the lines at the mid-height of the body next to it: the columns within this fraction of
#: the depth from the wall give that height (a steep wedge's anterior wall is lower than the body's mid-height).
WALL_ZONE_FRACTION = 0.1
#: The walls are read on the mid-sagittal line from a curve fitted across this central fraction of the body's width
#: (the endplate surfaces' band): a narrow band of lines meets the same few voxels of a resampled mask's stepped rim.
WALL_LATERAL_FRACTION = 0.5
#: The wall curve across the width (powers of the lateral offset): the posterior wall's concavity at the canal.
WALL_TERMS = ((0, 0), (0, 1), (0, 2))
#: The columns that give a wall's height start this many voxel extents (along a) inside the wall: the outer half voxel
#: holds the mask's rim, whose steps in a nearest-neighbour resampled mask cut those columns' runs short (issue 23:
#: L1's posterior wall was read at the wrong height and 1.6 mm too far back under a 20 deg axial rotation).
WALL_RIM_VOXELS = 0.5
#: Surface positions tried within one voxel either side of the mask's face (``endplates="ct"``, per line).
EDGE_GRID_POINTS = 41
#: A body smaller than this is not measured (partial segmentation or a fragment).
MIN_BODY_VOLUME_ML = 2.0

_NAN = float("nan")


@dataclass(frozen=True)
class LevelMorphometry:
    """Morphometry of one vertebral level. Heights in mm, volume in mL, HU, angle in degrees; NaN where not measured."""

    level: str
    label: int
    evaluable: bool
    reason: str = ""
    height_anterior_mm: float = _NAN
    height_middle_mm: float = _NAN
    height_posterior_mm: float = _NAN
    height_anterior_uncertainty_mm: float = _NAN
    height_middle_uncertainty_mm: float = _NAN
    height_posterior_uncertainty_mm: float = _NAN
    endplate_method: str = ""
    body_source: str = ""
    ap_depth_mm: float = _NAN
    width_mm: float = _NAN
    volume_ml: float = _NAN
    hu_mean: float = _NAN
    hu_median: float = _NAN
    core_voxels: int = 0
    wedge_angle_deg: float = _NAN
    genant_grade: int | None = None
    genant_type: str | None = None
    deformity: float = _NAN
    deformity_wedge: float = _NAN
    deformity_biconcave: float = _NAN
    deformity_crush: float = _NAN
    deformity_uncertainty: float = _NAN  # standard uncertainty of ``deformity`` from the heights' uncertainties
    grade_borderline: bool = False  # a Genant band edge lies within one standard uncertainty of the deformity
    ratio_ha_hp: float = _NAN
    ratio_hm_hp: float = _NAN
    ratio_hp_above: float = _NAN
    ratio_hp_below: float = _NAN
    ratio_min_max: float = _NAN  # smallest / largest of the three heights (TotalSegmentator flags < 0.8)
    density_class: str | None = None
    notes: tuple[str, ...] = ()
    centroid_mm: tuple[float, float, float] = (_NAN, _NAN, _NAN)
    height_axis: tuple[float, float, float] = (_NAN, _NAN, _NAN)
    anterior_axis: tuple[float, float, float] = (_NAN, _NAN, _NAN)
    height_axis_source: str = ""
    anterior_axis_source: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return d


@dataclass(frozen=True)
class SpineMorphometry:
    """All levels of one scan, cranial to caudal."""

    levels: dict[str, LevelMorphometry]
    ct_source: str
    seg_source: str
    body_source: str | None
    numbering: str
    spacing_mm: tuple[float, float, float]
    method: dict = field(default_factory=dict)

    def __getitem__(self, level: str) -> LevelMorphometry:
        name = normalize_level(level)
        if name not in self.levels:
            raise LevelNotFoundError(
                f"Level {name} is not in the segmentation '{self.seg_source}' (present: {', '.join(self.levels)}).",
                "choose a level that is present, or check the --numbering (v1 or v2) of the label map.",
            )
        return self.levels[name]

    def evaluable(self) -> list[LevelMorphometry]:
        return [m for m in self.levels.values() if m.evaluable]

    def as_dict(self) -> dict:
        return {
            "ct": self.ct_source,
            "segmentation": self.seg_source,
            "body_segmentation": self.body_source,
            "numbering": self.numbering,
            "spacing_mm": list(self.spacing_mm),
            "method": self.method,
            "levels": {k: v.as_dict() for k, v in self.levels.items()},
        }


# ------------------------------------------------------------------------------------------------------- public entry


def measure_spine(
    ct: str | Path | Volume,
    seg: str | Path | Volume,
    body: str | Path | Volume | None = None,
    numbering: str = "v2",
    endplates: str = "surface",
    method: str = "vertaug",
) -> SpineMorphometry:
    """Measure every vertebral level present in ``seg`` (paths are loaded; Volumes are used as given).
    ``endplates``: "surface" (the default: CT edge points fitted by endplate surfaces, step 3d of the module
    docstring), "ct" (sub-voxel edge fit of the CT per line, step 3b) or "mask" (the segmentation's faces). ``method``: "vertaug" (steps 3-4) or "totalseg" (TotalSegmentator's spine report's way, step 3c)."""
    _check_endplates(endplates)
    _check_method(method)
    ct_vol = ct if isinstance(ct, Volume) else load_ct(ct)
    seg_vol = seg if isinstance(seg, Volume) else load_labels(seg, ct_vol, "segmentation")
    body_vol = None
    if body is not None:
        body_vol = body if isinstance(body, Volume) else load_labels(body, ct_vol, "vertebrae_body segmentation")
    return measure_volumes(ct_vol, seg_vol, body_vol, numbering, endplates, method)


ENDPLATE_METHODS = ("mask", "ct", "surface")
HEIGHT_METHODS = ("vertaug", "totalseg")


def _check_method(method: str) -> None:
    if method not in HEIGHT_METHODS:
        raise ParameterError(f"Unknown height method {method!r}.",
                             "use 'vertaug' (median of lines, default) or 'totalseg' (TotalSegmentator spine report).")


def _check_endplates(endplates: str) -> None:
    if endplates not in ENDPLATE_METHODS:
        raise ParameterError(f"Unknown endplate method {endplates!r}.",
                             "use 'mask' (segmentation faces), 'ct' (sub-voxel CT edge fit per line) or 'surface' "
                             "(CT edge points fitted by endplate surfaces).")


def measure_volumes(
    ct: Volume, seg: Volume, body: Volume | None = None, numbering: str = "v2", endplates: str = "surface",
    method: str = "vertaug",
) -> SpineMorphometry:
    from .io import check_same_grid

    _check_endplates(endplates)
    _check_method(method)
    check_same_grid(ct, seg)
    if body is not None:
        check_same_grid(ct, body)
    table = label_table(numbering)
    present = set(np.unique(seg.data).tolist())
    levels = [name for name in LEVELS if table.get(name) in present]
    if not levels:
        raise EmptyMaskError(
            f"The segmentation '{seg.source}' holds no vertebra labels of TotalSegmentator numbering {numbering} "
            f"(labels found: {sorted(present)[:12]}).",
            "give TotalSegmentator's multilabel output (task 'total'), or use --numbering v1 for TotalSegmentator 1.x.",
        )
    verts = {name: seg.data == table[name] for name in levels}
    found = {name: _body_and_source(verts[name], body, ct.spacing_mm) for name in levels}
    frames = _frames(levels, verts, {n: f[0] for n, f in found.items()}, ct.affine_mm)
    # Levels without a usable body map: cut at the canal along the first axes, then along the axes of the cut bodies
    # (those axes are kept as final, so that a caller cutting along the reported height axis gets the same body).
    if any(f[1] != BODY_FROM_MAP for f in found.values()):
        for last in (False, True):
            found = {n: found[n] if found[n][1] == BODY_FROM_MAP else _body_and_source(
                verts[n], None, ct.spacing_mm, ct.affine_mm, frames[n].h if n in frames else None) for n in levels}
            frames = _frames(levels, verts, {n: f[0] for n, f in found.items()}, ct.affine_mm, frames if last else None)
    first = {}
    bones = np.logical_or.reduce([verts[n] for n in levels])  # the endplate fit stops half-way to the next vertebra
    for name in levels:
        first[name] = _measure_level(name, table[name], ct, found[name], frames.get(name), endplates != "mask",
                                     method, bones & ~verts[name], endplates == "surface")
    final = _add_genant(first, levels)
    method = {
        "measurement_positions_from_posterior": MEASUREMENT_POSITIONS,
        "lateral_band_fraction": LATERAL_BAND_FRACTION,
        "hu_core_erosion_mm": HU_CORE_EROSION_MM,
        "genant_thresholds": list(GENANT_THRESHOLDS),
        "pickhardt_hu": {"normal_min": PICKHARDT_NORMAL_HU, "osteoporosis_below": PICKHARDT_OSTEOPOROSIS_HU},
        "body_mask": "vertebra AND vertebrae_body==1" if body is not None
        else "vertebra anterior of its canal (pedicles cut where they meet the body), largest component",
        "height_axis": "spine axis through the neighbouring body centroids",
        "anterior_axis": "canal centre to body centroid, orthogonal to the height axis",
        "heights": method,
        "endplates": {"mask": "segmentation faces",
                      "ct": "partial-volume edge fit of the CT (step + thin endplate, Gaussian blur) along each "
                            "measurement line",
                      "surface": "CT edge points over the central endplate fitted by robust least-squares surfaces, "
                                 "read at the Genant positions"}[endplates],
    }
    return SpineMorphometry(
        levels=final,
        ct_source=ct.source,
        seg_source=seg.source,
        body_source=None if body is None else body.source,
        numbering=numbering,
        spacing_mm=ct.spacing_mm,
        method=method,
    )


# ------------------------------------------------------------------------------------------------------- body masks


def _ball(radius_mm: float, spacing_mm: tuple[float, float, float]) -> np.ndarray:
    r = [max(1, int(math.floor(radius_mm / s))) for s in spacing_mm]
    g = np.ogrid[tuple(slice(-ri, ri + 1) for ri in r)]
    d2 = sum((gi * s / radius_mm) ** 2 for gi, s in zip(g, spacing_mm))
    ball = d2 <= 1.0
    if ball.sum() <= 1:  # radius below one voxel: use the 6-neighbourhood
        ball = ndimage.generate_binary_structure(3, 1)
    return ball


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == (1 + int(np.argmax(sizes)))


#: How a level's body was separated from its posterior elements (LevelMorphometry.body_source).
BODY_FROM_MAP = "vertebrae_body map"
BODY_FROM_CANAL = "segmentation: cut at the canal's anterior wall"
BODY_FROM_OPENING = f"segmentation: opened by {BODY_OPENING_MM:g} mm (no canal found)"


def _body_mask(vertebra: np.ndarray, body: Volume | None, spacing_mm, affine_mm=None, height_axis=None) -> np.ndarray:
    """The vertebral body of one level (see :func:`_body_and_source`)."""
    return _body_and_source(vertebra, body, spacing_mm, affine_mm, height_axis)[0]


def _body_and_source(vertebra, body, spacing_mm, affine_mm=None, height_axis=None) -> tuple[np.ndarray, str]:
    """The body from the ``vertebrae_body`` map when given; else, with the level's height axis, the vertebra anterior of
    its canal (:func:`_body_from_canal`); else (or if no canal is found) the opening method; and which was used."""
    if body is not None:
        m = vertebra & (body.data == BODY_LABEL)
        if m.sum() > 0.1 * vertebra.sum():
            return _largest_component(m), BODY_FROM_MAP
    if not vertebra.any():
        return vertebra, ""
    if affine_mm is not None and height_axis is not None and np.all(np.isfinite(height_axis)):
        cut = _body_from_canal(vertebra, np.asarray(affine_mm, float), np.asarray(height_axis, float))
        if cut is not None:
            return cut, BODY_FROM_CANAL
    return _body_by_opening(vertebra, spacing_mm), BODY_FROM_OPENING


def _bbox(mask: np.ndarray, pad) -> tuple[slice, ...]:
    idx = _argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _body_from_canal(vertebra: np.ndarray, affine_mm: np.ndarray, h: np.ndarray) -> np.ndarray | None:
    """Body without a body map: the vertebra voxels anterior of the canal's anterior wall, largest component.

    The canal is the hole of the vertebra projected along the spine axis; the pedicles, laminae, transverse and spinous
    processes all lie behind its anterior wall (the posterior wall of the body), the body in front of it. The anterior
    direction is from the canal centre to the deepest point of the vertebra (the maximum of its distance transform,
    inside the body: the thickest part of a vertebra). None if no canal is found."""
    h = h / np.linalg.norm(h)
    box = _bbox(vertebra, 1)
    v = vertebra[box]
    aff = affine_mm.copy()
    aff[:3, 3] = affine_mm[:3, :3] @ np.array([b.start for b in box], float) + affine_mm[:3, 3]
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    dist = ndimage.distance_transform_edt(v, sampling=spacing)
    deep = np.array(np.unravel_index(int(np.argmax(dist)), v.shape), float)
    p = aff[:3, :3] @ deep + aff[:3, 3]
    canal = _find_canal(v, aff, p, h)
    if canal is None:
        return None
    a = p - canal.centre_mm
    a = a - (a @ h) * h
    a /= np.linalg.norm(a)
    ijk = _argwhere(v)
    along = (ijk @ aff[:3, :3].T + aff[:3, 3] - p) @ a
    keep = np.zeros_like(v)
    sel = along >= canal.front_mm
    keep[tuple(ijk[sel].T)] = True
    if not keep.any():
        return None
    out = np.zeros_like(vertebra)
    out[box] = _largest_component(keep)
    return out


def _body_by_opening(vertebra: np.ndarray, spacing_mm) -> np.ndarray:
    ball = _ball(BODY_OPENING_MM, spacing_mm)
    pad = np.array(ball.shape) // 2 + 1
    box = _bbox(vertebra, pad)  # work on the level's bounding box only
    v = vertebra[box]
    core = ndimage.binary_opening(v, structure=ball)
    out = np.zeros_like(vertebra)
    if not core.any():
        out[box] = _largest_component(v)
        return out
    core = _largest_component(core)
    grown = ndimage.binary_dilation(core, structure=ball) & v
    out[box] = _largest_component(grown)
    return out


def _argwhere(mask: np.ndarray) -> np.ndarray:
    """``np.argwhere(mask)``: the same indices in the same order, dtype and memory layout (the transpose of the index
    arrays), found through the flat indices: a 3-D ``nonzero`` costs ~2.5x a flat one with its unravelling."""
    mask = np.asarray(mask)
    return np.transpose(np.unravel_index(np.flatnonzero(mask), mask.shape))


def _centroid_mm(mask: np.ndarray, affine_mm: np.ndarray) -> np.ndarray | None:
    if not mask.any():
        return None
    ijk = _argwhere(mask).mean(axis=0)
    return affine_mm[:3, :3] @ ijk + affine_mm[:3, 3]


def _touches_border(mask: np.ndarray) -> str | None:
    names = ("right-left (x)", "anterior-posterior (y)", "superior-inferior (z)")
    for ax in range(3):
        lo = mask[(slice(None),) * ax + (0,)].any()  # views of the two faces (np.take copied them: ~150x slower)
        hi = mask[(slice(None),) * ax + (-1,)].any()
        if lo or hi:
            return f"the body touches the {'lower' if lo else 'upper'} image border along {names[ax]}"
    return None


# ------------------------------------------------------------------------------------------------------- frame


def _height_axis(name: str, centroids: dict, levels: list[str], mask: np.ndarray, affine_mm) -> tuple[np.ndarray, str]:
    """Cranial unit vector of a level from the neighbouring body centroids (the spine axis), and how it was found."""
    i = levels.index(name)
    here = centroids.get(name)
    above = centroids.get(levels[i - 1]) if i > 0 and _adjacent(levels[i - 1], name) else None
    below = centroids.get(levels[i + 1]) if i + 1 < len(levels) and _adjacent(name, levels[i + 1]) else None
    if above is not None and below is not None:
        axis, how = above - below, "spine axis through the centroids of the level above and below"
    elif above is not None and here is not None:
        axis, how = above - here, "spine axis from this level to the level above"
    elif below is not None and here is not None:
        axis, how = here - below, "spine axis from the level below to this level"
    else:
        # No neighbour: the body's least principal axis; its sign (which end is cranial) is not in the anatomy of
        # one body, so the world's superior direction decides it.
        pts = (affine_mm[:3, :3] @ _argwhere(mask).T).T
        evals, evecs = np.linalg.eigh(np.cov(pts.T))
        axis = evecs[:, 0]
        sup = np.array([0.0, 0.0, 1.0])  # RAS+ world
        axis = axis if axis @ sup >= 0 else -axis
        how = "least principal axis of the body (no neighbour); cranial sign from the image's superior axis"
    return axis / np.linalg.norm(axis), how


def _adjacent(upper: str, lower: str) -> bool:
    return LEVELS.index(lower) - LEVELS.index(upper) == 1


def _frame(h: np.ndarray, anterior=None) -> tuple[np.ndarray, np.ndarray]:
    """(anterior, lateral) unit vectors orthogonal to ``h``; ``anterior`` is the level's anatomical anterior direction
    (from :func:`_anterior_axis`); without it the world anterior (+y in RAS+) is used (legacy callers only)."""
    a = np.array([0.0, 1.0, 0.0]) if anterior is None else np.asarray(anterior, float)
    a = a - (a @ h) * h
    if np.linalg.norm(a) < 0.3:  # height axis nearly anterior: degenerate scan orientation
        a = np.array([1.0, 0.0, 0.0]) - h[0] * h
    a /= np.linalg.norm(a)
    lat = np.cross(h, a)
    return a, lat / np.linalg.norm(lat)


@dataclass(frozen=True)
class _LevelFrame:
    """Height (cranial) and anterior unit vectors of one level, world frame, and how each was found."""

    h: np.ndarray
    a: np.ndarray
    how_h: str
    how_a: str


def _steering_centroids(bodies: dict, affine_mm) -> dict:
    """Body centroids that may steer a neighbour's height axis: a body cut by the field of view has a biased centroid;
    it still steers (as in TotalSegmentator's spine report) when at least NEIGHBOUR_MIN_VOLUME_FRACTION of a typical
    body is in view."""
    sizes = {name: int(mask.sum()) for name, mask in bodies.items()}
    typical = float(np.median([v for v in sizes.values() if v > 0])) if any(sizes.values()) else 0.0
    return {
        name: _centroid_mm(mask, affine_mm)
        for name, mask in bodies.items()
        if sizes[name] > 0
        and (_touches_border(mask) is None or sizes[name] >= NEIGHBOUR_MIN_VOLUME_FRACTION * typical)
    }


def _frames(levels, verts, bodies, affine_mm, keep_h: dict | None = None) -> dict[str, _LevelFrame]:
    """Each level's frame from the anatomy; ``keep_h`` (frames of an earlier pass) fixes the height axes."""
    centroids = _steering_centroids(bodies, affine_mm)
    out = {}
    for name in levels:
        if not bodies[name].any():
            continue
        if keep_h is not None and name in keep_h:
            h, how_h = keep_h[name].h, keep_h[name].how_h
        else:
            h, how_h = _height_axis(name, centroids, levels, bodies[name], affine_mm)
        a, how_a, _ = _anterior_axis(verts[name], bodies[name], affine_mm, h)
        out[name] = _LevelFrame(h, a, how_h, how_a)
    return out


@dataclass(frozen=True)
class _Canal:
    """The vertebral canal of one level, found as the hole of the vertebra projected along the height axis."""

    centre_mm: np.ndarray  # world point (on the plane through the body centroid)
    front_mm: float  # anterior limit of the canal, along the anterior axis, from the body centroid (negative)
    area_mm2: float


def _in_plane_basis(h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    seed = np.eye(3)[int(np.argmin(np.abs(h)))]
    e1 = seed - (seed @ h) * h
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(h, e1)


def _projected_points(mask: np.ndarray, affine_mm: np.ndarray, step_mm: float) -> np.ndarray:
    """World points filling each voxel of ``mask`` at about ``step_mm`` (voxel centres plus sub-voxel points)."""
    spacing = np.linalg.norm(affine_mm[:3, :3], axis=0)
    n_sub = [max(1, int(math.ceil(s / step_mm))) for s in spacing]
    offs = np.stack(np.meshgrid(*[(np.arange(n) + 0.5) / n - 0.5 for n in n_sub], indexing="ij"), -1).reshape(-1, 3)
    ijk = _argwhere(mask).astype(float)
    pts = (ijk[:, None, :] + offs[None, :, :]).reshape(-1, 3)
    return pts @ affine_mm[:3, :3].T + affine_mm[:3, 3]


def _find_canal(vertebra: np.ndarray, affine_mm: np.ndarray, centre: np.ndarray, h: np.ndarray) -> _Canal | None:
    """The canal: the largest hole (>= CANAL_MIN_AREA_MM2) of the vertebra projected along ``h``; None if the ring of
    pedicles and laminae is not closed (cut by the field of view, or a segmentation without posterior elements)."""
    if not vertebra.any():
        return None
    spacing = np.linalg.norm(affine_mm[:3, :3], axis=0)
    g = max(CANAL_GRID_MM, 0.5 * float(spacing.min()))
    e1, e2 = _in_plane_basis(h)
    pts = _projected_points(vertebra, affine_mm, g) - centre
    uv = np.stack([pts @ e1, pts @ e2], axis=1)
    lo = uv.min(axis=0) - 2 * g
    ij = np.floor((uv - lo) / g).astype(int)
    img = np.zeros(tuple(ij.max(axis=0) + 3), bool)
    img[ij[:, 0], ij[:, 1]] = True
    img = ndimage.binary_closing(img, iterations=1, border_value=0) | img
    holes = ndimage.binary_fill_holes(img) & ~img
    lab, n = ndimage.label(holes)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel())[1:]
    k = int(np.argmax(sizes))
    area = float(sizes[k]) * g * g
    if area < CANAL_MIN_AREA_MM2:
        return None
    hole = _argwhere(lab == k + 1)
    huv = (hole + 0.5) * g + lo
    c_uv = huv.mean(axis=0)
    centre_canal = centre + c_uv[0] * e1 + c_uv[1] * e2
    a_uv = -c_uv / np.linalg.norm(c_uv)  # canal -> body centroid is anterior
    front = float((huv @ a_uv).max() + g / 2)
    return _Canal(centre_canal, front, area)


def _anterior_axis(vertebra, body, affine_mm, h) -> tuple[np.ndarray, str, _Canal | None]:
    """Anterior unit vector of a level from its own anatomy (orthogonal to ``h``) and how it was found.

    The canal -> body direction when the canal is found; else the posterior elements -> body direction; the world's
    anterior axis only as the last resort (said in the notes)."""
    centre = _centroid_mm(body, affine_mm)
    canal = _find_canal(vertebra, affine_mm, centre, h)
    if canal is not None:
        v = centre - canal.centre_mm
        v = v - (v @ h) * h
        if np.linalg.norm(v) > 0:
            return v / np.linalg.norm(v), "canal centre to body centroid", canal
    post = vertebra & ~body
    if post.sum() > 0.05 * vertebra.sum():
        v = centre - _centroid_mm(post, affine_mm)
        v = v - (v @ h) * h
        if np.linalg.norm(v) > POSTERIOR_MIN_OFFSET_MM:
            return v / np.linalg.norm(v), "posterior-elements centroid to body centroid", None
    a, _ = _frame(h)
    return a, "world anterior axis (no canal or posterior elements found)", None


# ------------------------------------------------------------------------------------------------------- one level


def _not_evaluable(name: str, label: int, reason: str, **kw) -> LevelMorphometry:
    return LevelMorphometry(level=name, label=label, evaluable=False, reason=reason, **kw)


def _measure_level(name, label, ct: Volume, found, frame: _LevelFrame | None, ct_edges: bool,
                   method: str = "vertaug", others: np.ndarray | None = None, surface: bool = False
                   ) -> LevelMorphometry:
    body, body_source = found
    if name == "S1":
        return _not_evaluable(name, label, "S1 is a sacral segment: body heights and Genant grading apply to C2..L5")
    if not body.any() or frame is None:
        return _not_evaluable(name, label, "no body voxels in the segmentation for this level")
    volume_ml = float(body.sum()) * ct.voxel_volume_mm3 / 1000.0
    border = _touches_border(body)
    if border is not None:
        return _not_evaluable(
            name, label, f"cut by the field of view: {border}", volume_ml=volume_ml
        )
    if volume_ml < MIN_BODY_VOLUME_ML:
        return _not_evaluable(
            name, label, f"body volume {volume_ml:.2f} mL is below {MIN_BODY_VOLUME_ML} mL: partial segmentation"
        )
    h, a = frame.h, frame.a
    if method == "totalseg":
        bh = measure_body_heights_totalseg(body, ct.affine_mm, h, a)
    else:
        bh = measure_body_heights(body, ct.affine_mm, h, a, ct=ct.data if ct_edges else None, others=others,
                                  surface=surface)
    if bh is None:
        return _not_evaluable(name, label, "the body has no measurable mid-sagittal extent", volume_ml=volume_ml)
    centre = _centroid_mm(body, ct.affine_mm)
    ha, hm, hp = bh.anterior_mm, bh.middle_mm, bh.posterior_mm
    hu_mean, hu_median, n_core, core_note = _core_hu(ct, body)
    notes = [core_note] if core_note else []
    if frame.how_a.startswith("world"):
        notes.append("anterior direction taken from the image axes: no canal or posterior elements found")
    if frame.how_h.startswith("least principal"):
        notes.append("no neighbouring level: height axis from the body's own shape")
    dens = density_class(hu_mean)
    if name != "L1" and dens is not None:
        notes.append("density class uses Pickhardt 2013 thresholds defined at L1 (docs/anatomy.md)")
    if not in_genant_range(name):
        notes.append("Genant's method was defined for T4..L4; grade given for information")
    return LevelMorphometry(
        level=name,
        label=label,
        evaluable=True,
        height_anterior_mm=ha,
        height_middle_mm=hm,
        height_posterior_mm=hp,
        height_anterior_uncertainty_mm=bh.anterior_uncertainty_mm,
        height_middle_uncertainty_mm=bh.middle_uncertainty_mm,
        height_posterior_uncertainty_mm=bh.posterior_uncertainty_mm,
        endplate_method=bh.endplate_method,
        body_source=body_source,
        ap_depth_mm=bh.ap_depth_mm,
        width_mm=bh.width_mm,
        volume_ml=volume_ml,
        hu_mean=hu_mean,
        hu_median=hu_median,
        core_voxels=n_core,
        wedge_angle_deg=bh.wedge_angle_deg,
        ratio_ha_hp=ha / hp if hp > 0 else _NAN,
        ratio_hm_hp=hm / hp if hp > 0 else _NAN,
        ratio_min_max=min(ha, hm, hp) / max(ha, hm, hp),
        density_class=dens,
        notes=tuple(notes),
        centroid_mm=tuple(float(v) for v in centre),
        height_axis=tuple(float(v) for v in h),
        anterior_axis=tuple(float(v) for v in a),
        height_axis_source=frame.how_h,
        anterior_axis_source=frame.how_a,
    )


@dataclass(frozen=True)
class BodyHeights:
    """Heights of one body along its own axes (mm), the wedge angle (deg, positive kyphotic), AP depth and width (mm),
    each height's standard uncertainty (mm) and how the endplates were located."""

    anterior_mm: float
    middle_mm: float
    posterior_mm: float
    wedge_angle_deg: float
    ap_depth_mm: float
    width_mm: float
    anterior_uncertainty_mm: float = _NAN
    middle_uncertainty_mm: float = _NAN
    posterior_uncertainty_mm: float = _NAN
    endplate_method: str = "mask"


def measure_body_heights(
    body: np.ndarray, affine_mm: np.ndarray, height_axis, anterior_axis, ct: np.ndarray | None = None,
    others: np.ndarray | None = None, surface: bool = True,
) -> BodyHeights | None:
    """THE height measurement: anterior, middle and posterior heights and the wedge angle of a body mask.

    ``height_axis`` and ``anterior_axis`` are unit vectors in the world (RAS+ mm) frame of ``affine_mm``; the anterior
    axis is made orthogonal to the height axis. Method: steps 3 and 4 of the module docstring. With ``ct`` (HU, the
    grid of ``body``) the endplates are the CT's sub-voxel endplate surfaces (step 3d, ``surface=True``, the default)
    or the CT edge fit per measurement line (step 3b, ``surface=False``); ``others`` (the other vertebrae's voxels)
    stops each line's fit half-way to the next vertebra; without ``ct``, the mask's faces. The morphometry
    of a CT and the heights of the voxel model before and after a procedure (:mod:`vertaug.model.heights`) both call
    this, so that "before" and "after" are measured the same way along the same spine axis. None if the body has no
    measurable mid-sagittal extent.
    """
    if not np.asarray(body).any():
        return None
    h = np.asarray(height_axis, float)
    h = h / np.linalg.norm(h)
    a = np.asarray(anterior_axis, float)
    a = a - (a @ h) * h
    a = a / np.linalg.norm(a)
    lat = np.cross(h, a)
    aff = np.asarray(affine_mm, float)
    pad = 3 if ct is None else 3 + int(math.ceil(_reach_mm(aff, h) / float(np.linalg.norm(aff[:3, :3], axis=0).min())))
    box = _bbox(body, pad)  # the level's box only (and the CT lines' reach): the same measurement, far fewer voxels
    aff = aff.copy()
    aff[:3, 3] = aff[:3, :3] @ np.array([b.start for b in box], float) + aff[:3, 3]
    sub = body[box]
    ct_box = None if ct is None else np.asarray(ct[box])
    others_box = None if others is None or ct is None else np.asarray(others[box])
    key = content_digest(sub, aff, h, a, np.array([surface, ct_box is None, others_box is None]),
                         *(v for v in (ct_box, others_box) if v is not None))
    if key not in _KEPT_HEIGHTS:
        _keep(key, _heights_of(sub, aff, h, a, lat, ct_box, others_box, surface))
    return _KEPT_HEIGHTS[key]


#: Heights by the content they are measured from (:func:`measure_body_heights`: the level's box of the mask, the CT
#: and the other vertebrae, the affine and the axes): a level measured again unchanged (the whole-scan morphometry
#: after a virtual fracture, of the levels the fracture left as they were) is read back, not measured again.
_KEPT_HEIGHTS: dict[str, BodyHeights | None] = {}
#: heights kept; the oldest goes first
_KEPT_HEIGHTS_SIZE = 64


def content_digest(*parts) -> str:
    """A digest of arrays: their dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=20)
    for a in parts:
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _keep(key: str, got: BodyHeights | None) -> None:
    while len(_KEPT_HEIGHTS) >= _KEPT_HEIGHTS_SIZE:
        _KEPT_HEIGHTS.pop(next(iter(_KEPT_HEIGHTS)))
    _KEPT_HEIGHTS[key] = got


def _heights_of(sub, aff, h, a, lat, ct_box, others_box, surface) -> BodyHeights | None:
    """:func:`measure_body_heights` of the level's box (``sub``, ``aff``: its affine), along unit axes h, a, lat."""
    centre = _centroid_mm(sub, aff)
    prof = _profiles(sub, aff, centre, h, a, lat, ct_box, others_box, surface)
    if prof is None:
        return None
    heights, tops, bottoms, ap_depth, width, _, sig, method = prof
    dist = (MEASUREMENT_POSITIONS["anterior"] - MEASUREMENT_POSITIONS["posterior"]) * ap_depth
    top_slope = (tops["anterior"] - tops["posterior"]) / dist
    bottom_slope = (bottoms["anterior"] - bottoms["posterior"]) / dist
    wedge = math.degrees(math.atan(bottom_slope) - math.atan(top_slope))
    return BodyHeights(heights["anterior"], heights["middle"], heights["posterior"], wedge, ap_depth, width,
                       sig["anterior"], sig["middle"], sig["posterior"], method)


#: TotalSegmentator spine report (measure_verte_height.py, read 2026-11-30): the AP chord is taken on the body eroded by
#: 3 mm (a cube), through the body centroid; candidate sagittal slices every 5 mm in the central half of the body's
#: width (25 % margins); the slice whose three heights differ most is kept; a level is flagged when the smallest of the
#: three heights is below 0.8 of the largest.
TS_EROSION_MM = 3.0
TS_SLICE_STEP_MM = 5.0
TS_SCAN_MARGIN = 0.25
TS_FRACTURE_RATIO = 0.8


def measure_body_heights_totalseg(body: np.ndarray, affine_mm: np.ndarray, height_axis, anterior_axis
                                  ) -> BodyHeights | None:
    """Heights the way TotalSegmentator's spine report takes them (``--method totalseg``; own code from its documented
    choices, constants ``TS_*``): in one sagittal slice, single chords of the body mask along the height axis at 15 /
    50 / 85 % of the AP chord through the centroid (the AP chord on the mask eroded by 3 mm); of the slices every 5 mm
    in the central half of the width, the one whose heights differ most. Deviation: the slices are normal to the
    level's own lateral axis (not the image's x), so the option is as rotation invariant as the default. Uncertainty:
    the two mask faces' quantisation (s_h^2/12 each); no spread (one line per height)."""
    if not np.asarray(body).any():
        return None
    h, a, lat = _unit_frame(height_axis, anterior_axis)
    box = _bbox(body, 3)
    aff = np.asarray(affine_mm, float).copy()
    aff[:3, 3] = aff[:3, :3] @ np.array([b.start for b in box], float) + aff[:3, 3]
    sub = body[box]
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    step = max(SAMPLE_STEP_VOXELS * float(spacing.min()), MIN_SAMPLE_STEP_MM)
    centre = _centroid_mm(sub, aff)
    _, grid = _frame_grid(sub, aff, centre, h, a, lat, step, 2 * float(spacing.max()))
    r = max(1, int(round(TS_EROSION_MM / step)))
    eroded = grid
    for ax in range(3):  # a cube is three 1-D erosions
        shape = [1, 1, 1]
        shape[ax] = 2 * r + 1
        eroded = ndimage.binary_erosion(eroded, structure=np.ones(shape, bool))
    core = eroded if eroded.any() else grid
    ci = _argwhere(core).mean(axis=0)
    ia, ih = int(round(ci[1])), int(round(ci[2]))
    lat_idx = np.flatnonzero(core.any(axis=(1, 2)))
    lo, hi = lat_idx[0], lat_idx[-1]
    margin = int(round(TS_SCAN_MARGIN * (hi - lo + 1)))
    stride = max(1, int(round(TS_SLICE_STEP_MM / step)))
    best = None
    for il in range(lo + margin, hi - margin + 1, stride):
        got = _ts_slice(grid[il], core[il], ia, ih, step)
        if got is not None and (best is None or np.ptp(got[0]) > np.ptp(best[0])):
            best = got
    if best is None:
        return None
    (hp, hm, ha), ap_depth, (tops, bottoms) = best
    dist = (MEASUREMENT_POSITIONS["anterior"] - MEASUREMENT_POSITIONS["posterior"]) * ap_depth
    wedge = math.degrees(math.atan((bottoms[2] - bottoms[0]) / dist) - math.atan((tops[2] - tops[0]) / dist))
    width = float((hi - lo + 1) * step)
    sig = math.sqrt(2.0) * _extent_along(aff, h) / math.sqrt(12.0)
    return BodyHeights(ha, hm, hp, wedge, ap_depth, width, sig, sig, sig, "mask (TotalSegmentator spine report)")


def _ts_slice(sl, core_sl, ia, ih, step):
    """One sagittal slice (a, h) of the TotalSegmentator-style measurement: heights at 15/50/85 % (posterior first),
    AP depth, and (tops, bottoms) of the three chords, mm from the centroid; None unless all three are found."""
    run = _run_through(core_sl[:, ih], ia)
    if run is None:
        return None
    a0, a1 = run[0] - 0.5, run[1] + 0.5
    heights, tops, bottoms = [], [], []
    for frac in (MEASUREMENT_POSITIONS["posterior"], MEASUREMENT_POSITIONS["middle"], MEASUREMENT_POSITIONS["anterior"]):
        k = int(round(a0 + frac * (a1 - a0)))
        chord = _run_through(sl[k], ih)
        if chord is None:
            return None
        tops.append((chord[1] + 0.5 - ih) * step)
        bottoms.append((chord[0] - 0.5 - ih) * step)
        heights.append(tops[-1] - bottoms[-1])
    return np.array(heights), float((a1 - a0) * step), (tops, bottoms)


def _run_through(col: np.ndarray, i: int) -> tuple[int, int] | None:
    """Bounds (inclusive) of the run of True in ``col`` that contains index ``i``; None if ``col[i]`` is False."""
    if not (0 <= i < col.size) or not col[i]:
        return None
    lo = i
    while lo > 0 and col[lo - 1]:
        lo -= 1
    hi = i
    while hi + 1 < col.size and col[hi + 1]:
        hi += 1
    return lo, hi


def _unit_frame(height_axis, anterior_axis) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    h = np.asarray(height_axis, float)
    h = h / np.linalg.norm(h)
    a = np.asarray(anterior_axis, float)
    a = a - (a @ h) * h
    a = a / np.linalg.norm(a)
    return h, a, np.cross(h, a)


def _frame_grid(body, affine_mm, centre, h, a, lat, step, margin):
    """The body mask resampled (trilinear, threshold 0.5) on a grid of ``step`` mm in the (lat, a, h) frame about
    ``centre``: the three axes (mm) and the boolean grid."""
    pts = _argwhere(body)
    world = (affine_mm[:3, :3] @ pts.T).T + affine_mm[:3, 3] - centre
    half = np.abs(world @ np.stack([lat, a, h], axis=1)).max(axis=0) + margin
    axes = [np.arange(-hv, hv + step / 2, step) for hv in half]
    L, A, H = np.meshgrid(*axes, indexing="ij")
    xyz = centre + L[..., None] * lat + A[..., None] * a + H[..., None] * h
    inv = np.linalg.inv(affine_mm)
    ijk = xyz @ inv[:3, :3].T + inv[:3, 3]
    vals = ndimage.map_coordinates(body.astype(np.float32), ijk.reshape(-1, 3).T, order=1, mode="constant", cval=0.0)
    return axes, vals.reshape(L.shape) >= 0.5


def _reach_mm(affine_mm: np.ndarray, h: np.ndarray) -> float:
    """How far (mm) the CT lines of the endplate fit reach beyond the mask's faces."""
    s_h = _extent_along(affine_mm, h)
    return (EDGE_SEARCH_VOXELS + 1.0) * s_h + EDGE_WINDOW_MM


def _extent_along(affine_mm: np.ndarray, direction: np.ndarray) -> float:
    """Extent of one voxel along a unit direction (mm): the slice spacing for a direction along the slices' normal."""
    return float(np.abs(affine_mm[:3, :3].T @ direction).sum())


@dataclass(frozen=True)
class _FrameSampling:
    """The body mask resampled in a level's (lat, a, h) frame: the sampler of the mask, the axes (mm), the mid-sagittal
    slab, width, the voxel extents along h, a and lat (mm) and the two walls (mm along a)."""

    sample: object
    l_ax: np.ndarray
    a_ax: np.ndarray
    h_ax: np.ndarray
    slab: np.ndarray
    width: float
    step: float
    s_h: float
    s_a: float
    s_l: float
    wall_post: float  # the walls (mm along a; :func:`_walls`): a robust curve across the central half of the width,
    wall_ant: float  # read on the mid-sagittal line, robust to a resampled mask's stepped rim


def _frame_sampling(body, affine_mm, centre, h, a, lat) -> _FrameSampling | None:
    """Resample the body in the (lat, a, h) frame (trilinear, threshold 0.5); width from the mid-height plane, the AP
    extent in the central ``MID_HEIGHT_FRACTION`` of the height of the mid-sagittal band; None if any is empty."""
    spacing = np.linalg.norm(affine_mm[:3, :3], axis=0)
    step = max(SAMPLE_STEP_VOXELS * float(spacing.min()), MIN_SAMPLE_STEP_MM)
    pts = _argwhere(body)
    world = (affine_mm[:3, :3] @ pts.T).T + affine_mm[:3, 3] - centre
    margin = 2 * float(spacing.max()) + 3 * _extent_along(affine_mm, h) + EDGE_WINDOW_MM  # room for the CT lines
    half = np.abs(world @ np.stack([lat, a, h], axis=1)).max(axis=0) + margin
    l_ax, a_ax, h_ax = (np.arange(-hv, hv + step / 2, step) for hv in half)
    inv = np.linalg.inv(affine_mm)
    fmask = body.astype(np.float32)

    def sample(l_vals, a_vals, h_vals, values=None):
        """The mask (threshold 0.5) on the grid, or trilinear ``values`` (the CT, HU) with ``values``."""
        lv, av, hv = (np.asarray(v, float) for v in (l_vals, a_vals, h_vals))
        # the grid's points, summed in the same order as on a meshgrid, the first two terms before broadcasting
        xyz = centre + lv[:, None, None, None] * lat + av[None, :, None, None] * a + hv[None, None, :, None] * h
        shape = xyz.shape[:3]
        ijk = (xyz @ inv[:3, :3].T + inv[:3, 3]).reshape(-1, 3).T
        if values is not None:
            return ndimage.map_coordinates(np.asarray(values, np.float32), ijk, order=1, mode="nearest").reshape(shape)
        vals = ndimage.map_coordinates(fmask, ijk, order=1, mode="constant", cval=0.0)
        return vals.reshape(shape) >= 0.5

    # width: lateral extent of the body within 3 mm of its mid-height plane
    lat_any = sample(l_ax, a_ax, h_ax[np.abs(h_ax) <= max(3.0, 2 * step)]).any(axis=(1, 2))
    if not lat_any.any():
        return None
    width = _run_length(lat_any, l_ax, step)
    l_band = l_ax[np.abs(l_ax) <= max(LATERAL_BAND_FRACTION * width / 2, step)]
    slab = sample(l_band, a_ax, h_ax)  # (nl, na, nh)
    h_any = slab.any(axis=(0, 1))
    if not h_any.any():
        return None
    h_lo, h_hi = h_ax[np.flatnonzero(h_any)[[0, -1]]]
    mid_height = np.abs(h_ax - 0.5 * (h_lo + h_hi)) <= max(MID_HEIGHT_FRACTION * (h_hi - h_lo) / 2, step)
    l_wide = l_ax[np.abs(l_ax) <= max(WALL_LATERAL_FRACTION * width / 2, step)]
    walls = _walls(slab, sample(l_wide, a_ax, h_ax), l_wide, a_ax, h_ax, mid_height, step, _extent_along(affine_mm, a))
    if walls is None:
        return None
    return _FrameSampling(sample, l_ax, a_ax, h_ax, slab, width, step,
                          _extent_along(affine_mm, h), _extent_along(affine_mm, a), _extent_along(affine_mm, lat),
                          *walls)


def _walls(slab, wide, l_wide, a_ax, h_ax, mid_height, step, s_a) -> tuple[float, float] | None:
    """Posterior and anterior walls (mm along a) on the mid-sagittal line: first from the ends of the lines along a of
    ``wide`` (the mask over the central ``WALL_LATERAL_FRACTION`` of the width, lateral positions ``l_wide``) at the
    body's mid-height, then each wall again from the lines at the mid-height of the body next to that wall (the height
    of the columns of the mid-sagittal ``slab`` within ``WALL_ZONE_FRACTION`` of the depth from it, starting
    ``WALL_RIM_VOXELS`` inside it, clear of the mask's rim): a steep wedge's low
    anterior wall is met only by the lines through its own height, which the body's mid-height misses. Each wall is
    the robust curve ``WALL_TERMS`` across the width through the lines' ends, read at the mid-sagittal line
    (:func:`_wall_at_midline`). None if no line meets the body."""
    got = _wall_ends(wide, l_wide, a_ax, h_ax, mid_height, step)
    if got is None:
        return None
    half = max(float(np.abs(l_wide).max()), step)
    first = [_wall_at_midline(got[0][:, j], got[1] / half, s_a) for j in (0, 1)]
    zone = WALL_ZONE_FRACTION * (first[1] - first[0])
    inside = (a_ax >= first[0] - step) & (a_ax <= first[1] + step)
    walls = []
    rim = WALL_RIM_VOXELS * s_a
    for j, near in enumerate(((a_ax >= first[0] + rim) & (a_ax <= first[0] + rim + zone),
                              (a_ax <= first[1] - rim) & (a_ax >= first[1] - rim - zone))):
        lo, hi, found = _central_runs(slab[:, near & inside, :].reshape(-1, h_ax.size))
        tb = np.stack([h_ax[lo[found]], h_ax[hi[found]]], axis=1)
        if not tb.size:
            walls.append(float(first[j]))
            continue
        lo, hi = np.median(tb, axis=0)
        band = np.abs(h_ax - 0.5 * (lo + hi)) <= max(MID_HEIGHT_FRACTION * (hi - lo) / 2, step)
        e = _wall_ends(wide, l_wide, a_ax, h_ax, band, step)
        walls.append(float(first[j] if e is None else _wall_at_midline(e[0][:, j], e[1] / half, s_a)))
    return walls[0], walls[1]


def _wall_at_midline(ends: np.ndarray, x: np.ndarray, s_a: float) -> float:
    """A wall's position (mm along a) on the mid-sagittal line (x = 0) from the ends of lines at lateral positions ``x``
    (over the half-width): the robust least-squares curve ``WALL_TERMS`` of :func:`fit_surface` (points beyond 3 scaled
    MADs refitted without), which averages a resampled mask's rim steps over the width instead of taking the steps of a
    few lines; the median of the ends when too few lines meet the body."""
    fit = fit_surface(np.zeros_like(x), x, ends, s_a, 1.0, 0.0, int(ends.size), "mask", WALL_TERMS, 0.0)
    return float(np.median(ends)) if fit is None else fit.at(0.0, 0.0)[0]


def _wall_ends(slab, l_vals, a_ax, h_ax, band, step) -> tuple[np.ndarray, np.ndarray] | None:
    """Posterior and anterior ends (mm along a) of the body run of each line along a of the slab (lateral positions
    ``l_vals``) at the heights ``band`` (n, 2), and each line's lateral position (n,); None if no line meets the body."""
    lines = np.moveaxis(slab[:, :, band], 1, 2)  # (nl, nb, na)
    ls = np.repeat(np.asarray(l_vals, float), lines.shape[1])
    lo, hi, keep = _central_runs(lines.reshape(-1, a_ax.size))
    ends = np.stack([a_ax[lo[keep]] - step / 2, a_ax[hi[keep]] + step / 2], axis=1)
    return (ends, ls[keep]) if ends.size else None


def _profiles(body, affine_mm, centre, h, a, lat, ct=None, others=None, surface=False):
    """Resample the body in the (lat, a, h) frame; return heights, endplate positions (mm along h from ``centre``),
    AP depth and width (mm), the step, each height's uncertainty (mm) and the endplate method. Without ``ct``: the
    mask's faces along the lines of the mid-sagittal band (step 3 of the module docstring); with it: the fitted
    CT edge fit per line (step 3b), or with ``surface`` the fitted endplate surfaces of
    :mod:`vertaug.anatomy.endplates` (step 3d)."""
    fs = _frame_sampling(body, affine_mm, centre, h, a, lat)
    if fs is None:
        return None
    if ct is not None and not surface:
        return _line_heights(fs, ct, others)
    if ct is not None:
        got = _surface_heights(fs, LineSampler(ct, affine_mm, centre, h, a, lat, others), float(
            np.linalg.norm(affine_mm[:3, :3], axis=0).min()))
        if got is not None:
            return got
    return _mask_heights(fs)


def _line_heights(fs: _FrameSampling, ct, others=None):
    """Heights from the CT edge fit of each line (:func:`_column_edges`): at each Genant position the median over the
    band's lines, with the variance of the faces and the lines' spread (step 3b of the module docstring)."""
    l_band = fs.l_ax[np.abs(fs.l_ax) <= max(LATERAL_BAND_FRACTION * fs.width / 2, fs.step)]
    hu = fs.sample(l_band, fs.a_ax, fs.h_ax, values=ct)
    oth = None if others is None else fs.sample(l_band, fs.a_ax, fs.h_ax, values=others) >= 0.5
    post, depth = fs.wall_post, fs.wall_ant - fs.wall_post
    heights, tops, bottoms, sig = {}, {}, {}, {}
    win = max(AP_WINDOW_FRACTION * depth, fs.step)
    n_ct = n_all = 0
    for key, frac in MEASUREMENT_POSITIONS.items():
        sel = np.abs(fs.a_ax - (post + frac * depth)) <= win
        cols = fs.slab[:, sel, :].reshape(-1, fs.slab.shape[2])
        hus = hu[:, sel, :].reshape(-1, fs.slab.shape[2])
        oths = None if oth is None else oth[:, sel, :].reshape(-1, fs.slab.shape[2])
        res = [_column_edges(col, fs.h_ax, fs.step, fs.s_h, hus[k], None if oths is None else oths[k])
               for k, col in enumerate(cols)]
        res = [r for r in res if r is not None]
        if not res:
            return None
        ts, bs, var, from_ct = (np.array(v, float) for v in zip(*res))
        n_ct += int(from_ct.sum())
        n_all += len(res)
        hs = ts - bs
        heights[key], tops[key], bottoms[key] = float(np.median(hs)), float(np.median(ts)), float(np.median(bs))
        spread = 1.4826 * float(np.median(np.abs(hs - heights[key]))) / math.sqrt(len(hs))
        sig[key] = float(math.sqrt(float(np.median(var)) + spread**2))
    method = "CT edge" if n_ct == n_all else "mask" if n_ct == 0 else f"CT edge ({n_ct} of {n_all} lines), mask"
    return heights, tops, bottoms, depth, fs.width, fs.step, sig, method


def _mask_heights(fs: _FrameSampling):
    """Heights from the mask's faces: at each Genant position the median over the band's lines of the body run, each
    face with the quantisation variance s_h^2/12, plus the lines' spread (scaled MAD / sqrt(n))."""
    heights, tops, bottoms, sig = {}, {}, {}, {}
    depth = fs.wall_ant - fs.wall_post
    win = max(AP_WINDOW_FRACTION * depth, fs.step)
    for key, frac in MEASUREMENT_POSITIONS.items():
        sel = np.abs(fs.a_ax - (fs.wall_post + frac * depth)) <= win
        lo, hi, found = _central_runs(fs.slab[:, sel, :].reshape(-1, fs.slab.shape[2]))
        if not found.any():
            return None
        ts, bs = fs.h_ax[hi[found]] + fs.step / 2, fs.h_ax[lo[found]] - fs.step / 2
        hs = ts - bs
        heights[key], tops[key], bottoms[key] = float(np.median(hs)), float(np.median(ts)), float(np.median(bs))
        spread = 1.4826 * float(np.median(np.abs(hs - heights[key]))) / math.sqrt(len(hs))
        sig[key] = float(math.sqrt(2 * fs.s_h**2 / 12.0 + spread**2))
    return heights, tops, bottoms, depth, fs.width, fs.step, sig, "mask"


def _surface_columns(fs: _FrameSampling, spacing_min: float) -> ColumnGrid | None:
    """Columns over the central part of the endplates (:mod:`vertaug.anatomy.endplates`, step 1) with the mask's
    faces of each; None if fewer than a handful reach the body."""
    col = max(fs.step, COLUMN_STEP_VOXELS * spacing_min)
    band = FIT_LATERAL_FRACTION * fs.width / 2
    n_l = max(1, int(band // col))
    l_cols = np.arange(-n_l, n_l + 1) * col
    u_lo, u_hi = FIT_U_RANGE
    depth = fs.wall_ant - fs.wall_post
    u_cols = np.arange(u_lo, u_hi + 1e-9, col / depth)
    a_cols = fs.wall_post + u_cols * depth
    grid = fs.sample(l_cols, a_cols, fs.h_ax)  # (nl, na, nh)
    L, U = np.meshgrid(l_cols, u_cols, indexing="ij")
    lo, hi, ok = _central_runs(grid)  # the columns in the order of L.ravel()
    if ok.sum() < 2 * len(SURFACE_TERMS):
        return None
    l_f, u_f = L.ravel()[ok], U.ravel()[ok]
    return ColumnGrid(l_f, fs.wall_post + u_f * depth, u_f, l_f / max(band, col), fs.h_ax[hi[ok]] + fs.step / 2,
                      fs.h_ax[lo[ok]] - fs.step / 2)


def _surface_heights(fs: _FrameSampling, sampler: LineSampler, spacing_min: float):
    """Heights from the two fitted endplate surfaces at the Genant positions on the mid-sagittal line (x = 0); the
    mask's surface for an endplate whose CT edge is not found. None if the columns do not reach the body."""
    cols = _surface_columns(fs, spacing_min)
    if cols is None:
        return None
    col = max(fs.step, COLUMN_STEP_VOXELS * spacing_min)
    corr = max(1.0, fs.s_l * fs.s_a / col**2)  # columns per independent voxel footprint
    half_u = LOCAL_HALF_VOXELS * fs.s_a / (fs.wall_ant - fs.wall_post)
    at, how, sources = {}, [], set()
    for name, outward, faces in (("superior", +1, cols.top_mm), ("inferior", -1, cols.bottom_mm)):
        start = fit_surface(cols.u, cols.x, faces, fs.s_h, corr, fs.s_h**2 / 12.0, cols.u.size, "mask")
        if start is None:
            return None
        got = ct_surface(sampler, cols, outward, start, fs.s_h, corr, fs.step)
        whole, pts, floor = ((got[0], got[1:], (EDGE_MODEL_ERROR_VOXELS * fs.s_h) ** 2) if got is not None else
                             (start, (cols.u, cols.x, faces), fs.s_h**2 / 12.0))
        sources.add(whole.source)
        how.append(f"{name} {whole.source} ({whole.n_points} of {whole.n_columns} columns, rms "
                   f"{whole.residual_mm:.2f} mm)")
        for key, frac in MEASUREMENT_POSITIONS.items():
            local = local_surface(*pts, frac, half_u, fs.s_h, corr, floor, whole.source)
            at[name, key] = (local if local is not None else whole).at(frac)
    heights, tops, bottoms, sig = {}, {}, {}, {}
    for key in MEASUREMENT_POSITIONS:
        (zt, vt), (zb, vb) = at["superior", key], at["inferior", key]
        heights[key], tops[key], bottoms[key], sig[key] = zt - zb, zt, zb, math.sqrt(vt + vb)
    method = ("CT surface" if sources == {"CT edge"} else "mask surface" if sources == {"mask"} else "CT surface, mask")
    return (heights, tops, bottoms, fs.wall_ant - fs.wall_post, fs.width, fs.step, sig,
            f"{method}: " + "; ".join(how))


def _column_edges(col, h_ax, step, s_h, hu, other=None) -> tuple[float, float, float, bool] | None:
    """Top and bottom endplate of one measurement line (mm along h), the variance of their difference (mm^2) and
    whether both came from the CT edge. The mask's faces are quantised to the voxels: each has a uniform error over
    the voxel extent ``s_h`` (variance s_h^2/12); a CT edge replaces a face where it is found."""
    run = _central_run(col)
    if run is None:
        return None
    lo, hi = run
    top, bot = h_ax[hi] + step / 2, h_ax[lo] - step / 2
    var_q = s_h**2 / 12.0
    if hu is None:
        return top, bot, 2 * var_q, False
    out_t = out_b = np.inf
    if other is not None:  # the next vertebra along the line: the fit stops half-way across the disc
        up, dn = other & (h_ax > top - s_h), other & (h_ax < bot + s_h)
        out_t = 0.5 * (h_ax[np.argmax(up)] - top) if up.any() else np.inf
        out_b = 0.5 * (bot - h_ax[len(h_ax) - 1 - np.argmax(dn[::-1])]) if dn.any() else np.inf
    et = _ct_edge(hu, h_ax, top, +1, s_h, out_t)
    eb = _ct_edge(hu, h_ax, bot, -1, s_h, out_b)
    v_t, v_b = (var_q, var_q)
    if et is not None:
        top, v_t = et
    if eb is not None:
        bot, v_b = eb
    return top, bot, v_t + v_b, et is not None and eb is not None


def _ct_edge(hu, h_ax, face, outward, s_h, outer=np.inf) -> tuple[float, float] | None:
    """Surface of the endplate near the mask ``face`` (mm along h) by a partial-volume edge fit, and its variance (mm^2).

    Model along the line, outward distance x: bone of level B inside the surface e, disc of level D outside, a thin
    endplate (``ENDPLATE_THICKNESS_MM``, Silva 1994) of unknown excess mass M just inside e, all blurred by a Gaussian
    of width sigma (the slice sensitivity profile and the interpolation):
    I(x) = D + (B - D) Phi((e - x)/sigma) + M g(x - e + t/2; sigma). (B, D, M) enter linearly and are solved by least
    squares for each (e, sigma) on a grid (e within one voxel of the face, sigma from ``EDGE_SIGMA_VOXELS``); the best
    fit wins. A thin plate keeps its centroid when smeared over thick slices and a step keeps its half-level crossing,
    so either locates the surface to a fraction of a slice, where the mask's face is quantised to the slice.
    Variance: the residual noise through the curvature of the fit's residual in e. None where the edge's contrast is
    below ``EDGE_MIN_CONTRAST_HU`` or the best surface lies on the edge of the search."""
    x = (h_ax - face) * outward
    win = (x >= -2.0 * s_h - EDGE_WINDOW_MM) & (x <= min(s_h + EDGE_WINDOW_MM, outer))
    x, y = x[win], hu[win].astype(float)
    if x.size < 8 or float(y.max() - y.min()) < EDGE_MIN_CONTRAST_HU:
        return None
    es = np.linspace(-s_h, s_h, EDGE_GRID_POINTS)
    sig = np.maximum(np.asarray(EDGE_SIGMA_VOXELS) * s_h, EDGE_SIGMA_MIN_MM)
    E, S = np.meshgrid(es, sig, indexing="ij")  # (ne, ns)
    # the scanner samples the blurred profile once per voxel (centres half a voxel off the mask's face); the line
    # is interpolated linearly between those samples, and so is the model
    knots = (np.arange(math.floor(x.min() / s_h) - 1, math.ceil(x.max() / s_h) + 2) + 0.5) * s_h
    u = (E[..., None] - knots) / S[..., None]
    step_k = 0.5 * (1.0 + erf(u / math.sqrt(2.0)))
    pl_k = np.exp(-0.5 * ((knots - E[..., None] + ENDPLATE_THICKNESS_MM / 2) / S[..., None]) ** 2)
    wts = _interp_matrix(knots, x)  # (nk, n)
    step, pl = step_k @ wts, pl_k @ wts
    A = np.stack([np.ones_like(step), step, pl], axis=-1)  # (ne, ns, n, 3)
    G = np.einsum("...ki,...kj->...ij", A, A) + 1e-9 * np.eye(3)
    coef = np.linalg.solve(G, np.einsum("...ki,k->...i", A, y)[..., None])[..., 0]
    rss = ((np.einsum("...ki,...i->...k", A, coef) - y) ** 2).sum(axis=-1)
    ie, js = np.unravel_index(int(np.argmin(rss)), rss.shape)
    _, contrast, mass = coef[ie, js]
    peak = abs(contrast) + max(mass, 0.0)  # step height plus the blurred plate's amplitude (HU)
    if peak < EDGE_MIN_CONTRAST_HU or ie in (0, len(es) - 1):
        return None
    r = rss[:, js]
    curv = (r[ie - 1] - 2 * r[ie] + r[ie + 1]) / (es[1] - es[0]) ** 2
    noise2 = r[ie] / max(1, x.size - 5)
    # samples along the line are interpolated between voxels: about one independent sample per voxel extent
    var = 2.0 * noise2 / curv * (s_h / (h_ax[1] - h_ax[0])) if curv > 0 else (s_h**2) / 12.0
    var = min(var, s_h**2 / 12.0) + ((es[1] - es[0]) ** 2) / 12.0 + (EDGE_MODEL_ERROR_VOXELS * s_h) ** 2
    return face + outward * float(es[ie]), float(var)


def _interp_matrix(knots: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Weights (len(knots), len(x)) of linear interpolation from values at ``knots`` to the points ``x``."""
    eye = np.eye(knots.size)
    return np.stack([np.interp(x, knots, row) for row in eye])


def _central_runs(cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The longest run of True along the last axis of each row of ``cols`` (n, m): first and last index (inclusive;
    -1 where the row has none) and whether it has one; of equally long runs the first."""
    cols = np.asarray(cols, bool)
    cols = cols.reshape(math.prod(cols.shape[:-1]), cols.shape[-1])
    d = np.diff(np.pad(cols, ((0, 0), (1, 1))).astype(np.int8), axis=1)
    rows, starts = np.nonzero(d > 0)  # row-major: the k-th start and the k-th end are one run
    ends = np.nonzero(d < 0)[1]
    order = np.lexsort((starts, starts - ends, rows))  # by row, the longest first, then the first
    first = order[np.flatnonzero(np.diff(rows[order], prepend=-1))]
    lo, hi = np.full(cols.shape[0], -1), np.full(cols.shape[0], -1)
    lo[rows[first]], hi[rows[first]] = starts[first], ends[first] - 1
    return lo, hi, lo >= 0


def _central_run(col: np.ndarray) -> tuple[int, int] | None:
    """The longest run of True in a column (index bounds inclusive)."""
    lo, hi, found = _central_runs(np.asarray(col)[None, :])
    return (int(lo[0]), int(hi[0])) if found[0] else None


def _run_length(flags: np.ndarray, coords: np.ndarray, step: float) -> float:
    run = _central_run(flags)
    lo, hi = run
    return float(coords[hi] - coords[lo] + step)


def _core_hu(ct: Volume, body: np.ndarray) -> tuple[float, float, int, str]:
    idx = _argwhere(body)
    box = tuple(slice(int(a), int(b) + 1) for a, b in zip(idx.min(axis=0), idx.max(axis=0)))
    body_box, hu_box = np.pad(body[box], 1), np.pad(ct.data[box], 1)
    for radius in (HU_CORE_EROSION_MM, HU_CORE_EROSION_MM / 2):
        core = ndimage.binary_erosion(body_box, structure=_ball(radius, ct.spacing_mm))
        if core.sum() >= 5:
            vals = hu_box[core]
            note = "" if radius == HU_CORE_EROSION_MM else f"core eroded by {radius:g} mm only (small body)"
            return float(vals.mean()), float(np.median(vals)), int(core.sum()), note
    vals = ct.data[body]
    return float(vals.mean()), float(np.median(vals)), int(body.sum()), "whole body used for HU (too small to erode)"


# ------------------------------------------------------------------------------------------------------- grading


def density_class(hu: float) -> str | None:
    """Pickhardt 2013 class of L1 trabecular attenuation: 'normal' (> 160 HU), 'osteopenia' (110-160 HU, indeterminate)
    or 'osteoporosis' (<= 110 HU); None for NaN."""
    if hu is None or not np.isfinite(hu):
        return None
    if hu > PICKHARDT_NORMAL_HU:
        return "normal"
    if hu > PICKHARDT_OSTEOPOROSIS_HU:
        return "osteopenia"
    return "osteoporosis"


def genant_grade(deformity: float) -> int | None:
    """Genant SQ grade from a height-reduction fraction: 0 (<20 %), 1 (20-25 %), 2 (25-40 %), 3 (>40 %)."""
    if deformity is None or not np.isfinite(deformity):
        return None
    g1, g2, g3 = GENANT_THRESHOLDS
    deformity = round(float(deformity), 9)  # 1 - 20/25 is 0.19999999999999996 in binary floating point
    if deformity < g1:
        return 0
    if deformity < g2:
        return 1
    if deformity <= g3:
        return 2
    return 3


def genant_from_heights(ha: float, hm: float, hp: float, hp_reference: float = _NAN) -> dict:
    """Deformities by type, the largest as the fracture type, and the Genant grade.

    ``hp_reference`` is the expected posterior height (mean of the neighbours); without it crush cannot be assessed.
    """
    d_w = 1.0 - ha / hp
    d_b = 1.0 - hm / hp
    d_c = 1.0 - hp / hp_reference if np.isfinite(hp_reference) and hp_reference > 0 else _NAN
    cands = {"wedge": d_w, "biconcave": d_b, "crush": d_c}
    finite = {k: v for k, v in cands.items() if np.isfinite(v)}
    kind = max(finite, key=finite.get)
    deformity = max(0.0, finite[kind])
    grade = genant_grade(deformity)
    return {
        "deformity": deformity,
        "deformity_wedge": d_w,
        "deformity_biconcave": d_b,
        "deformity_crush": d_c,
        "genant_grade": grade,
        "genant_type": kind if grade and grade > 0 else "none",
    }


def _deformity_uncertainty(m: LevelMorphometry, g: dict, neighbours: list) -> dict:
    """Standard uncertainty of the deformity of the named type, by first-order propagation of the heights'
    uncertainties (d = 1 - H/H_ref: u_d = (H/H_ref) sqrt((u_H/H)^2 + (u_ref/H_ref)^2)), and whether a band edge of
    ``GENANT_THRESHOLDS`` lies within it."""
    hp, up = m.height_posterior_mm, m.height_posterior_uncertainty_mm
    kind = max((k for k in ("wedge", "biconcave", "crush") if np.isfinite(g[f"deformity_{k}"])),
               key=lambda k: g[f"deformity_{k}"])
    if kind == "crush":
        ref = float(np.mean([n.height_posterior_mm for n in neighbours]))
        u_ref = math.sqrt(sum(n.height_posterior_uncertainty_mm ** 2 for n in neighbours)) / len(neighbours)
        h, u_h = hp, up
    else:
        ref, u_ref = hp, up
        h, u_h = ((m.height_anterior_mm, m.height_anterior_uncertainty_mm) if kind == "wedge"
                  else (m.height_middle_mm, m.height_middle_uncertainty_mm))
    u = (h / ref) * math.sqrt((u_h / h) ** 2 + (u_ref / ref) ** 2) if h > 0 and ref > 0 else _NAN
    d = g["deformity"]
    border = bool(np.isfinite(u) and any(abs(d - t) <= u for t in GENANT_THRESHOLDS))
    return {"deformity_uncertainty": float(u), "grade_borderline": border}


def _add_genant(first: dict[str, LevelMorphometry], levels: list[str]) -> dict[str, LevelMorphometry]:
    from dataclasses import replace

    out = {}
    for i, name in enumerate(levels):
        m = first[name]
        if not m.evaluable:
            out[name] = m
            continue
        nb = []
        above = first.get(levels[i - 1]) if i > 0 and _adjacent(levels[i - 1], name) else None
        below = first.get(levels[i + 1]) if i + 1 < len(levels) and _adjacent(name, levels[i + 1]) else None
        r_above = m.height_posterior_mm / above.height_posterior_mm if above and above.evaluable else _NAN
        r_below = m.height_posterior_mm / below.height_posterior_mm if below and below.evaluable else _NAN
        for n in (above, below):
            if n is not None and n.evaluable:
                nb.append(n.height_posterior_mm)
        hp_ref = float(np.mean(nb)) if nb else _NAN
        g = genant_from_heights(m.height_anterior_mm, m.height_middle_mm, m.height_posterior_mm, hp_ref)
        g.update(_deformity_uncertainty(m, g, [n for n in (above, below) if n is not None and n.evaluable]))
        notes = list(m.notes)
        if g["grade_borderline"]:
            notes.append(f"deformity {g['deformity']:.3f} +- {g['deformity_uncertainty']:.3f}: within one standard "
                         "uncertainty of a Genant band edge (borderline grade)")
        if not nb:
            notes.append("no evaluable neighbour: crush deformity not assessed")
        elif name == "L5":
            notes.append("L5: crush reference is L4's posterior height alone (S1 is not measured), and L5's posterior "
                         "height is normally the shorter: a crush deformity of L5 reads high")
        out[name] = replace(m, ratio_hp_above=r_above, ratio_hp_below=r_below, notes=tuple(notes), **g)
    return out
