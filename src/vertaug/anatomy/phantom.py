"""Synthetic vertebra phantoms with exactly known geometry.

A phantom is a short stack of levels (by default the fractured level with one neighbour above and below, separated by
discs) voxelised on a regular grid. It returns the same types as the CT path — a CT :class:`Volume` in HU, a
TotalSegmentator-style label map (v2 numbering) and a ``vertebrae_body`` map — plus the tissue label map of the model
(:mod:`vertaug.model.labels`) and the true heights, so tests and examples run on exact known geometry.

Geometry, in a frame with x lateral (right), y anterior, z superior, in mm, each level centred on x = 0:

* Body: an axial "D" shape — an ellipse of semi-axes ``W/2`` (lateral) and ``0.55 D`` (AP) centred ``0.45 D`` in front
  of the posterior wall, cut by the flat posterior wall — extruded between an inferior endplate at ``z_bot`` and a
  superior endplate at ``z_bot + H(u, x)``, with ``u`` the fraction of the AP depth from the posterior wall.
* Fracture of deformity ``d`` (height-reduction fraction, from the Genant grade by default):
  wedge: ``H = Hp (1 - d max(0, u - 0.15) / 0.70)`` (the superior endplate tilts down anteriorly; H(0.15) = Hp,
  H(0.85) = Hp (1 - d)); biconcave: both endplates dished by ``d Hp / 2`` each at the centre,
  ``H = Hp (1 - d b)``, ``b = max(0, 1 - ((u - 0.5) / 0.35)^2 - (x / (0.6 W))^2)``; crush: the whole body uniformly
  ``H = Hp (1 - d)`` (both endplates move in).
* Cortex: body voxels within ``cortex_mm`` of the side walls; endplates: within ``endplate_mm`` of the superior and
  inferior surfaces; basivertebral foramen: a 4 mm channel through the posterior wall at mid-height; segmental vein
  exits: 3 mm patches of the lateral cortex at mid-height; optional cortical defect: a slot through the anterior cortex;
  optional cleft: a 2 mm fluid gap under the superior endplate.
* Posterior elements: canal (an ellipse behind the posterior wall), pedicles (elliptic cylinders from the body's
  posterolateral corners backwards), laminae and a spinous process.
* Slices (``slice_mm``, ``slice_offset_mm``, ``partial_volume``): the z spacing may differ from the in-plane spacing
  and the slice lattice may be shifted against the anatomy, so endplates fall anywhere within a slice. With
  ``partial_volume`` each voxel of a body's footprint near an endplate holds the CT a scanner would reconstruct: the
  column's exact profile along z (disc ``D``, endplate ``P`` of thickness ``t``, trabecular or cortical bone ``B``)
  weighted by a Gaussian slice sensitivity profile of FWHM one slice (sigma = slice / 2.3548),
  ``I(z) = D_bot Phi((z_lo - z)/sigma) + D_top (1 - Phi((z_hi - z)/sigma)) + P [w(z_lo, z_lo + t) + w(z_hi - t, z_hi)]
  + B w(z_lo + t, z_hi - t)``, ``w(a, b) = Phi((b - z)/sigma) - Phi((a - z)/sigma)``; labels stay sampled at the voxel
  centres (a segmentation on those slices). Without it a voxel takes the tissue at its centre.

Dimensions per level (``LEVEL_DIMENSIONS_MM``) are rounded adult values in the range of published morphometry
(Panjabi 1992 / Zhou 2000 order of magnitude); they are teaching-phantom values, not normative data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError, check_range
from ..model.labels import (
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
    TRABECULAR,
)
from .io import Volume
from .levels import BODY_LABEL, DISC_LABEL, LEVELS, label_table, normalize_level

__all__ = ["PhantomSpec", "Phantom", "make_phantom", "GRADE_DEFORMITY"]

#: Deformity used for a requested Genant grade: the middle of each band (grade 0 uses no deformity).
GRADE_DEFORMITY = {0: 0.0, 1: 0.225, 2: 0.325, 3: 0.50}

#: (posterior body height H, AP depth D, width W, disc height) in mm. Heights rise ~1 mm per level caudally so that
#: a level's height is the mean of its neighbours' (the crush reference).
LEVEL_DIMENSIONS_MM: dict[str, tuple[float, float, float, float]] = {
    "T10": (22.0, 27.0, 34.0, 6.0),
    "T11": (23.0, 28.0, 36.0, 7.0),
    "T12": (24.0, 29.0, 38.0, 8.0),
    "L1": (25.0, 31.0, 42.0, 9.0),
    "L2": (26.0, 32.0, 44.0, 10.0),
    "L3": (27.0, 33.0, 46.0, 10.0),
    "L4": (28.0, 34.0, 48.0, 10.0),
    "L5": (29.0, 34.0, 50.0, 10.0),
}

HU = {
    "soft_tissue": 40.0,
    "cortex": 700.0,
    "endplate": 600.0,
    "canal": 15.0,
    "basivertebral": 40.0,
    "segmental": 40.0,
    "defect": 30.0,
    "disc": 90.0,
    "posterior": 450.0,
}

FRACTURE_TYPES = ("none", "wedge", "biconcave", "crush")
#: The spinal canal behind the bodies: an elliptic tube of this width (lateral) and depth (AP), mm.
CANAL_WIDTH_MM, CANAL_DEPTH_MM = 22.0, 16.0


@dataclass(frozen=True)
class PhantomSpec:
    """What to build. Lengths in mm, densities in HU."""

    level: str = "L1"
    fracture: str = "none"
    grade: int = 0
    deformity: float | None = None
    spacing_mm: float = 1.0
    trabecular_hu: float = 80.0
    noise_hu: float = 0.0
    cortex_mm: float = 1.0
    endplate_mm: float = 1.0
    cortical_defect: bool = False
    cleft: bool = False
    neighbours: bool = True
    seed: int = 0
    slice_mm: float | None = None
    slice_offset_mm: float = 0.0
    partial_volume: bool = False

    def __post_init__(self):
        name = normalize_level(self.level)
        if name not in LEVEL_DIMENSIONS_MM:
            raise ParameterError(
                f"Phantom level {self.level!r} has no dimensions table.",
                f"choose one of {', '.join(LEVEL_DIMENSIONS_MM)} (neighbours need T10..L5).",
            )
        object.__setattr__(self, "level", name)
        if self.fracture not in FRACTURE_TYPES:
            raise ParameterError(f"Phantom fracture={self.fracture!r} is unknown.", f"use one of {FRACTURE_TYPES}.")
        if self.grade not in GRADE_DEFORMITY:
            raise ParameterError(f"Phantom grade={self.grade!r} is not a Genant grade.", "use 0, 1, 2 or 3.")
        if self.fracture == "none" and (self.grade or self.deformity):
            raise ParameterError("A phantom with fracture='none' cannot have a grade.", "set fracture or grade=0.")
        if self.deformity is not None:
            check_range("deformity", self.deformity, 0.0, 0.7, "", "give a height-reduction fraction in [0, 0.7].")
        check_range("spacing_mm", self.spacing_mm, 0.2, 3.0, "mm")
        check_range("trabecular_hu", self.trabecular_hu, -100.0, 400.0, "HU")
        check_range("noise_hu", self.noise_hu, 0.0, 200.0, "HU")
        check_range("cortex_mm", self.cortex_mm, 0.2, 5.0, "mm")
        check_range("endplate_mm", self.endplate_mm, 0.2, 5.0, "mm")
        if self.slice_mm is not None:
            check_range("slice_mm", self.slice_mm, 0.2, 6.0, "mm")
        check_range("slice_offset_mm", self.slice_offset_mm, 0.0, self.slice_thickness_mm, "mm",
                    "give a shift of the slice lattice within one slice.")

    @property
    def slice_thickness_mm(self) -> float:
        """Spacing (and slice profile FWHM) along z, mm."""
        return float(self.spacing_mm if self.slice_mm is None else self.slice_mm)

    @property
    def deformity_fraction(self) -> float:
        if self.fracture == "none":
            return 0.0
        return float(self.deformity if self.deformity is not None else GRADE_DEFORMITY[self.grade])


@dataclass(frozen=True, eq=False)
class Phantom:
    """A phantom: CT (HU), TotalSegmentator labels (v2), vertebrae_body map, tissue map and the truth."""

    spec: PhantomSpec
    ct: Volume
    labels: Volume
    body: Volume
    tissue: Volume
    truth: dict

    @property
    def numbering(self) -> str:
        return "v2"


def _stack(spec: PhantomSpec) -> list[str]:
    i = LEVELS.index(spec.level)
    names = [LEVELS[i - 1], spec.level, LEVELS[i + 1]] if spec.neighbours else [spec.level]
    for n in names:
        if n not in LEVEL_DIMENSIONS_MM:
            raise ParameterError(f"Neighbour {n} of {spec.level} has no phantom dimensions.", "choose T11..L4.")
    return names


def _height_profile(kind: str, d: float, hp: float, u: np.ndarray, x: np.ndarray, width: float):
    """(top offset from the intact top, bottom offset from the intact bottom) in mm: both >= 0 move inward."""
    zero = np.zeros(np.broadcast(u, x).shape)
    if kind == "wedge":
        return np.clip(d * hp * (u - 0.15) / 0.70, 0.0, 0.95 * hp) + zero, zero
    if kind == "biconcave":
        b = np.clip(1.0 - ((u - 0.5) / 0.35) ** 2 - (x / (0.6 * width)) ** 2, 0.0, None)
        return 0.5 * d * hp * b + zero, 0.5 * d * hp * b + zero
    if kind == "crush":
        return 0.5 * d * hp + zero, 0.5 * d * hp + zero
    return zero, zero


@dataclass(frozen=True)
class _Layout:
    """The voxel grid of a phantom: the stacked levels (cranial first) and the voxel centres, in mm."""

    names: list  # level names, cranial first
    dims: list  # LEVEL_DIMENSIONS_MM of each level
    levels_z: list  # (name, z of the intact bottom, z of the intact top) per level
    xs: np.ndarray  # voxel centres along x (right), y (anterior), z (superior)
    ys: np.ndarray
    zs: np.ndarray

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.xs.size, self.ys.size, self.zs.size)


def _layout(spec: PhantomSpec) -> _Layout:
    """Stack the levels along z (every endplate on a voxel face) and size the grid around them."""
    s = spec.spacing_mm
    names = _stack(spec)
    dims = [LEVEL_DIMENSIONS_MM[n] for n in names]
    max_d = max(d[1] for d in dims)
    max_w = max(d[2] for d in dims)
    canal_d = CANAL_DEPTH_MM
    # z layout, cranial first, starting at the top; every endplate on a voxel face
    levels_z = []
    margin_z = 6.0
    z = 0.0
    for name, (hp, _, _, disc) in zip(names, dims):
        top = z
        bottom = top - hp
        levels_z.append((name, bottom, top))
        z = bottom - disc
    z_min = levels_z[-1][1] - margin_z
    z_top = margin_z
    x_half = max_w / 2 + 12.0
    y_min, y_max = -(canal_d + 40.0), max_d + 8.0
    nx = int(np.ceil(2 * x_half / s))
    ny = int(np.ceil((y_max - y_min) / s))
    sz = spec.slice_thickness_mm
    nz = int(np.ceil((z_top - z_min) / sz))
    return _Layout(
        names=names, dims=dims, levels_z=levels_z, xs=-x_half + (np.arange(nx) + 0.5) * s,
        ys=y_min + (np.arange(ny) + 0.5) * s, zs=z_min + spec.slice_offset_mm + (np.arange(nz) + 0.5) * sz,
    )


def _level_truth(spec: PhantomSpec, name: str, bottom: float, top: float, dim) -> dict:
    """The exact heights, wedge angle and fracture of one level (the phantom's ground truth)."""
    hp, depth, width, _ = dim
    kind = spec.fracture if name == spec.level else "none"
    d_frac = spec.deformity_fraction if name == spec.level else 0.0
    heights = {}
    for key, frac in (("posterior", 0.15), ("middle", 0.5), ("anterior", 0.85)):
        t, b = _height_profile(kind, d_frac, hp, np.array(frac), np.array(0.0), width)
        heights[key] = float(hp - t - b)
    wedge = float(np.degrees(np.arctan((heights["posterior"] - heights["anterior"]) / (0.7 * depth))))
    return {
        "height_anterior_mm": heights["anterior"],
        "height_middle_mm": heights["middle"],
        "height_posterior_mm": heights["posterior"],
        "ap_depth_mm": depth,
        "width_mm": width,
        "wedge_angle_deg": wedge if kind == "wedge" else 0.0,
        "fracture": kind,
        "deformity": d_frac,
        "grade": spec.grade if name == spec.level else 0,
        "z_bottom_mm": bottom,
        "z_top_mm": top,
    }


def _level_body(spec: PhantomSpec, name: str, bottom: float, top: float, dim, X, Y, Z):
    """The body of one level: (body mask, z of its bottom and top surfaces, axial footprint)."""
    hp, depth, width, _ = dim
    u = Y / depth  # fraction of the AP depth from the posterior wall (y = 0)
    ell = (X / (width / 2)) ** 2 + ((Y - 0.45 * depth) / (0.55 * depth)) ** 2 <= 1.0
    foot = ell & (Y >= 0.0)
    kind = spec.fracture if name == spec.level else "none"
    dtop, dbot = _height_profile(kind, spec.deformity_fraction if name == spec.level else 0.0, hp, u, X, width)
    z_hi = top - dtop
    z_lo = bottom + dbot
    return foot & (Z <= z_hi) & (Z >= z_lo), z_lo, z_hi, foot


def _fill_tissue(spec: PhantomSpec, lay: _Layout, bodies: list, truth: dict, X, Y, Z):
    """Discs, canal, posterior elements, bodies with their shell, vessels and defects: (tissue, seg, bodymap)."""
    tissue = np.full(lay.shape, OUTSIDE, dtype=np.uint8)
    seg = np.zeros(lay.shape, dtype=np.uint16)
    bodymap = np.zeros(lay.shape, dtype=np.uint8)
    table = label_table("v2")
    # discs: the footprint between adjacent bodies
    for (_n1, _b1, lo1, _hi1, f1), (_n2, _b2, _lo2, hi2, f2) in zip(bodies[:-1], bodies[1:]):
        disc = (f1 & f2) & (Z < lo1) & (Z > hi2)
        tissue[disc] = DISC
        bodymap[disc] = DISC_LABEL
    # canal through the whole stack, posterior elements per level
    canal_w, canal_d = CANAL_WIDTH_MM, CANAL_DEPTH_MM
    canal = (X / (canal_w / 2)) ** 2 + ((Y + canal_d / 2 + 1.0) / (canal_d / 2)) ** 2 <= 1.0
    for (name, body, z_lo, z_hi, foot), (hp, depth, width, _) in zip(bodies, lay.dims):
        lvl = truth["levels"][name]
        zc = 0.5 * (lvl["z_bottom_mm"] + lvl["z_top_mm"])
        post = _posterior_elements(X, Y, Z, zc, hp, canal_w, canal_d) & ~canal
        seg[post] = table[name]
        tissue[post] = POSTERIOR_ELEMENT
        seg[body] = table[name]
        bodymap[body] = BODY_LABEL
        tissue[body] = TRABECULAR
        _shell(tissue, body, foot, X, Y, Z, z_lo, z_hi, width, depth, spec)
        if name == spec.level:
            _vascular_and_defects(tissue, body, X, Y, Z, zc, width, depth, spec, z_hi)
    tissue[canal & (tissue == OUTSIDE)] = CANAL
    return tissue, seg, bodymap


def make_phantom(spec: PhantomSpec | None = None, **kwargs) -> Phantom:
    """Build a phantom from a :class:`PhantomSpec` (or its fields as keyword arguments)."""
    if spec is None:
        spec = PhantomSpec(**kwargs)
    elif kwargs:
        raise ParameterError("Give either a PhantomSpec or keyword arguments, not both.", "pass one of them.")
    lay = _layout(spec)
    X, Y, Z = np.meshgrid(lay.xs, lay.ys, lay.zs, indexing="ij")
    truth: dict = {"levels": {}, "spec": spec, "units": "mm"}
    bodies = []
    for (name, bottom, top), dim in zip(lay.levels_z, lay.dims):
        bodies.append((name, *_level_body(spec, name, bottom, top, dim, X, Y, Z)))
        truth["levels"][name] = _level_truth(spec, name, bottom, top, dim)
    tissue, seg, bodymap = _fill_tissue(spec, lay, bodies, truth, X, Y, Z)

    ct = _hounsfield(tissue, spec)
    if spec.partial_volume:
        _partial_volume_endplates(ct, tissue, bodies, spec, X, Y, Z)
    _add_noise(ct, spec)
    s = spec.spacing_mm
    affine = np.diag([s, s, spec.slice_thickness_mm, 1.0])
    affine[:3, 3] = [lay.xs[0], lay.ys[0], lay.zs[0]]
    src = f"phantom:{spec.level}:{spec.fracture}:g{spec.grade}"
    truth["tissue_labels"] = dict(LABELS, posterior_element=POSTERIOR_ELEMENT)
    return Phantom(
        spec=spec,
        ct=Volume(ct, affine, src),
        labels=Volume(seg, affine, src + ":labels"),
        body=Volume(bodymap, affine, src + ":body"),
        tissue=Volume(tissue, affine, src + ":tissue"),
        truth=truth,
    )


def _posterior_elements(X, Y, Z, zc, hp, canal_w, canal_d) -> np.ndarray:
    """Pedicles, laminae and spinous process of one level (bone), behind the posterior wall."""
    ped_w, ped_h, ped_len = 8.0, 14.0, canal_d * 0.7
    zp = zc + 0.15 * hp
    ped = np.zeros(X.shape, dtype=bool)
    for side in (-1.0, 1.0):
        xc = side * (canal_w / 2 + ped_w / 2)
        ped |= (((X - xc) / (ped_w / 2)) ** 2 + ((Z - zp) / (ped_h / 2)) ** 2 <= 1.0) & (Y <= 1.0) & (Y >= -ped_len)
    ring_out = (X / (canal_w / 2 + 6.0)) ** 2 + ((Y + canal_d / 2 + 1.0) / (canal_d / 2 + 5.0)) ** 2 <= 1.0
    lamina = ring_out & (Y < -ped_len) & (np.abs(Z - zp) <= 0.45 * hp)
    spinous = (np.abs(X) <= 3.0) & (Y < -canal_d) & (Y >= -(canal_d + 32.0)) & (np.abs(Z - zp + 3.0) <= 0.35 * hp)
    return ped | lamina | spinous


def _shell(tissue, body, foot, X, Y, Z, z_lo, z_hi, width, depth, spec) -> None:
    """Cortex on the side walls, endplates at the superior and inferior surfaces."""
    tc = spec.cortex_mm
    inner = ((X / (width / 2 - tc)) ** 2 + ((Y - 0.45 * depth) / (0.55 * depth - tc)) ** 2 <= 1.0) & (Y >= tc)
    wall = body & ~inner
    te = spec.endplate_mm
    plate = body & ((Z > z_hi - te) | (Z < z_lo + te))
    tissue[wall] = CORTEX
    tissue[plate & ~wall] = ENDPLATE


def _vascular_and_defects(tissue, body, X, Y, Z, zc, width, depth, spec, z_hi) -> None:
    s = spec.spacing_mm
    reach = max(spec.cortex_mm, s) + s
    bvf = (np.abs(X) <= max(2.0, s)) & (np.abs(Z - zc) <= max(2.0, s)) & (Y >= -s) & (Y <= reach)
    tissue[bvf & (body | (tissue == OUTSIDE))] = BASIVERTEBRAL
    ycen = 0.45 * depth
    for side in (-1.0, 1.0):
        lateral = side * X >= (width / 2 - reach)
        seg_vein = lateral & (np.abs(Y - ycen) <= max(1.5, s)) & (np.abs(Z - zc) <= max(1.5, s)) & body
        tissue[seg_vein & (tissue == CORTEX)] = SEGMENTAL
    if spec.cortical_defect:
        slot = (Y >= depth - reach - 0.5) & (np.abs(X) <= 4.0) & (np.abs(Z - zc) <= max(1.0, s)) & body
        tissue[slot & (tissue == CORTEX)] = DEFECT
    if spec.cleft:
        cleft = body & (Z <= z_hi - spec.endplate_mm) & (Z > z_hi - spec.endplate_mm - 2.0)
        cleft &= (np.abs(X) <= width / 4) & (Y > depth * 0.3) & (Y < depth * 0.85)
        tissue[cleft & (tissue == TRABECULAR)] = DEFECT


def _hounsfield(tissue: np.ndarray, spec: PhantomSpec) -> np.ndarray:
    lut = np.full(256, HU["soft_tissue"], dtype=np.float32)
    lut[TRABECULAR] = spec.trabecular_hu
    lut[CORTEX] = HU["cortex"]
    lut[ENDPLATE] = HU["endplate"]
    lut[CANAL] = HU["canal"]
    lut[BASIVERTEBRAL] = HU["basivertebral"]
    lut[SEGMENTAL] = HU["segmental"]
    lut[DEFECT] = HU["defect"]
    lut[DISC] = HU["disc"]
    lut[POSTERIOR_ELEMENT] = HU["posterior"]
    return lut[tissue].astype(np.float32)


def _add_noise(ct: np.ndarray, spec: PhantomSpec) -> None:
    if spec.noise_hu > 0:
        rng = np.random.default_rng(spec.seed)
        ct += rng.normal(0.0, spec.noise_hu, size=ct.shape).astype(np.float32)


def _partial_volume_endplates(ct, tissue, bodies, spec: PhantomSpec, X, Y, Z) -> None:
    """Replace the CT near each body's endplates by the column's exact z profile seen through a Gaussian slice
    profile of FWHM one slice (module docstring, "Slices"). In place; other voxels (and the tissue map) unchanged."""
    from scipy.special import ndtr

    sig = spec.slice_thickness_mm / 2.3548
    reach = 4.0 * sig + spec.endplate_mm
    kinds = (TRABECULAR, ENDPLATE, CORTEX, DISC, OUTSIDE)
    foots = [b[4] for b in bodies]
    for k, (name, _body, z_lo, z_hi, foot) in enumerate(bodies):
        _, depth, width, _ = LEVEL_DIMENSIONS_MM[name]
        tc = spec.cortex_mm
        inner = ((X / (width / 2 - tc)) ** 2 + ((Y - 0.45 * depth) / (0.55 * depth - tc)) ** 2 <= 1.0) & (Y >= tc)
        near = (np.abs(Z - z_lo) <= reach) | (np.abs(Z - z_hi) <= reach)
        sel = foot & near & np.isin(tissue, kinds)
        zs, lo, hi, inn = Z[sel], z_lo[sel], z_hi[sel], inner[sel]
        above = foots[k - 1][sel] if k > 0 else np.zeros(zs.shape, bool)
        below = foots[k + 1][sel] if k + 1 < len(foots) else np.zeros(zs.shape, bool)
        d_top = np.where(above, HU["disc"], HU["soft_tissue"])
        d_bot = np.where(below, HU["disc"], HU["soft_tissue"])
        b = np.where(inn, spec.trabecular_hu, HU["cortex"])
        p = np.where(inn, HU["endplate"], HU["cortex"])
        t = np.minimum(spec.endplate_mm, 0.5 * np.maximum(hi - lo, 0.0))

        def w(a, c, zs=zs):
            return ndtr((c - zs) / sig) - ndtr((a - zs) / sig)

        val = (d_bot * ndtr((lo - zs) / sig) + d_top * (1.0 - ndtr((hi - zs) / sig))
               + p * (w(lo, lo + t) + w(hi - t, hi)) + b * w(lo + t, hi - t))
        ct[sel] = val.astype(np.float32)
