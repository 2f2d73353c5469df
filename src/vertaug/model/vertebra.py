"""The voxel model of one vertebral level: geometry, tissue labels, material fields and landmarks.

A :class:`Vertebra` lives on a regular isotropic grid in canonical RAS+ orientation (axes: right, anterior,
superior), cropped around one level with a margin. ``spacing_m`` is in metres; ``affine_mm`` maps voxel indices to
the CT's RAS+ world coordinates in mm, so any field can be written back as NIfTI over the original CT.

Tissue labels: the vocabulary of :mod:`vertaug.model.labels` (outside / soft tissue, trabecular, cortex, endplate,
canal, basivertebral foramen / vein, segmental vein exit, fracture cleft / cortical defect, disc). The posterior
elements (pedicles, laminae, processes) are bone outside the body: ``OUTSIDE`` in ``labels``, True in
``posterior_mask`` (trajectories use it; the body mechanics and flow do not).

Rules from a CT (each a module constant):

* body: the vertebra label AND TotalSegmentator ``vertebrae_body`` (1), resampled as a fraction (trilinear) and
  thresholded at 0.5; without the body map, the morphometry rule (opening by 8 mm, regrown inside the label).
* cortex / endplate: body voxels within ``SHELL_MM`` of the body surface; a shell voxel is endplate if the body's
  outward normal there is within 45 deg of the height axis (superior or inferior face), cortex otherwise.
* canal: per axial slice, the hole enclosed by the vertebra label after a 2-D closing by ``CANAL_CLOSING_MM``, kept
  behind the posterior wall; where the arch is not closed on the CT, a cylinder of radius ``CANAL_RADIUS_MM`` along the
  height axis centred ``CANAL_OFFSET_MM`` behind the posterior wall, minus bone.
* disc: ``vertebrae_body`` == 2 inside the crop.
* basivertebral foramen: shell voxels within ``BVF_RADIUS_MM`` of the posterior-wall point at mid-height, mid-sagittal.
* segmental vein exits: shell voxels within ``SEGMENTAL_RADIUS_MM`` of the left and right lateral-wall points at
  mid-height and mid-depth.
* fracture cleft: body voxels darker than ``CLEFT_HU`` (intravertebral vacuum cleft, gas); a cortical defect is an input
  (``cortical_defect='anterior'|'left'|'right'``), since it is not reliably visible on clinical CT.
* posterior elements: vertebra label minus body, canal and a 1-voxel rim of the body.
* fracture zone (optional, from ``anatomy.fracture``; nearest-neighbour onto the model grid): its cleft (3) becomes
  defect inside the body, its fracture lines (2) become defect where they cross the shell (the endplate or cortical
  break: an open path to the disc or the soft tissue), and the materials weaken zones 1 and 2
  (``materials.FRACTURED_MODULUS_FACTOR``). Without it nothing changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage

from ..anatomy.io import Volume
from ..anatomy.levels import DISC_LABEL, label_table, normalize_level
from ..anatomy.morphometry import LevelMorphometry, _body_mask, measure_volumes
from ..errors import EmptyMaskError, LevelNotFoundError, ParameterError, check_range
from .labels import (
    BASIVERTEBRAL,
    CANAL,
    CORTEX,
    DEFECT,
    DISC,
    ENDPLATE,
    LABELS,
    OUTSIDE,
    POSTERIOR_ELEMENT,
    SEGMENTAL,
    SHELL,
    TRABECULAR,
    is_body,
)
from .materials import FRACTURED_ZONES, SHELL_LABEL_THICKNESS_M, MaterialMaps, material_maps, material_maps_like

__all__ = ["Vertebra", "vertebra_from_ct", "vertebra_from_phantom", "with_veins", "label_counts"]

MARGIN_MM = 8.0
SHELL_MM = SHELL_LABEL_THICKNESS_M * 1e3  # labelled shell; materials smear the thin cortex over it
ENDPLATE_NORMAL_COS = np.cos(np.radians(45.0))
CANAL_CLOSING_MM = 4.0
CANAL_RADIUS_MM = 8.0
CANAL_OFFSET_MM = 9.0
BVF_RADIUS_MM = 2.5
SEGMENTAL_RADIUS_MM = 2.0
CLEFT_HU = -200.0
DEFECT_HALF_WIDTH_MM = 4.0
DEFECT_HALF_HEIGHT_MM = 1.5


@dataclass(frozen=True)
class Landmarks:
    """Points in voxel index coordinates of the model grid (float), axes as unit vectors in that grid."""

    centroid_ijk: tuple[float, float, float]
    height_axis: tuple[float, float, float]
    anterior_axis: tuple[float, float, float]
    posterior_wall_ijk: tuple[float, float, float]
    anterior_wall_ijk: tuple[float, float, float]
    superior_endplate_ijk: tuple[float, float, float]
    inferior_endplate_ijk: tuple[float, float, float]


@dataclass(frozen=True, eq=False)
class Vertebra:
    """One level as a voxel model. Arrays share ``labels.shape``; SI units except where the name says otherwise."""

    level: str
    spacing_m: tuple[float, float, float]
    affine_mm: np.ndarray
    hu: np.ndarray
    labels: np.ndarray
    posterior_mask: np.ndarray
    materials: MaterialMaps
    landmarks: Landmarks
    morphometry: LevelMorphometry | None = None
    source: str = ""
    notes: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.labels.shape)  # type: ignore[return-value]

    @property
    def voxel_volume_m3(self) -> float:
        return float(np.prod(self.spacing_m))

    @property
    def body_mask(self) -> np.ndarray:
        return is_body(self.labels)

    @property
    def body_volume_ml(self) -> float:
        return float(self.body_mask.sum()) * self.voxel_volume_m3 * 1e6

    # the derived fields (docs/materials.md)
    @property
    def bvtv(self) -> np.ndarray:
        return self.materials.bvtv

    @property
    def phi(self) -> np.ndarray:
        return self.materials.porosity

    @property
    def k(self) -> np.ndarray:
        return self.materials.permeability_m2

    @property
    def E(self) -> np.ndarray:  # noqa: N802 - the symbol of the physics
        return self.materials.E_pa

    @property
    def yield_pa(self) -> np.ndarray:
        return self.materials.yield_pa

    def with_labels(self, labels: np.ndarray, materials: MaterialMaps | None = None, **changes) -> "Vertebra":
        """A copy with new labels (and materials rebuilt from them unless given): the post-treatment model."""
        if materials is None:
            materials = material_maps_like(self.materials, self.hu, labels, self.spacing_m[0])
        return replace(self, labels=labels, materials=materials, **changes)

    def to_volume(self, data: np.ndarray) -> Volume:
        return Volume(data, self.affine_mm, f"{self.source}:{self.level}")


def label_counts(v: Vertebra) -> dict[str, int]:
    counts = np.bincount(v.labels.ravel(), minlength=max(LABELS.values()) + 1)
    return {name: int(counts[i]) for name, i in LABELS.items()}


# ------------------------------------------------------------------------------------------------------- helpers


def _crop_box(mask: np.ndarray, margin_vox: np.ndarray) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - margin_vox, 0)
    hi = np.minimum(idx.max(axis=0) + margin_vox + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _resample(vol_data: np.ndarray, affine_mm: np.ndarray, box, spacing_mm: float, order: int, cval: float | None):
    """Resample ``vol_data[box]`` on an axis-aligned grid of ``spacing_mm`` (canonical input). Returns data, affine."""
    zooms = np.linalg.norm(affine_mm[:3, :3], axis=0)
    start = np.array([b.start for b in box], float)
    stop = np.array([b.stop for b in box], float)
    n = np.maximum(np.round((stop - start) * zooms / spacing_mm).astype(int), 2)
    step = spacing_mm / zooms  # new voxel size in old index units
    first = start - 0.5 + 0.5 * step  # old index of the first new voxel centre
    out = ndimage.affine_transform(np.asarray(vol_data, dtype=np.float32), step, offset=first, output_shape=tuple(n),
                                   order=order, mode="nearest" if cval is None else "constant",
                                   cval=0.0 if cval is None else cval)
    new_aff = affine_mm.copy()
    new_aff[:3, :3] = affine_mm[:3, :3] / zooms * spacing_mm
    new_aff[:3, 3] = affine_mm[:3, :3] @ first + affine_mm[:3, 3]
    return out, new_aff


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    idx = np.argwhere(mask)
    lo = np.maximum(idx.min(axis=0) - pad, 0)
    hi = np.minimum(idx.max(axis=0) + pad + 1, mask.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _project(shape, origin: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """(index - origin) . axis for every voxel, by broadcasting (float32, no index arrays)."""
    g = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((gi - o) * float(a)).astype(np.float32) for gi, o, a in zip(g, origin, axis))


def _shell_labels(body: np.ndarray, height_axis: np.ndarray, spacing_mm: float) -> np.ndarray:
    """TRABECULAR, CORTEX or ENDPLATE inside the body mask, OUTSIDE elsewhere."""
    labels = np.full(body.shape, OUTSIDE, np.uint8)
    box = _bbox(body, 4)
    b = body[box]
    depth = ndimage.distance_transform_edt(b) * spacing_mm
    # at least the outermost voxel layer (as materials.shell_fraction assumes: floor(label / h) >= 1 layer); without
    # the floor a voxel coarser than SHELL_MM had no shell, hence no veins and no exit for the marrow
    shell = b & (depth <= max(SHELL_MM, spacing_mm) + 1e-6)
    lab = np.where(b, TRABECULAR, OUTSIDE).astype(np.uint8)
    smooth = ndimage.gaussian_filter(b.astype(np.float32), sigma=1.5)
    grad = np.stack(np.gradient(smooth), axis=-1)[shell]
    norm = np.linalg.norm(grad, axis=1) + 1e-12
    cos = np.abs(grad @ height_axis) / norm
    lab[shell] = np.where(cos >= ENDPLATE_NORMAL_COS, ENDPLATE, CORTEX).astype(np.uint8)
    labels[box] = lab
    return labels


def _point_on_surface(body: np.ndarray, start: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """March from ``start`` (voxel coords) along ``direction`` until leaving the body; the last inside point."""
    p = start.astype(float)
    last = p.copy()
    for _ in range(4 * max(body.shape)):
        q = np.round(p).astype(int)
        if np.any(q < 0) or np.any(q >= body.shape) or not body[tuple(q)]:
            break
        last = p.copy()
        p = p + 0.5 * direction
    return last


def _patch(labels: np.ndarray, centre: np.ndarray, radius_vox: float, value: int, where: np.ndarray) -> int:
    g = np.ogrid[tuple(slice(0, s) for s in labels.shape)]
    d2 = sum((gi - c) ** 2 for gi, c in zip(g, centre))
    sel = (d2 <= radius_vox**2) & where
    labels[sel] = value
    return int(sel.sum())


def _canal(vertebra: np.ndarray, body: np.ndarray, post_wall: np.ndarray, h: np.ndarray, a: np.ndarray,
           spacing_mm: float) -> tuple[np.ndarray, str]:
    r = max(1, int(round(CANAL_CLOSING_MM / spacing_mm)))
    yy, xx = np.ogrid[-r:r + 1, -r:r + 1]
    disk = ((yy**2 + xx**2) <= r * r)[:, :, None]  # in-plane (axial) structuring element
    plane = np.zeros((3, 3, 3), bool)
    plane[:, :, 1] = ndimage.generate_binary_structure(2, 1)  # hole filling within each axial slice
    padded = np.pad(vertebra, ((r, r), (r, r), (0, 0)))
    closed = ndimage.binary_closing(padded, structure=disk)[r:-r, r:-r]
    canal = ndimage.binary_fill_holes(closed, structure=plane) & ~closed
    behind = _project(vertebra.shape, post_wall, a) < 0
    canal &= behind & ~body
    lab, n = ndimage.label(canal)
    if n:
        sizes = np.bincount(lab.ravel())[1:]
        canal = lab == (1 + int(np.argmax(sizes)))
    min_vox = 0.2 * np.pi * (CANAL_RADIUS_MM / spacing_mm) ** 2 * (vertebra.any(axis=(0, 1)).sum())
    if canal.sum() >= min_vox:
        return canal, "canal from the hole enclosed by the vertebral arch"
    centre = post_wall - (CANAL_OFFSET_MM / spacing_mm) * a
    g = np.ogrid[tuple(slice(0, n) for n in vertebra.shape)]
    r2 = sum(((gi - c) ** 2).astype(np.float32) for gi, c in zip(g, centre))
    along = _project(vertebra.shape, centre, h)
    cyl = (r2 - along**2) <= (CANAL_RADIUS_MM / spacing_mm) ** 2
    return cyl & ~vertebra & ~body, "canal: arch not closed on this CT, cylinder of radius 8 mm behind the wall"


# ------------------------------------------------------------------------------------------------------- builders


def vertebra_from_ct(
    ct: Volume,
    seg: Volume,
    level: str,
    body: Volume | None = None,
    numbering: str = "v2",
    spacing_mm: float = 1.0,
    cortical_defect: str | None = None,
    modulus_law: str = "morgan2003",
    fracture_zone: Volume | None = None,
    veins_seed: int | None = 0,
    spine=None,
) -> Vertebra:
    """Build the model of ``level`` from a CT, its TotalSegmentator labels and (optionally) the vertebrae_body map.

    ``spine``: the morphometry of this ``ct``, ``seg``, ``body`` and ``numbering`` (``measure_volumes``), when the
    caller has it (the report measured it already): not measured again.

    ``fracture_zone``: the zone map of a virtual fracture (``anatomy.fracture.fracture_level``) on the CT's grid.
    ``veins_seed``: seed of the patient's sampled intraosseous veins (model/veins.py); ``None`` switches them off
    (only the fixed foramen and lateral exit patches, as before the veins existed).
    """
    spacing_mm = check_range("spacing_mm", spacing_mm, 0.25, 3.0, "mm", "use 1.0 (default) or 0.5 mm.")
    name = normalize_level(level)
    table = label_table(numbering)
    spine = spine if spine is not None else measure_volumes(ct, seg, body, numbering)
    if name not in spine.levels:
        raise LevelNotFoundError(
            f"Level {name} is not in the segmentation '{seg.source}' (present: {', '.join(spine.levels)}).",
            "choose a level that is present, or check --numbering.",
        )
    morph = spine.levels[name]
    if not morph.evaluable:
        raise LevelNotFoundError(
            f"Level {name} cannot be modelled: {morph.reason}.", "choose a level that lies wholly inside the scan."
        )
    vert = seg.data == table[name]
    body0 = _body_mask(vert, body, ct.spacing_mm, ct.affine_mm, morph.height_axis)
    zooms = np.array(ct.spacing_mm)
    box = _crop_box(vert, np.ceil(MARGIN_MM / zooms).astype(int))
    hu, aff = _resample(ct.data, ct.affine_mm, box, spacing_mm, order=1, cval=None)
    frac_body, _ = _resample(body0.astype(np.float32), ct.affine_mm, box, spacing_mm, order=1, cval=0.0)
    frac_vert, _ = _resample(vert.astype(np.float32), ct.affine_mm, box, spacing_mm, order=1, cval=0.0)
    body_m = frac_body >= 0.5
    vert_m = (frac_vert >= 0.5) | body_m
    disc = np.zeros_like(body_m)
    if body is not None:
        frac_disc, _ = _resample((body.data == DISC_LABEL).astype(np.float32), ct.affine_mm, box, spacing_mm, 1, 0.0)
        disc = (frac_disc >= 0.5) & ~vert_m
    zone = None
    if fracture_zone is not None:
        from ..anatomy.io import check_same_grid

        check_same_grid(ct, fracture_zone)
        zone, _ = _resample(np.asarray(fracture_zone.data, np.float32), ct.affine_mm, box, spacing_mm, order=0,
                            cval=0.0)
        zone = np.rint(zone).astype(np.uint8)
    h = np.asarray(morph.height_axis)
    a = np.asarray(morph.anterior_axis)
    v = _assemble(name, hu, aff, body_m, vert_m, disc, h, a, spacing_mm, morph, ct.source, cortical_defect,
                  modulus_law, zone)
    # the scan's voxel size: model/heights.py measures the model on a grid of it, as the morphometry measures the scan
    v = replace(v, extra={**v.extra, "source_spacing_mm": tuple(float(z) for z in zooms)})
    return with_veins(v, veins_seed)


def vertebra_from_phantom(phantom, spacing_mm: float | None = None, modulus_law: str = "morgan2003",
                          veins_seed: int | None = 0) -> Vertebra:
    """The model of the phantom's fractured level, with the phantom's own tissue map (exact construction), and
    its intraosseous veins sampled with ``veins_seed`` (``None``: off; see :func:`vertebra_from_ct`)."""
    from ..anatomy.phantom import make_phantom

    if spacing_mm is not None and abs(spacing_mm - phantom.spec.spacing_mm) > 1e-9:
        phantom = make_phantom(replace(phantom.spec, spacing_mm=float(spacing_mm)))
    s = phantom.spec.spacing_mm
    name = phantom.spec.level
    table = label_table("v2")
    vert = phantom.labels.data == table[name]
    box = _crop_box(vert, np.full(3, int(np.ceil(MARGIN_MM / s))))
    tissue = phantom.tissue.data[box]
    lvl = (phantom.labels.data[box] == table[name])
    labels = np.where(tissue == POSTERIOR_ELEMENT, OUTSIDE, tissue).astype(np.uint8)
    # keep only this level's body (neighbours' bodies inside the margin become soft tissue)
    other_body = np.isin(labels, (TRABECULAR, *SHELL)) & ~lvl
    labels[other_body] = OUTSIDE
    posterior = (tissue == POSTERIOR_ELEMENT) & lvl
    aff = phantom.ct.affine_mm.copy()
    aff[:3, 3] = aff[:3, :3] @ np.array([b.start for b in box]) + aff[:3, 3]
    hu = phantom.ct.data[box].astype(np.float32)
    morph = measure_volumes(phantom.ct, phantom.labels, phantom.body)[name]
    h = np.array([0.0, 0.0, 1.0])
    a = np.array([0.0, 1.0, 0.0])
    body_m = is_body(labels)
    lm = _landmarks(body_m, h, a)
    mats = material_maps(hu, labels, voxel_size_m=s * 1e-3, modulus_law=modulus_law,
                         shell_label_thickness_m=phantom.spec.cortex_mm * 1e-3)
    v = Vertebra(
        level=name, spacing_m=(s * 1e-3,) * 3, affine_mm=aff, hu=hu, labels=labels, posterior_mask=posterior,
        materials=mats, landmarks=lm, morphometry=morph, source=phantom.ct.source,
        notes=("phantom: tissue labels from the construction",), extra={"truth": phantom.truth},
    )
    return with_veins(v, veins_seed)


def with_veins(v: Vertebra, seed: int | None) -> Vertebra:
    """``v`` with its intraosseous veins sampled from ``numpy.random.default_rng(seed)`` and carved into the labels
    (model/veins.py); ``seed=None`` returns ``v`` unchanged. Same seed, same bytes."""
    if seed is None:
        return v
    from .veins import carve_veins, rasterize_veins, sample_veins

    s_mm = v.spacing_m[0] * 1e3
    net = sample_veins(v.body_mask, v.landmarks, s_mm, np.random.default_rng(seed))
    lumen = rasterize_veins(net, v.shape, s_mm)
    labels, counts = carve_veins(v.labels, lumen, s_mm)
    mats = material_maps_like(replace(v.materials, vein_lumen=lumen), v.hu, labels, v.spacing_m[0])
    note = (f"veins (seed {seed}): basivertebral trunk {net.trunk_diameter_mm:.1f} mm wide, {net.trunk_depth_mm:.1f} mm "
            f"deep, {net.n_branches} branches +-{net.spread_deg:.0f} deg; {counts['channel']} channel voxels, exits "
            f"B {counts['B']} S {counts['S']} voxels")
    return replace(v, labels=labels, materials=mats, notes=v.notes + (note,), extra={**v.extra, "veins": net})


def _landmarks(body: np.ndarray, h: np.ndarray, a: np.ndarray) -> Landmarks:
    c = np.argwhere(body).mean(axis=0)
    post = _point_on_surface(body, c, -a)
    ant = _point_on_surface(body, c, a)
    sup = _point_on_surface(body, c, h)
    inf = _point_on_surface(body, c, -h)
    t = lambda v: tuple(float(x) for x in v)  # noqa: E731
    return Landmarks(t(c), t(h), t(a), t(post), t(ant), t(sup), t(inf))


def _assemble(name, hu, aff, body_m, vert_m, disc, h, a, spacing_mm, morph, source, cortical_defect, modulus_law,
              zone=None):
    if not body_m.any():
        raise EmptyMaskError(f"The body of {name} is empty after resampling.", "check the segmentation of this level.")
    body_m = ndimage.binary_fill_holes(body_m)
    notes = []
    labels = _shell_labels(body_m, h, spacing_mm)
    lm = _landmarks(body_m, h, a)
    post_wall = np.array(lm.posterior_wall_ijk)
    canal, canal_note = _canal(vert_m, body_m, post_wall, h, a, spacing_mm)
    notes.append(canal_note)
    labels[canal] = CANAL
    labels[disc & (labels == OUTSIDE)] = DISC
    shell = np.isin(labels, SHELL)
    near_shell = ndimage.binary_dilation(shell) & ~body_m & (labels == OUTSIDE)
    r_bvf = BVF_RADIUS_MM / spacing_mm
    n_bvf = _patch(labels, post_wall, r_bvf, BASIVERTEBRAL, shell | near_shell)
    lat = np.cross(h, a)
    c = np.array(lm.centroid_ijk)
    n_seg = 0
    for side in (1.0, -1.0):
        p = _point_on_surface(body_m, c, side * lat)
        n_seg += _patch(labels, p, SEGMENTAL_RADIUS_MM / spacing_mm, SEGMENTAL,
                        np.isin(labels, SHELL))
    if n_bvf == 0 or n_seg == 0:
        notes.append("basivertebral or segmental exits could not be placed on the wall")
    cleft = body_m & (hu < CLEFT_HU) & (labels == TRABECULAR)
    if cleft.any():
        labels[cleft] = DEFECT
        notes.append(f"intravertebral cleft: {int(cleft.sum())} voxels darker than {CLEFT_HU:g} HU")
    if cortical_defect is not None:
        dirs = {"anterior": a, "left": -lat, "right": lat}
        if cortical_defect not in dirs:
            raise ParameterError(f"cortical_defect={cortical_defect!r} is unknown.", "use 'anterior', 'left' or 'right'.")
        p = _point_on_surface(body_m, c, dirs[cortical_defect])
        along_h = np.abs(_project(labels.shape, p, h)) * spacing_mm
        across = np.abs(_project(labels.shape, p, np.cross(h, dirs[cortical_defect]))) * spacing_mm
        slot = (along_h <= DEFECT_HALF_HEIGHT_MM) & (across <= DEFECT_HALF_WIDTH_MM) & shell
        labels[slot] = DEFECT
        notes.append(f"cortical defect ({cortical_defect}): {int(slot.sum())} voxels")
    if zone is not None:
        from ..anatomy.fracture import ZONE_CLEFT, ZONE_CRACK

        opened = body_m & ((zone == ZONE_CLEFT) & (labels == LABELS["trabecular"])
                           | (zone == ZONE_CRACK) & shell)
        labels[opened] = LABELS["defect"]
        notes.append(f"virtual fracture: {int(opened.sum())} voxels of cleft and endplate/cortical break made defect; "
                     f"{int(np.isin(zone[body_m], FRACTURED_ZONES).sum())} body voxels weakened")
    posterior = vert_m & ~body_m & ~canal & ~ndimage.binary_dilation(body_m)
    mats = material_maps(hu, labels, voxel_size_m=spacing_mm * 1e-3, modulus_law=modulus_law,
                         fracture_zone=zone)
    return Vertebra(
        level=name, spacing_m=(spacing_mm * 1e-3,) * 3, affine_mm=aff, hu=hu.astype(np.float32), labels=labels,
        posterior_mask=posterior, materials=mats, landmarks=lm, morphometry=morph, source=source, notes=tuple(notes),
    )
