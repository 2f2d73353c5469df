"""Digitally reconstructed radiographs (DRR): attenuation from CT and materials, and line integrals through them.

Equations (docs/fluoro.md has the derivations and sources):

* Beer-Lambert along one ray r(t) = o + t d (|d| = 1, t in mm):  I / I0 = exp(-L),  L = int mu(r(t)) dt.
* Attenuation from CT at one effective photon energy E (keV):  mu = mu_water(E) (1 + HU / 1000), clipped at 0
  (air, HU = -1000, gives 0).  mu_water(E) = (mu/rho)_water(E) * 1 g/cm^3.
* A material of mass fractions w_i and density rho:  mu = rho * sum_i w_i (mu/rho)_i(E)  (Bragg additivity).
  Mass attenuation coefficients (mu/rho)_i are NIST SRD 126 values (Hubbell & Seltzer 2004), tabulated below at
  40, 50, 60, 80 and 100 keV and interpolated log-log between them (all of those energies lie above the K edges of
  iodine, 33.2 keV, and barium, 37.4 keV, so log-log interpolation is valid inside the table).
* An object that replaces tissue adds  dL = int f(r) (mu_obj - mu_tissue(r)) dt  to the CT line integral, with f its
  volume fraction; the line integral is linear, so every frame is the CT projection (computed once) plus the
  projections of the object fields (small grids) and the analytic chords of the cannulas and ellipsoids.
* Line integrals through a voxel field use Joseph's method (Joseph 1982, IEEE TMI 1:192): the ray is cut by the planes
  of the grid axis most aligned with it; on each plane the field is sampled by bilinear interpolation and weighted by
  the step length between planes, spacing / |cos(angle to that axis)|.  For an axis-aligned parallel beam this is
  the exact integral of the voxel field seen as piecewise constant along the beam (a plain sum times the spacing).
* Cylinders (cannulas, tubes) and ellipsoids (balloons) are intersected exactly: chord = t_out - t_in of the ray
  with the quadric, clipped to the cylinder's length.

Views (RAS+ world, mm): 'lateral' looks along +x (source on the patient's left, detector on the right), displayed
with anterior on the viewer's left and superior up; 'ap' looks along -y (source anterior, detector posterior: the
tube under the table of a prone patient), displayed with the patient's right on the viewer's left and superior up.
Pixel sizes are given at the isocentre plane for both parallel and perspective projections.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InvalidValueError, ParameterError, check_range

__all__ = [
    "CEMENT_PMMA_BASO4",
    "EFFECTIVE_ENERGY_KEV",
    "MASS_ATTENUATION_CM2_G",
    "STAINLESS_STEEL",
    "TABLE_ENERGIES_KEV",
    "Geometry",
    "Material",
    "Rays",
    "cement_material",
    "contrast_material",
    "crop_to_support",
    "cylinder_chord_mm",
    "ellipsoid_chord_mm",
    "make_rays",
    "mass_attenuation_cm2_g",
    "mu_from_hu",
    "mu_mixture_per_mm",
    "mu_water_per_mm",
    "project_volume",
    "resample_to_grid",
    "tube_chord_mm",
]

# ------------------------------------------------------------------------------------------------ attenuation data

#: Photon energies of the table (keV).
TABLE_ENERGIES_KEV = (40.0, 50.0, 60.0, 80.0, 100.0)

#: (mu/rho) in cm^2/g at TABLE_ENERGIES_KEV, total with coherent scattering: NIST Standard Reference Database 126,
#: Hubbell & Seltzer (2004), https://physics.nist.gov/PhysRefData/XrayMassCoef/ (ElemTab/zNN.html, ComTab/water.html,
#: ComTab/pmma.html). Water [V] read from the NIST table text; the others [V] from a verbatim copy of the NIST
#: tables (github ehsteve/roentgen, roentgen/data/elements/z08, z16, z24, z26, z28, z53, z56 and
#: compounds_mixtures/pmma.csv); iodine also matches a second copy of z53 (60 keV: 7.579).
MASS_ATTENUATION_CM2_G: dict[str, tuple[float, ...]] = {
    "water": (0.2683, 0.2269, 0.2059, 0.1837, 0.1707),
    "pmma": (0.2350, 0.2074, 0.1924, 0.1751, 0.1641),
    "O": (0.2585, 0.2132, 0.1907, 0.1678, 0.1551),
    "S": (0.9872, 0.5849, 0.4053, 0.2585, 0.2020),
    "Cr": (2.856, 1.550, 0.9639, 0.4905, 0.3166),
    "Fe": (3.629, 1.958, 1.205, 0.5952, 0.3717),
    "Ni": (4.600, 2.474, 1.512, 0.7306, 0.4440),
    "I": (22.10, 12.32, 7.579, 3.510, 1.942),
    "Ba": (24.57, 13.79, 8.511, 3.963, 2.196),
}

#: Effective (mean) photon energy of the fluoroscopy beam, keV. A spine C-arm runs at about 70-100 kVp with
#: ~3-4 mm Al filtration, which gives a mean energy of roughly 40-60 % of the peak [M]; 60 keV is a single-energy
#: stand-in (no beam hardening). Every function takes ``energy_kev`` to change it.
EFFECTIVE_ENERGY_KEV = 60.0

_ATOMIC_MASS = {"Ba": 137.327, "S": 32.06, "O": 15.999}  # IUPAC standard atomic weights


def mass_attenuation_cm2_g(component: str, energy_kev: float = EFFECTIVE_ENERGY_KEV) -> float:
    """(mu/rho) of a tabulated component (cm^2/g), log-log interpolated inside 40-100 keV."""
    if component not in MASS_ATTENUATION_CM2_G:
        raise ParameterError(f"Material component {component!r} has no attenuation data.",
                             f"use one of {', '.join(MASS_ATTENUATION_CM2_G)}.")
    e = check_range("energy_kev", energy_kev, TABLE_ENERGIES_KEV[0], TABLE_ENERGIES_KEV[-1], "keV",
                    "the attenuation table covers 40-100 keV (above the iodine and barium K edges).")
    return float(np.exp(np.interp(np.log(e), np.log(TABLE_ENERGIES_KEV), np.log(MASS_ATTENUATION_CM2_G[component]))))


def mu_water_per_mm(energy_kev: float = EFFECTIVE_ENERGY_KEV) -> float:
    """Linear attenuation of water (density 1 g/cm^3) in 1/mm: 0.02059 /mm at 60 keV."""
    return mass_attenuation_cm2_g("water", energy_kev) * 1.0 / 10.0


def mu_from_hu(hu: np.ndarray, energy_kev: float = EFFECTIVE_ENERGY_KEV) -> np.ndarray:
    """mu = mu_water (1 + HU/1000) in 1/mm, clipped at 0 (float32). NaN/inf raise InvalidValueError."""
    hu = np.asarray(hu, dtype=np.float32)
    if not np.isfinite(hu).all():
        raise InvalidValueError("The CT holds NaN or infinite HU values.", "fill or crop them before the DRR.")
    mu = np.float32(mu_water_per_mm(energy_kev)) * (np.float32(1.0) + hu / np.float32(1000.0))
    return np.maximum(mu, np.float32(0.0))


def mu_mixture_per_mm(mass_fractions: dict[str, float], density_g_cm3: float,
                      energy_kev: float = EFFECTIVE_ENERGY_KEV) -> float:
    """mu = rho sum_i w_i (mu/rho)_i in 1/mm (Bragg additivity); fractions must sum to 1 within 1e-6."""
    total = sum(mass_fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise ParameterError(f"Mass fractions {mass_fractions} sum to {total:g}, not 1.", "normalise them.")
    rho = check_range("density_g_cm3", density_g_cm3, 1e-3, 25.0, "g/cm^3")
    return rho * sum(w * mass_attenuation_cm2_g(k, energy_kev) for k, w in mass_fractions.items()) / 10.0


@dataclass(frozen=True)
class Material:
    """A material given by its mass fractions of tabulated components and its density (g/cm^3)."""

    name: str
    mass_fractions: tuple[tuple[str, float], ...]
    density_g_cm3: float
    source: str = ""

    def mu_per_mm(self, energy_kev: float = EFFECTIVE_ENERGY_KEV) -> float:
        return mu_mixture_per_mm(dict(self.mass_fractions), self.density_g_cm3, energy_kev)


def _baso4_fractions() -> dict[str, float]:
    m = _ATOMIC_MASS["Ba"] + _ATOMIC_MASS["S"] + 4 * _ATOMIC_MASS["O"]
    return {"Ba": _ATOMIC_MASS["Ba"] / m, "S": _ATOMIC_MASS["S"] / m, "O": 4 * _ATOMIC_MASS["O"] / m}


#: Barium in the cured vertebroplasty cement, mass fraction [V]: a PMMA cement with 30 wt% BaSO4 in its powder holds
#: 11 wt% Ba once mixed with the monomer (Lewis et al., J Biomed Mater Res A 2007, "Evaluation of a highly-radiopaque
#: iodine-containing acrylic bone cement ...", abstract: "30 wt % BaSO4 in the powder component (BA cement) ... (11 wt %
#: of Ba in the cement)"). The brief's "~30 % BaSO4" is the powder share; in the cement it is 0.11 / w_Ba(BaSO4) = 18.7 %.
CEMENT_BA_MASS_FRACTION = 0.11
#: Densities [M]: cured PMMA 1.19 g/cm^3 (the NIST SRD 126 table-2 density of PMMA), BaSO4 (barite) 4.50 g/cm^3.
PMMA_DENSITY_G_CM3 = 1.19
BASO4_DENSITY_G_CM3 = 4.50


def cement_material(baso4_mass_fraction: float | None = None) -> Material:
    """PMMA with BaSO4: mass fractions by Bragg additivity, density by volume additivity (no porosity).

    Default: the BaSO4 share that gives CEMENT_BA_MASS_FRACTION of barium (18.7 wt%).
    """
    w_b = (CEMENT_BA_MASS_FRACTION / _baso4_fractions()["Ba"] if baso4_mass_fraction is None
           else check_range("baso4_mass_fraction", baso4_mass_fraction, 0.0, 0.6, "", "cements carry 0-60 wt% BaSO4."))
    fr = {"pmma": 1.0 - w_b}
    for k, v in _baso4_fractions().items():
        fr[k] = fr.get(k, 0.0) + w_b * v
    rho = 1.0 / ((1.0 - w_b) / PMMA_DENSITY_G_CM3 + w_b / BASO4_DENSITY_G_CM3)
    return Material(f"PMMA + {100 * w_b:.1f} wt% BaSO4", tuple(fr.items()), rho,
                    "NIST SRD 126 mass attenuation; Ba 11 wt% (Lewis 2007); densities [M]")


#: The bone cement: 1.38 g/cm^3, mu = 0.154 /mm at 60 keV (7.5 x water; docs/fluoro.md).
CEMENT_PMMA_BASO4 = cement_material()

#: Cannula steel [M]: AISI 304 stainless, Fe 71 / Cr 19 / Ni 10 wt% (minor elements folded into Fe), 8.0 g/cm^3.
STAINLESS_STEEL = Material("stainless steel 304", (("Fe", 0.71), ("Cr", 0.19), ("Ni", 0.10)), 8.0,
                           "NIST SRD 126 mass attenuation; composition and density [M]")

#: Iodine concentration in the KP balloon (mg I / mL) [M]: contrast of 300 mg I/mL diluted to about 50 %.
BALLOON_IODINE_MG_ML = 150.0


def contrast_material(iodine_mg_ml: float = BALLOON_IODINE_MG_ML) -> Material:
    """Iodinated contrast as iodine dissolved in water: mu = mu_water + c_I (mu/rho)_I (the contrast molecule's
    organic part is counted as water)."""
    c = check_range("iodine_mg_ml", iodine_mg_ml, 0.0, 400.0, "mg I/mL", "clinical contrast holds 0-400 mg I/mL.")
    rho = 1.0 + c / 1000.0
    w_i = (c / 1000.0) / rho
    return Material(f"contrast {c:g} mg I/mL", (("water", 1.0 - w_i), ("I", w_i)), rho,
                    "NIST SRD 126 mass attenuation; concentration [M]")


# ------------------------------------------------------------------------------------------------ geometry

VIEWS = {
    # beam direction, detector column axis (u), detector row axis (v), all in RAS+ world
    "lateral": (np.array([1.0, 0.0, 0.0]), np.array([0.0, -1.0, 0.0]), np.array([0.0, 0.0, -1.0])),
    "ap": (np.array([0.0, -1.0, 0.0]), np.array([-1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])),
}
#: Screen-edge letters (left, right) of each view, for the frames.
VIEW_LETTERS = {"lateral": ("A", "P"), "ap": ("R", "L")}


@dataclass(frozen=True)
class Geometry:
    """Where the detector is and how rays run.

    view: 'lateral' or 'ap'. projection: 'parallel' or 'perspective'. centre_mm: the isocentre (RAS+ mm).
    size_mm: (width, height) of the field at the isocentre. pixel_mm: pixel size at the isocentre.
    source_detector_mm / source_isocentre_mm: the C-arm distances for 'perspective' (defaults [M]: a mobile C-arm
    has a source-image distance of about 1000 mm with the patient near the middle).
    """

    view: str = "lateral"
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    size_mm: tuple[float, float] = (200.0, 200.0)
    pixel_mm: float = 1.0
    projection: str = "parallel"
    source_detector_mm: float = 1000.0
    source_isocentre_mm: float = 600.0

    def __post_init__(self):
        if self.view not in VIEWS:
            raise ParameterError(f"Parameter view={self.view!r} is not a known view.", "use 'lateral' or 'ap'.")
        if self.projection not in ("parallel", "perspective"):
            raise ParameterError(f"Parameter projection={self.projection!r} is not known.",
                                 "use 'parallel' or 'perspective'.")
        check_range("pixel_mm", self.pixel_mm, 0.05, 10.0, "mm")
        for s in self.size_mm:
            check_range("size_mm", s, 1.0, 2000.0, "mm")
        sdd = check_range("source_detector_mm", self.source_detector_mm, 100.0, 5000.0, "mm")
        check_range("source_isocentre_mm", self.source_isocentre_mm, 50.0, sdd, "mm",
                    "the isocentre lies between the source and the detector.")

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the image."""
        return (max(1, round(float(self.size_mm[1]) / float(self.pixel_mm))),
                max(1, round(float(self.size_mm[0]) / float(self.pixel_mm))))


