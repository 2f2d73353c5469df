"""Exotherm of a curing cement in a voxel model: transient heat conduction with cure source, perfusion and damage.

Heat equation (per voxel, finite volume, 7-point stencil)::

    (rho c)_mix dT/dt = div(k_mix grad T) - w_mix (rho c)_b (T - T_a) + phi_c rho_c H d(alpha)/dt
    d(alpha)/dt = K0 exp(-E/RT) alpha^m (alpha_max - alpha)^n        (rheology.cure_rate_1_s)
    alpha <= alpha_v(T_hot) = min(1, T_hot / Tg)     (vitrification; T_hot the hottest temperature the voxel reached)

- Mixture by volume (:func:`mix_properties`): a voxel of porous bone (label L with pore fraction 0 < p_L < 1) is bone
  matrix (1 - p), marrow p (1 - S) and cement p S, with p the voxel's porosity (default p_L) and S the cement fraction
  of the pore space; X_mix = (1 - p) X_bone + p (1 - S) X_marrow + p S X_cement for X = k (the parallel bound) and
  rho c, the marrow's X chosen so that the label's bulk value holds at p_L. Open labels (p_L = 1) are replaced by
  cement, p_L = 0 holds none. phi_c = p S. Perfusion (in vivo only: ``perfusion=False`` ex vivo) lives in the marrow
  left: w_mix = w_L p (1 - S) / p_L.
- Faces: harmonic conductance G = A / (h_i/(2 k_i) + h_j/(2 k_j)). Outer faces: far field T_inf = 37 C through the half
  cell and a film coefficient h_film: G_b = A / (1/h_film + h/(2k)); h_film = inf is Dirichlet, h_film = 0 insulated
  (also a symmetry plane). h_film may differ per outer face: order (-R, +R, -A, +A, -S, +S).
- Time: theta scheme (theta = 1 backward Euler, 0.5 Crank-Nicolson); the matrix is constant, so its solver is set up
  once: Jacobi-preconditioned CG (warm-started), or one scipy splu factorisation / one pyamg hierarchy reused. The cure
  is advanced over each step at the step's start temperature by the rate law's exact isothermal solution
  (rheology.advance_cure_isothermal), which gives the step's released heat exactly, so that the discrete energy
  balance closes to solver precision:
      released = stored + conducted out through the outer faces + removed by perfusion + vaporised.
- Boiling of the unreacted monomer (physics/monomer.py): after each solve, a cement voxel above its boiling
  temperature T_boil(phi_1) (where the dissolved monomer's partial pressure a_1(phi_1) p_sat(T) reaches 1 atm; it
  rises as the monomer is used up) with monomer left evaporates monomer (latent heat dH_v) until it sits at the
  T_boil of what is left; the vapour leaves, so the cure's ceiling falls to 1 - e (e: fraction boiled off). The cure
  of a step runs first (at the step's start temperature), the boiling after it: a first-order split; adiabatic, the
  boiled fraction is then the 0-D cure's up to O(d_alpha^2) at the point where boiling stops
  (tests/test_monomer_boiling.py).
- Damage: damage.DamageState (Arrhenius Omega, CEM43, time above 50 C, peak T) per voxel.
- Ceiling: with one start temperature everywhere, no voxel passes T_start + phi_c rho_c H / (rho c)_mix of the richest
  voxel. Cement placed cold into warm bone can: its rim cures first and heats the unreacted core, which then adds its
  own heat (the monomer does not diffuse). A 2.1 mL ball of Palacos R placed at 23 C in bone at 37 C peaks at 185.7 C
  at its centre in a radial method-of-lines reference (tests/exotherm_radial.py) against 37 + H/c = 159.5 C; this
  voxel model gives 176.3 / 180.3 / 182.0 C on 2 / 1 / 0.5 mm voxels (tests/test_exotherm_ceiling.py).
  These are the peaks without boiling (``monomer_boiling_point_k=None``); with it (chi = 0) the same ball boils
  off none of its monomer: by the time the core passes 111 C (T_boil at mixing) its monomer is mostly polymerised and
  T_boil has risen above it (tests/test_monomer_boiling.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from vertaug.errors import InvalidValueError, ParameterError, check_range
from vertaug.model.labels import (
    BASIVERTEBRAL,
    CANAL,
    CORTEX,
    DEFECT,
    DISC,
    ENDPLATE,
    OUTSIDE,
    SEGMENTAL,
    TRABECULAR,
    VEIN_CHANNEL,
)
from vertaug.physics import monomer, rheology
from vertaug.physics.damage import NECROSIS_OMEGA, DamageState
from vertaug.physics.heat_pcg import jacobi_scaled, mixed_jacobi_pcg

from ..constants import BODY_TEMPERATURE_C, KELVIN

__all__ = [
    "BLOOD_RHO_C_J_M3K",
    "LABEL_THERMAL",
    "ExothermResult",
    "TissueThermal",
    "assemble_conduction",
    "canal_wall_mask",
    "mix_properties",
    "simulate_exotherm",
]

BODY_C = BODY_TEMPERATURE_C  # the name the thermal code and its callers use
BLOOD_RHO_C_J_M3K = 1050.0 * 3617.0  # IT'IS blood [M]
CG_MAX_COND = 1.0e4  # "auto": Jacobi-PCG when the diagonal-dominance bound on cond(A) is below this
ENERGY_TOL_REL = 1e-6  # every run checks released = stored + conducted + perfused to this relative error
CG_MAX_ITER = 300  # "auto" falls back to direct/AMG if PCG needs more
DIRECT_MAX_UNKNOWNS = (
    60_000  # above this, pyamg (a 3-D LU fills in too much; peer timings 2026, docs/references.md)
)


@dataclass(frozen=True)
class TissueThermal:
    """Thermal properties of one label (bulk, before cement): k, rho*c, perfusion rate, fillable pore fraction."""

    name: str
    conductivity_w_m_k: float
    rho_c_j_m3k: float
    perfusion_1_s: float
    pore_fraction: float


# Sources in docs/cement.md. [V] cancellous k 0.29, rho c 3.05 MJ/m3K; others IT'IS-database values from memory [M].
LABEL_THERMAL: dict[int, TissueThermal] = {
    OUTSIDE: TissueThermal("soft tissue", 0.49, 1090.0 * 3421.0, 6.7e-4, 1.0),
    TRABECULAR: TissueThermal("trabecular", 0.29, 3.05e6, 5.9e-4, 0.9),
    CORTEX: TissueThermal("cortex", 0.32, 1908.0 * 1313.0, 3.2e-4, 0.0),
    ENDPLATE: TissueThermal("endplate", 0.32, 1908.0 * 1313.0, 3.2e-4, 0.0),
    CANAL: TissueThermal("canal", 0.51, 1114.0 * 3630.0, 0.0, 1.0),
    BASIVERTEBRAL: TissueThermal("basivertebral vein", 0.52, BLOOD_RHO_C_J_M3K, 0.0, 1.0),
    SEGMENTAL: TissueThermal("segmental vein exit", 0.52, BLOOD_RHO_C_J_M3K, 0.0, 1.0),
    DEFECT: TissueThermal("fracture cleft", 0.52, BLOOD_RHO_C_J_M3K, 0.0, 1.0),
    DISC: TissueThermal("disc", 0.49, 1100.0 * 3300.0, 0.0, 1.0),
    VEIN_CHANNEL: TissueThermal("intraosseous vein in trabecular bone", 0.29, 3.05e6, 5.9e-4, 0.9),  # as trabecular
}


@dataclass(frozen=True)
class ExothermResult:
    """Outcome of simulate_exotherm. 3-D fields have the label grid's shape; times in s from placement."""

    t_s: np.ndarray
    probe_temperature_c: dict
    max_temperature_c: np.ndarray
    omega: np.ndarray
    cem43_min: np.ndarray
    time_above_50c_s: np.ndarray
    alpha_final: np.ndarray
    necrosis_volume_ml: float
    canal_wall_peak_c: float
    canal_wall_time_above_50c_s: float
    cement_peak_c: float
    released_j: float
    stored_j: float
    conducted_out_j: float
    perfused_j: float
    energy_balance_error_rel: float
    solver: str
    peak_by_label_c: dict = field(default_factory=dict)
    notes: tuple = field(default=())
    cement_peak_time_s: float = float("nan")  # time of the cement peak, s after placement
    vaporised_j: float = 0.0  # latent heat carried off by the boiled monomer (a sink of the energy balance)
    monomer_boiled_off_kg: float = 0.0  # monomer that boiled off (physics/monomer.py)
    monomer_kg: float = 0.0  # monomer the placed cement held at mixing

    def probe_time_above_c(self, name: str, threshold_c: float) -> float:
        """Time (s) the probe ``name`` spent above ``threshold_c`` (linear interpolation between samples)."""
        t = self.t_s
        y = self.probe_temperature_c[name]
        total = 0.0
        for i in range(1, t.size):
            a, b, dt = y[i - 1] - threshold_c, y[i] - threshold_c, t[i] - t[i - 1]
            if a > 0 and b > 0:
                total += dt
            elif a > 0 or b > 0:
                total += dt * max(a, b) / abs(b - a)
        return float(total)


