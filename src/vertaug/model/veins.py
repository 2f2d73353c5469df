"""Intraosseous venous anatomy of a vertebral body, sampled per patient: the basivertebral plexus and its
anterolateral (segmental / nutrient) drainage, as Poiseuille channels of the flow model.

Anatomy (docs/veins.md, docs/references.md):

* The basivertebral vein leaves the body through the basivertebral foramen (BVF), a defect of the posterior wall
  between the pedicles, and drains into the anterior internal (epidural) vertebral venous plexus: route B. Its bony
  canal (BVC) runs straight anteriorly, then the vein branches in the mid-height (horizontal) plane of the body into
  a Y- or candelabra-shaped plexus whose branches reach the anterolateral cortex and leave through small foramina
  to the anterior external plexus and the segmental (lumbar) veins: route S (Crock & Yoshizawa 1976; Gray's
  anatomy). One BVF in 45.1 %, two in 36.9 % of 1561 dried vertebrae; BVC depth 12-21.8 % of the AP diameter
  (Tzika et al. 2021, doi 10.1007/s00276-021-02690-0) [V]. On CT of 107 osteoporotic lumbar fractures the BVF is
  7.8 +- 1.6 mm wide, 5.4 +- 1.1 mm high and 12.4 +- 2.1 mm deep, closer to the upper endplate (He, Wang & Li 2023,
  Chin J Clin Anat 41:283, doi 10.13418/j.issn.1001-165x.2023.3.07) [V]. MRI at 0.5 mm traces 4-10 such
  basivertebral networks per spine (Grant et al. 2015) [V].
* Sampling (one draw per patient from a seeded ``numpy.random.Generator``): trunk diameter ~ N(5.4, 1.1) mm
  clipped to [2, 8] mm (the BVF height, taken as the lumen: the canal is filled by the vein, an upper bound [D]);
  trunk depth ~ U(12, 21.8) % of the AP depth (Tzika); branches 2 (Y) .. 4 (candelabra), uniform [D: the published
  range of the shape, no frequencies found]; branch half-spread 25-65 deg from the anterior axis, uniform [D];
  branch radius by Murray's law r_b = r_t n^(-1/3) (Murray 1926, PNAS 12:207) [V]; the branch runs straight in the
  mid-height plane from the trunk's end to the cortex. The trunk starts at the posterior-wall landmark (mid-height,
  mid-sagittal) and runs along the anterior axis.

Conductance (derivation in docs/veins.md). A tube of radius r carries Poiseuille flow Q = pi r^4 / (8 mu) dp/ds.
Smeared over a chain of voxels of side h (n voxels across the lumen), the Darcy flux Q = k A dp/ds with A = n h^2
gives the channel voxel's permeability

    k_tube = (r^2 / 8) * f,    f = pi r^2 / (n h^2)   (area fraction of the lumen in the voxel, <= 1),

in parallel with the bone of the rest of the voxel: k = k_tube + (1 - f) k_bone (materials). A 6-connected voxel
chain along a direction d is longer than the tube by |d|_1 / |d|_2; k_tube is multiplied by that ratio so the
chain's resistance equals the tube's. The channel voxels are flow cells (label VEIN_CHANNEL, porous): they exchange
with the trabecular pore space through every face (harmonic-mean transmissibility, flow.py), i.e. the vein opens into
the bone along its length; where a channel crosses the shell it is an exit patch (BASIVERTEBRAL at the foramen,
SEGMENTAL at the anterolateral cortex) at the venous pressure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .labels import BASIVERTEBRAL, CORTEX, SEGMENTAL, SHELL, TRABECULAR, VEIN_CHANNEL

__all__ = [
    "VeinAnatomy",
    "VeinLumen",
    "VeinNetwork",
    "VeinSegment",
    "carve_veins",
    "rasterize_veins",
    "sample_veins",
    "tube_permeability_m2",
]

#: sampling step along a segment, in voxels
_STEP_VOX = 0.25


@dataclass(frozen=True)
class VeinAnatomy:
    """Population parameters of the sampled anatomy (sources in the module docstring)."""

    trunk_diameter_mean_mm: float = 5.4  # He 2023, BVF height (CT)
    trunk_diameter_sd_mm: float = 1.1
    trunk_diameter_range_mm: tuple[float, float] = (2.0, 8.0)
    trunk_depth_fraction_range: tuple[float, float] = (0.12, 0.218)  # Tzika 2021, BVC depth / AP diameter
    n_branches_range: tuple[int, int] = (2, 4)  # Y .. candelabra
    branch_spread_deg_range: tuple[float, float] = (25.0, 65.0)
    murray_exponent: float = 3.0  # Murray 1926


@dataclass(frozen=True)
class VeinSegment:
    """A straight tube between two points (voxel index coordinates of the model grid)."""

    start_ijk: tuple[float, float, float]
    end_ijk: tuple[float, float, float]
    radius_mm: float
    kind: str  # "trunk" (route B side) or "branch" (route S side)


@dataclass(frozen=True)
class VeinNetwork:
    """One patient's sampled venous anatomy of one body."""

    segments: tuple[VeinSegment, ...]
    trunk_diameter_mm: float
    trunk_depth_mm: float
    n_branches: int
    spread_deg: float


