"""Heights and wedge angle of the modelled body before and after a procedure: one measurement, one spine axis.

The voxel model's body (labels in :data:`vertaug.model.labels.BODY`) is measured by
:func:`vertaug.anatomy.morphometry.measure_body_heights`, the function the CT morphometry uses, with the same sub-voxel
CT endplates (its default), along the level's height and anterior axes from that morphometry (the spine axis through
the neighbouring bodies; the world is not assumed to be aligned with the patient). A model without morphometry (or
with NaN axes) uses its landmarks' axes.

The CT the endplates are fitted on is the model's own HU field (``Vertebra.hu``, the scan resampled trilinearly onto
the model grid), moved with the labels after a procedure (:func:`moved_hu`: a lift shifts the part of a column above
the opened voxels up rigidly along array axis 2, so its HU go with it; a procedure that lifts nothing leaves it as it
is). Body and HU are measured on a grid of the scan's voxel size, in whole model voxels (``floor(scan / model)``: 3 x
1 mm, 2 x 1.5 mm, 1 x 2 mm for the bundled 3 mm CT; ``Vertebra.extra["source_spacing_mm"]``, set by
``vertebra_from_ct``; the model's own grid for a phantom), sampled trilinearly from the model grid (the body's
indicator at 0.5, as the model builder takes it), so that the nodes fall on the scan's where they can: the edge fit
models a scanner's voxels, and a 3 mm scan interpolated onto 1 mm is still blurred over 3 mm. Before a procedure this
gives the morphometry's heights of the level within 1.9 mm (one scan voxel is 3 mm) for L1-L5 at 1, 1.5 and 2 mm
(tests/test_heights.py; docs/anatomy.md has the table), in 0.3-1 s; on the model's own grid the same fit read L2 4 mm
off in the middle, in 4-15 s, and the mask faces alone read L1 3.4 mm taller at the front. The resolution of a change
is the scan's, as on a post-operative CT of the same scanner: a rigid lift of n model voxels measures within one scan
voxel of n voxels.

Height restored, as a share of the height lost, takes the posterior height before treatment as the reference of the
anterior (wedge) height, as Genant's wedge deformity does:

    restored mm = Ha_after - Ha_before,   restored % = 100 (Ha_after - Ha_before) / (Hp_before - Ha_before)

(NaN when less than one voxel of height was lost). A crush fracture has lost its posterior height too, so its
reference is the neighbours' posterior height, as Genant's crush deformity takes it (:func:`crush_reference_mm`:
Hp_ref = Hp_before / (1 - D_crush) from the level's morphometry): restored % = 100 (Ha_after - Ha_before) /
(Hp_ref - Ha_before).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..anatomy.fracture import CRACK_FLUID_HU
from ..anatomy.morphometry import BodyHeights, content_digest, measure_body_heights
from .labels import DEFECT, is_body

__all__ = ["BodyHeights", "HeightChange", "crush_reference_mm", "height_change", "heights_key", "keep_heights",
           "kept_heights", "model_axes", "model_heights", "moved_hu"]

_NAN_HEIGHTS = BodyHeights(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
#: the heights of each model as built (the reduction, both procedures and the report ask for them): measured once
_BEFORE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
#: the same heights by the content they are measured from (:func:`heights_key`), for models that are copies of one
#: another: a parameter sample's model (new materials, the same labels, HU and axes), a model unpickled in a worker
_BY_KEY: dict[str, BodyHeights] = {}
#: models' heights kept by content; the oldest goes first
_BY_KEY_SIZE = 8
#: each model's :func:`heights_key` (a digest of its arrays), computed once
_KEYS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def model_axes(model) -> tuple[np.ndarray, np.ndarray]:
    """(height axis, anterior axis) of a model, unit vectors in its world (RAS+ mm) frame."""
    m = getattr(model, "morphometry", None)
    if m is not None and np.all(np.isfinite(m.height_axis)) and np.all(np.isfinite(m.anterior_axis)):
        return np.asarray(m.height_axis, float), np.asarray(m.anterior_axis, float)
    rot = np.asarray(model.affine_mm, float)[:3, :3]
    h = rot @ np.asarray(model.landmarks.height_axis, float)
    a = rot @ np.asarray(model.landmarks.anterior_axis, float)
    return h / np.linalg.norm(h), a / np.linalg.norm(a)


def moved_hu(model, labels: np.ndarray) -> np.ndarray:
    """The model's HU moved with ``labels`` (a treated model's labels on the same grid): in each column (array axis 2)
    whose body top moved up by k voxels, the voxels above the highest label that differs from the labels before
    shifted up by k are the column before shifted up by k, and take its HU shifted so; the voxels below that became
    a defect (the gap a lift opens under the fragment) read as blood (``anatomy.fracture.CRACK_FLUID_HU``, the HU the
    lifts of physics/balloon.py give it too); every other voxel keeps its HU. The model's own HU where nothing moved.
    Measured on the demo's kyphoplasty (bundled L1, 1 mm): the anterior height after reads 20.69 mm with this field
    and with the HU the balloon model leaves (cavity and compacted shell) alike, +2.16 mm on 18.53 (the mask's faces:
    +2.0); without the blood in the gap, +0.24. ``height_change(..., hu_after=)`` takes another field."""
    lab0 = np.asarray(model.labels)
    hu0 = np.asarray(model.hu, np.float32)
    lab1 = np.asarray(labels)
    if lab1 is lab0 or np.array_equal(lab1, lab0):
        return hu0
    nz = lab0.shape[2]
    zs = np.arange(nz)
    top0 = np.where(is_body(lab0), zs, -1).max(axis=2)
    top1 = np.where(is_body(lab1), zs, -1).max(axis=2)
    shift = np.where((top0 >= 0) & (top1 >= 0), top1 - top0, 0)
    hu = hu0.copy()
    for i, j in np.argwhere(shift > 0):
        k = int(shift[i, j])
        differs = np.flatnonzero(lab1[i, j, k:] != lab0[i, j, :nz - k])
        z0 = k + (int(differs[-1]) + 1 if differs.size else 0)
        hu[i, j, z0:] = hu0[i, j, z0 - k:nz - k]
        opened = (lab1[i, j, :z0] == DEFECT) & (lab0[i, j, :z0] != DEFECT)
        hu[i, j, :z0][opened] = CRACK_FLUID_HU
    return hu


def model_heights(model, labels: np.ndarray | None = None, hu: np.ndarray | None = None) -> BodyHeights:
    """Heights of the body of ``labels`` (default: the model's own) along the model's axes, with the sub-voxel CT
    endplates of ``hu`` (default: the model's HU moved with ``labels``, :func:`moved_hu`), on the scan's voxel grid
    (module docstring). The model's own heights (no ``hu``, and ``labels`` None or equal to the model's: a procedure
    that moved nothing) are measured once per model and per content (:func:`heights_key`) and kept."""
    if hu is None and (labels is None or labels is model.labels or np.array_equal(labels, model.labels)):
        return _untreated(model)  # the labels as built (nothing moved): the model's own heights
    lab = model.labels if labels is None else labels
    return _measure(model, lab, moved_hu(model, lab) if hu is None else hu)


def _kept(key: str, measure) -> BodyHeights:
    """The heights kept under ``key``, else ``measure()`` kept there (the oldest of ``_BY_KEY_SIZE`` goes first)."""
    got = _BY_KEY.get(key)
    if got is None:
        got = measure()
        while len(_BY_KEY) >= _BY_KEY_SIZE:
            _BY_KEY.pop(next(iter(_BY_KEY)))
        _BY_KEY[key] = got
    return got


def heights_key(model) -> str:
    """A digest of everything the model's own heights are measured from: labels, HU, affine, spacing, the scan's
    voxel size and the axes (:func:`model_axes`). Models with the same key have the same heights (a parameter
    sample's model differs from its nominal one in its materials only)."""
    try:
        got = _KEYS.get(model)
    except TypeError:  # no weak references: digested each time
        got = None
    if got is None:
        scan = np.asarray(getattr(model, "extra", {}).get("source_spacing_mm", math.nan), float)
        got = content_digest(np.asarray(model.labels), np.asarray(model.hu, np.float32),
                             np.asarray(model.affine_mm, float), np.asarray(model.spacing_m, float), scan,
                             *model_axes(model))
        try:
            _KEYS[model] = got
        except TypeError:
            pass
    return got


def kept_heights(model) -> dict[str, BodyHeights]:
    """{:func:`heights_key`: the model's own heights} (measured here if they are not kept yet): what a process that
    runs chains of copies of ``model`` (a worker process) passes to :func:`keep_heights` so as not to measure again."""
    return {heights_key(model): _untreated(model)}


def keep_heights(kept: dict[str, BodyHeights]) -> None:
    """Keep heights measured elsewhere (:func:`kept_heights` of another process) for the models of the same content."""
    for key, got in kept.items():
        _kept(key, lambda got=got: got)


def _untreated(model) -> BodyHeights:
    """The model's own heights: measured once per model, and once per content (:func:`heights_key`)."""
    try:
        got = _BEFORE.get(model)
    except TypeError:  # an object without weak references (a stand-in of a test): by content only
        got = None
        weak = False
    else:
        weak = True
    if got is None:
        got = _kept(heights_key(model), lambda: _measure(model, model.labels, np.asarray(model.hu, np.float32)))
        if weak:
            _BEFORE[model] = got
    return got


def _measure(model, labels: np.ndarray, hu: np.ndarray) -> BodyHeights:
    h, a = model_axes(model)
    body, aff, hu_g = _scan_grid(model, is_body(labels), hu)
    out = measure_body_heights(body, aff, h, a, ct=hu_g)
    return _NAN_HEIGHTS if out is None else out


def _scan_grid(model, body: np.ndarray, hu: np.ndarray):
    """(body, affine, hu) on a grid of whole model voxels as close to the scan's voxel size as it goes (module
    docstring), along the model's axes from its first voxel; the model's own grid where the scan's voxels are not
    larger (a phantom, a model as coarse as its scan)."""
    aff = np.asarray(model.affine_mm, float)
    here = np.asarray(model.spacing_m, float) * 1e3
    scan = np.asarray(getattr(model, "extra", {}).get("source_spacing_mm", here), float)
    factor = np.maximum(np.floor(scan / here + 1e-6), 1.0)  # whole model voxels: on the scan's nodes where they can be
    if np.all(factor == 1.0):
        return body, aff, hu
    shape = np.floor((np.array(body.shape) - 1) / factor + 1e-9).astype(int) + 1
    idx = np.indices(shape).reshape(3, -1) * factor[:, None]
    coarse = ndimage.map_coordinates(body.astype(np.float32), idx, order=1).reshape(shape) >= 0.5
    hu_c = ndimage.map_coordinates(np.asarray(hu, np.float32), idx, order=1, mode="nearest").reshape(shape)
    aff_c = aff.copy()
    aff_c[:3, :3] = aff[:3, :3] * factor[None, :]
    return coarse, aff_c, hu_c


@dataclass(frozen=True)
class HeightChange:
    """The body's heights before and after a procedure, measured by the same function along the same axes."""

    before: BodyHeights
    after: BodyHeights
    #: height spacing of the model (mm): less lost than this is no measurable loss
    resolution_mm: float
    #: reference of the lost height (mm): NaN for the posterior height before (wedge, biconcave), the neighbours'
    #: posterior height for a crush fracture (crush_reference_mm)
    reference_mm: float = math.nan

    @property
    def restored_mm(self) -> float:
        return self.after.anterior_mm - self.before.anterior_mm

    @property
    def lost_mm(self) -> float:
        ref = self.reference_mm if math.isfinite(self.reference_mm) else self.before.posterior_mm
        return ref - self.before.anterior_mm

    @property
    def restored_pct_of_lost(self) -> float:
        lost = self.lost_mm
        return 100.0 * self.restored_mm / lost if lost >= self.resolution_mm else math.nan

    def to_dict(self, suffix: str = "") -> dict[str, float]:
        """Flat metrics (units in the names) after the procedure, ``suffix`` appended to each key."""
        a = self.after
        d = {"height_anterior_mm": a.anterior_mm, "height_middle_mm": a.middle_mm,
             "height_posterior_mm": a.posterior_mm, "wedge_angle_deg": a.wedge_angle_deg,
             "height_restored_mm": self.restored_mm, "height_restored_pct_of_lost": self.restored_pct_of_lost}
        return {f"{k}{suffix}": float(v) for k, v in d.items()}

    def before_dict(self) -> dict[str, float]:
        """Heights and wedge angle before the procedure (``*_before`` keys)."""
        b = self.before
        return {"height_anterior_mm_before": b.anterior_mm, "height_middle_mm_before": b.middle_mm,
                "height_posterior_mm_before": b.posterior_mm, "wedge_angle_deg_before": b.wedge_angle_deg}


def crush_reference_mm(model, before: BodyHeights) -> float:
    """The neighbours' posterior height of a crush fracture, Hp_before / (1 - D_crush) with D_crush of the level's
    morphometry (1 - Hp / mean posterior height of the neighbours); NaN for any other level."""
    m = getattr(model, "morphometry", None)
    d_c = float(getattr(m, "deformity_crush", math.nan)) if m is not None else math.nan
    if m is None or m.genant_type != "crush" or not (math.isfinite(d_c) and d_c < 1.0):
        return math.nan
    return before.posterior_mm / (1.0 - d_c)


def height_change(model_before, labels_after: np.ndarray, before: BodyHeights | None = None,
                  hu_after: np.ndarray | None = None) -> HeightChange:
    """Heights of ``model_before`` and of the same grid with ``labels_after`` (a treated model's labels) and
    ``hu_after`` (its HU; default: the model's moved with the labels, :func:`moved_hu`)."""
    before = before if before is not None else model_heights(model_before)
    after = model_heights(model_before, labels_after, hu_after)
    return HeightChange(before, after, float(model_before.spacing_m[2]) * 1e3,
                        crush_reference_mm(model_before, before))