def _table_array(table: Mapping[int, TissueThermal], attr: str) -> np.ndarray:
    out = np.full(256, np.nan)
    for lab, props in table.items():
        out[int(lab)] = getattr(props, attr)
    return out


def _check_labels_and_fraction(labels, cement_fraction, table):
    """labels as uint8 (3-D, every value in ``table``) and the cement fraction of pore space (same shape, 0..1)."""
    lab = np.asarray(labels)
    if lab.ndim != 3:
        raise InvalidValueError(
            f"labels must be a 3-D array, got shape {lab.shape}.", "pass the (R, A, S) label grid."
        )
    if lab.dtype != np.uint8:
        if np.issubdtype(lab.dtype, np.integer) and lab.min() >= 0 and lab.max() <= 255:
            lab = lab.astype(np.uint8)
        else:
            raise InvalidValueError(
                f"labels dtype {lab.dtype} is not uint8.", f"pass integer labels {OUTSIDE}..{DISC} (uint8)."
            )
    if np.isnan(_table_array(table, "conductivity_w_m_k")[lab]).any():
        bad = sorted(set(np.unique(lab).tolist()) - {int(x) for x in table})
        raise InvalidValueError(
            f"labels holds values {bad} that have no thermal properties.", f"use the label table {OUTSIDE}..{DISC}."
        )
    f = np.asarray(cement_fraction, dtype=float)
    if f.shape != lab.shape:
        raise InvalidValueError(
            f"cement_fraction shape {f.shape} differs from labels shape {lab.shape}.",
            "pass one fraction per voxel.",
        )
    if not np.isfinite(f).all() or f.min() < 0.0 or f.max() > 1.0:
        raise InvalidValueError(
            "cement_fraction holds values outside [0, 1] or NaN.", "give a fraction 0..1 of pore space."
        )
    return lab, f