@dataclass(frozen=True, eq=False)
class Rays:
    """One ray per pixel (rows, cols flattened): origins (N, 3) and unit directions (N, 3) in world mm."""

    origins: np.ndarray
    directions: np.ndarray
    shape: tuple[int, int]
    parallel_axis: np.ndarray | None  # the common direction of a parallel beam, else None


def make_rays(g: Geometry) -> Rays:
    beam, u, v = VIEWS[g.view]
    nr, nc = g.shape
    cu = (np.arange(nc) - (nc - 1) / 2.0) * g.pixel_mm
    cv = (np.arange(nr) - (nr - 1) / 2.0) * g.pixel_mm
    vv, uu = np.meshgrid(cv, cu, indexing="ij")
    c = np.asarray(g.centre_mm, dtype=float)
    iso = c + uu.reshape(-1, 1) * u + vv.reshape(-1, 1) * v  # points on the isocentre plane
    if g.projection == "parallel":
        d = np.broadcast_to(beam, iso.shape).copy()
        return Rays(iso - 1000.0 * beam, d, (nr, nc), beam.copy())
    src = c - g.source_isocentre_mm * beam
    d = iso - src
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return Rays(np.broadcast_to(src, iso.shape).copy(), d, (nr, nc), None)


# ------------------------------------------------------------------------------------------------ projection