@dataclass(frozen=True, eq=False)
class VeinLumen:
    """The rasterised channels: lumen area fraction f and tube permeability k_tube (m^2) per voxel (0 elsewhere)."""

    area_fraction: np.ndarray
    k_tube_m2: np.ndarray
    network: VeinNetwork | None = None


def tube_permeability_m2(radius_m: float, voxel_m: float, n_across: float = 1.0) -> tuple[float, float]:
    """(k_tube, f) of a voxel of a Poiseuille tube of ``radius_m`` smeared over ``n_across`` voxels of side
    ``voxel_m``: f = pi r^2 / (n h^2) (capped at 1), k_tube = r^2 / 8 * f."""
    f = min(1.0, np.pi * radius_m**2 / (n_across * voxel_m**2))
    return radius_m**2 / 8.0 * f, f


def _exit_point(body: np.ndarray, start: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """The first point outside ``body`` marching from ``start`` along ``direction`` (voxel coordinates)."""
    p = start.astype(float)
    for _ in range(4 * max(body.shape)):
        p = p + _STEP_VOX * direction
        q = np.round(p).astype(int)
        if np.any(q < 0) or np.any(q >= body.shape) or not body[tuple(q)]:
            return p
    return p


def sample_veins(body: np.ndarray, landmarks, spacing_mm: float, rng: np.random.Generator,
                 anatomy: VeinAnatomy = VeinAnatomy()) -> VeinNetwork:
    """Draw one patient's basivertebral trunk and branches in the level's own frame (``landmarks``: height and
    anterior axes, posterior and anterior wall points)."""
    a = np.asarray(landmarks.anterior_axis, float)
    h = np.asarray(landmarks.height_axis, float)
    lat = np.cross(h, a)
    post = np.asarray(landmarks.posterior_wall_ijk, float)
    ant = np.asarray(landmarks.anterior_wall_ijk, float)
    ap_mm = float(np.dot(ant - post, a)) * spacing_mm
    lo, hi = anatomy.trunk_diameter_range_mm
    d_t = float(np.clip(rng.normal(anatomy.trunk_diameter_mean_mm, anatomy.trunk_diameter_sd_mm), lo, hi))
    depth_mm = float(rng.uniform(*anatomy.trunk_depth_fraction_range)) * ap_mm
    n_b = int(rng.integers(anatomy.n_branches_range[0], anatomy.n_branches_range[1] + 1))
    spread = float(rng.uniform(*anatomy.branch_spread_deg_range))
    start = post - 2.0 * a  # from outside the posterior wall, through the foramen
    fork = post + (depth_mm / spacing_mm) * a
    segs = [VeinSegment(tuple(start), tuple(fork), d_t / 2.0, "trunk")]
    r_b = d_t / 2.0 * n_b ** (-1.0 / anatomy.murray_exponent)
    for ang in np.radians(np.linspace(-spread, spread, n_b)):
        d = np.cos(ang) * a + np.sin(ang) * lat
        end = _exit_point(body, fork, d) + 1.0 * d  # one voxel beyond the body: through the cortex
        segs.append(VeinSegment(tuple(fork), tuple(end), r_b, "branch"))
    return VeinNetwork(tuple(segs), d_t, depth_mm, n_b, float(spread))


def _chain(p0: np.ndarray, p1: np.ndarray, shape) -> np.ndarray:
    """The 6-connected voxel chain along p0 -> p1 (index array, n x 3), clipped to the grid."""
    n = max(2, int(np.ceil(np.linalg.norm(p1 - p0) / _STEP_VOX)) + 1)
    pts = np.round(p0[None] + np.linspace(0.0, 1.0, n)[:, None] * (p1 - p0)[None]).astype(int)
    out = [pts[0]]
    for q in pts[1:]:
        while np.any(q != out[-1]):
            step = out[-1].copy()
            ax = int(np.argmax(np.abs(q - step)))
            step[ax] += int(np.sign(q[ax] - step[ax]))
            out.append(step)
    c = np.array(out)
    keep = np.all((c >= 0) & (c < np.asarray(shape)), axis=1)
    return c[keep]


def _tube_voxels(seg: VeinSegment, shape, spacing_mm: float) -> tuple[np.ndarray, float]:
    """Mask of the voxels of one segment (the chain, and for r > h/2 every voxel whose centre is within r + h/2 of
    the axis, so that the voxels hold the whole lumen: f <= 1) and the number of voxels across the lumen."""
    p0, p1 = np.asarray(seg.start_ijk, float), np.asarray(seg.end_ijk, float)
    chain = _chain(p0, p1, shape)
    mask = np.zeros(shape, bool)
    if chain.size == 0:
        return mask, 1.0
    mask[tuple(chain.T)] = True
    r = seg.radius_mm / spacing_mm
    if r > 0.5:
        g = np.ogrid[tuple(slice(0, s) for s in shape)]
        d = p1 - p0
        L2 = float(d @ d)
        rel = [gi - c for gi, c in zip(g, p0)]
        t = np.clip(sum(ri * di for ri, di in zip(rel, d)) / L2, 0.0, 1.0)
        dist2 = sum((ri - t * di) ** 2 for ri, di in zip(rel, d))
        mask |= dist2 <= (r + 0.5) ** 2
    return mask, max(1.0, mask.sum() / len(chain))


def rasterize_veins(network: VeinNetwork, shape, spacing_mm: float) -> VeinLumen:
    """Area fraction and tube permeability of every voxel the network's tubes cross (the larger where two
    overlap)."""
    f_all = np.zeros(shape, np.float32)
    k_all = np.zeros(shape, np.float32)
    for seg in network.segments:
        mask, n_across = _tube_voxels(seg, shape, spacing_mm)
        d = np.asarray(seg.end_ijk) - np.asarray(seg.start_ijk)
        staircase = float(np.abs(d).sum() / np.linalg.norm(d)) if np.any(d) else 1.0
        k, f = tube_permeability_m2(seg.radius_mm * 1e-3, spacing_mm * 1e-3, n_across)
        k_all[mask] = np.maximum(k_all[mask], np.float32(k * staircase))
        f_all[mask] = np.maximum(f_all[mask], np.float32(f))
    return VeinLumen(f_all, k_all, network)


def carve_veins(labels: np.ndarray, lumen: VeinLumen, spacing_mm: float) -> tuple[np.ndarray, dict[str, int]]:
    """New labels with the channels: trabecular voxels of a tube become VEIN_CHANNEL; shell voxels (cortex,
    endplate) within one voxel of a tube become the exit patch of its route (trunk: BASIVERTEBRAL, branch:
    SEGMENTAL); the old fixed SEGMENTAL patches go back to cortex. Returns (labels, voxel counts)."""
    out = labels.copy()
    out[out == SEGMENTAL] = CORTEX
    out[(lumen.k_tube_m2 > 0) & (labels == TRABECULAR)] = VEIN_CHANNEL
    counts = {"channel": int((out == VEIN_CHANNEL).sum()), "B": 0, "S": 0}
    shell = np.isin(out, SHELL)
    for seg in lumen.network.segments if lumen.network else ():
        mask, _ = _tube_voxels(seg, labels.shape, spacing_mm)
        route, value = ("B", BASIVERTEBRAL) if seg.kind == "trunk" else ("S", SEGMENTAL)
        patch = ndimage.binary_dilation(mask) & shell
        out[patch] = value
        counts[route] += int(patch.sum())
    return out, counts