def _voxel_porosity(lab, pore_l, pore_fraction):
    """Pore fraction per voxel: the label's, or ``pore_fraction`` where the label is porous bone (0 < p_L < 1)."""
    if pore_fraction is None:
        return pore_l
    p = np.asarray(pore_fraction, dtype=float)
    if p.shape != lab.shape or not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0:
        raise InvalidValueError("pore_fraction must be one porosity 0..1 per voxel of the label grid.",
                                "pass the model's porosity (Vertebra.phi) or None for the label table's values.")
    bone = (pore_l > 0.0) & (pore_l < 1.0)
    return np.where(bone, np.clip(p, 1e-3, 1.0), pore_l)


def mix_properties(labels, cement_fraction, cement: rheology.Cement, table=LABEL_THERMAL, pore_fraction=None):
    """Per-voxel (k, rho c, perfusion, cement volume fraction phi_c) of the bone-marrow-cement mixture.

    A porous-bone label L (0 < p_L < 1: trabecular bone) is bone matrix (the table's CORTEX properties) and marrow in
    its pores, the marrow's properties being those that give the label's bulk value at p_L. In a voxel of porosity p
    (``pore_fraction``, default p_L) with cement filling the fraction S (``cement_fraction``) of the pores::

        X = (1 - p) X_bone + p (1 - S) X_marrow + p S X_cement,   X_marrow = (X_L - (1 - p_L) X_bone) / p_L

    for X = k (arithmetic: the parallel bound) and rho c; the cement displaces marrow, the matrix stays. Labels with
    p_L = 1 (canal, veins, cleft, disc, soft tissue) are replaced by cement (p = 1); p_L = 0 holds none. Perfusion
    lives in the marrow (or the fluid label) left: w = w_L p (1 - S) / p_L; phi_c = p S.
    """
    lab, f = _check_labels_and_fraction(labels, cement_fraction, table)
    pore_l = _table_array(table, "pore_fraction")[lab]
    if np.any((f > 0) & (pore_l <= 0)):
        names = sorted({table[int(x)].name for x in np.unique(lab[(f > 0) & (pore_l <= 0)])})
        raise InvalidValueError(
            f"cement_fraction > 0 in labels with no pore space ({', '.join(names)}).",
            f"cement can only fill porous or open labels; label a breached cortex as {DEFECT} (defect).",
        )
    p = _voxel_porosity(lab, pore_l, pore_fraction)
    porous = pore_l > 0.0
    if np.any(porous & (pore_l < 1.0)) and CORTEX not in table:
        raise InvalidValueError("a label with 0 < pore fraction < 1 needs the bone matrix (CORTEX) in the table.",
                                f"add label {CORTEX} to the thermal table.")
    safe_pl = np.where(porous, pore_l, 1.0)
    out = []
    for attr, x_c in (("conductivity_w_m_k", cement.conductivity_w_m_k),
                      ("rho_c_j_m3k", cement.volumetric_heat_capacity_j_m3k)):
        x_l = _table_array(table, attr)[lab]
        x_b = getattr(table[CORTEX], attr) if CORTEX in table else 0.0
        x_m = (x_l - (1.0 - safe_pl) * x_b) / safe_pl
        out.append(np.where(porous, (1.0 - p) * x_b + p * (1.0 - f) * x_m + p * f * x_c, x_l))
    w_l = _table_array(table, "perfusion_1_s")[lab]
    perf = np.where(porous, w_l * p * (1.0 - f) / safe_pl, w_l) * BLOOD_RHO_C_J_M3K
    return out[0], out[1], perf, np.where(porous, p * f, 0.0)


def _films(film_w_m2k) -> tuple:
    """Six per-face film coefficients (-R, +R, -A, +A, -S, +S) from a scalar or a 6-sequence."""
    arr = np.asarray(film_w_m2k, dtype=float).ravel()
    if arr.size not in (1, 6):
        raise ParameterError(
            "film_w_m2k must be one number or six (-R, +R, -A, +A, -S, +S).", "give 1 or 6 values."
        )
    vals = np.broadcast_to(arr, (6,))
    for i, v in enumerate(vals):
        if not np.isinf(v):
            check_range(
                f"film_w_m2k[{i}]", v, 0.0, 1e9, "W/(m^2 K)", "give a film coefficient >= 0 (inf: Dirichlet)."
            )
    return tuple(float(v) for v in vals)