def _box_hits(o: np.ndarray, d: np.ndarray, shape) -> np.ndarray:
    """Rays (index space) that cross the box [-1, n] of the grid (slab test)."""
    lo = np.full(3, -1.0)
    hi = np.asarray(shape, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (lo - o) / d
        t2 = (hi - o) / d
    tmin = np.where(np.isfinite(t1), np.minimum(t1, t2), -np.inf)
    tmax = np.where(np.isfinite(t1), np.maximum(t1, t2), np.inf)
    inside = (o >= lo) & (o <= hi)
    tmin = np.where((d == 0) & inside, -np.inf, tmin)
    tmax = np.where((d == 0) & inside, np.inf, tmax)
    tmin = np.where((d == 0) & ~inside, np.inf, tmin)
    return tmin.max(axis=1) <= tmax.min(axis=1)


def project_volume(data: np.ndarray, affine_mm: np.ndarray, rays: Rays) -> np.ndarray:
    """Line integrals (field units x mm) of ``data`` (on the grid of ``affine_mm``) along ``rays``; image (rows, cols).

    Joseph's method (module docstring); outside the grid the field is 0. An axis-aligned parallel beam takes the fast
    path: sum along the axis, times the step, then one bilinear sampling of the summed image (the same numbers).
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 3:
        raise InvalidValueError(f"Field of shape {data.shape} is not 3-D.", "give a (ni, nj, nk) array.")
    inv = np.linalg.inv(np.asarray(affine_mm, dtype=float))
    o = rays.origins @ inv[:3, :3].T + inv[:3, 3]
    d = rays.directions @ inv[:3, :3].T  # index units per mm
    out = np.zeros(o.shape[0], dtype=np.float64)
    hit = _box_hits(o, d, data.shape)
    if not hit.any():
        return out.reshape(rays.shape)
    o, d = o[hit], d[hit]
    m = int(np.argmax(np.abs(d).mean(axis=0)))
    a, b = [ax for ax in range(3) if ax != m]
    dm = d[:, m]
    if np.any(np.abs(dm) < 1e-12):
        raise ParameterError("A ray runs parallel to the grid planes it is cut by.", "tilt the view slightly.")
    step = 1.0 / np.abs(dm)  # mm per plane
    if rays.parallel_axis is not None and np.allclose(d[:, [a, b]], 0.0, atol=1e-12):
        summed = data.sum(axis=m, dtype=np.float64)
        vals = ndimage.map_coordinates(summed, [o[:, a], o[:, b]], order=1, mode="grid-constant", cval=0.0)
        out[hit] = vals * step
        return out.reshape(rays.shape)
    acc = np.zeros(o.shape[0], dtype=np.float64)
    planes = np.ascontiguousarray(np.moveaxis(data, m, 0))  # planes[k] is the (a, b) slice k, contiguous
    for k in range(data.shape[m]):
        t = (k - o[:, m]) / dm
        ca = o[:, a] + t * d[:, a]
        cb = o[:, b] + t * d[:, b]
        sel = (ca > -1) & (ca < data.shape[a]) & (cb > -1) & (cb < data.shape[b])
        if not sel.any():
            continue
        acc[sel] += ndimage.map_coordinates(planes[k], [ca[sel], cb[sel]], order=1, mode="grid-constant", cval=0.0)
    out[hit] = acc * step
    return out.reshape(rays.shape)


def crop_to_support(data: np.ndarray, affine_mm: np.ndarray, pad: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The smallest box holding the non-zero voxels (plus ``pad``) and its affine: projects to the same integrals."""
    nz = np.nonzero(data)
    if nz[0].size == 0:
        return data[:1, :1, :1] * 0, np.asarray(affine_mm, dtype=float)
    lo = [max(int(x.min()) - pad, 0) for x in nz]
    hi = [min(int(x.max()) + pad + 1, n) for x, n in zip(nz, data.shape)]
    aff = np.asarray(affine_mm, dtype=float).copy()
    aff[:3, 3] = aff[:3, :3] @ np.asarray(lo, dtype=float) + aff[:3, 3]
    return data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], aff


