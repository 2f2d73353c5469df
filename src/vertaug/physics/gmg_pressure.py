"""Geometric multigrid for the cell-centred pressure systems of the voxel grid (Darcy injection, heat).

The systems are the two-point flux finite volumes of :mod:`vertaug.physics.flow`: a 7-point operator on the cells of
a subset of the voxel grid (the active set), with harmonic face transmissibilities T_f = lambda_f k_f A / h between
neighbouring cells and the exits as Dirichlet faces (their transmissibility goes onto the diagonal only). Cells
outside the active set are not unknowns at all.

Hierarchy: the cells are grouped into the 2 x 2 x 2 blocks of the voxel grid (a block holds 1 to 8 active cells; the
coarse grid is again a voxel grid, of half the size, with the blocks that hold an active cell as its cells), the
prolongation P is piecewise constant over a block (each cell takes its block's value) and the coarse operator is the
Galerkin product A_c = P^T A P. For a two-point flux operator this product is again a 7-point two-point flux
operator on the coarse voxel grid: the transmissibility between two coarse blocks is the *sum* of the fine face
transmissibilities that cross between them, the fine faces inside a block cancel, and a block's Dirichlet (exit)
transmissibility is the sum of its cells' exit transmissibilities. So the hierarchy is exact (Galerkin) and
structured: every coarse coefficient is computed from the fine ones by a sum over blocks, never from the
permeability or mobility fields by an averaging rule.

Why Galerkin and not harmonic-averaged coarse coefficients: the mobility of the injection jumps by
mu_cement / mu_marrow ~ 1e3-1.5e3 (and the permeability of the cortical shell and of the trabecular core by another
1e2-1e3) across a front that runs through the blocks. A harmonic average of the coefficients of a block's cells
is the series conductance of a layered block, which under-estimates the coarse conductance of a block that a
high-mobility channel crosses by up to the contrast (1e3-1e6): the coarse correction then misses the smooth error of
the channel, and CG iteration counts grow with the contrast. The Galerkin sum is the energy of a block-constant
error, which is the error that the smoother leaves in a high-mobility region (an aggregate of a high-mobility region
is nearly constant in the near-null space), and low-mobility islands (cement, cortical bone) only add small sums;
the V-cycle as a CG preconditioner stays symmetric positive definite whatever the contrast (tests/test_gmg_pressure.py
runs it at contrasts 1e0-1e6 and bounds the iteration count).

Piecewise-constant prolongation under-corrects smooth errors (the Galerkin operator of a block-constant coarse space
is about half as stiff as a rediscretisation on the coarse grid), so the coarse correction is scaled by
``over_correction`` = 1.6, which keeps the preconditioner symmetric. The factor is a solver parameter, chosen by
measurement (benchmarks/bench_pressure.py problem at 64^3, rtol 1e-8: 36 CG iterations at 1.0, 22 at 1.4, 19 at 1.6,
18 at 1.8 and 2.0), not a physical one. The same design (blocks of cells, restriction by summation, prolongation by
injection, Gauss-Seidel smoothing) is OpenFOAM's GAMG pressure solver (OpenFOAM Foundation, GAMGSolver.H); the
aggregation theory is Vanek, Brezina & Mandel (2001), "Convergence of algebraic multigrid based on smoothed
aggregation", Numer. Math. 88: 559-579.

Smoother: one forward Gauss-Seidel sweep before and one backward sweep after the coarse correction (the V-cycle is a
symmetric operator, as CG needs), each a compiled sweep over the CSR matrix of the level (pyamg's relaxation
kernel: a sweep costs about one CSR matvec). The coarsest level (<= ``max_coarse`` cells) is factorised (SuperLU).
The setup is cheap (a few sums over blocks per level: no strength graph, no aggregation search, no
smoothing of P), so it is redone at every solve of a time-stepping sequence: no stale hierarchy to refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["MAX_COARSE_CELLS", "OVER_CORRECTION", "GMGHierarchy", "build_hierarchy"]

OVER_CORRECTION = 1.6
MAX_COARSE_CELLS = 500


@dataclass
class _Level:
    A: sp.csr_matrix
    agg: np.ndarray | None = None  # cell -> coarse cell (None on the coarsest level)
    n_coarse: int = 0


def _aggregate(shape, cells):
    """Block (2x2x2) of each cell, compressed to the occupied blocks: (agg, coarse shape, coarse cells)."""
    ijk = np.unravel_index(cells, shape)
    cshape = tuple((s + 1) // 2 for s in shape)
    block = np.ravel_multi_index(tuple(c // 2 for c in ijk), cshape)
    occupied = np.zeros(int(np.prod(cshape)), dtype=bool)
    occupied[block] = True
    ccells = np.flatnonzero(occupied)  # sorted: the coarse cells keep the C order
    lut = np.cumsum(occupied) - 1
    return lut[block], cshape, ccells


def _coarse_pattern(indptr, indices, agg, cshape, ccells):
    """CSR pattern of P^T A P on the coarse voxel grid and, per fine entry, the index of its coarse entry. The coarse
    operator is 7-point: a fine entry (i, j) lands on the diagonal of block I = agg_i or on one of its six neighbour
    blocks, so the coarse entries are slots (I, direction), found in O(nnz) without a sort."""
    nc = ccells.size
    s1, s2 = cshape[1] * cshape[2], cshape[2]
    offsets = np.array([-s1, -s2, -1, 0, 1, s2, s1], dtype=np.int64)  # ascending: CSR column order
    rows = np.repeat(agg, np.diff(indptr))
    key = rows * 7 + np.searchsorted(offsets, ccells[agg[indices]] - ccells[rows])
    del rows
    exists = np.bincount(key, minlength=7 * nc) > 0
    slot = np.cumsum(exists) - 1
    lut = np.empty(int(np.prod(cshape)), dtype=np.int32)
    lut[ccells] = np.arange(nc, dtype=np.int32)
    used = np.flatnonzero(exists)
    cind = lut[ccells[used // 7] + offsets[used % 7]]
    cptr = np.concatenate([[0], np.cumsum(exists.reshape(nc, 7).sum(axis=1))]).astype(np.int32)
    return cptr, cind, slot[key]


class _Pattern:
    """The coarsening of one sparsity pattern (it stays fixed over an injection: only the values change): per level
    the block of each cell and, for every stored entry of the fine matrix, the position of its coarse entry, so that
    a Galerkin product is one ``np.bincount`` over the entries."""

    def __init__(self, A: sp.csr_matrix, shape, cells, max_coarse: int):
        self.indptr, self.indices = A.indptr.copy(), A.indices.copy()
        self.shape, self.cells = tuple(shape), np.array(cells)
        self.steps = []  # (agg, n_coarse, entry -> coarse entry, coarse indptr, coarse indices)
        shape, cells = tuple(int(s) for s in shape), np.asarray(cells)
        indptr, indices, n = A.indptr, A.indices, A.shape[0]
        while n > max_coarse and max(shape) > 1:
            agg, shape, cells = _aggregate(shape, cells)
            cptr, cind, where = _coarse_pattern(indptr, indices, agg, shape, cells)
            self.steps.append((agg, cells.size, where, cptr, cind))
            indptr, indices, n = cptr, cind, cells.size

    def matches(self, A: sp.csr_matrix, shape, cells) -> bool:
        return (tuple(shape) == self.shape and np.shape(cells) == self.cells.shape and np.array_equal(cells, self.cells)
                and A.indptr.shape == self.indptr.shape and A.indices.shape == self.indices.shape
                and np.array_equal(A.indptr, self.indptr) and np.array_equal(A.indices, self.indices))

    def levels(self, A: sp.csr_matrix) -> list[_Level]:
        levels = []
        for agg, nc, where, cptr, cind in self.steps:
            levels.append(_Level(A=A, agg=agg, n_coarse=nc))
            A = sp.csr_matrix((np.bincount(where, A.data, cind.size), cind, cptr), shape=(nc, nc))
        levels.append(_Level(A=A))
        return levels


def build_hierarchy(A: sp.csr_matrix, shape, cells, max_coarse: int = MAX_COARSE_CELLS,
                    over_correction: float = OVER_CORRECTION, pattern: _Pattern | None = None) -> GMGHierarchy:
    """The structured Galerkin hierarchy of ``A``, whose unknowns are the voxels ``cells`` (flat, C order) of a grid
    of ``shape``. ``pattern``: the coarsening of an earlier matrix, reused when ``A`` has the same sparsity pattern
    (``hierarchy.pattern`` holds the one used)."""
    A = sp.csr_matrix(A)
    if not A.has_sorted_indices:
        A = A.sorted_indices()
    if pattern is None or not pattern.matches(A, shape, cells):
        pattern = _Pattern(A, shape, cells, max_coarse)
    return GMGHierarchy(pattern.levels(A), over_correction, pattern)


class GMGHierarchy:
    """V-cycle of the structured Galerkin hierarchy (see the module docstring)."""

    def __init__(self, levels: list[_Level], over_correction: float, pattern: _Pattern):
        from pyamg.amg_core import gauss_seidel

        self.pattern = pattern
        self._gs = gauss_seidel
        self.levels = levels
        self.omega = float(over_correction)
        self._coarse = spla.splu(sp.csc_matrix(levels[-1].A))

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def operator_complexity(self) -> float:
        return sum(lv.A.nnz for lv in self.levels) / self.levels[0].A.nnz

    def _sweep(self, A, x, b, forward: bool):
        n = A.shape[0]
        if forward:
            self._gs(A.indptr, A.indices, A.data, x, b, 0, n, 1)
        else:
            self._gs(A.indptr, A.indices, A.data, x, b, n - 1, -1, -1)

    def vcycle(self, b: np.ndarray) -> np.ndarray:
        """One V(1,1)-cycle from x = 0: an SPD approximation of A^{-1} b."""
        return self._cycle(0, np.ascontiguousarray(b, dtype=float))

    def _cycle(self, k: int, b: np.ndarray) -> np.ndarray:
        lv = self.levels[k]
        if lv.agg is None:
            return self._coarse.solve(b)
        A = lv.A
        x = np.zeros_like(b)
        self._sweep(A, x, b, True)
        r = b - A @ x
        rc = np.bincount(lv.agg, r, lv.n_coarse)  # P^T r
        x += self.omega * self._cycle(k + 1, rc)[lv.agg]
        self._sweep(A, x, b, False)
        return x
