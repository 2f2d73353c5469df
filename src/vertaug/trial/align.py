"""A tilted level turned upright: the CT, labels and body map rotated rigidly so the level's height axis is grid axis 2.

Why: the balloon model (``physics/balloon.py``) lifts the endplate along the grid's columns (array axis 2) and refuses
a level whose height axis ``h`` has ``|h . e_2| < 0.9`` (more than 25.8 deg off axis 2). The bundled CT's L5 sits in
the lumbosacral lordosis at 28.6 deg (``h = (-0.054, 0.475, 0.878)``, the spine axis through the L4 and S1 body
centroids, ``anatomy/morphometry.py``), so every L5 patient of the trial failed in the kyphoplasty arm. A patient's
level is a rigid body: turning the whole image about the level's body centroid changes no distance, density or
label inside it, only the grid it is sampled on. A level is turned only when it is beyond the balloon's limit
(``MIN_AXIS_COSINE``): each resampling moves the mask's faces by up to a voxel (docs/errors.md, "Rotation invariance,
resampled"), so levels that run as they are keep their voxels.

The rotation ``R`` is the smallest that takes ``h`` onto the superior world axis ``e_z`` (Rodrigues: about ``h x e_z``
by ``acos(h . e_z)``), about the level's body centroid ``c``: ``x' = R (x - c) + c``. The new grid has the source's
axis directions (canonical RAS+, diagonal) and the model's voxel size (``spacing_mm``, so the model builder's own
resampling is then a copy), and covers a cube of ``HALF_EXTENT_MM`` about ``c`` (the level, its neighbours for the
morphometry's frame and the crush reference, the posterior elements). Each output voxel ``x'`` reads the source at
``x = R^T (x' - c) + c``:

* CT: trilinear (``scipy.ndimage.affine_transform``, order 1), air (-1024 HU) outside the source;
* labels and body map: each label's indicator interpolated trilinearly and the voxel given the label of the largest
  indicator when it is >= 0.5 (else 0): the partial-volume rule the model builder applies to its masks
  (``model/vertebra.py``), rather than nearest neighbour, whose staircase moves faces by a voxel.

World coordinates of the turned volumes (and of a model built from them) are those of the turned patient; the trial
writes scalars only. Measured on the bundled L5 (tests/test_trial_patients.py, docs/trial.md; the morphometry's default
endplate surfaces): heights 29.45 / 24.08 / 21.93 -> 29.32 / 25.18 / 23.29 mm (within 1.4 mm; one source voxel is
3 mm), the Genant grade kept (0), the wedge angle -17.6 -> -14.4 deg.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["HALF_EXTENT_MM", "MIN_AXIS_COSINE", "align_level", "rotation_onto_z", "tilt_deg"]

#: physics/balloon.py refuses a model whose height axis has |h . e_2| below this (array axis 2 = world superior here)
MIN_AXIS_COSINE = 0.9
#: half the edge of the aligned grid's cube about the level's body centroid (mm): a lumbar body is ~30 mm tall and its
#: neighbours' centroids lie ~40 mm away, the posterior elements reach ~60 mm behind the centroid
HALF_EXTENT_MM = 80.0
AIR_HU = -1024.0


def tilt_deg(height_axis) -> float:
    """Angle (deg) between a height axis and the superior grid axis."""
    h = np.asarray(height_axis, float)
    return float(np.degrees(np.arccos(min(1.0, abs(h[2]) / np.linalg.norm(h)))))


def rotation_onto_z(height_axis) -> np.ndarray:
    """3x3 rotation taking the unit vector ``height_axis`` onto ``e_z`` (the smallest one: Rodrigues' formula)."""
    h = np.asarray(height_axis, float)
    h = h / np.linalg.norm(h)
    z = np.array([0.0, 0.0, 1.0])
    k = np.cross(h, z)
    s, c = np.linalg.norm(k), float(h @ z)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k /= s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def _grid(vol, centre_mm: np.ndarray, spacing_mm: float):
    """Affine and shape of the aligned grid: the source's axis directions, ``spacing_mm`` voxels, a cube about the
    centre (sign of each axis kept, so a canonical source gives a canonical grid)."""
    signs = np.where(np.diag(vol.affine_mm)[:3] < 0, -1.0, 1.0)
    n = math.ceil(2 * HALF_EXTENT_MM / spacing_mm) + 1
    aff = np.eye(4)
    aff[:3, :3] = np.diag(signs * spacing_mm)
    aff[:3, 3] = centre_mm - aff[:3, :3] @ np.full(3, (n - 1) / 2)
    return aff, (n, n, n)


def _sampler(vol_affine, new_affine, rot, centre_mm):
    """(matrix, offset) of ``affine_transform``: output index -> source index through x = R^T (x' - c) + c."""
    world = np.eye(4)
    world[:3, :3] = rot.T
    world[:3, 3] = centre_mm - rot.T @ centre_mm
    m = np.linalg.inv(vol_affine) @ world @ new_affine
    return m[:3, :3], m[:3, 3]


def _labels(data: np.ndarray, mat, off, shape) -> np.ndarray:
    """Partial-volume resampling of a label map: per label, the trilinear indicator; the largest >= 0.5 wins."""
    best = np.zeros(shape, np.float32)
    out = np.zeros(shape, data.dtype)
    near = ndimage.affine_transform(data, mat, off, output_shape=shape, order=0, cval=0)  # the labels in reach
    for value in np.unique(near[near != near.dtype.type(0)]):  # the image's label values (0: background)
        f = ndimage.affine_transform((data == value).astype(np.float32), mat, off, output_shape=shape, order=1,
                                     cval=0.0)
        win = (f >= 0.5) & (f > best)
        out[win] = value
        best = np.maximum(best, f)
    return out


def align_level(ct, seg, body, level: str, numbering: str, spacing_mm: float):
    """``(ct, seg, body, tilt_deg, turned)``: the volumes turned so ``level``'s height axis is grid axis 2 when it is
    beyond the balloon's limit (``turned``), else the inputs unchanged. ``tilt_deg``: the level's tilt before."""
    from dataclasses import replace

    from ..anatomy.morphometry import measure_volumes

    morph = measure_volumes(ct, seg, body, numbering).levels[level]
    h = np.asarray(morph.height_axis, float)
    if not np.all(np.isfinite(h)) or abs(h[2]) / np.linalg.norm(h) >= MIN_AXIS_COSINE:
        return ct, seg, body, tilt_deg(h) if np.all(np.isfinite(h)) else math.nan, False
    centre = np.asarray(morph.centroid_mm, float)
    rot = rotation_onto_z(h)
    aff, shape = _grid(ct, centre, spacing_mm)
    mat, off = _sampler(ct.affine_mm, aff, rot, centre)
    hu = ndimage.affine_transform(np.asarray(ct.data, np.float32), mat, off, output_shape=shape, order=1, cval=AIR_HU)
    out = [replace(ct, data=hu, affine_mm=aff), replace(seg, data=_labels(np.asarray(seg.data), mat, off, shape),
                                                          affine_mm=aff)]
    out.append(None if body is None else replace(body, data=_labels(np.asarray(body.data), mat, off, shape),
                                                 affine_mm=aff))
    return (*out, tilt_deg(h), True)
