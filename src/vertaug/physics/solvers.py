"""Linear solvers for the symmetric positive definite systems of the voxel models (pressure, heat, ...).

The systems are A x = b with A a symmetric positive definite M-matrix (two-point flux finite volumes with at least
one Dirichlet face). A time-stepping model solves a *sequence* of such systems whose coefficients change slowly
from step to step (the phase mobilities of the injection move with the cement front). Three levers make the
sequence cheap (peer timings 2026, docs/references.md):

1. setup reuse: the coarsening and interpolation P (R = P^T) of an algebraic multigrid setup built for A_n are kept
   for A_{n+1}, A_{n+2}, ...; only the Galerkin coarse operators R A P and the coarse factorisation are recomputed
   (``refresh=True``; without it the whole old hierarchy is reused as is, which degrades fast when the mobility of a
   shell of cells changes by mu_c / mu_m ~ 1e3 each step). A full setup is redone only when the conjugate-gradient
   iteration count has grown past ``rebuild_factor`` times the count of the first solve after the last setup;
2. warm start: x0 = the previous solution;
3. a direct factorisation for tiny systems (n <= ``direct_max_unknowns``), where multigrid setup does not pay.

Backends: ``"gmg"`` (the matrix-free structured Galerkin geometric multigrid of :mod:`vertaug.physics.gmg_pressure`:
needs the voxel geometry of the unknowns, ``solve(..., voxels=(shape, cells))``; its setup is a few sums over 2x2x2
blocks, so it is redone for every matrix (only the box layout of the sparsity pattern is kept); float32 V-cycle and
inner CG, float64 residuals by iterative refinement; it warm-starts; the default of ``flow.inject``), ``"sa"`` (pyamg
smoothed aggregation, the class default and the AMG fallback selectable by name: on a 128^3 grid with per-voxel random k (contrast 100)
it needs 15 CG iterations against 39 for Ruge-Stuben, and its Galerkin refresh is 3x cheaper; benchmarks/
bench_pressure.py), ``"rs"`` (pyamg Ruge-Stuben, the fastest on the smoother-k problem of the peer timings 2026), ``"direct"`` (scipy SuperLU) and ``"cupy"`` (conjugate gradients with a Jacobi preconditioner on
a CUDA device; CuPy is imported only when this backend is chosen, so it stays an optional dependency).

Conjugate gradients are written out here (not scipy.sparse.linalg.cg) so that inner products do not go through a
threaded BLAS (see ``_dot``). Convergence criterion: ||b - A x||_2 <= rtol ||b||_2. The default rtol = 1e-10 keeps the volume balance of the
injection (sum of exit fluxes = injection rate) well below the 1e-6 that the flow module asserts.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from vertaug.errors import ParameterError

__all__ = ["BACKENDS", "PressureSolver", "SolveStats"]


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    # not ndarray.dot: a threaded BLAS ddot on a shared, oversubscribed 2-core machine was measured 1000x slower
    # (7 ms instead of 6 us for 14k values); a plain reduction has no threads to wait for
    return float(np.add.reduce(a * b))

BACKENDS = ("gmg", "rs", "sa", "direct", "cupy")


@dataclass
class SolveStats:
    """Running totals over the solves of one :class:`PressureSolver`."""

    n_solves: int = 0
    n_setups: int = 0
    iterations: list[int] = field(default_factory=list)
    setup_s: float = 0.0
    solve_s: float = 0.0


class PressureSolver:
    """Solve a sequence of SPD systems with multigrid setup reuse and warm starts.

    Parameters
    ----------
    backend : "gmg" | "rs" | "sa" | "direct" | "cupy"
    rtol : relative residual tolerance (2-norm, relative to ||b||).
    rebuild_factor : rebuild the hierarchy when a solve needed more than this multiple of the iterations of the
        first solve after the last setup.
    direct_max_unknowns : systems this small are factorised directly whatever the backend.
    """

    def __init__(
        self,
        backend: str = "sa",
        rtol: float = 1e-10,
        rebuild_factor: float = 2.0,
        max_iterations: int = 500,
        direct_max_unknowns: int = 2000,
        refresh: bool = True,
    ):
        if backend not in BACKENDS:
            raise ParameterError(
                f"Parameter backend={backend!r} is not a known pressure solver.", f"use one of {BACKENDS}."
            )
        self.backend = backend
        self.rtol = float(rtol)
        self.rebuild_factor = float(rebuild_factor)
        self.max_iterations = int(max_iterations)
        self.direct_max_unknowns = int(direct_max_unknowns)
        self.refresh = bool(refresh)
        self.stats = SolveStats()
        self._ml = None
        self._reference_iterations: int | None = None
        self._n: int | None = None

    def reset(self) -> None:
        """Forget the multigrid hierarchy (the next solve rebuilds it)."""
        self._ml = None
        self._reference_iterations = None

    def _setup(self, A: sp.csr_matrix) -> None:
        import pyamg

        t0 = time.perf_counter()
        if self.backend == "sa":
            self._ml = pyamg.smoothed_aggregation_solver(A, symmetry="symmetric", max_coarse=300, coarse_solver="splu")
        else:
            self._ml = pyamg.ruge_stuben_solver(A, max_coarse=300, coarse_solver="splu")
        for lvl in self._ml.levels[:-1]:  # CSR transfer operators: faster R A P refresh and V-cycle than BSR
            lvl.P = sp.csr_matrix(lvl.P)
            lvl.R = sp.csr_matrix(lvl.R)
        self.stats.setup_s += time.perf_counter() - t0
        self.stats.n_setups += 1
        self._reference_iterations = None

    def solve(self, A: sp.spmatrix, b: np.ndarray, x0: np.ndarray | None = None, voxels=None) -> np.ndarray:
        """Return x with ||b - A x|| <= rtol ||b||; raises RuntimeError if the iteration does not converge.

        ``voxels`` = (grid shape, flat voxel index of each unknown): the geometry that the ``"gmg"`` backend coarsens
        (the other backends ignore it)."""
        A = sp.csr_matrix(A)
        n = A.shape[0]
        if self._n is not None and n != self._n:
            self.reset()
        self._n = n
        b = np.asarray(b, dtype=float)
        bnorm = float(np.sqrt(_dot(b, b)))
        self.stats.n_solves += 1
        if bnorm == 0.0:
            self.stats.iterations.append(0)
            return np.zeros(n)
        if self.backend == "direct" or n <= self.direct_max_unknowns:
            t0 = time.perf_counter()
            x = spla.spsolve(A.tocsc(), b)
            self.stats.solve_s += time.perf_counter() - t0
            self.stats.iterations.append(1)
            return np.asarray(x)
        if self.backend == "cupy":
            return self._solve_cupy(A, b, x0)
        if self.backend == "gmg":
            return self._solve_gmg(A, b, x0, voxels)
        if self._ml is None:
            self._setup(A)
        elif self.refresh:
            self._refresh(A)
        x, its = self._pcg(A, b, x0)
        if its is None or (
            self._reference_iterations is not None and its > self.rebuild_factor * max(self._reference_iterations, 4)
        ):
            # the hierarchy of an older matrix has become a poor preconditioner: rebuild and solve again
            self._setup(A)
            x, its = self._pcg(A, b, x0)
            if its is None:
                raise RuntimeError(
                    f"pressure solve did not converge to rtol={self.rtol:g} in {self.max_iterations} iterations "
                    f"(n={n}); the matrix may be singular (a region with no exit?)."
                )
        if self._reference_iterations is None:
            self._reference_iterations = its
        self.stats.iterations.append(its)
        return x

    def _solve_gmg(self, A, b, x0, voxels):
        """Structured Galerkin geometric multigrid (physics/gmg_pressure.py), set up afresh for every matrix; its own
        mixed-precision CG (float64 residuals)."""
        from vertaug.physics.gmg_pressure import build_hierarchy

        if voxels is None:
            raise ParameterError(
                "Parameter backend='gmg' needs the voxel geometry of the unknowns, and solve() was called without it.",
                "pass voxels=(shape, flat voxel indices of the unknowns), or use backend='sa'.",
            )
        t0 = time.perf_counter()
        pattern = self._ml if self._ml is not None and self._n == A.shape[0] else None
        hierarchy = build_hierarchy(A, *voxels, pattern=pattern)
        self._ml = hierarchy.pattern  # the coarsening of this sparsity pattern, reused while it stays the same
        self.stats.setup_s += time.perf_counter() - t0
        self.stats.n_setups += 1
        t0 = time.perf_counter()
        x, its = hierarchy.solve(A, b, x0, self.rtol, self.max_iterations)
        self.stats.solve_s += time.perf_counter() - t0
        if its is None:
            raise RuntimeError(
                f"pressure solve (gmg) did not converge to rtol={self.rtol:g} in {self.max_iterations} iterations "
                f"(n={A.shape[0]}); the matrix may be singular (a region with no exit?)."
            )
        self.stats.iterations.append(its)
        return x

    def _refresh(self, A: sp.csr_matrix) -> None:
        """Keep the interpolation of the last setup, recompute the Galerkin coarse operators R A P for the new A."""
        from pyamg.multilevel import coarse_grid_solver

        t0 = time.perf_counter()
        levels = self._ml.levels
        levels[0].A = A
        for lo, hi in itertools.pairwise(levels):
            hi.A = (lo.R @ lo.A @ lo.P).tocsr()
        self._ml.coarse_solver = coarse_grid_solver("splu")
        self.stats.setup_s += time.perf_counter() - t0

    def _pcg(self, A, b, x0, M=None):
        """Preconditioned conjugate gradients (preconditioner ``M``, default one V-cycle of the pyamg hierarchy);
        returns (x, iterations) or (x, None) when not converged."""
        t0 = time.perf_counter()
        ml = self._ml

        def M_amg(v):  # one V-cycle from zero (pyamg's aspreconditioner also computes residual norms through BLAS)
            z = np.zeros_like(v)
            ml._MultilevelSolver__solve(0, z, v, "V")
            return z

        M = M or M_amg

        x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=float)
        r = b - A @ x
        stop = self.rtol * float(np.sqrt(_dot(b, b)))
        its = None
        if np.sqrt(_dot(r, r)) <= stop:
            its = 0
        else:
            z = M(r)
            d = z.copy()
            rz = _dot(r, z)
            for k in range(1, self.max_iterations + 1):
                Ad = A @ d
                alpha = rz / _dot(d, Ad)
                x += alpha * d
                r -= alpha * Ad
                if np.sqrt(_dot(r, r)) <= stop:
                    its = k
                    break
                z = M(r)
                rz_new = _dot(r, z)
                d *= rz_new / rz
                d += z
                rz = rz_new
        self.stats.solve_s += time.perf_counter() - t0
        return x, its

    def _solve_cupy(self, A, b, x0):
        try:
            import cupy as cp
            import cupyx.scipy.sparse as csp
            import cupyx.scipy.sparse.linalg as cspla
        except ImportError as exc:  # optional dependency
            raise ParameterError(
                "Parameter backend='cupy' needs CuPy and a CUDA device, and CuPy is not importable.",
                "install the optional group (pip install 'vertaug[gpu]') or use backend='rs'.",
            ) from exc
        t0 = time.perf_counter()
        Ad = csp.csr_matrix(A)
        inv_diag = 1.0 / cp.asarray(A.diagonal())
        M = cspla.LinearOperator(A.shape, matvec=lambda v: inv_diag * v, dtype=cp.float64)
        bd = cp.asarray(b)
        xd0 = None if x0 is None else cp.asarray(x0)
        xd, info = cspla.cg(Ad, bd, x0=xd0, tol=self.rtol, maxiter=20 * self.max_iterations, M=M)
        if info != 0:
            raise RuntimeError(f"CuPy CG did not converge (info={info}).")
        x = cp.asnumpy(xd)
        self.stats.solve_s += time.perf_counter() - t0
        self.stats.iterations.append(-1)
        return x
