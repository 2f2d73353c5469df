"""Endplate surfaces of one vertebral body from the CT: many sub-voxel edge points, one smooth surface per endplate.

The height measurement of :mod:`vertaug.anatomy.morphometry` reads the anterior, middle and posterior heights from the
two surfaces this module fits, at the Genant positions (15 / 50 / 85 % of the body's depth from the posterior wall, on
the mid-sagittal line). Each surface is the least-squares fit of a low-order polynomial to edge points found along the
spine axis over the central part of the endplate, so that no single line, and no step of a resampled mask's rim, sets
a height; the surface's standard error at a Genant position is the height's uncertainty.

Method, in the level's frame (``h`` cranial, ``a`` anterior, ``l`` lateral; ``u`` the fraction of the depth from the
posterior wall, ``x`` the lateral offset over the half-width of the fitted band):

1. Columns along ``h`` every ``COLUMN_STEP_VOXELS`` voxel over ``u`` in ``FIT_U_RANGE`` and the central
   ``FIT_LATERAL_FRACTION`` of the body's width. The mask's faces of each column (where the resampled mask ends) are
   fitted by the surface below first: a smooth start, free of the mask's voxel steps.
2. Edge points: along each column the CT is sampled on a common grid about an origin, the column's own mask face
   where it lies within ``FACE_TRUST_VOXELS`` of the start (else the voxel boundary nearest the start), and the
   endplate edge is fitted within ``EDGE_SEARCH_VOXELS`` voxel extents of it (the partial-volume model of
   :func:`edge_model`: a bone-to-disc step plus a thin endplate, ``ENDPLATE_THICKNESS_MM`` [Silva 1994], blurred by a
   Gaussian slice profile, sampled once per voxel, the origin taken as a voxel boundary, and interpolated linearly as
   the line is: the per-line fit of the morphometry's step 3b, vectorised). (B, D, M) enter linearly and are solved by
   weighted least squares for every column at once, for each trial surface position and blur. The window reaches no
   further out than half-way across the disc (to the next vertebra of the segmentation, where it is given) and no
   further in than the body's mid-height. Edges with a contrast below ``EDGE_MIN_CONTRAST_HU`` or at the end of the
   search are dropped. The search is then repeated within ``EDGE_REFINE_VOXELS`` of the surface of step 3.
   (With the origin at the true voxel boundary instead of the mask face, a biconcave slice phantom read 1.2 mm off
   per face: at 3 mm slices the model's residual is nearly flat over a voxel, and the face-centred search is the one
   validated on phantoms.)
3. Surface: ``z(u, x) = c0 + c1 v + c2 v^2 + c3 v^3 + c4 v^4 + c5 x + c6 x^2 + c7 v x`` with ``v = 2u - 1``, fitted
   by least squares to the edge points, repeated without points more than ``OUTLIER_MADS`` scaled MADs off (osteophytes,
   a posterior rim, a vessel channel). Fewer than ``MIN_EDGE_FRACTION`` of the columns with a CT edge: the mask's
   faces are used instead.
4. Heights: at each Genant position a local surface (``LOCAL_TERMS``: a plane in depth, quadratic across) is fitted the
   same way to the points within ``LOCAL_HALF_VOXELS`` of it in depth (a global polynomial rounds a wedge's hinge or a
   dish's rim, which the phantoms put at those positions) and read on the mid-sagittal line.
5. Uncertainty of ``z`` at a point: the residual variance through the fit's covariance, ``s^2 phi^T (B^T B)^-1 phi``,
   times the number of columns per independent voxel footprint (columns closer than a voxel share data), plus the
   edge model's own error per face (``EDGE_MODEL_ERROR_VOXELS``, measured on slice phantoms) or, for mask faces,
   their quantisation ``s_h^2 / 12``.

Sources: Silva MJ et al. 1994 Bone 15:409 (endplate ~0.35 mm thick in L1 over age 45); Genant HK et al. 1993 J Bone
Miner Res 8:1137 (the six points of semi-quantitative morphometry); TotalSegmentator spine report (Wasserthal et al.
2023 Radiol Artif Intell 5:e230024; 15 / 50 / 85 % positions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import erf

#: Column spacing of the surface fit, in voxels (the smallest spacing): finer columns share the same voxels.
COLUMN_STEP_VOXELS = 0.5
#: Range of the depth fraction u (from the posterior wall) over which edge points are fitted: clear of the walls.
FIT_U_RANGE = (0.05, 0.95)
#: Central fraction of the body's width over which edge points are fitted (TotalSegmentator scans the central half).
FIT_LATERAL_FRACTION = 0.5
#: The CT edge is sought this many voxel extents (along h) either side of the voxel boundary nearest the mask surface, ...
EDGE_SEARCH_VOXELS = 1.0
#: ... then again this many either side of the first CT surface (a false edge in the trabecular bone or the disc,
#: far from the surface, no longer competes).
EDGE_REFINE_VOXELS = 0.5
#: Search grid: points per voxel extent.
EDGE_GRID_PER_VOXEL = 20
#: The line reaches this far (mm) beyond the farthest trial position, on each side, before the disc or mid-height cut.
EDGE_WINDOW_MM = 2.0
#: Blur widths tried (Gaussian sigma, in voxel extents along h: a slice profile of FWHM 0.7..1.9 slices), ...
EDGE_SIGMA_VOXELS = (0.3, 0.42, 0.55, 0.7)
#: ... and never below this (mm).
EDGE_SIGMA_MIN_MM = 0.3
#: Endplate (subchondral cortex) thickness in the edge model: ~0.35 mm, porous, in L1 of adults over 45 (Silva 1994).
ENDPLATE_THICKNESS_MM = 0.35
#: Standard error of the edge model per face, in voxel extents along h (its bias on slice phantoms, docs/anatomy.md).
EDGE_MODEL_ERROR_VOXELS = 0.1
#: Below this edge contrast (HU: step plus the blurred plate's amplitude) a column gives no edge point.
EDGE_MIN_CONTRAST_HU = 60.0
#: Points further than this many scaled MADs (1.4826 MAD) from the surface are left out of the refit.
OUTLIER_MADS = 3.0
#: ... but a point within this fraction of a voxel extent is never left out (a near-perfect fit does not trim itself).
OUTLIER_FLOOR_VOXELS = 0.25
#: Fewer CT edge points than this fraction of the columns: the surface is fitted to the mask's faces.
MIN_EDGE_FRACTION = 0.3
#: A column's own mask face within this many voxel extents of the smooth start is the line's origin (step 2).
FACE_TRUST_VOXELS = 1.0
#: Terms of the surface polynomial (powers of v = 2u - 1 and of x), see step 3.
SURFACE_TERMS = ((0, 0), (1, 0), (2, 0), (3, 0), (4, 0), (0, 1), (0, 2), (1, 1))
#: Terms of the local surface read at a Genant position (powers of u - u_k and of x): a plane tilted in depth,
#: curved across (a biconcave dish).
LOCAL_TERMS = ((0, 0), (1, 0), (0, 1), (0, 2))
#: Half-width (voxel extents along the anterior axis) of the depth window of the local surface: a wedge's hinge or a
#: dish's rim inside the window biases a plane by a quarter of the slope times the half-width.
LOCAL_HALF_VOXELS = 1.0


@dataclass(frozen=True)
class EndplateSurface:
    """One endplate: z(u, x) in mm along the height axis from the body's centre, with its covariance (mm^2)."""

    coef: tuple[float, ...]
    cov: np.ndarray  # covariance of coef, with the correlation of neighbouring columns
    floor_var_mm2: float  # the per-face error not in the residuals (edge model, or the mask's quantisation)
    residual_mm: float  # RMS of the kept points about the surface
    n_points: int
    n_columns: int
    source: str  # "CT edge" or "mask"
    terms: tuple = SURFACE_TERMS
    u0: float | None = None  # a local surface's depth (its terms are powers of u - u0), None for the whole endplate

    def at(self, u: float, x: float = 0.0) -> tuple[float, float]:
        """Position (mm along h) and its variance (mm^2) at depth fraction ``u`` and lateral position ``x``."""
        phi = _basis(np.array([u]), np.array([x]), self.terms, self.u0)[0]
        return float(phi @ np.asarray(self.coef)), float(phi @ self.cov @ phi + self.floor_var_mm2)

    def positions(self, u: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Positions (mm along h) at the points (``u``, ``x``): :meth:`at`'s, bit for bit (one basis for all points,
        each row's dot product as :meth:`at` takes it; a matrix-vector product would round differently)."""
        coef = np.asarray(self.coef)
        rows = _basis(np.asarray(u, float), np.asarray(x, float), self.terms, self.u0)
        return np.fromiter((phi @ coef for phi in rows), float, len(rows))


@dataclass(frozen=True)
class ColumnGrid:
    """Columns along h: lateral and anterior positions (mm from the centre), depth fraction u, normalised x, and the
    mask's top and bottom faces (mm along h; NaN where the column misses the body)."""

    l_mm: np.ndarray
    a_mm: np.ndarray
    u: np.ndarray
    x: np.ndarray
    top_mm: np.ndarray
    bottom_mm: np.ndarray


def _basis(u: np.ndarray, x: np.ndarray, terms=SURFACE_TERMS, u0: float | None = None) -> np.ndarray:
    v = 2.0 * np.asarray(u, float) - 1.0 if u0 is None else np.asarray(u, float) - u0
    x = np.asarray(x, float)
    return np.stack([v**p * x**q for p, q in terms], axis=-1)


def fit_surface(u, x, z, s_h: float, corr: float, floor_var: float, n_columns: int, source: str,
                terms=SURFACE_TERMS, u0: float | None = None) -> EndplateSurface | None:
    """Robust least-squares surface through points (u, x, z) (step 3 of the module docstring); None if too few.
    ``terms`` and ``u0``: the local surface about depth ``u0`` (:func:`local_surface`)."""
    B = _basis(u, x, terms, u0)
    z = np.asarray(z, float)
    keep = np.ones(z.size, bool)
    for _ in range(6):
        if keep.sum() < 2 * B.shape[1]:
            return None
        coef, *_ = np.linalg.lstsq(B[keep], z[keep], rcond=None)
        r = z - B @ coef
        mad = 1.4826 * float(np.median(np.abs(r[keep])))
        new = np.abs(r) <= max(OUTLIER_MADS * mad, OUTLIER_FLOOR_VOXELS * s_h)
        if np.array_equal(new, keep):
            break
        keep = new
    n, p = int(keep.sum()), B.shape[1]
    s2 = float((r[keep] ** 2).sum()) / max(1, n - p)
    cov = s2 * corr * np.linalg.inv(B[keep].T @ B[keep])
    return EndplateSurface(tuple(float(c) for c in coef), cov, floor_var, math.sqrt(float((r[keep] ** 2).mean())),
                           n, n_columns, source, terms, u0)


def edge_model(x: np.ndarray, es: np.ndarray, sigmas: np.ndarray, knot_mm: float) -> np.ndarray:
    """Design matrices (ne, ns, nx, 3) of the partial-volume edge at outward distances ``x`` (mm from a voxel boundary)
    for surfaces at ``es`` and blurs ``sigmas``: columns 1 (disc level D), the step Phi((e - x)/sigma) (bone minus
    disc) and the thin endplate g(x - e + t/2; sigma) just inside the surface; each evaluated at the voxel centres
    (knots half a voxel off the boundary, ``knot_mm`` apart) and interpolated linearly between them, as the CT line is."""
    E, S = np.meshgrid(es, sigmas, indexing="ij")
    knots = (np.arange(math.floor(x.min() / knot_mm) - 1, math.ceil(x.max() / knot_mm) + 2) + 0.5) * knot_mm
    u = (E[..., None] - knots) / S[..., None]
    step_k = 0.5 * (1.0 + erf(u / math.sqrt(2.0)))
    pl_k = np.exp(-0.5 * ((knots - E[..., None] + ENDPLATE_THICKNESS_MM / 2) / S[..., None]) ** 2)
    wts = np.stack([np.interp(x, knots, row) for row in np.eye(knots.size)])  # (nk, nx)
    step, pl = step_k @ wts, pl_k @ wts
    return np.stack([np.ones_like(step), step, pl], axis=-1)


def fit_edges(y: np.ndarray, w: np.ndarray, x: np.ndarray, s_h: float, knot_mm: float, centre: np.ndarray,
              search_voxels: float) -> np.ndarray:
    """Edge position (mm along the outward line from each column's voxel boundary; NaN where none) of every column
    of profiles ``y`` (ncol, nx) with window weights ``w`` (0 or 1): the best (e, sigma) of the weighted least-squares
    fits of :func:`edge_model` (step 2 of the module docstring), within ``search_voxels`` voxel extents of each
    column's ``centre`` (mm on the same line)."""
    reach = EDGE_SEARCH_VOXELS * s_h
    es = np.linspace(-reach, reach, round(2 * EDGE_SEARCH_VOXELS * EDGE_GRID_PER_VOXEL) + 1)
    allowed = np.abs(es[:, None] - centre[None, :]) <= search_voxels * s_h  # (ne, nc)
    sigmas = np.maximum(np.asarray(EDGE_SIGMA_VOXELS) * s_h, EDGE_SIGMA_MIN_MM)
    rss, peak = _edge_fits(edge_model(x, es, sigmas, knot_mm), y, w)  # (ne, ns, nc) each
    rss = np.where(allowed[:, None, :], rss, np.inf)
    cols = np.arange(y.shape[0])
    best = np.full(y.shape[0], np.inf)
    best_e = np.zeros(y.shape[0], int)
    best_peak = np.zeros(y.shape[0])
    for j in range(sigmas.size):  # the blurs in turn: of equal residuals the first blur is kept
        ie = np.argmin(rss[:, j], axis=0)
        r = rss[ie, j, cols]
        better = r < best
        best = np.where(better, r, best)
        best_e = np.where(better, ie, best_e)
        best_peak = np.where(better, peak[ie, j, cols], best_peak)
    e = es[best_e]
    inside = np.abs(e - centre) < search_voxels * s_h - 1.5 * (es[1] - es[0])  # not at the end of the search
    ok = (best_peak >= EDGE_MIN_CONTRAST_HU) & inside & (w.sum(axis=1) >= 8)
    return np.where(ok, e, np.nan)


#: The six distinct entries (i, j) of a symmetric 3 x 3 normal matrix.
_SYM3 = ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2))