def assemble_conduction(k: np.ndarray, spacing_m, film_w_m2k=np.inf):
    """Conductance matrix L (W/K, SPD part: interior faces plus outer-face terms) and outer-face conductance per voxel.

    Returns (L, g_boundary) with L including diag(g_boundary); flat index is C order over (R, A, S).
    """
    shape = k.shape
    n = k.size
    idx = np.arange(n).reshape(shape)
    h = np.asarray(spacing_m, dtype=float)
    films = _films(film_w_m2k)
    rows, cols, vals = [], [], []
    diag = np.zeros(n)
    g_b = np.zeros(n)
    for ax in range(3):
        area = np.prod(np.delete(h, ax))
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(0, -1), slice(1, None)
        k1, k2 = k[tuple(lo)], k[tuple(hi)]
        g = (area / (h[ax] / (2 * k1) + h[ax] / (2 * k2))).ravel()
        i1, i2 = idx[tuple(lo)].ravel(), idx[tuple(hi)].ravel()
        rows += [i1, i2]
        cols += [i2, i1]
        vals += [-g, -g]
        np.add.at(diag, i1, g)
        np.add.at(diag, i2, g)
        for side, end in enumerate((0, -1)):
            sl = [slice(None)] * 3
            sl[ax] = end
            kb = k[tuple(sl)].ravel()
            film = films[2 * ax + side]
            if film == 0.0:
                continue
            gb = area / (h[ax] / (2 * kb) + (0.0 if np.isinf(film) else 1.0 / film))
            np.add.at(g_b, idx[tuple(sl)].ravel(), gb)
    diag += g_b
    rows.append(np.arange(n))
    cols.append(np.arange(n))
    vals.append(diag)
    lmat = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return lmat, g_b


def _as_dia(a):
    """``a`` as DIA when it has at most 7 diagonals (the 7-point stencil on the full box), else unchanged. A CSR
    matrix's diagonals are read from its index arrays in one pass (scipy's todia sorts them all: np.unique)."""
    if sp.isspmatrix_dia(a):
        return a
    a = a.tocsr()
    a.sum_duplicates()
    n_rows, n_cols = a.shape
    rows = np.repeat(np.arange(n_rows), np.diff(a.indptr))
    off = a.indices - rows
    seen = np.zeros(n_rows + n_cols, dtype=bool)
    seen[off + n_rows] = True
    offsets = np.flatnonzero(seen) - n_rows  # ascending, as todia gives them
    if offsets.size > 7:
        return a
    data = np.zeros((offsets.size, n_cols), dtype=a.dtype)
    data[np.searchsorted(offsets, off), a.indices] = a.data  # DIA: data[d, j] = A[j - offsets[d], j]
    return sp.dia_matrix((data, offsets), shape=a.shape)


def _add_to_diagonal(a, scale: float, diag: np.ndarray):
    """scale a + diag(``diag``): for a DIA ``a`` on its diagonals' data (no conversion), else as CSR."""
    main = np.flatnonzero(a.offsets == 0) if sp.isspmatrix_dia(a) else np.array([], int)
    if not main.size:
        return (sp.diags(diag) + scale * a).tocsr()
    data = scale * a.data
    data[main[0]] += diag
    return sp.dia_matrix((data, a.offsets), shape=a.shape)


class _Solver:
    """Solve A x = b for one constant SPD A many times.

    "cg": Jacobi-preconditioned CG in mixed precision (physics/heat_pcg.py; A = C/dt + theta L is strongly diagonally
    dominant at the usual time steps);
    "direct": LU once (scipy splu); "amg": one pyamg hierarchy reused with CG; "gmg": the structured Galerkin geometric
    multigrid of physics/gmg_pressure.py (float32 V-cycle, float64 residuals; needs ``shape``, the voxel grid, all of
    whose voxels are unknowns). "auto" picks cg when the diagonal dominance bound on the condition number is below
    CG_MAX_COND, else direct (small grids) or amg.
    """

    def __init__(self, a, method: str = "auto", rtol: float = 1e-13, shape=None):
        n = a.shape[0]
        self.a = a  # CSR or DIA (the exotherm's 7 diagonals); the direct, AMG and GMG set-ups take it as CSR
        self.shape = shape
        self.rtol = rtol
        self.iterations = 0
        self._dinv = 1.0 / a.diagonal()
        self._fallback = method == "auto"
        if method == "auto":
            offdiag = (abs(a) @ np.ones(n)) * self._dinv - 1.0  # row sums of |offdiag| / diag
            cond_bound = (
                (1.0 + offdiag.max()) / max(1.0 - offdiag.max(), 1e-300) if offdiag.max() < 1 else np.inf
            )
            method = "cg" if cond_bound < CG_MAX_COND else ("direct" if n <= DIRECT_MAX_UNKNOWNS else "amg")
        self._setup(method)

    def _setup(self, method):
        a = self.a
        self.method = method
        self._mv = a
        if method == "cg":
            # the 7-point stencil on the full box is 7 diagonals: the DIA product reads no index arrays (2.5x faster
            # than CSR on 276 k unknowns here, 0.8 vs 2.1 ms, and 56 instead of 88 bytes per unknown)
            self._mv = _as_dia(a)
            self._scaled32 = jacobi_scaled(self._mv)  # the inner solves of heat_pcg.mixed_jacobi_pcg
        if method == "direct":
            self._lu = spla.splu(sp.csc_matrix(a))
        elif method == "amg":
            import pyamg

            self._ml = pyamg.smoothed_aggregation_solver(a.tocsr(), symmetry="symmetric")
        elif method == "gmg":
            from vertaug.physics.gmg_pressure import build_hierarchy

            if self.shape is None or int(np.prod(self.shape)) != a.shape[0]:
                raise ParameterError("solver='gmg' needs the voxel grid's shape.", 'use "auto", "cg" or "amg".')
            self._gmg = build_hierarchy(a.tocsr(), self.shape, np.arange(a.shape[0]))
        elif method != "cg":
            raise ParameterError(f"solver={method!r} is unknown.", 'use "auto", "cg", "direct", "amg" or "gmg".')

    def solve(self, b: np.ndarray, x0: np.ndarray) -> np.ndarray:
        if self.method == "direct":
            return self._lu.solve(b)
        if self.method == "gmg":
            x, its = self._gmg.solve(self.a, b, x0, self.rtol, CG_MAX_ITER)
            if its is None:
                raise RuntimeError(f"thermal GMG-CG did not converge to rtol={self.rtol:g}; use solver='direct'.")
            self.iterations += its
            return x
        if self.method == "cg":
            try:
                x, its = mixed_jacobi_pcg(self._mv, self._scaled32, b, x0, self.rtol, CG_MAX_ITER)
                self.iterations += its
                return x
            except RuntimeError:
                if not self._fallback:
                    raise
                self._setup("direct" if self.a.shape[0] <= DIRECT_MAX_UNKNOWNS else "amg")
                return self.solve(b, x0)
        return self._ml.solve(b, x0=x0, tol=self.rtol, accel="cg", maxiter=200)