# ------------------------------------------------------------------------------------------------ analytic shapes


def cylinder_chord_mm(rays: Rays, p0_mm, p1_mm, radius_mm: float) -> np.ndarray:
    """Length (mm) of each ray inside the solid cylinder of axis p0 -> p1 and radius ``radius_mm`` (flat ends)."""
    p0 = np.asarray(p0_mm, dtype=float)
    axis = np.asarray(p1_mm, dtype=float) - p0
    length = float(np.linalg.norm(axis))
    if length <= 0:
        raise ParameterError("Cylinder end points coincide.", "give distinct entry and tip points.")
    w = axis / length
    q = rays.origins - p0
    d = rays.directions
    qw, dw = q @ w, d @ w
    qp = q - qw[:, None] * w
    dp = d - dw[:, None] * w
    a = np.einsum("ij,ij->i", dp, dp)
    bh = np.einsum("ij,ij->i", qp, dp)
    c = np.einsum("ij,ij->i", qp, qp) - radius_mm**2
    big = 1e12
    with np.errstate(divide="ignore", invalid="ignore"):
        disc = bh * bh - a * c
        sq = np.sqrt(np.maximum(disc, 0.0))
        t1 = np.where(a > 1e-15, (-bh - sq) / a, np.where(c < 0, -big, big))
        t2 = np.where(a > 1e-15, (-bh + sq) / a, np.where(c < 0, big, -big))
        t1 = np.where((a > 1e-15) & (disc <= 0), big, t1)
        t2 = np.where((a > 1e-15) & (disc <= 0), -big, t2)
        s1 = (0.0 - qw) / dw
        s2 = (length - qw) / dw
    par = np.abs(dw) < 1e-15
    inside_slab = (qw >= 0) & (qw <= length)
    smin = np.where(par, np.where(inside_slab, -big, big), np.minimum(s1, s2))
    smax = np.where(par, np.where(inside_slab, big, -big), np.maximum(s1, s2))
    lo = np.maximum(t1, smin)
    hi = np.minimum(t2, smax)
    return np.maximum(hi - lo, 0.0).reshape(rays.shape)