def _edge_fits(A: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of every column's profile ``y`` (nc, nx), weights ``w``, on every design matrix of
    ``A`` (ne, ns, nx, 3) of :func:`edge_model`: the residual sum of squares and the edge contrast |B| + max(M, 0),
    each (ne, ns, nc). The normal equations (with 1e-9 on the diagonal) are formed by two matrix products over the
    samples and solved in closed form (the adjugate of the symmetric 3 x 3 matrix) for all of them at once."""
    nx = A.shape[2]
    At = np.moveaxis(A, -1, 0)  # (3, ne, ns, nx)
    g = (np.stack([At[i] * At[j] for i, j in _SYM3]).reshape(-1, nx) @ w.T).reshape(6, *A.shape[:2], -1)
    g00, g01, g02, g11, g12, g22 = g + 1e-9 * np.array([1.0, 0, 0, 1, 0, 1])[:, None, None, None]
    b0, b1, b2 = (At.reshape(-1, nx) @ (w * y).T).reshape(3, *A.shape[:2], -1)
    c00, c01, c02 = g11 * g22 - g12 * g12, g02 * g12 - g01 * g22, g01 * g12 - g02 * g11
    c11, c12, c22 = g00 * g22 - g02 * g02, g01 * g02 - g00 * g12, g00 * g11 - g01 * g01
    det = g00 * c00 + g01 * c01 + g02 * c02
    k0, k1, k2 = ((c0 * b0 + c1 * b1 + c2 * b2) / det for c0, c1, c2 in ((c00, c01, c02), (c01, c11, c12),
                                                                           (c02, c12, c22)))
    rss = (w * y * y).sum(axis=1) - (k0 * b0 + k1 * b1 + k2 * b2)  # the residual at the least-squares solution
    return rss, np.abs(k1) + np.maximum(k2, 0.0)


def window_weights(x: np.ndarray, inward_limit: np.ndarray, outward_limit: np.ndarray) -> np.ndarray:
    """Weights (0 or 1) of each column's samples at outward distances ``x``: from ``inward_limit`` (mm, negative: the
    body's mid-height) to ``outward_limit`` (mm: half-way across the disc to the next vertebra, where it is known)."""
    return ((x[None, :] >= inward_limit[:, None]) & (x[None, :] <= outward_limit[:, None])).astype(float)


class LineSampler:
    """Trilinear samples of the CT at points (l, a, t) of a level's frame (mm about ``centre``), and the voxel
    lattice along h: ``knot_mm`` (distance between voxel centres along a line of h) and each line's boundaries."""

    def __init__(self, ct: np.ndarray, affine_mm: np.ndarray, centre, h, a, lat, others: np.ndarray | None = None):
        self.ct = np.asarray(ct, np.float32)
        self.others = None if others is None else np.asarray(others, np.float32)
        self.inv = np.linalg.inv(np.asarray(affine_mm, float))
        self.centre, self.h, self.a, self.lat = (np.asarray(v, float) for v in (centre, h, a, lat))
        d = self.inv[:3, :3] @ self.h  # voxel indices per mm along h
        self.k = int(np.argmax(np.abs(d)))
        self.dk = float(d[self.k])
        self.knot_mm = 1.0 / abs(self.dk)

    def _ijk(self, l, a, t):
        xyz = self.centre + l[..., None] * self.lat + a[..., None] * self.a + t[..., None] * self.h
        return xyz @ self.inv[:3, :3].T + self.inv[:3, 3]

    def sample(self, l: np.ndarray, a: np.ndarray, t: np.ndarray, other_bone: bool = False) -> np.ndarray:
        """CT values (HU) at the points; with ``other_bone``, whether each point lies in another vertebra."""
        ijk = self._ijk(l, a, t)
        if other_bone:
            vals = ndimage.map_coordinates(self.others, ijk.reshape(-1, 3).T, order=1, mode="constant", cval=0.0)
            return vals.reshape(t.shape) >= 0.5
        vals = ndimage.map_coordinates(self.ct, ijk.reshape(-1, 3).T, order=1, mode="nearest")
        return vals.reshape(t.shape)

    def nearest_boundary(self, l: np.ndarray, a: np.ndarray, t: np.ndarray) -> np.ndarray:
        """The position along h (mm) of the voxel boundary (between two slices along the lattice axis closest to h)
        nearest ``t`` on each line."""
        q = self._ijk(l, a, t)[..., self.k]
        nb = np.round(q - 0.5) + 0.5
        return t + (nb - q) / self.dk


def ct_surface(sampler: LineSampler, cols: ColumnGrid, outward: int, start: EndplateSurface, s_h: float,
               corr: float, step_mm: float) -> tuple[EndplateSurface, np.ndarray, np.ndarray, np.ndarray] | None:
    """The CT surface of one endplate (``outward`` +1 superior, -1 inferior) from the mask surface ``start``, and
    its edge points (u, x, z); None when too few columns give an edge (the caller keeps the mask's faces)."""
    z0 = start.positions(cols.u, cols.x)
    ref = sampler.nearest_boundary(cols.l_mm, cols.a_mm, z0)
    face = cols.top_mm if outward > 0 else cols.bottom_mm
    ref = np.where(np.abs(face - z0) <= FACE_TRUST_VOXELS * s_h, face, ref)
    search = EDGE_SEARCH_VOXELS * s_h
    x = np.arange(-(search + s_h + EDGE_WINDOW_MM), search + EDGE_WINDOW_MM + step_mm / 2, step_mm)
    t = ref[:, None] + outward * x[None, :]
    y = sampler.sample(np.broadcast_to(cols.l_mm[:, None], t.shape), np.broadcast_to(cols.a_mm[:, None], t.shape), t)
    mid = 0.5 * (cols.top_mm + cols.bottom_mm)
    outer = np.full(ref.size, np.inf)
    if sampler.others is not None:
        bone = sampler.sample(np.broadcast_to(cols.l_mm[:, None], t.shape),
                              np.broadcast_to(cols.a_mm[:, None], t.shape), t, other_bone=True) & (x > -s_h)
        outer = np.where(bone.any(axis=1), 0.5 * x[np.argmax(bone, axis=1)], np.inf)
    w = window_weights(x, -np.abs(ref - mid), outer)
    surface = None
    centre, search_voxels = np.zeros(ref.size), EDGE_SEARCH_VOXELS
    for _ in range(2):
        e = fit_edges(y, w, x, s_h, sampler.knot_mm, centre, search_voxels)
        e[e > outer] = np.nan
        ok = np.isfinite(e)
        if ok.sum() < max(2 * len(SURFACE_TERMS), MIN_EDGE_FRACTION * e.size):
            return None
        z = ref[ok] + outward * e[ok]
        surface = fit_surface(cols.u[ok], cols.x[ok], z, s_h, corr, (EDGE_MODEL_ERROR_VOXELS * s_h) ** 2, e.size,
                              "CT edge")
        if surface is None:
            return None
        limit = (EDGE_SEARCH_VOXELS - EDGE_REFINE_VOXELS) * s_h
        centre = np.clip(outward * (surface.positions(cols.u, cols.x) - ref), -limit, limit)
        search_voxels = EDGE_REFINE_VOXELS
    return surface, cols.u[ok], cols.x[ok], z


def local_surface(u, x, z, u0: float, half_u: float, s_h: float, corr: float, floor_var: float, source: str
                  ) -> EndplateSurface | None:
    """The endplate about one Genant position: ``LOCAL_TERMS`` fitted (robustly, as :func:`fit_surface`) to the points
    within ``half_u`` of depth ``u0``; None if too few."""
    near = np.abs(np.asarray(u) - u0) <= half_u
    return fit_surface(np.asarray(u)[near], np.asarray(x)[near], np.asarray(z)[near], s_h, corr, floor_var,
                       int(near.sum()), source, LOCAL_TERMS, u0)
