"""Exotherm of a curing cement in a voxel model: transient heat conduction with cure source, perfusion and damage.

Heat equation (per voxel, finite volume, 7-point stencil)::

    (rho c)_mix dT/dt = div(k_mix grad T) - w_b (rho c)_b (1 - phi_c) (T - T_a) + phi_c rho_c H d(alpha)/dt
    d(alpha)/dt = K0 exp(-E/RT) alpha^m (alpha_max - alpha)^n        (rheology.cure_rate_1_s)

- Mixture by volume: a voxel of label L has pore fraction p_L that cement may fill; the cement volume fraction of the voxel
  is phi_c = cement_fraction * p_L. (rho c)_mix = (1 - phi_c)(rho c)_L + phi_c (rho c)_cement, and the same arithmetic rule
  for k (the parallel bound; documented in docs/cement.md). Perfusion w_b acts on the tissue part (1 - phi_c).
- Faces: harmonic conductance G = A / (h_i/(2 k_i) + h_j/(2 k_j)). Outer faces: far field T_inf = 37 C through the half
  cell and a film coefficient h_film: G_b = A / (1/h_film + h/(2k)); h_film = inf is Dirichlet, h_film = 0 insulated
  (also a symmetry plane). h_film may differ per outer face: order (-R, +R, -A, +A, -S, +S).
- Time: theta scheme (theta = 1 backward Euler, 0.5 Crank-Nicolson); the matrix is constant, so its solver is set up
  once: Jacobi-preconditioned CG (warm-started), or one scipy splu factorisation / one pyamg hierarchy reused. The cure is advanced over each step at the
  step's start temperature (RK4 sub-steps), which gives the step's released heat exactly, so that the discrete energy
  balance closes to solver precision:
      released = stored + conducted out through the outer faces + removed by perfusion.
- Damage: damage.DamageState (Arrhenius Omega, CEM43, time above 50 C, peak T) per voxel.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from vertaug.errors import InvalidValueError, ParameterError, check_range
from vertaug.physics import rheology
from vertaug.physics.damage import NECROSIS_OMEGA, DamageState

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

KELVIN = 273.15
BODY_C = 37.0
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
    0: TissueThermal("soft tissue", 0.49, 1090.0 * 3421.0, 6.7e-4, 1.0),
    1: TissueThermal("trabecular", 0.29, 3.05e6, 5.9e-4, 0.9),
    2: TissueThermal("cortex", 0.32, 1908.0 * 1313.0, 3.2e-4, 0.0),
    3: TissueThermal("endplate", 0.32, 1908.0 * 1313.0, 3.2e-4, 0.0),
    4: TissueThermal("canal", 0.51, 1114.0 * 3630.0, 0.0, 1.0),
    5: TissueThermal("basivertebral vein", 0.52, BLOOD_RHO_C_J_M3K, 0.0, 1.0),
    6: TissueThermal("segmental vein exit", 0.52, BLOOD_RHO_C_J_M3K, 0.0, 1.0),
    7: TissueThermal("fracture cleft", 0.52, BLOOD_RHO_C_J_M3K, 0.0, 1.0),
    8: TissueThermal("disc", 0.49, 1100.0 * 3300.0, 0.0, 1.0),
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


def mix_properties(labels, cement_fraction, cement: rheology.Cement, table=LABEL_THERMAL):
    """Per-voxel (k, rho c, perfusion, cement volume fraction phi_c) by the volume-fraction rule (module docstring)."""
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
                f"labels dtype {lab.dtype} is not uint8.", "pass integer labels 0..8 (uint8)."
            )
    k_tab = _table_array(table, "conductivity_w_m_k")
    if np.isnan(k_tab[lab]).any():
        bad = sorted(set(np.unique(lab).tolist()) - {int(x) for x in table})
        raise InvalidValueError(
            f"labels holds values {bad} that have no thermal properties.", "use the label table 0..8."
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
    pore = _table_array(table, "pore_fraction")[lab]
    if np.any((f > 0) & (pore <= 0)):
        names = sorted({table[int(x)].name for x in np.unique(lab[(f > 0) & (pore <= 0)])})
        raise InvalidValueError(
            f"cement_fraction > 0 in labels with no pore space ({', '.join(names)}).",
            "cement can only fill porous or open labels; label a breached cortex as 7 (defect).",
        )
    phi_c = f * pore
    k = (1 - phi_c) * k_tab[lab] + phi_c * cement.conductivity_w_m_k
    rho_c = (1 - phi_c) * _table_array(table, "rho_c_j_m3k")[
        lab
    ] + phi_c * cement.volumetric_heat_capacity_j_m3k
    perf = (1 - phi_c) * _table_array(table, "perfusion_1_s")[lab] * BLOOD_RHO_C_J_M3K
    return k, rho_c, perf, phi_c


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


def _dot_no_blas(u: np.ndarray, v: np.ndarray) -> float:
    return float(np.einsum("i,i->", u, v))


class _Solver:
    """Solve A x = b for one constant SPD A many times.

    "cg": Jacobi-preconditioned CG (A = C/dt + theta L is strongly diagonally dominant at the usual time steps);
    "direct": LU once (scipy splu); "amg": one pyamg hierarchy reused with CG. "auto" picks cg when the diagonal
    dominance bound on the condition number is below CG_MAX_COND, else direct (small grids) or amg.
    """

    def __init__(self, a: sp.csr_matrix, method: str = "auto", rtol: float = 1e-13):
        n = a.shape[0]
        self.a = a
        self.rtol = rtol
        self.iterations = 0
        self._dinv = 1.0 / a.diagonal()
        self._fallback = method == "auto"
        if method == "auto":
            offdiag = (
                np.asarray(abs(a).sum(axis=1)).ravel() * self._dinv - 1.0
            )  # row sums of |offdiag| / diag
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
            dia = a.todia()
            if dia.offsets.size <= 7:
                self._mv = dia
        if method == "direct":
            self._lu = spla.splu(a.tocsc())
        elif method == "amg":
            import pyamg

            self._ml = pyamg.smoothed_aggregation_solver(a.tocsr(), symmetry="symmetric")
        elif method != "cg":
            raise ParameterError(f"solver={method!r} is unknown.", 'use "auto", "cg", "direct" or "amg".')

    def _pcg(self, b, x0):
        # Jacobi-PCG with in-place updates; inner products by einsum (its own loops, no BLAS: BLAS dot calls stall
        # under thread oversubscription on shared machines) and no temporaries of the vector size
        a, dinv = self._mv, self._dinv
        dot = _dot_no_blas
        x = x0.copy()
        r = b - a @ x
        tol2 = (self.rtol**2) * dot(b, b)
        if dot(r, r) <= tol2:
            return x
        z = dinv * r
        p = z.copy()
        tmp = np.empty_like(p)
        rz = dot(r, z)
        for it in range(1, CG_MAX_ITER + 1):
            ap = a @ p
            step = rz / dot(p, ap)
            np.multiply(p, step, out=tmp)
            x += tmp
            np.multiply(ap, step, out=tmp)
            r -= tmp
            if dot(r, r) <= tol2:
                self.iterations += it
                return x
            np.multiply(dinv, r, out=z)
            rz_new = dot(r, z)
            p *= rz_new / rz
            p += z
            rz = rz_new
        raise RuntimeError(
            f"thermal CG did not converge in {CG_MAX_ITER} iterations; use solver='direct' or 'amg'."
        )

    def solve(self, b: np.ndarray, x0: np.ndarray) -> np.ndarray:
        if self.method == "direct":
            return self._lu.solve(b)
        if self.method == "cg":
            try:
                return self._pcg(b, x0)
            except RuntimeError:
                if not self._fallback:
                    raise
                self._setup("direct" if self.a.shape[0] <= DIRECT_MAX_UNKNOWNS else "amg")
                return self.solve(b, x0)
        return self._ml.solve(b, x0=x0, tol=self.rtol, accel="cg", maxiter=200)


def canal_wall_mask(labels: np.ndarray) -> np.ndarray:
    """Canal voxels (label 4) with a face neighbour of another label."""
    canal = labels == 4
    wall = np.zeros_like(canal)
    for ax in range(3):
        for shift in (1, -1):
            nb = np.roll(labels, shift, axis=ax) != 4
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


def _advance_cure(cement, alpha, temp_k, dt_s):
    """Advance alpha over dt at fixed temperature with RK4 sub-steps (sub-step size from the largest rate constant)."""
    if alpha.size == 0:
        return alpha
    kmax = cement.k0_1_s * np.exp(
        -cement.activation_energy_j_mol / (rheology.GAS_CONSTANT_J_MOL_K * temp_k.max())
    )
    nsub = max(1, int(np.ceil(dt_s * kmax / 0.1)))
    h = dt_s / nsub
    a = alpha.copy()
    amax = rheology.alpha_max(cement, temp_k)
    for _ in range(nsub):
        k1 = rheology.cure_rate_1_s(cement, a, temp_k)
        k2 = rheology.cure_rate_1_s(cement, a + 0.5 * h * k1, temp_k)
        k3 = rheology.cure_rate_1_s(cement, a + 0.5 * h * k2, temp_k)
        k4 = rheology.cure_rate_1_s(cement, a + h * k3, temp_k)
        a = np.minimum(a + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4), np.maximum(amax, a))
    return np.maximum(a, alpha)  # cure never reverses


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
) -> ExothermResult:
    """Run the exotherm of cement placed at t = 0 in the voxel model and integrate the damage.

    The cement (``cement_fraction`` of each voxel's pore space) is placed at ``cement_temperature_c`` with the cure degree
    it reached after ``age_at_placement_s`` seconds at that temperature since mixing; tissue starts at
    ``initial_temperature_c`` (default the far field). ``perfusion=False`` models ex-vivo specimens.

    Time steps: ``dt_s`` fixed, or adaptive when ``dt_max_s`` > ``dt_s`` is given: each step's size is chosen (from
    ``dt_s`` up to ``dt_max_s``, in powers of two times ``dt_s``) so that the predicted largest temperature change
    stays below ``max_change_c`` and the predicted largest cure advance below ``max_cure_change`` (predictions from
    the last step's rates); one system matrix is kept per step size used. ``solver_rtol``: relative residual of each
    linear solve (the energy balance is checked against ENERGY_TOL_REL at the end).
    """
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
    t_cem = rheology._check_temperature_c("cement_temperature_c", cement_temperature_c)
    far = rheology._check_temperature_c("far_field_c", far_field_c)
    check_range("age_at_placement_s", age_at_placement_s, 0.0, 1e5, "s")
    _films(film_w_m2k)
    lab = np.asarray(labels)
    k, rho_c, perf, phi_c = mix_properties(lab, cement_fraction, cement, table)
    shape, n = lab.shape, lab.size
    vol = float(np.prod(h))
    cap = (rho_c * vol).ravel()  # J/K per voxel
    pmat = (perf * vol).ravel() if perfusion else np.zeros(n)  # W/K
    lmat, g_b = assemble_conduction(k, h, film_w_m2k)
    full = (lmat + sp.diags(pmat)).tocsr()
    del (
        lmat,
        k,
        rho_c,
        perf,
    )  # keep full and one A per step size used (fixed steps: one; adaptive 2.5..10 s: up to four, ~85 B/voxel each)
    solvers: dict[float, _Solver] = {}

    def solver_for(step_s: float) -> _Solver:
        if step_s not in solvers:
            solvers[step_s] = _Solver((sp.diags(cap / step_s) + theta * full).tocsr(), solver, rtol=solver_rtol)
        return solvers[step_s]

    lin = solver_for(dt)
    fixed_rhs = g_b * far + pmat * far

    # initial state: cement and tissue mixed at constant energy
    if initial_temperature_c is None:
        t_tis = np.full(n, far)
    else:
        t_tis = np.broadcast_to(np.asarray(initial_temperature_c, dtype=float), shape).ravel().copy()
        if t_tis.min() < 0.0:
            raise ParameterError(
                "initial_temperature_c is below 0 C.", "give tissue temperatures in C (body 37)."
            )
    phi = phi_c.ravel()
    rc_cem = cement.volumetric_heat_capacity_j_m3k
    rc_mix = cap / vol
    temp = ((rc_mix - phi * rc_cem) * t_tis + phi * rc_cem * t_cem) / rc_mix
    cem_idx = np.flatnonzero(phi > 0)
    alpha0 = cement.alpha0
    if age_at_placement_s > 0:
        alpha0 = float(rheology.cure_0d(cement, age_at_placement_s, "isothermal", t_cem, n_out=2).alpha[-1])
    alpha = np.full(cem_idx.size, alpha0)
    heat_per_alpha = (
        phi[cem_idx] * vol * cement.density_kg_m3 * cement.heat_of_reaction_j_kg
    )  # J per unit alpha

    probe_idx = _probe_indices(probes, shape)
    t_list = [0.0]
    probe_t = {name: [float(temp[ii].mean())] for name, ii in probe_idx.items()}
    dmg = DamageState.start(temp)
    energy0 = float((cap * temp).sum())
    released = conducted = perfused = 0.0
    cement_peak = float(temp[cem_idx].max()) if cem_idx.size else float("nan")
    t_now = 0.0
    temp_prev, dt_prev = None, dt  # the last two states give a linear extrapolation as the CG start
    dt_next = dt
    rate_t = rate_a = 0.0  # largest |dT/dt| and d(alpha)/dt of the last step
    while t_now < t_end * (1 - 1e-12):
        if dt_max_s is not None and dt_max_s > dt:
            # the largest power-of-two multiple of dt whose predicted changes stay below the limits
            dt_next = dt
            while (2 * dt_next <= dt_max_s * (1 + 1e-12) and rate_t * 2 * dt_next <= max_change_c
                   and rate_a * 2 * dt_next <= max_cure_change and temp_prev is not None):
                dt_next *= 2
        dt_step = dt_next if t_end - t_now > dt_next * (1 + 1e-9) else t_end - t_now  # the last step ends at t_end
        lin = solver_for(dt_step)
        new_alpha = _advance_cure(cement, alpha, temp[cem_idx] + KELVIN, dt_step)
        q_j = heat_per_alpha * (new_alpha - alpha)
        alpha_old, alpha = alpha, new_alpha
        rhs = (cap / dt_step) * temp + fixed_rhs
        if theta < 1.0:
            rhs -= (1.0 - theta) * (full @ temp)
        rhs[cem_idx] += q_j / dt_step
        guess = temp if temp_prev is None else temp + (temp - temp_prev) * (dt_step / dt_prev)
        new = lin.solve(rhs, guess)
        temp_prev, dt_prev = temp, dt_step
        t_theta = theta * new + (1.0 - theta) * temp
        released += float(q_j.sum())
        conducted += dt_step * float((g_b * (t_theta - far)).sum())
        perfused += dt_step * float((pmat * (t_theta - far)).sum())
        dmg.step(temp, new, dt_step)
        rate_t = float(np.abs(new - temp).max()) / dt_step
        rate_a = float((new_alpha - alpha_old).max()) / dt_step if alpha.size else 0.0
        temp = new
        t_now += dt_step
        t_list.append(t_now)
        for name, ii in probe_idx.items():
            probe_t[name].append(float(temp[ii].mean()))
        if cem_idx.size:
            cement_peak = max(cement_peak, float(temp[cem_idx].max()))
    stored = float((cap * temp).sum()) - energy0
    scale = max(abs(released), abs(stored), abs(conducted), abs(perfused), 1e-300)
    err = abs(released - stored - conducted - perfused) / scale

    tissue_vol_m3 = vol * (1.0 - phi)
    necrotic = dmg.omega >= NECROSIS_OMEGA
    wall = canal_wall_mask(lab).ravel()
    notes = []
    if wall.any():
        wall_peak = float(dmg.peak_temperature_c[wall].max())
        wall_50 = float(dmg.time_above_50c_s[wall].max())
    else:
        wall_peak = wall_50 = float("nan")
        notes.append("no canal (label 4) voxel: canal-wall metrics are NaN")
    if not err <= ENERGY_TOL_REL:
        msg = (
            f"energy balance error {err:.1e} exceeds {ENERGY_TOL_REL:g} (linear solver tolerance too loose?)"
        )
        notes.append(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    peaks = {int(v): float(dmg.peak_temperature_c[lab.ravel() == v].max()) for v in np.unique(lab)}
    alpha_field = np.zeros(n)
    alpha_field[cem_idx] = alpha
    return ExothermResult(
        t_s=np.array(t_list),
        probe_temperature_c={name: np.array(v) for name, v in probe_t.items()},
        max_temperature_c=dmg.peak_temperature_c.reshape(shape),
        omega=dmg.omega.reshape(shape),
        cem43_min=dmg.cem43_min.reshape(shape),
        time_above_50c_s=dmg.time_above_50c_s.reshape(shape),
        alpha_final=alpha_field.reshape(shape),
        necrosis_volume_ml=float(tissue_vol_m3[necrotic].sum() * 1e6),
        canal_wall_peak_c=wall_peak,
        canal_wall_time_above_50c_s=wall_50,
        cement_peak_c=cement_peak,
        released_j=released,
        stored_j=stored,
        conducted_out_j=conducted,
        perfused_j=perfused,
        energy_balance_error_rel=float(err),
        solver=lin.method,
        peak_by_label_c=peaks,
        notes=tuple(notes),
    )