def tube_chord_mm(rays: Rays, p0_mm, p1_mm, outer_radius_mm: float, inner_radius_mm: float = 0.0) -> np.ndarray:
    """Length (mm) of each ray inside the wall of a tube (outer minus inner cylinder)."""
    if not 0.0 <= inner_radius_mm < outer_radius_mm:
        raise ParameterError(f"Tube radii inner={inner_radius_mm} and outer={outer_radius_mm} mm are not ordered.",
                             "give 0 <= inner < outer.")
    out = cylinder_chord_mm(rays, p0_mm, p1_mm, outer_radius_mm)
    if inner_radius_mm > 0:
        out = out - cylinder_chord_mm(rays, p0_mm, p1_mm, inner_radius_mm)
    return np.maximum(out, 0.0)


def ellipsoid_chord_mm(rays: Rays, centre_mm, semi_axes_mm, axes=None) -> np.ndarray:
    """Length (mm) of each ray inside the ellipsoid (centre, semi-axes; ``axes`` columns are its unit axes)."""
    r = np.asarray(semi_axes_mm, dtype=float)
    if r.shape != (3,) or np.any(r <= 0):
        raise ParameterError(f"Ellipsoid semi-axes {semi_axes_mm} are not three positive lengths.", "give (a, b, c) mm.")
    rot = np.eye(3) if axes is None else np.asarray(axes, dtype=float)
    q = ((rays.origins - np.asarray(centre_mm, dtype=float)) @ rot) / r
    d = (rays.directions @ rot) / r
    a = np.einsum("ij,ij->i", d, d)
    bh = np.einsum("ij,ij->i", q, d)
    c = np.einsum("ij,ij->i", q, q) - 1.0
    disc = bh * bh - a * c
    chord = np.where(disc > 0, 2.0 * np.sqrt(np.maximum(disc, 0.0)) / a, 0.0)
    return chord.reshape(rays.shape)


# ------------------------------------------------------------------------------------------------ resampling


def resample_to_grid(field: np.ndarray, src_affine_mm: np.ndarray, dst_affine_mm: np.ndarray, dst_shape,
                     order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Sample ``field`` (grid ``src_affine_mm``) at the voxel centres of another grid (trilinear by default).

    Point sampling: a fine field resampled to a coarser grid loses mass; the DRR projects each field on its own grid
    instead, and this helper is for callers that need a field on the CT grid (e.g. to write it as NIfTI).
    """
    m = np.linalg.inv(np.asarray(src_affine_mm, dtype=float)) @ np.asarray(dst_affine_mm, dtype=float)
    return ndimage.affine_transform(np.asarray(field, dtype=np.float32), m[:3, :3], offset=m[:3, 3],
                                    output_shape=tuple(int(s) for s in dst_shape), order=order, cval=cval)