def canal_wall_mask(labels: np.ndarray) -> np.ndarray:
    """Canal voxels (label CANAL) with a face neighbour of another label."""
    canal = labels == CANAL
    wall = np.zeros_like(canal)
    for ax in range(3):
        for shift in (1, -1):
            nb = np.roll(labels, shift, axis=ax) != CANAL
            edge = [slice(None)] * 3
            edge[ax] = 0 if shift == 1 else -1
            nb[tuple(edge)] = False
            wall |= canal & nb
    return wall


def _probe_indices(probes, shape) -> dict:
    out = {}
    for name, where in (probes or {}).items():
        if isinstance(where, np.ndarray) and where.dtype == bool:
            if where.shape != shape or not where.any():
                raise InvalidValueError(
                    f"probe {name!r} mask is empty or has the wrong shape.", f"give a {shape} mask."
                )
            out[name] = np.flatnonzero(where)
        else:
            ijk = tuple(int(v) for v in where)
            if len(ijk) != 3 or any(not 0 <= v < s for v, s in zip(ijk, shape)):
                raise InvalidValueError(
                    f"probe {name!r} index {where} is outside the grid {shape}.", "give (i, j, k)."
                )
            out[name] = np.array([np.ravel_multi_index(ijk, shape)])
    return out


@dataclass(frozen=True)
class _ExothermProblem:
    """One exotherm run, validated and discretised (flat C-order vectors over the label grid)."""

    labels: np.ndarray
    spacing_m: tuple
    t_end_s: float
    dt_s: float  # the base step (fixed steps: every step)
    dt_max_s: float | None  # adaptive steps up to this size (None: fixed)
    max_change_c: float
    max_cure_change: float
    theta: float
    far_c: float
    cement: rheology.Cement
    vol_m3: float  # voxel volume
    cap: np.ndarray  # heat capacity per voxel, J/K
    pmat: np.ndarray  # perfusion conductance per voxel, W/K
    g_b: np.ndarray  # outer-face conductance per voxel, W/K
    full: sp.csr_matrix  # conduction + perfusion, W/K
    full_mv: object  # the same as 7 diagonals (DIA) for the explicit half of each step: no index arrays to read
    boundary_idx: np.ndarray  # voxels with an outer face (g_b > 0)
    fixed_rhs: np.ndarray  # far-field inflow through the outer faces and the perfusion, W
    phi_c: np.ndarray  # cement volume fraction per voxel
    cem_idx: np.ndarray  # voxels holding cement
    heat_per_alpha: np.ndarray  # J per unit cure degree per cement voxel
    monomer_kg: np.ndarray  # monomer per cement voxel at mixing, kg (w_MMA phi_c rho_c V)
    probe_idx: dict
    solvers: dict  # step size -> _Solver (filled as step sizes are used)
    solver: str
    solver_rtol: float

    def solver_for(self, step_s: float) -> _Solver:
        """The linear solver of C/dt + theta (L + P) for step ``step_s`` (one kept per step size used)."""
        if step_s not in self.solvers:
            a = _add_to_diagonal(self.full_mv, self.theta, self.cap / step_s)
            self.solvers[step_s] = _Solver(a, self.solver, rtol=self.solver_rtol, shape=self.labels.shape)
        return self.solvers[step_s]


@dataclass
class _ExothermState:
    """Temperatures, cure, damage and the energy accounts after the last step."""

    temp: np.ndarray  # C per voxel
    alpha: np.ndarray  # cure degree per cement voxel
    boiled: np.ndarray  # fraction of each cement voxel's monomer boiled off (physics/monomer.py)
    dmg: DamageState
    lin: _Solver  # the solver of the last step
    t_now: float = 0.0
    temp_prev: np.ndarray | None = None  # the last three states give a quadratic extrapolation as the CG start
    dt_prev: float = 0.0
    temp_prev2: np.ndarray | None = None
    dt_prev2: float = 0.0
    rate_t: float = 0.0  # largest |dT/dt| of the last step
    rate_a: float = 0.0  # largest d(alpha)/dt of the last step
    released: float = 0.0
    conducted: float = 0.0
    perfused: float = 0.0
    vaporised: float = 0.0  # latent heat carried off by the boiled monomer, J
    cement_peak: float = float("nan")
    cement_peak_time_s: float = 0.0  # time of the cement peak after placement
    t_list: list = field(default_factory=list)
    probe_t: dict = field(default_factory=dict)


