"""Cement injection into trabecular bone: two-phase (cement c displacing marrow m) Darcy flow on the voxel model.

Equations (docs/flow.md, docs/references.md; capillary pressure and gravity neglected, both phases incompressible):

    phi dS/dt + div(f(S) u) = q_c                   cement saturation S (marrow 1 - S)
    div u = q,   u = -k lambda_t(S) grad p          total Darcy velocity
    lambda_t = S / mu_c + (1 - S) / mu_m,   f(S) = (S / mu_c) / lambda_t      (kr_c = S, kr_m = 1 - S)
    mu_c = mu_c(t, gamma),   gamma = |u| / sqrt(k phi)                          (cure state and shear rate)

Discretisation (finite volumes on the voxel grid, one unknown per porous voxel):

* Porous voxels: labels TRABECULAR and DEFECT (fracture cleft / cortical defect; names from
  :mod:`vertaug.model.labels`). Walls: every other label, the array border, and the cannula tip voxels themselves
  (the cannula occupies them).
* Face transmissibility T = A / h * 2 k_i k_j / (k_i + k_j) (harmonic mean, k of the face's axis for anisotropy);
  total mobility at a face taken from the upstream cell of the previous step (arithmetic mean at the first step).
* Source: each cannula (a connected group of tip voxels) delivers rate / n_cannulas of pure cement, split evenly over
  the faces between its tip voxels and porous voxels (a Neumann flux; the cannula is rate-controlled).
* Exits (Dirichlet faces, reservoir at the venous pressure, half-cell transmissibility A k_i / (h/2)):
  route B: porous voxel next to BASIVERTEBRAL (basivertebral foramen/vein); route S: porous voxel next to SEGMENTAL
  (segmental vein exit); route C: a DEFECT voxel next to OUTSIDE (paraspinal soft tissue) or CANAL;
  route D: a DEFECT voxel next to DISC (a fracture through the endplate is labelled DEFECT).
  A TRABECULAR voxel next to OUTSIDE, CANAL or DISC is *not* an exit: the cortex or endplate is taken as intact there.
  Outflow carries f(S_i) of cement; inflow from a reservoir is marrow.
* Extra-osseous veins (``exit_veins``, route -> :class:`ExitVein`): what leaves the body through a vein patch (B, S)
  runs on through n parallel extra-osseous veins of radius r and length L before it reaches the venous reservoir.
  Their Poiseuille conductance G = n pi r^4 / (8 L) (m^3) is in series with the patch's exit faces, split over
  them in proportion to their half-cell transmissibility (exact when the exit cells share one mobility):

      T_exit = 1 / (1 / (T_half lambda_i) + 1 / (G_face lambda_v)),   G_face = G T_half / sum_route T_half,
      lambda_v = S_i / mu_v + (1 - S_i) / mu_m,   mu_v = mu_c(t, gamma_v),   gamma_v = 4 Q / (n pi r^3)

  with Q the route's total outflow (marrow and cement move through the vein as one column) of the previous step
  (the vein's wall shear rate, lagged like the bone's):
  a cement with a yield stress tau_y carries tau_y / gamma_v in mu_c, so a vein of length L holds it back until
  the pressure at the exit passes the venous pressure by about 2 L tau_y / r (Buckingham-Reiner, physics/cannula.py).
  The exit stays linear in the pressure at the lagged mobilities, so the pressure matrix stays SPD. Without
  ``exit_veins`` (or for routes C and D) the exit face opens straight onto the reservoir, as before.
* Pressure (implicit): sum_faces T lambda (p_i - p_j) + sum_exits T lambda (p_i - p_v) = q_i, SPD, solved by
  :class:`vertaug.physics.solvers.PressureSolver` (geometric multigrid by default, pyamg AMG by name) and warm starts.
* Saturation: single-point upstream, implicit in time (backward Euler), solved by Newton on the cells that hold or
  can receive cement, then written back in conservative flux form so that every face flux leaves one cell and enters
  its neighbour. The pressure is implicit and the saturation lagged behind it, as in IMPES; the saturation is
  implicit in time because the explicit upstream scheme is stable only for dt < phi V / (f'(S) F) with
  f'(1) = mu_c / mu_m = 1e3 - 1e6 for cement and marrow, which would take 1e3-1e6 times more steps than the
  volumetric CFL step. The first step is dt = cfl * min(phi V / outflow) over the cells at the cannula; later steps
  are scaled (by 0.5-2x) so that the largest saturation change per step stays near ``max_saturation_change``: the
  front crosses a cell in a few steps, so dt ~ h (accuracy, not stability).
* Mass balance, checked every step: injected = in bone + sum of leaked per route (cement), and
  rate = sum of exit fluxes (total volume, the pressure solve); relative errors < ``mass_tolerance``.

Injection controls (the way the injection is done in the operating room; docs/flow.md):

* Pressure limit: with ``pressure_limit_pa`` (the largest plunger pressure the injector can deliver) and
  ``cannula_drop_pa(t_s, flow_per_cannula_m3_s)`` (the cannula loss), each step first solves the pressure at the
  planned rate; if the plunger pressure, cannula loss (at the cement's state at the start of the step) + gauge bone
  pressure at the outlet, would pass the limit, the rate of that step is scaled down by s in (0, 1] so that it
  equals the limit (the bone pressure is linear in the rate at the step's lagged mobilities; s by Brent's method).
  The rate falls as the cement thickens; when s would fall below ``min_rate_fraction`` (default 0.1, a model
  choice: at a tenth of 3 mL/min one more mL takes over 3 min, longer than the working time left near the end of
  it) the injector has stalled and the injection ends (``STOP_PRESSURE``).
* Stopping rules, checked after every step, the first that holds ends the injection and is recorded in
  ``stop_reason``: the planned volume (``STOP_VOLUME``); cement (saturation >= 0.5) in a cell of ``stop_mask`` (the
  procedures pass the posterior quarter of the body, ``STOP_POSTERIOR``); the cement outside the body above
  ``stop_leak_m3`` (a leak seen on fluoroscopy, ``STOP_LEAK``); the injector stalled at its pressure limit.

Pressures are computed relative to the reservoir and reported as gauge pressure (above atmospheric) by adding
``venous_pressure_pa``. Default 3.3e3 Pa (25 mmHg): lumbar intraosseous pressure equals the pressure of the inferior
vena cava (Spine 1981 6:159, doi 10.1097/00007632-198103000-00009); the mean intraosseous pressure measured in
cancellous bone is 24.5 mmHg (Beverly & Murray 2018, J Orthop Surg Res, doi 10.1186/s13018-018-0877-z, rabbit).
Because every exit sits at the same reservoir pressure, this value shifts the reported pressures only; it does not
change the flow or the leakage.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from scipy.sparse.csgraph import connected_components

try:  # SuperLU's triangular solve, the kernel behind spsolve_triangular (its wrapper's checks and copies skipped)
    from scipy.sparse.linalg._dsolve._superlu import gstrs as _gstrs
except ImportError:  # pragma: no cover - a future scipy that moves it: the public spsolve_triangular
    _gstrs = None

from vertaug.errors import EmptyMaskError, GridMismatchError, InvalidValueError, ParameterError, check_range
from vertaug.model.labels import (
    BASIVERTEBRAL,
    CANAL,
    CORTEX,
    DEFECT,
    DISC,
    ENDPLATE,
    INJECTABLE,
    OUTSIDE,
    POROUS,
    SEGMENTAL,
    TRABECULAR,
)
from vertaug.physics.solvers import PressureSolver

from ..constants import MMHG_PA

__all__ = [
    "ROUTES",
    "POROUS_LABELS",
    "MARROW_VISCOSITY_PA_S",
    "VENOUS_PRESSURE_PA",
    "ExitVein",
    "InjectionResult",
    "inject",
    "newtonian",
    "STOP_LEAK",
    "STOP_POSTERIOR",
    "STOP_PRESSURE",
    "STOP_VOLUME",
]

ROUTES = ("B", "S", "C", "D")
#: alias of :data:`vertaug.model.labels.POROUS` (the name other modules import)
POROUS_LABELS = POROUS
#: human yellow marrow, 67 mPa s (Biorheology 2011, docs/references.md, [V])
MARROW_VISCOSITY_PA_S = 0.067
#: 25 mmHg, see module docstring
VENOUS_PRESSURE_PA = 25.0 * MMHG_PA
ARRIVAL_SATURATION = 0.5
#: stop reasons recorded in InjectionResult.stop_reason (module docstring)
STOP_VOLUME = "volume reached"
STOP_POSTERIOR = "cement in the posterior quarter of the body"
STOP_LEAK = "leak visible (leaked volume above the fluoroscopy detection limit)"
STOP_PRESSURE = "injector stalled at its pressure limit"
STOP_MAX_STEPS = "max_steps reached"

# (label of the porous voxel or None for any porous label, neighbour labels) -> route
_EXIT_RULES = {
    "B": (None, (BASIVERTEBRAL,)),
    "S": (None, (SEGMENTAL,)),
    "C": (DEFECT, (OUTSIDE, CANAL)),
    "D": (DEFECT, (DISC,)),
}


@dataclass(frozen=True)
class ExitVein:
    """The extra-osseous veins that drain one exit route: ``n_parallel`` tubes of ``radius_m`` and ``length_m``."""

    radius_m: float
    length_m: float
    n_parallel: int = 1

    def __post_init__(self):
        check_range("exit vein radius_m", self.radius_m, 1e-5, 1e-2, "m", "a segmental vein is about 1-3 mm wide.")
        check_range("exit vein length_m", self.length_m, 1e-4, 0.5, "m", "give the extra-osseous length, e.g. 0.02 m.")
        check_range("exit vein n_parallel", self.n_parallel, 1, 100, "", "give the number of parallel veins.")

    @property
    def conductance_m3(self) -> float:
        """Geometric Poiseuille conductance n pi r^4 / (8 L), m^3 (times a mobility 1/mu: m^3 / (Pa s))."""
        return self.n_parallel * np.pi * self.radius_m**4 / (8.0 * self.length_m)

    def wall_shear_rate_1_s(self, flow_m3_s):
        """Wall shear rate 4 Q / (n pi r^3) of Newtonian flow Q shared by the n tubes."""
        return 4.0 * np.asarray(flow_m3_s, float) / (self.n_parallel * np.pi * self.radius_m**3)


def newtonian(viscosity_pa_s: float) -> Callable:
    """A constant cement viscosity as the callable ``inject`` expects."""
    mu = check_range("viscosity_pa_s", viscosity_pa_s, 1e-4, 1e7, "Pa s")
    return lambda t_s, shear_rate_1_s: mu


@dataclass(frozen=True)
class InjectionResult:
    """Fields on the full voxel grid and time series (one row per time step, first row t = 0)."""

    saturation: np.ndarray  # cement saturation, 0 outside the porous voxels
    arrival_time_s: np.ndarray  # time the saturation first reached 0.5; NaN where it never did; 0 at the tip
    pressure_pa: np.ndarray  # final gauge pressure, NaN outside the porous voxels
    t_s: np.ndarray
    injected_m3: np.ndarray
    in_bone_m3: np.ndarray
    tip_pressure_pa: np.ndarray  # (n_steps, n_cannulas) gauge bone pressure at the cannula outlet
    leaked_m3: dict[str, np.ndarray]  # cumulative cement volume out through each route
    mass_balance_error: np.ndarray  # |injected - in bone - leaked| / injected
    volume_balance_error: np.ndarray  # |rate - sum of exit fluxes| / rate (pressure solve)
    stop_reason: str
    n_steps: int
    wall_time_s: float
    solver_iterations: tuple[int, ...] = field(default=())
    solver_setups: int = 0
    rate_m3_s: np.ndarray | None = None  # injection rate of each step (row 0: the planned rate), all cannulas together

    @property
    def leaked_total_m3(self) -> np.ndarray:
        return sum(self.leaked_m3[r] for r in ROUTES)


@dataclass
class _Grid:
    shape: tuple[int, int, int]
    cells: np.ndarray  # flat indices (C order) of the unknowns
    pv: np.ndarray  # pore volume per cell, m^3
    k_iso: np.ndarray  # geometric-mean permeability per cell (shear-rate estimate)
    phi: np.ndarray
    fi: np.ndarray  # interior faces: cell i (lower), cell j (upper), axis, geometric transmissibility
    fj: np.ndarray
    f_axis: np.ndarray
    f_tg: np.ndarray
    ei: np.ndarray  # exit faces: cell, route index, geometric transmissibility
    e_route: np.ndarray
    e_tg: np.ndarray
    ti: np.ndarray  # tip faces: cell, cannula index, half-cell transmissibility, axis
    t_can: np.ndarray
    t_th: np.ndarray
    t_axis: np.ndarray
    n_cannulas: int
    area: np.ndarray  # face area per axis


def _as_k_tuple(permeability_m2, shape):
    if isinstance(permeability_m2, (tuple, list)):
        if len(permeability_m2) != 3:
            raise InvalidValueError(
                f"permeability_m2 is a sequence of {len(permeability_m2)} arrays.",
                "give one 3-D array (isotropic) or a 3-tuple (k along right, anterior, superior).",
            )
        ks = tuple(np.asarray(k, dtype=float) for k in permeability_m2)
    else:
        k = np.asarray(permeability_m2, dtype=float)
        ks = (k, k, k)
    for a, k in enumerate(ks):
        if k.shape != shape:
            raise GridMismatchError(
                f"permeability_m2 (axis {a}) has shape {k.shape}, labels have {shape}.",
                "give permeability on the same voxel grid as the labels.",
            )
    return ks


def _tip_mask(tip_voxels, shape):
    if isinstance(tip_voxels, np.ndarray) and tip_voxels.dtype == bool:
        if tip_voxels.shape != shape:
            raise GridMismatchError(
                f"tip_voxels mask has shape {tip_voxels.shape}, labels have {shape}.", "give a mask on the same grid."
            )
        return tip_voxels.copy()
    mask = np.zeros(shape, dtype=bool)
    for t in tip_voxels:
        idx = tuple(int(v) for v in t)
        if len(idx) != 3 or any(not (0 <= v < s) for v, s in zip(idx, shape)):
            raise ParameterError(
                f"Cannula tip voxel {tuple(t)} lies outside the voxel grid of shape {shape}: the tip is outside the body.",
                f"place the tip inside the vertebral body (a voxel labelled {TRABECULAR} or {DEFECT}).",
            )
        mask[idx] = True
    return mask


def _axis_slices(a):
    """Index slices of the lower and the upper cell of every face along axis ``a``."""
    lo = [slice(None)] * 3
    hi = [slice(None)] * 3
    lo[a] = slice(0, -1)
    hi[a] = slice(1, None)
    return tuple(lo), tuple(hi)


def _outlet_tips(labels, tip, porous):
    """The tip voxels that deliver cement (those in the marrow space); raise if a tip lies outside the body."""
    if not tip.any():
        raise EmptyMaskError("tip_voxels holds no voxel.", "give at least one cannula tip voxel.")
    bad = tip & ~np.isin(labels, INJECTABLE)
    if bad.any():
        where = tuple(int(v) for v in np.argwhere(bad)[0])
        raise ParameterError(
            f"Cannula tip voxel {where} has label {int(labels[where])}, not bone (labels {TRABECULAR}, {CORTEX}, "
            f"{ENDPLATE}, {DEFECT}): the tip is outside the body.",
            f"place the tip inside the vertebral body (a voxel labelled {TRABECULAR} or {DEFECT}).",
        )
    # tip voxels in the cortex or an endplate (a cannula radius reaching the shell) are walls, not outlets
    tip = tip & porous
    if not tip.any():
        raise ParameterError(
            f"No cannula tip voxel lies in the marrow space (labels {TRABECULAR} or {DEFECT}): the tip is outside the "
            "body or in the cortex.",
            "move the tip into the trabecular bone of the vertebral body.",
        )
    return tip


def _interior_faces(a, flow, k, idx, area, h):
    """Faces between two flow cells along axis ``a``: (cell i, cell j, axis, geometric transmissibility)."""
    lo, hi = _axis_slices(a)
    m = flow[lo] & flow[hi]
    kl, kh = k[lo][m], k[hi][m]
    return idx[lo][m], idx[hi][m], np.full(kl.size, a, dtype=np.int8), area[a] / h[a] * 2.0 * kl * kh / (kl + kh)


def _exit_faces(a, labels, flow, k, idx, area, h):
    """Exit faces along axis ``a``, both orientations, by route: [(cell, route index, half-cell transmissibility)]."""
    lo, hi = _axis_slices(a)
    out = []
    for own_side, other_side in ((lo, hi), (hi, lo)):
        side_flow, side_lab, other_lab = flow[own_side], labels[own_side], labels[other_side]
        for r, (own, nbrs) in enumerate(_EXIT_RULES.values()):
            m = side_flow & np.isin(other_lab, nbrs)
            if own is not None:
                m &= side_lab == own
            if m.any():
                out.append((idx[own_side][m], np.full(int(m.sum()), r, dtype=np.int8),
                            area[a] * k[own_side][m] / (0.5 * h[a])))
    return out


def _tip_faces(a, flow, k, idx, can_lab, area, h):
    """Faces between a flow cell and a tip voxel along axis ``a``, both orientations:
    [(cell, cannula index, half-cell transmissibility, axis)]."""
    lo, hi = _axis_slices(a)
    out = []
    for own_side, tip_side in ((lo, hi), (hi, lo)):
        can = can_lab[tip_side]
        m = flow[own_side] & (can > 0)
        if m.any():
            out.append((idx[own_side][m], can[m] - 1, area[a] * k[own_side][m] / (0.5 * h[a]),
                        np.full(int(m.sum()), a, dtype=np.int8)))
    return out


def _cat(parts, column, dtype):
    """Concatenate column ``column`` of a list of face tuples (an empty array if there is none)."""
    return np.concatenate([p[column] for p in parts]).astype(dtype) if parts else np.zeros(0, dtype)


def _build_grid(labels, spacing_m, porosity, ks, tip):
    """The finite-volume grid of the porous voxels reachable from the cannulas: cells, faces, exits, tip faces."""
    shape = labels.shape
    # a voxel of a porous label compacted to full density (porosity 0, e.g. in a fracture's sclerotic band) has no
    # pore space: it conducts nothing and is not a cell
    porous = np.isin(labels, POROUS_LABELS) & (porosity > 0)
    tip = _outlet_tips(labels, tip, porous)
    flow = porous & ~tip
    h = np.asarray(spacing_m, dtype=float)
    area = np.array([h[1] * h[2], h[0] * h[2], h[0] * h[1]])
    n_can, can_lab = _label_components(tip)
    flat_flow = np.flatnonzero(flow)
    idx = np.full(labels.size, -1, dtype=np.int64)
    idx[flat_flow] = np.arange(flat_flow.size)
    idx = idx.reshape(shape)

    faces, exits, tips = [], [], []
    for a in range(3):
        faces.append(_interior_faces(a, flow, ks[a], idx, area, h))
        exits += _exit_faces(a, labels, flow, ks[a], idx, area, h)
        tips += _tip_faces(a, flow, ks[a], idx, can_lab, area, h)
    phi = porosity.reshape(-1)[flat_flow].astype(float)
    kg = np.cbrt(ks[0].reshape(-1)[flat_flow] * ks[1].reshape(-1)[flat_flow] * ks[2].reshape(-1)[flat_flow])
    g = _Grid(
        shape=shape, cells=flat_flow, pv=phi * float(np.prod(h)), k_iso=kg, phi=phi,
        fi=_cat(faces, 0, np.int64), fj=_cat(faces, 1, np.int64), f_axis=_cat(faces, 2, np.int8),
        f_tg=_cat(faces, 3, float),
        ei=_cat(exits, 0, np.int64), e_route=_cat(exits, 1, np.int8), e_tg=_cat(exits, 2, float),
        ti=_cat(tips, 0, np.int64), t_can=_cat(tips, 1, np.int64), t_th=_cat(tips, 2, float),
        t_axis=_cat(tips, 3, np.int8), n_cannulas=n_can, area=area,
    )
    for c in range(n_can):
        if not np.any(g.t_can == c):
            where = tuple(int(v) for v in np.argwhere(can_lab == c + 1)[0])
            raise ParameterError(
                f"Cannula tip at voxel {where} has no face on porous bone (labels {TRABECULAR} or {DEFECT}): the tip "
                "is outside the body or walled in by cortex.",
                "move the tip into the trabecular bone of the vertebral body.",
            )
    return _restrict_to_reachable(g)


def _label_components(mask):
    from scipy import ndimage

    lab, n = ndimage.label(mask)  # 6-connectivity: one cannula = one face-connected group of tip voxels
    return n, lab


def _restrict_to_reachable(g: _Grid) -> _Grid:
    """Keep only the porous voxels connected to a cannula (PoreSpy-style guard); each such region needs an exit."""
    n = g.cells.size
    adj = sp.coo_matrix((np.ones(g.fi.size), (g.fi, g.fj)), shape=(n, n))
    ncomp, comp = connected_components(adj, directed=False)
    reached = np.unique(comp[g.ti])
    for c in reached:
        if not np.any(comp[g.ei] == c):
            raise ParameterError(
                f"The bone region around the cannula tip has no exit (no voxel next to a vein ({BASIVERTEBRAL}, "
                f"{SEGMENTAL}), a cortical defect ({DEFECT} next to {OUTSIDE}/{CANAL}) or an endplate fracture "
                f"({DEFECT} next to {DISC})): incompressible marrow cannot be displaced.",
                f"label the basivertebral foramen ({BASIVERTEBRAL}) or segmental vein exits ({SEGMENTAL}) in the model.",
            )
    keep = np.isin(comp, reached)
    new = np.full(n, -1, dtype=np.int64)
    new[keep] = np.arange(int(keep.sum()))
    fm = keep[g.fi]
    em = keep[g.ei]
    return _Grid(
        shape=g.shape, cells=g.cells[keep], pv=g.pv[keep], k_iso=g.k_iso[keep], phi=g.phi[keep],
        fi=new[g.fi[fm]], fj=new[g.fj[fm]], f_axis=g.f_axis[fm], f_tg=g.f_tg[fm],
        ei=new[g.ei[em]], e_route=g.e_route[em], e_tg=g.e_tg[em],
        ti=new[g.ti], t_can=g.t_can, t_th=g.t_th, t_axis=g.t_axis, n_cannulas=g.n_cannulas, area=g.area,
    )


class _Assembler:
    """Assemble the SPD pressure matrix with a fixed sparsity pattern (values only change from step to step)."""

    def __init__(self, g: _Grid):
        n = g.cells.size
        self.n = n
        rows = np.concatenate([g.fi, g.fj, np.arange(n)])
        cols = np.concatenate([g.fj, g.fi, np.arange(n)])
        order = sp.csr_matrix((np.arange(1, rows.size + 1, dtype=float), (rows, cols)), shape=(n, n))
        self.perm = order.data.astype(np.int64) - 1
        self.indptr, self.indices = order.indptr, order.indices
        self.g = g

    def matrix(self, t_face, t_exit):
        g = self.g
        diag = np.bincount(g.fi, t_face, self.n) + np.bincount(g.fj, t_face, self.n) + np.bincount(g.ei, t_exit, self.n)
        vals = np.concatenate([-t_face, -t_face, diag])[self.perm]
        return sp.csr_matrix((vals, self.indices, self.indptr), shape=(self.n, self.n))


def _frac(S, mu_c, mu_m):
    d = S * mu_m + (1.0 - S) * mu_c
    return S * mu_m / d, mu_m * mu_c / d**2


def _saturation_step(S_old, dt, pv, up, dn, wf, out, src, mu_c, mu_m, active, p, tol=1e-11, max_iter=60):
    """Backward-Euler single-point-upstream saturation; returns S at the new time level (Newton on ``active``).

    Numbered by falling pressure, every upstream cell comes before its downstream neighbours (flow goes from high
    to low pressure), so the Newton matrix is lower triangular and each Newton step is one triangular solve.
    """
    S = S_old.copy()
    n = S.size
    a = np.flatnonzero(active)
    a = a[np.argsort(-p[a], kind="stable")]
    loc = np.full(n, -1, dtype=np.int64)
    loc[a] = np.arange(a.size)
    into = np.flatnonzero(active[dn])  # the faces into the set (in face order: the same sums as with masks)
    dn, up, wf = dn[into], up[into], wf[into]
    act_up = active[up]
    fm = act_up & (wf > 0)
    dn_a, up_a, w_a = loc[dn[fm]], loc[up[fm]], wf[fm]
    inflow_edge = ~act_up  # inflow from inactive (S fixed) cells
    pv_a, out_a, mu_a = pv[a], out[a], mu_c[a]
    fixed_in = np.bincount(loc[dn[inflow_edge]], _frac(S[up[inflow_edge]], mu_c[up[inflow_edge]], mu_m)[0]
                           * wf[inflow_edge], a.size) if inflow_edge.any() else np.zeros(a.size)
    rhs_src = src[a] + fixed_in
    Sa = S[a].copy()
    Sa_old = S_old[a]
    scale = pv_a / dt
    tri = _LowerTriangle(dn_a, up_a, a.size)
    for _ in range(max_iter):
        f, df = _frac(Sa, mu_a, mu_m)
        inflow = np.bincount(dn_a, f[up_a] * w_a, a.size)
        R = scale * (Sa - Sa_old) + f * out_a - inflow - rhs_src
        if np.max(np.abs(R) / scale) < tol:
            break
        delta = tri.solve(-(df[up_a] * w_a), scale + df * out_a, -R)
        # a cell may sit a hair above 1 where the pressure solve leaves a residual (rtol); the write-back is exact
        Sa = np.clip(Sa + delta, 0.0, 1.0 + 1e-8)
    else:
        raise _SaturationNotConverged("saturation Newton iteration did not converge; reduce cfl.")
    S[a] = Sa
    return S


class _LowerTriangle:
    """Solves of one lower-triangular sparsity pattern (entries at (row, col) with col < row, and the diagonal) with
    new values each time: the Newton steps of :func:`_saturation_step`. The CSC pattern is sorted once; each solve
    scales the columns by the inverse diagonal (unit diagonal), writes the scaled values into the pattern's slots and
    calls SuperLU's triangular solve (``gstrs``, with an empty U), as ``spsolve_triangular(J, b, lower=True)`` does,
    without rebuilding J from coordinates, transposing it and multiplying it by a diagonal matrix at every Newton
    step, nor spsolve_triangular's own setdiag, duplicate sum and empty-U construction at every call (the same bits:
    tests/test_flow_triangle.py; docs/performance.md measures the time)."""

    def __init__(self, rows: np.ndarray, cols: np.ndarray, n: int):
        diag = np.arange(n)
        r, c = np.concatenate([rows, diag]), np.concatenate([cols, diag])
        order = np.argsort(c.astype(np.int64) * n + r)  # CSC: by column, then row (the keys are unique)
        self.indices = r[order].astype(np.int32)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(c, minlength=n))]).astype(np.int32)
        slot = np.empty_like(order)
        slot[order] = np.arange(order.size)
        self.off_slot = slot[: rows.size]  # where each (row, col) entry sits in the CSC values
        self.vals = np.ones(order.size)  # the diagonal slots keep their 1
        self.cols, self.n = cols, n
        self.empty_u = (np.zeros(0), np.zeros(0, np.int32), np.zeros(n + 1, np.int32))

    def solve(self, offdiag: np.ndarray, diag: np.ndarray, b: np.ndarray) -> np.ndarray:
        """x with J x = b, J: ``offdiag`` at the pattern's (row, col), ``diag`` on the diagonal (``b`` is
        overwritten)."""
        invdiag = 1.0 / diag
        self.vals[self.off_slot] = offdiag * invdiag[self.cols]
        if _gstrs is None:  # pragma: no cover
            j = sp.csc_matrix((self.vals.copy(), self.indices, self.indptr), shape=(self.n, self.n))
            j.has_sorted_indices = True
            return spla.spsolve_triangular(j, b, lower=True, unit_diagonal=True, overwrite_A=True,
                                           overwrite_b=True) * invdiag
        x, info = _gstrs("N", self.n, self.vals.size, self.vals, self.indices, self.indptr,
                         self.n, 0, *self.empty_u, np.asarray(b, dtype=float))
        if info:
            raise np.linalg.LinAlgError("the saturation Newton matrix is singular.")
        return x * invdiag


class _SaturationNotConverged(RuntimeError):
    """The implicit saturation step did not converge at this time step (inject halves the step and retries)."""


#: Relative residual of the default pressure solve, ||b - A p||_2 <= PRESSURE_RTOL ||b||_2 (1e-8 before the fourth
#: pass of issue 26). The saturation update needs the face fluxes' divergence to match the sources to well below the
#: mass tolerance (1e-6): on the demo's VP and KP at 1 mm, 1e-7 instead of 1e-8 raises the largest volume-balance
#: error from 4.5e-9 to 4.3e-8, changes the saturation by at most 5e-6, the injected volume by 2e-7 mL, the leaks by
#: 2e-8 mL, the tip pressure by 8e-5 Pa and no cell of the cement mask, and saves 11-16 % of the CG iterations
#: (the second refinement round of each solve is shorter; docs/performance.md, "Fourth pass, fill").
PRESSURE_RTOL = 1e-7
#: Halvings of a time step whose saturation Newton iteration fails before inject gives up.
MAX_STEP_HALVINGS = 8
#: Largest saturation a cell outside the implicit set may receive in one step before the set is grown.
ACTIVE_SET_TOL = 1e-3
MAX_ACTIVE_GROWTHS = 200


@dataclass(frozen=True)
class _Problem:
    """One injection, validated and discretised: the grid, the cannula source, the fluids and the step controls."""

    g: _Grid
    tip: np.ndarray  # full-grid mask of the tip voxels that deliver cement (in the marrow space)
    rate: float  # m^3/s, all cannulas together
    vol_target: float  # m^3
    cement_viscosity: Callable
    mu_m: float  # marrow viscosity, Pa s
    p_v: float  # venous (reservoir) gauge pressure, Pa
    stop_leak_m3: float | None
    start_time_s: float
    cfl: float
    max_saturation_change: float
    max_dt_s: float
    shear_rate_factor: float
    mass_tolerance: float
    max_steps: int
    pressure_limit_pa: float | None
    cannula_drop_pa: Callable | None
    min_rate_fraction: float
    stop_cells: np.ndarray  # cells of stop_mask (empty: no posterior rule)
    faces_per_can: np.ndarray  # tip faces per cannula
    q_face: np.ndarray  # cement inflow through each tip face, m^3/s
    src: np.ndarray  # cement inflow per cell, m^3/s
    adj: sp.csr_matrix  # cell adjacency (symmetric, 0/1)
    sqrt_kphi: np.ndarray  # sqrt(k phi) per cell, m (shear-rate scale)
    exit_veins: tuple = (None,) * len(ROUTES)  # ExitVein or None per route (module docstring)
    e_vein: np.ndarray | None = None  # per exit face: its share G_face of the route's vein conductance, m^3 (inf: none)
    # bins axis * n + cell of the interior faces' two cells and of the tip faces (the shear rate's per-axis sums)
    shear_bins: tuple = ()

    @property
    def n(self) -> int:
        return self.g.cells.size


@dataclass
class _State:
    """The evolving fields (per cell) and the time series recorded after every step."""

    S: np.ndarray  # cement saturation
    p: np.ndarray  # pressure above the reservoir, Pa
    F: np.ndarray  # total volume flux through each interior face (i -> j), m^3/s
    gamma: np.ndarray  # shear rate for the next viscosity evaluation, 1/s
    arrival: np.ndarray  # time the saturation first reached ARRIVAL_SATURATION, s
    t: float = 0.0
    injected: float = 0.0
    leaked: np.ndarray = field(default_factory=lambda: np.zeros(len(ROUTES)))
    step: int = 0
    dt: float | None = None
    dS_last: float = 0.0
    lam: np.ndarray | None = None  # total mobility of the last step
    q_vein: np.ndarray = field(default_factory=lambda: np.zeros(len(ROUTES)))  # total outflow per route, m^3/s
    history: dict = field(default_factory=dict)  # name -> list, one entry per step (first entry t = 0)

    def record(self, **values) -> None:
        for name, v in values.items():
            self.history.setdefault(name, []).append(v)


def _checked_inputs(labels, spacing_m, porosity, permeability_m2, tip_voxels, rate_m3_s, volume_m3):
    """Validate the grid inputs; returns (labels, spacing, porosity, ks, tip mask, rate, volume)."""
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise InvalidValueError(f"labels has {labels.ndim} dimensions.", "give a 3-D label array (right, anterior, superior).")
    shape = labels.shape
    rate = check_range("rate_m3_s", rate_m3_s, 1e-15, 1e-3, "m^3/s", "give a positive rate, e.g. 5e-8 m^3/s (3 mL/min).")
    if not rate > 1e-15:
        raise ParameterError(f"Parameter rate_m3_s={rate_m3_s!r} must be > 0.", "give a positive injection rate.")
    vol_target = check_range("volume_m3", volume_m3, 1e-15, 1e-3, "m^3", "give a positive volume, e.g. 4e-6 m^3 (4 mL).")
    spacing = tuple(check_range("spacing_m", s, 1e-6, 1e-2, "m") for s in spacing_m)
    if len(spacing) != 3:
        raise ParameterError(f"Parameter spacing_m={spacing_m!r} needs 3 values.", "give (dx, dy, dz) in m.")
    porosity = np.asarray(porosity, dtype=float)
    if porosity.shape != shape:
        raise GridMismatchError(f"porosity has shape {porosity.shape}, labels have {shape}.", "use the same grid.")
    ks = _as_k_tuple(permeability_m2, shape)
    tip = _tip_mask(tip_voxels, shape)
    labelled = np.isin(labels, POROUS_LABELS)
    if not np.all((porosity[labelled] >= 0) & (porosity[labelled] <= 1)):
        raise InvalidValueError(f"porosity is outside [0, 1] in porous voxels (labels {TRABECULAR}, {DEFECT}).",
                                "give 0 <= porosity <= 1 (0: compacted to full density, no pore space).")
    porous = labelled & (porosity > 0)
    for k in ks:
        if not np.all(np.isfinite(k[porous]) & (k[porous] > 0)):
            raise InvalidValueError("permeability_m2 is not finite and > 0 in porous voxels.", "give k > 0 in m^2.")
    return labels, spacing, porosity, ks, tip, rate, vol_target


def _make_problem(g: _Grid, tip, rate, vol_target, **controls) -> _Problem:
    """The injection problem on grid ``g``: the cannula source (rate / n_cannulas each, split evenly over that
    cannula's faces) and the cell adjacency; raise if the volume does not fit the reachable pore space."""
    pore_m3 = float(g.pv.sum())
    if vol_target > pore_m3:
        raise ParameterError(
            f"Parameter volume_m3={vol_target:.4g} exceeds the pore space reachable from the cannula, {pore_m3:.4g} m^3.",
            "inject less cement (the body cannot hold more than its marrow space).",
        )
    n = g.cells.size
    faces_per_can = np.bincount(g.t_can, minlength=g.n_cannulas).astype(float)
    q_face = rate / g.n_cannulas / faces_per_can[g.t_can]
    adj = sp.csr_matrix((np.ones(2 * g.fi.size), (np.concatenate([g.fi, g.fj]), np.concatenate([g.fj, g.fi]))),
                        shape=(n, n))
    axis_f, axis_t = g.f_axis.astype(np.int64) * n, g.t_axis.astype(np.int64) * n
    return _Problem(g=g, tip=tip, rate=rate, vol_target=vol_target, faces_per_can=faces_per_can, q_face=q_face,
                    src=np.bincount(g.ti, q_face, n), adj=adj, sqrt_kphi=np.sqrt(g.k_iso * g.phi),
                    e_vein=_vein_face_conductance(g, controls["exit_veins"]),
                    shear_bins=(axis_f + g.fi, axis_f + g.fj, axis_t + g.ti), **controls)


def _checked_exit_veins(exit_veins) -> tuple:
    """``exit_veins`` (route -> ExitVein) as a tuple in ROUTES order; only the vein routes B and S take one."""
    if exit_veins is None:
        return (None,) * len(ROUTES)
    bad = [r for r in exit_veins if r not in ("B", "S")]
    if bad or not all(isinstance(v, ExitVein) for v in exit_veins.values()):
        raise ParameterError(f"Parameter exit_veins={exit_veins!r} is not a map of the vein routes to ExitVein.",
                             'give e.g. {"B": ExitVein(2.7e-3, 0.01), "S": ExitVein(2.1e-3, 0.025, 2)}.')
    return tuple(exit_veins.get(r) for r in ROUTES)


def _vein_face_conductance(g: _Grid, veins: tuple) -> np.ndarray:
    """Per exit face: the route's vein conductance G shared in proportion to the face's T_half (inf: no vein)."""
    out = np.full(g.ei.size, np.inf)
    for r, vein in enumerate(veins):
        m = g.e_route == r
        if vein is not None and m.any():
            out[m] = vein.conductance_m3 * g.e_tg[m] / g.e_tg[m].sum()
    return out


def _checked_controls(pressure_limit_pa, cannula_drop_pa, venous_pressure_pa, min_rate_fraction) -> dict:
    """The pressure-limit controls, checked: a limit at or below the venous pressure could never push cement out."""
    if pressure_limit_pa is not None:
        if cannula_drop_pa is None:
            raise ParameterError("pressure_limit_pa was given without cannula_drop_pa.",
                                 "give the cannula loss as cannula_drop_pa(t_s, flow_per_cannula_m3_s) -> Pa.")
        if not pressure_limit_pa > venous_pressure_pa:
            raise ParameterError(
                f"Parameter pressure_limit_pa={pressure_limit_pa:.4g} Pa is not above the venous pressure "
                f"{venous_pressure_pa:.4g} Pa: the injector could not push any cement into the bone.",
                "give the injector's plunger pressure limit, e.g. 3.2e6 Pa for hand injection.")
    return {"pressure_limit_pa": pressure_limit_pa, "cannula_drop_pa": cannula_drop_pa,
            "min_rate_fraction": check_range("min_rate_fraction", min_rate_fraction, 1e-6, 0.5)}


def _stop_cells(g: _Grid, stop_mask) -> np.ndarray:
    """Cells (unknown indices) inside ``stop_mask``; empty without one."""
    if stop_mask is None:
        return np.zeros(0, dtype=np.int64)
    m = np.asarray(stop_mask, dtype=bool)
    if m.shape != g.shape:
        raise GridMismatchError(f"stop_mask has shape {m.shape}, labels have {g.shape}.", "give a mask on the same grid.")
    return np.flatnonzero(m.reshape(-1)[g.cells])


def _initial_state(pb: _Problem) -> _State:
    n = pb.n
    st = _State(S=np.zeros(n), p=np.zeros(n), F=np.zeros(pb.g.fi.size), gamma=np.zeros(n),
                arrival=np.full(n, np.nan))
    st.record(t=0.0, injected=0.0, in_bone=0.0, tip_p=np.full(pb.g.n_cannulas, pb.p_v), leaked=st.leaked.copy(),
              mass_err=0.0, vol_err=0.0, rate=pb.rate)
    return st


def _solve_pressure(pb: _Problem, st: _State, mu_c, asm: _Assembler, solver: PressureSolver):
    """Implicit pressure with upstream face mobilities: updates st.p, st.F, st.lam; returns (exit fluxes, volume
    balance error)."""
    g = pb.g
    lam = st.S / mu_c + (1.0 - st.S) / pb.mu_m
    F = st.F
    lam_f = np.where(F > 0, lam[g.fi], np.where(F < 0, lam[g.fj], 0.5 * (lam[g.fi] + lam[g.fj])))
    t_face = g.f_tg * lam_f
    t_exit = g.e_tg * lam[g.ei]  # outflow upstream mobility (exits only see outflow while injecting)
    lam_v = _vein_mobility(pb, st)
    if lam_v is not None:  # the extra-osseous veins in series (module docstring)
        t_exit = 1.0 / (1.0 / t_exit + 1.0 / (pb.e_vein * lam_v))
    st.p = solver.solve(asm.matrix(t_face, t_exit), pb.src, x0=st.p, voxels=(g.shape, g.cells))
    st.F = t_face * (st.p[g.fi] - st.p[g.fj])
    st.lam = lam
    F_exit = t_exit * st.p[g.ei]
    return F_exit, abs(pb.rate - F_exit.sum()) / pb.rate


def _vein_mobility(pb: _Problem, st: _State) -> np.ndarray | None:
    """Per exit face, the total mobility of the fluid in its extra-osseous vein (None without veins): the exit
    cell's saturation, cement at its viscosity at the vein's lagged wall shear rate."""
    has = np.array([v is not None for v in pb.exit_veins])
    if not has.any():
        return None
    gamma = np.array([v.wall_shear_rate_1_s(q) if v is not None else 0.0 for v, q in zip(pb.exit_veins, st.q_vein)])
    mu_v = np.broadcast_to(np.asarray(pb.cement_viscosity(pb.start_time_s + st.t, pb.shear_rate_factor * gamma),
                                      float), (len(ROUTES),))
    S_e = st.S[pb.g.ei]
    return S_e / mu_v[pb.g.e_route] + (1.0 - S_e) / pb.mu_m


def _time_step(pb: _Problem, st: _State, out) -> float:
    """First step by the volumetric CFL number of the cells at the cannula, then adapted so that the largest
    saturation change per step stays near max_saturation_change (the front crosses a cell in a few steps)."""
    if st.dt is None:
        at_tip = pb.src > 0
        dt = pb.cfl * float(np.min(pb.g.pv[at_tip] / out[at_tip]))
    else:
        dt = st.dt * float(np.clip(pb.max_saturation_change / max(st.dS_last, 1e-12), 0.5, 2.0))
    return min(dt, pb.max_dt_s, (pb.vol_target - st.injected) / pb.rate)


def _grow(adj, mask):
    """``mask`` and one layer of cells around it."""
    return mask | (adj @ mask.astype(float) > 0)


def _implicit_saturation(pb: _Problem, st: _State, dt, up, dn, w, out, mu_c):
    """Backward-Euler saturation over the implicit set; returns (S_new, dt), dt halved where Newton failed.

    The set: cells holding any cement and two layers around them, grown (two layers more around the cells
    concerned) while the solution would push more than ACTIVE_SET_TOL of a cell's pore volume into a cell outside
    it (whose update would then be explicit and unbounded: a long first step, cfl >> 1, can carry the front many
    cells)."""
    n, adj = pb.n, pb.adj
    active = _grow(adj, _grow(adj, (st.S > 1e-12) | (pb.src > 0)))
    for _growth in range(MAX_ACTIVE_GROWTHS + 1):
        for halving in range(MAX_STEP_HALVINGS + 1):
            try:
                S_new = _saturation_step(st.S, dt, pb.g.pv, up, dn, w, out, pb.src, mu_c, pb.mu_m, active, st.p)
                break
            except _SaturationNotConverged:
                if halving == MAX_STEP_HALVINGS:
                    raise RuntimeError(
                        f"saturation step did not converge at step {st.step} even at dt = {dt:.3g} s; reduce cfl "
                        "or max_saturation_change.") from None
                dt *= 0.5  # take half the step (same pressure field)
        f_new = _frac(S_new, mu_c, pb.mu_m)[0]
        spill = ~active & (np.bincount(dn, f_new[up] * w, n) * dt > ACTIVE_SET_TOL * pb.g.pv)
        if not spill.any():
            return S_new, dt
        active = _grow(adj, _grow(adj, active | spill))
    raise RuntimeError(f"the implicit saturation set kept growing at step {st.step}; reduce cfl.")


def _shear_rate(pb: _Problem, F) -> np.ndarray:
    """Cell shear rate gamma = |u| / sqrt(k phi), the cell velocity from the face fluxes around it: per axis, half
    the sum of |flux| over the cell's two faces on that axis (tip faces carry their cement inflow), over the area.
    One bincount per face set on the bins axis * n + cell (``_Problem.shear_bins``, built once per grid)."""
    g, n = pb.g, pb.n
    bin_i, bin_j, bin_t = pb.shear_bins
    w = np.abs(F)
    ua = (np.bincount(bin_i, w, 3 * n) + np.bincount(bin_j, w, 3 * n) + np.bincount(bin_t, pb.q_face, 3 * n))
    ua = ua.reshape(3, n)
    u2 = (0.5 * ua[0] / g.area[0]) ** 2 + (0.5 * ua[1] / g.area[1]) ** 2 + (0.5 * ua[2] / g.area[2]) ** 2
    return np.sqrt(u2) / pb.sqrt_kphi


def _tip_gauge_pa(pb: _Problem, st: _State) -> np.ndarray:
    """Bone pressure above the reservoir at each cannula outlet: p_i + q / (lambda_i T_half), averaged per cannula."""
    g = pb.g
    p_face = st.p[g.ti] + pb.q_face / (st.lam[g.ti] * g.t_th)
    return np.bincount(g.t_can, p_face, g.n_cannulas) / pb.faces_per_can


def _rate_scale(pb: _Problem, st: _State) -> float:
    """Fraction s of the planned rate that keeps the plunger pressure at or below the limit (1 without a limit)."""
    if pb.pressure_limit_pa is None:
        return 1.0
    bone = float(np.max(_tip_gauge_pa(pb, st)))  # at the planned rate; linear in the rate
    q_can = pb.rate / pb.g.n_cannulas
    t_mix = pb.start_time_s + st.t

    def excess(s):
        return float(pb.cannula_drop_pa(t_mix, s * q_can)) + s * bone + pb.p_v - pb.pressure_limit_pa

    if excess(1.0) <= 0.0:
        return 1.0
    if excess(pb.min_rate_fraction) >= 0.0:
        return 0.0  # stalled
    from scipy.optimize import brentq

    return float(brentq(excess, pb.min_rate_fraction, 1.0, xtol=1e-6))


def _step(pb: _Problem, st: _State, asm: _Assembler, solver: PressureSolver) -> bool:
    """One time step: viscosity, pressure, rate at the pressure limit, time-step size, implicit saturation,
    conservative write-back, checks. Returns False (and changes nothing) when the injector has stalled."""
    g, n = pb.g, pb.n
    mu_c = np.broadcast_to(np.asarray(pb.cement_viscosity(pb.start_time_s + st.t, pb.shear_rate_factor * st.gamma),
                                      float), (n,))
    if not np.all(np.isfinite(mu_c) & (mu_c > 0)):
        raise InvalidValueError("cement_viscosity returned a non-positive or non-finite value.", "check the law.")
    F_exit, vol_err = _solve_pressure(pb, st, mu_c, asm, solver)
    scale = _rate_scale(pb, st)
    if scale == 0.0:
        return False
    if scale < 1.0:  # the pressure field is linear in the rate at fixed mobilities
        pb = replace(pb, rate=pb.rate * scale, src=pb.src * scale, q_face=pb.q_face * scale)
        st.p, st.F, F_exit = st.p * scale, st.F * scale, F_exit * scale
    F = st.F
    pos = F >= 0  # upstream / downstream per interior face, outflow per cell
    up = np.where(pos, g.fi, g.fj)
    dn = np.where(pos, g.fj, g.fi)
    w = np.abs(F)
    out = np.bincount(up, w, n) + np.bincount(g.ei, np.maximum(F_exit, 0.0), n)
    S_new, dt = _implicit_saturation(pb, st, _time_step(pb, st, out), up, dn, w, out, mu_c)
    # conservative write-back with the converged fractional flows
    fS = _frac(S_new, mu_c, pb.mu_m)[0]
    fc = fS[up] * w
    fe = np.where(F_exit > 0, fS[g.ei] * F_exit, 0.0)
    dV = (np.bincount(dn, fc, n) - np.bincount(up, fc, n) - np.bincount(g.ei, fe, n) + pb.src) * dt
    S_prev = st.S
    st.S = st.S + dV / g.pv
    st.dt, st.dS_last = dt, float(np.max(np.abs(st.S - S_prev)))
    st.q_vein = np.bincount(g.e_route, np.maximum(F_exit, 0.0), len(ROUTES))
    st.leaked += np.bincount(g.e_route, fe, len(ROUTES)) * dt
    st.injected += pb.rate * dt
    st.t += dt
    st.arrival[np.isnan(st.arrival) & (st.S >= ARRIVAL_SATURATION)] = st.t
    in_bone = float(np.add.reduce(g.pv * st.S))  # not np.dot: see solvers._dot
    err = abs(st.injected - in_bone - st.leaked.sum()) / st.injected
    if err > pb.mass_tolerance or vol_err > pb.mass_tolerance:
        raise RuntimeError(
            f"mass balance violated at step {st.step}: cement {err:.3g}, volume {vol_err:.3g} (> {pb.mass_tolerance:g})."
        )
    tip_p = _tip_gauge_pa(pb, st) + pb.p_v  # bone pressure at the cannula outlet
    st.gamma = _shear_rate(pb, F)  # for the next step
    st.record(t=st.t, injected=st.injected, in_bone=in_bone, tip_p=tip_p, leaked=st.leaked.copy(), mass_err=err,
              vol_err=vol_err, rate=pb.rate)
    return True


def _result(pb: _Problem, st: _State, stop_reason: str, solver: PressureSolver, t_wall: float) -> InjectionResult:
    """Scatter the cell fields onto the full voxel grid and pack the time series."""
    shape, g = pb.g.shape, pb.g

    def full(x, fill):
        out_arr = np.full(int(np.prod(shape)), fill, dtype=float)
        out_arr[g.cells] = x
        return out_arr.reshape(shape)

    arrival_full = full(st.arrival, np.nan)
    arrival_full[pb.tip] = 0.0
    sat_full = full(st.S, 0.0)
    sat_full[pb.tip] = 1.0  # the cannula tip is full of cement (not counted in the bone volume)
    hist = st.history
    lh = np.array(hist["leaked"])
    return InjectionResult(
        saturation=sat_full,
        arrival_time_s=arrival_full,
        pressure_pa=full(st.p + pb.p_v, np.nan),
        t_s=np.array(hist["t"]),
        injected_m3=np.array(hist["injected"]),
        in_bone_m3=np.array(hist["in_bone"]),
        tip_pressure_pa=np.array(hist["tip_p"]),
        leaked_m3={r: lh[:, i] for i, r in enumerate(ROUTES)},
        mass_balance_error=np.array(hist["mass_err"]),
        volume_balance_error=np.array(hist["vol_err"]),
        stop_reason=stop_reason,
        n_steps=st.step,
        wall_time_s=time.perf_counter() - t_wall,
        solver_iterations=tuple(solver.stats.iterations),
        solver_setups=solver.stats.n_setups,
        rate_m3_s=np.array(hist["rate"]),
    )


def inject(
    labels: np.ndarray,
    spacing_m,
    porosity: np.ndarray,
    permeability_m2,
    tip_voxels,
    rate_m3_s: float,
    volume_m3: float,
    cement_viscosity: Callable,
    marrow_viscosity_pa_s: float = MARROW_VISCOSITY_PA_S,
    venous_pressure_pa: float = VENOUS_PRESSURE_PA,
    stop_leak_m3: float | None = None,
    start_time_s: float = 0.0,
    cfl: float = 1.0,
    max_saturation_change: float = 0.3,
    max_dt_s: float = 2.0,
    shear_rate_factor: float = 1.0,
    solver: PressureSolver | None = None,
    mass_tolerance: float = 1e-6,
    max_steps: int = 100_000,
    pressure_limit_pa: float | None = None,
    cannula_drop_pa: Callable | None = None,
    stop_mask: np.ndarray | None = None,
    min_rate_fraction: float = 0.1,
    exit_veins: dict | None = None,
) -> InjectionResult:
    """Inject ``volume_m3`` of cement at ``rate_m3_s`` through the cannula tip(s); see the module docstring.

    ``cement_viscosity(t_s, shear_rate_1_s)`` returns the cement viscosity in Pa s (scalar or per-cell array);
    ``t_s`` is ``start_time_s`` + time since the start of the injection (so a cure model can count from mixing).
    The injection stops when the volume is reached or, if ``stop_leak_m3`` is given, as soon as the total leaked
    cement exceeds it; with ``stop_mask`` (bool, full grid) when cement reaches it; with ``pressure_limit_pa`` and
    ``cannula_drop_pa`` the rate falls at the limit and the injection ends when the injector stalls (module
    docstring). ``exit_veins`` (route "B"/"S" -> :class:`ExitVein`) puts the extra-osseous veins in series with
    those exits. Returns an :class:`InjectionResult`.
    """
    t_wall = time.perf_counter()
    labels, spacing, porosity, ks, tip, rate, vol_target = _checked_inputs(
        labels, spacing_m, porosity, permeability_m2, tip_voxels, rate_m3_s, volume_m3)
    controls = {
        "cement_viscosity": cement_viscosity,
        "mu_m": check_range("marrow_viscosity_pa_s", marrow_viscosity_pa_s, 1e-4, 10.0, "Pa s"),
        "p_v": check_range("venous_pressure_pa", venous_pressure_pa, 0.0, 1e5, "Pa"),
        "cfl": check_range("cfl", cfl, 1e-3, 20.0),
        "max_saturation_change": check_range("max_saturation_change", max_saturation_change, 1e-3, 1.0),
        "stop_leak_m3": stop_leak_m3, "start_time_s": start_time_s, "max_dt_s": max_dt_s,
        "shear_rate_factor": shear_rate_factor, "mass_tolerance": mass_tolerance, "max_steps": max_steps,
        "exit_veins": _checked_exit_veins(exit_veins),
        **_checked_controls(pressure_limit_pa, cannula_drop_pa, venous_pressure_pa, min_rate_fraction),
    }
    g = _build_grid(labels, spacing, porosity, ks, tip)
    outlets = tip & np.isin(labels, POROUS_LABELS)  # tip voxels in the cortex/endplate are walls (see _build_grid)
    pb = _make_problem(g, outlets, rate, vol_target, stop_cells=_stop_cells(g, stop_mask), **controls)
    asm = _Assembler(g)
    solver = solver or PressureSolver("gmg", rtol=PRESSURE_RTOL)
    st = _initial_state(pb)
    stop_reason = STOP_VOLUME
    while st.injected < pb.vol_target * (1 - 1e-12):
        st.step += 1
        if st.step > pb.max_steps:
            stop_reason = STOP_MAX_STEPS
            break
        if not _step(pb, st, asm, solver):
            st.step -= 1
            stop_reason = STOP_PRESSURE
            break
        if pb.stop_leak_m3 is not None and st.leaked.sum() > pb.stop_leak_m3:
            stop_reason = STOP_LEAK
            break
        if pb.stop_cells.size and np.any(st.S[pb.stop_cells] >= ARRIVAL_SATURATION):
            stop_reason = STOP_POSTERIOR
            break
    return _result(pb, st, stop_reason, solver, t_wall)