def _exotherm_problem(labels, spacing_m, cement_fraction, t_end_s, dt_s, cement, probes, *, far_field_c, film_w_m2k,
                      perfusion, theta, solver, table, dt_max_s, max_change_c, max_cure_change, solver_rtol,
                      pore_fraction=None):
    """Check the arguments, mix the properties and assemble the conduction; returns an :class:`_ExothermProblem`."""
    h = tuple(check_range(f"spacing_m[{i}]", v, 1e-6, 0.1, "m") for i, v in enumerate(spacing_m))
    if len(h) != 3:
        raise InvalidValueError(f"spacing_m has {len(h)} entries.", "give three voxel sizes in metres.")
    t_end = check_range("t_end_s", t_end_s, 1e-9, 1e6, "s")
    dt = check_range("dt_s", dt_s, 1e-6, t_end, "s")
    if dt_max_s is not None:
        check_range("dt_max_s", dt_max_s, dt, max(t_end, dt), "s", "give dt_max_s >= dt_s (or None for fixed steps).")
    check_range("max_change_c", max_change_c, 1e-3, 100.0, "C")
    check_range("max_cure_change", max_cure_change, 1e-4, 1.0)
    check_range("solver_rtol", solver_rtol, 1e-15, 1e-4)
    theta = check_range("theta", theta, 0.5, 1.0)
    far = rheology._check_temperature_c("far_field_c", far_field_c)
    _films(film_w_m2k)
    lab = np.asarray(labels)
    k, rho_c, perf, phi_c = mix_properties(lab, cement_fraction, cement, table, pore_fraction)
    vol = float(np.prod(h))
    cap = (rho_c * vol).ravel()  # J/K per voxel
    pmat = (perf * vol).ravel() if perfusion else np.zeros(lab.size)  # W/K
    lmat, g_b = assemble_conduction(k, h, film_w_m2k)
    # keep full and one A per step size used (fixed steps: one; adaptive 2.5..10 s: up to four, ~85 B/voxel each)
    full = (lmat + sp.diags(pmat)).tocsr()
    phi = phi_c.ravel()
    cem_idx = np.flatnonzero(phi > 0)
    return _ExothermProblem(
        labels=lab, spacing_m=h, t_end_s=t_end, dt_s=dt, dt_max_s=dt_max_s, max_change_c=max_change_c,
        max_cure_change=max_cure_change, theta=theta, far_c=far, cement=cement, vol_m3=vol, cap=cap, pmat=pmat,
        g_b=g_b, full=full, full_mv=_as_dia(full), boundary_idx=np.flatnonzero(g_b), fixed_rhs=g_b * far + pmat * far,
        phi_c=phi, cem_idx=cem_idx,
        heat_per_alpha=phi[cem_idx] * vol * cement.density_kg_m3 * cement.heat_of_reaction_j_kg,  # J per unit alpha
        monomer_kg=phi[cem_idx] * vol * cement.density_kg_m3 * cement.monomer_mass_fraction,
        probe_idx=_probe_indices(probes, lab.shape), solvers={}, solver=solver, solver_rtol=solver_rtol,
    )


def _initial_exotherm_state(pb: _ExothermProblem, t_cem, age_at_placement_s, initial_temperature_c):
    """Cement placed at ``t_cem`` with its cure degree at that age, mixed with the tissue at constant energy."""
    lin = pb.solver_for(pb.dt_s)
    if initial_temperature_c is None:
        t_tis = np.full(pb.cap.size, pb.far_c)
    else:
        t_tis = np.broadcast_to(np.asarray(initial_temperature_c, dtype=float), pb.labels.shape).ravel().copy()
        if t_tis.min() < 0.0:
            raise ParameterError("initial_temperature_c is below 0 C.", "give tissue temperatures in C (body 37).")
    phi, cement = pb.phi_c, pb.cement
    rc_cem = cement.volumetric_heat_capacity_j_m3k
    rc_mix = pb.cap / pb.vol_m3
    temp = ((rc_mix - phi * rc_cem) * t_tis + phi * rc_cem * t_cem) / rc_mix
    alpha0 = cement.alpha0
    if age_at_placement_s > 0:
        alpha0 = float(rheology.cure_0d(cement, age_at_placement_s, "isothermal", t_cem, n_out=2).alpha[-1])
    cem_idx = pb.cem_idx
    return _ExothermState(
        temp=temp, alpha=np.full(cem_idx.size, alpha0), boiled=np.zeros(cem_idx.size), dmg=DamageState.start(temp),
        lin=lin, dt_prev=pb.dt_s,
        cement_peak=float(temp[cem_idx].max()) if cem_idx.size else float("nan"), t_list=[0.0],
        probe_t={name: [float(temp[ii].mean())] for name, ii in pb.probe_idx.items()},
    )


def _step_size(pb: _ExothermProblem, st: _ExothermState) -> float:
    """Fixed: dt_s. Adaptive: the largest power-of-two multiple of dt_s whose predicted changes stay below the limits.
    The last step ends at t_end."""
    dt = pb.dt_s
    dt_next = dt
    if pb.dt_max_s is not None and pb.dt_max_s > dt:
        while (2 * dt_next <= pb.dt_max_s * (1 + 1e-12) and st.rate_t * 2 * dt_next <= pb.max_change_c
               and st.rate_a * 2 * dt_next <= pb.max_cure_change and st.temp_prev is not None):
            dt_next *= 2
    return dt_next if pb.t_end_s - st.t_now > dt_next * (1 + 1e-9) else pb.t_end_s - st.t_now


def _boil(pb: _ExothermProblem, st: _ExothermState, new: np.ndarray) -> None:
    """Enthalpy step of the monomer's boiling (physics/monomer.py) on the solved temperatures ``new`` (in place)."""
    law = pb.cement.boiling_law
    if law is None or not pb.cem_idx.size or pb.cement.monomer_mass_fraction <= 0.0:
        return
    cem_idx, latent, w = pb.cem_idx, pb.cement.monomer_vaporisation_heat_j_kg, pb.cement.monomer_mass_fraction
    m1, m2 = monomer.solution_masses(w, pb.cement.solution_mass_fraction, st.alpha, st.boiled)
    cement_kg = pb.monomer_kg / w
    new[cem_idx], out_kg = monomer.boil_off(new[cem_idx], pb.cap[cem_idx], cement_kg * m1, cement_kg * m2, latent,
                                            law)
    if out_kg.any():
        st.boiled += np.divide(out_kg, pb.monomer_kg, out=np.zeros_like(out_kg), where=pb.monomer_kg > 0)
        st.vaporised += float(out_kg.sum()) * latent


def _start_guess(st: _ExothermState, dt_step: float) -> np.ndarray:
    """The CG start: the temperatures extrapolated to the step's end through the last three states (quadratic; two
    states: linear, one: constant). It only sets the iteration count; the solve meets the same tolerance."""
    temp, prev, h1 = st.temp, st.temp_prev, st.dt_prev
    if prev is None:
        return temp
    if st.temp_prev2 is None:
        return temp + (temp - prev) * (dt_step / h1)
    h, h2 = dt_step, st.dt_prev2
    c1 = -h * (h + h1 + h2) / (h1 * h2)
    c2 = h * (h + h1) / ((h1 + h2) * h2)
    return temp + c1 * (prev - temp) + c2 * (st.temp_prev2 - temp)


def _exotherm_step(pb: _ExothermProblem, st: _ExothermState, dt_step: float) -> None:
    """Advance the cure at the step's start temperature, solve the theta scheme, book the energy and the damage."""
    theta, cem_idx, temp = pb.theta, pb.cem_idx, st.temp
    st.lin = pb.solver_for(dt_step)
    new_alpha = rheology.advance_cure_isothermal(pb.cement, st.alpha, temp[cem_idx] + KELVIN, dt_step,
                                                 st.dmg.peak_temperature_c[cem_idx] + KELVIN, 1.0 - st.boiled)
    q_j = pb.heat_per_alpha * (new_alpha - st.alpha)
    alpha_old, st.alpha = st.alpha, new_alpha
    rhs = (pb.cap / dt_step) * temp + pb.fixed_rhs
    if theta < 1.0:
        rhs -= (1.0 - theta) * (pb.full_mv @ temp)
    rhs[cem_idx] += q_j / dt_step
    new = st.lin.solve(rhs, _start_guess(st, dt_step))
    st.temp_prev2, st.dt_prev2 = st.temp_prev, st.dt_prev
    st.temp_prev, st.dt_prev = temp, dt_step
    excess = theta * new + (1.0 - theta) * temp  # above the far field at t + theta dt
    excess -= pb.far_c
    st.released += float(q_j.sum())
    bnd = pb.boundary_idx
    st.conducted += dt_step * float(np.dot(pb.g_b[bnd], excess[bnd]))
    st.perfused += dt_step * float(np.dot(pb.pmat, excess))
    _boil(pb, st, new)
    st.dmg.step(temp, new, dt_step)
    st.rate_t = float(np.abs(new - temp).max()) / dt_step
    st.rate_a = float((new_alpha - alpha_old).max()) / dt_step if st.alpha.size else 0.0
    st.temp = new
    st.t_now += dt_step
    st.t_list.append(st.t_now)
    for name, ii in pb.probe_idx.items():
        st.probe_t[name].append(float(new[ii].mean()))
    peak = float(new[cem_idx].max()) if cem_idx.size else -np.inf
    if peak > st.cement_peak:
        st.cement_peak, st.cement_peak_time_s = peak, st.t_now


def _exotherm_result(pb: _ExothermProblem, st: _ExothermState, energy0: float) -> ExothermResult:
    """Close the energy balance (warn if it does not), measure necrosis and the canal wall, pack the fields."""
    lab, shape, dmg = pb.labels, pb.labels.shape, st.dmg
    stored = float((pb.cap * st.temp).sum()) - energy0
    scale = max(abs(st.released), abs(stored), abs(st.conducted), abs(st.perfused), st.vaporised, 1e-300)
    err = abs(st.released - stored - st.conducted - st.perfused - st.vaporised) / scale
    tissue_vol_m3 = pb.vol_m3 * (1.0 - pb.phi_c)
    necrotic = dmg.omega >= NECROSIS_OMEGA
    wall = canal_wall_mask(lab).ravel()
    notes = []
    if wall.any():
        wall_peak = float(dmg.peak_temperature_c[wall].max())
        wall_50 = float(dmg.time_above_50c_s[wall].max())
    else:
        wall_peak = wall_50 = float("nan")
        notes.append(f"no canal (label {CANAL}) voxel: canal-wall metrics are NaN")
    boiled_kg = float((st.boiled * pb.monomer_kg).sum())
    if boiled_kg > 0.0:
        notes.append("the cement's unreacted monomer boiled where its partial pressure over the cement reached "
                     f"1 atm (pure MMA: {pb.cement.monomer_boiling_point_k - KELVIN:.2f} C; dissolved in the polymer "
                     f"higher, rising as it runs out): {boiled_kg * 1e6:.3g} mg of its {pb.monomer_kg.sum() * 1e6:.0f} mg "
                     f"({100 * boiled_kg / pb.monomer_kg.sum():.2g} %) left as vapour, taking {st.vaporised:.1f} J "
                     "(assumed to escape; physics/monomer.py)")
    if not err <= ENERGY_TOL_REL:
        msg = f"energy balance error {err:.1e} exceeds {ENERGY_TOL_REL:g} (linear solver tolerance too loose?)"
        notes.append(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=3)  # at the caller of simulate_exotherm
    peaks = {int(v): float(dmg.peak_temperature_c[lab.ravel() == v].max()) for v in np.unique(lab)}
    alpha_field = np.zeros(lab.size)
    alpha_field[pb.cem_idx] = st.alpha
    return ExothermResult(
        t_s=np.array(st.t_list),
        probe_temperature_c={name: np.array(v) for name, v in st.probe_t.items()},
        max_temperature_c=dmg.peak_temperature_c.reshape(shape),
        omega=dmg.omega.reshape(shape),
        cem43_min=dmg.cem43_min.reshape(shape),
        time_above_50c_s=dmg.time_above_50c_s.reshape(shape),
        alpha_final=alpha_field.reshape(shape),
        necrosis_volume_ml=float(tissue_vol_m3[necrotic].sum() * 1e6),
        canal_wall_peak_c=wall_peak,
        canal_wall_time_above_50c_s=wall_50,
        cement_peak_c=st.cement_peak,
        cement_peak_time_s=st.cement_peak_time_s,
        released_j=st.released,
        stored_j=stored,
        conducted_out_j=st.conducted,
        perfused_j=st.perfused,
        vaporised_j=st.vaporised,
        monomer_boiled_off_kg=boiled_kg,
        monomer_kg=float(pb.monomer_kg.sum()),
        energy_balance_error_rel=float(err),
        solver=st.lin.method,
        peak_by_label_c=peaks,
        notes=tuple(notes),
    )


def simulate_exotherm(
    labels: np.ndarray,
    spacing_m: tuple,
    cement_fraction: np.ndarray,
    t_end_s: float,
    dt_s: float = 1.0,
    cement: rheology.Cement = rheology.LOW_VISCOSITY,
    probes: Mapping[str, object] | None = None,
    *,
    cement_temperature_c: float = 23.0,
    age_at_placement_s: float = 0.0,
    far_field_c: float = BODY_C,
    initial_temperature_c: float | np.ndarray | None = None,
    film_w_m2k=np.inf,
    perfusion: bool = True,
    theta: float = 1.0,
    solver: str = "auto",
    table: Mapping[int, TissueThermal] = LABEL_THERMAL,
    dt_max_s: float | None = None,
    max_change_c: float = 1.0,
    max_cure_change: float = 0.02,
    solver_rtol: float = 1e-13,
    pore_fraction: np.ndarray | None = None,
) -> ExothermResult:
    """Run the exotherm of cement placed at t = 0 in the voxel model and integrate the damage.

    The cement (``cement_fraction`` of each voxel's pore space) is placed at ``cement_temperature_c`` with the cure degree
    it reached after ``age_at_placement_s`` seconds at that temperature since mixing; tissue starts at
    ``initial_temperature_c`` (default the far field). ``perfusion=False`` models ex-vivo specimens.

    Time steps: ``dt_s`` fixed, or adaptive when ``dt_max_s`` > ``dt_s`` is given: each step's size is chosen (from
    ``dt_s`` up to ``dt_max_s``, in powers of two times ``dt_s``) so that the predicted largest temperature change
    stays below ``max_change_c`` and the predicted largest cure advance below ``max_cure_change`` (predictions from
    the last step's rates); one system matrix is kept per step size used. ``solver_rtol``: relative residual of each
    linear solve (the energy balance is checked against ENERGY_TOL_REL at the end). ``pore_fraction``: porosity per
    voxel of the porous-bone labels (default: the label table's), see :func:`mix_properties`.
    """
    t_cem = rheology._check_temperature_c("cement_temperature_c", cement_temperature_c)
    check_range("age_at_placement_s", age_at_placement_s, 0.0, 1e5, "s")
    pb = _exotherm_problem(
        labels, spacing_m, cement_fraction, t_end_s, dt_s, cement, probes, far_field_c=far_field_c,
        film_w_m2k=film_w_m2k, perfusion=perfusion, theta=theta, solver=solver, table=table, dt_max_s=dt_max_s,
        max_change_c=max_change_c, max_cure_change=max_cure_change, solver_rtol=solver_rtol,
        pore_fraction=pore_fraction,
    )
    st = _initial_exotherm_state(pb, t_cem, age_at_placement_s, initial_temperature_c)
    energy0 = float((pb.cap * st.temp).sum())
    while st.t_now < pb.t_end_s * (1 - 1e-12):
        _exotherm_step(pb, st, _step_size(pb, st))
    return _exotherm_result(pb, st, energy0)
