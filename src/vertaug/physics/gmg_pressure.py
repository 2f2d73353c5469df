"""Geometric multigrid for the cell-centred pressure systems of the voxel grid (Darcy injection, heat).

The systems are the two-point flux finite volumes of :mod:`vertaug.physics.flow`: a 7-point operator on the cells of
a subset of the voxel grid (the active set), with harmonic face transmissibilities T_f = lambda_f k_f A / h between
neighbouring cells and the exits as Dirichlet faces (their transmissibility goes onto the diagonal only). Cells
outside the active set are not unknowns at all.

Matrix-free layout: the operator is held on the bounding box of the active cells (each side padded to an even
length) as three face arrays T_x, T_y, T_z (the transmissibility between a cell and its +axis neighbour; zero where
either is inactive) and the row sum sigma (exit transmissibilities, and the storage term C / dt of a heat step), so
that A_ii = sigma_i + sum of the six face T of cell i and A_ij = -T_ij. Inactive box cells have no coefficients and
an inverse diagonal of zero: the smoother leaves them at zero. The V-cycle applies each level as a 7-diagonal
(scipy DIA) matrix in float32: no index arrays, half the bytes of a float64 CSR matvec.

Hierarchy: the cells are grouped into the 2 x 2 x 2 blocks of the box; the prolongation P is piecewise constant over
a block and the coarse operator is the Galerkin product A_c = P^T A P. For a two-point flux operator this product is
again a 7-point two-point flux operator on the coarse box: the transmissibility between two coarse blocks is the
*sum* of the fine face transmissibilities that cross between them (the faces inside a block cancel) and sigma_c is
the block sum of sigma. So the hierarchy is exact (Galerkin) and structured, and its setup is a few strided sums.

Why Galerkin and not harmonic-averaged coarse coefficients: the mobility of the injection jumps by
mu_cement / mu_marrow ~ 1e3-1.5e3 (and the permeability of the cortical shell and of the trabecular core by another
1e2-1e3) across a front that runs through the blocks. A harmonic average of the coefficients of a block's cells
is the series conductance of a layered block, which under-estimates the coarse conductance of a block that a
high-mobility channel crosses by up to the contrast (1e3-1e6): the coarse correction then misses the smooth error of
the channel, and CG iteration counts grow with the contrast. The Galerkin sum is the energy of a block-constant
error, which is the error that the smoother leaves in a high-mobility region, and low-mobility islands (cement,
cortical bone) only add small sums; the V-cycle as a CG preconditioner stays symmetric positive definite whatever
the contrast (tests/test_gmg_pressure.py runs it at contrasts 1e0-1e6 and bounds the iteration count).

Piecewise-constant prolongation under-corrects smooth errors (the Galerkin operator of a block-constant coarse space
is about half as stiff as a rediscretisation on the coarse grid), so the coarse correction is scaled by
``over_correction``, which keeps the preconditioner symmetric. The same design (blocks of cells, restriction by
summation, prolongation by injection) is OpenFOAM's GAMG pressure solver (OpenFOAM Foundation, GAMGSolver.H); the
aggregation theory is Vanek, Brezina & Mandel (2001), "Convergence of algebraic multigrid based on smoothed
aggregation", Numer. Math. 88: 559-579.

Smoother: Chebyshev polynomial of degree ``CHEBYSHEV_DEGREE`` in D^-1 A on [beta / CHEBYSHEV_RANGE, beta], beta the
Gershgorin bound of the level (max_i (A_ii + sum_j |A_ij|) / A_ii <= 2: no eigenvalue estimate to set up), the same
polynomial before and after the coarse correction, so the V-cycle is symmetric (Adams, Brezina, Hu & Tuminaro 2003,
"Parallel multigrid smoothing: polynomial versus Gauss-Seidel", J. Comput. Phys. 188: 593-610). Unlike a
Gauss-Seidel sweep it is a few vectorised passes per level, in residual-updating form
(:func:`vertaug.physics.chebyshev.chebyshev_smooth_updating`): each product accumulates into the residual r = b - A x
through the DIA kernel, the pre-smoother's last product is the residual the V-cycle restricts, and the polynomial's
scalars are folded into scaled copies of D^-1; the post-smoother's last update goes straight into x
(saxpy + one-diagonal product), the restriction sums into the coarse right-hand side through the idle d, and the
CG's p = z + beta p is one saxpy into the V-cycle's output, whose buffer then trades places with p
(docs/performance.md measures what each pass costs). The degree, range and over-correction are solver parameters chosen by measurement
(docs/performance.md), not physical ones. The coarsest level (<= ``max_coarse`` active cells) is factorised
(SuperLU, float64).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from scipy.linalg import blas

from vertaug.physics.chebyshev import chebyshev_coefficients, chebyshev_smooth_updating

try:  # y += A x into a given y (the kernel behind dia_matrix @ x): a residual in one pass, no new array
    from scipy.sparse._sparsetools import dia_matvec as _dia_matvec
except ImportError:  # pragma: no cover - a future scipy that moves it: the public product
    _dia_matvec = None

__all__ = [
    "CHEBYSHEV_DEGREE",
    "CHEBYSHEV_RANGE",
    "MAX_COARSE_CELLS",
    "OVER_CORRECTION",
    "GMGHierarchy",
    "build_hierarchy",
]

OVER_CORRECTION = 2.0
MAX_COARSE_CELLS = 1000
CHEBYSHEV_DEGREE = 2
CHEBYSHEV_RANGE = 6.0
INNER_REDUCTION = 1e-4  # each float32 CG round reduces its residual by this factor (float32 eps ~ 6e-8)
STAGNATION = 0.9  # a refinement round that cuts the float64 residual by less than 10 % ends the solve
#: The coarsest operator is SPD: a symmetric fill-reducing ordering (minimum degree on A^T + A) and no row pivoting
#: (SuperLU's symmetric mode). On the demo VP's 777-cell coarsest level: L + U 37 786 entries instead of 66 996 (COLAMD
#: with partial pivoting), factorisation 2.9 ms instead of 3.5 ms, a solve 0.056 ms instead of 0.087 ms; the solution
#: differs by 3e-16 relative (float64 rounding), far below the float32 V-cycle it serves (docs/performance.md).
COARSE_LU_OPTIONS = {"permc_spec": "MMD_AT_PLUS_A", "diag_pivot_thresh": 0.0, "options": {"SymmetricMode": True}}


_DOT_BLOCK = 1 << 16


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """a . b: BLAS dots of 65536-entry blocks summed in float64 (no temporary vector; a float32 sum never runs over
    more than one block)."""
    a, b = a.reshape(-1), b.reshape(-1)
    if a.dtype == np.float64:
        return float(np.add.reduce((a * b)))  # the float64 refinement residual (pairwise summation, see solvers._dot)
    return float(sum(float(np.dot(a[i : i + _DOT_BLOCK], b[i : i + _DOT_BLOCK])) for i in range(0, a.size, _DOT_BLOCK)))


def _axpy(a: float, x: np.ndarray, y: np.ndarray) -> None:
    """y += a x in place, one pass (BLAS saxpy on float32 vectors)."""
    if y.dtype == np.float32 and x.dtype == np.float32 and y.flags.c_contiguous and x.flags.c_contiguous:
        blas.saxpy(x.reshape(-1), y.reshape(-1), a=a)
    else:
        y += a * x


def _norm(a: np.ndarray) -> float:
    return float(np.sqrt(_dot(a, a)))


def _even(shape) -> tuple[int, ...]:
    return tuple(int(s) + int(s) % 2 for s in shape)


def _pad_to(a: np.ndarray, shape) -> np.ndarray:
    if a.shape == tuple(shape):
        return a
    out = np.zeros(shape, a.dtype)
    out[tuple(slice(0, s) for s in a.shape)] = a
    return out


def _block_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the 2 x 2 x 2 blocks of an array with even sides (the restriction P^T of a box field)."""
    a = a[0::2] + a[1::2]
    a = a[:, 0::2] + a[:, 1::2]
    return a[:, :, 0::2] + a[:, :, 1::2]


def _coarse_faces(t: np.ndarray, axis: int) -> np.ndarray:
    """Coarse transmissibility along ``axis``: the fine faces from block I to block I + 1 (fine index 2 I + 1) summed
    over the 2 x 2 fine faces of the block side."""
    sl = [slice(None)] * 3
    sl[axis] = slice(1, None, 2)
    f = t[tuple(sl)]
    for a in range(3):
        if a != axis:
            lo, hi = [slice(None)] * 3, [slice(None)] * 3
            lo[a], hi[a] = slice(0, None, 2), slice(1, None, 2)
            f = f[tuple(lo)] + f[tuple(hi)]
    return f


def _diagonal(t: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    d = sigma.copy()
    for a in range(3):
        d += t[a]
        sl_lo, sl_hi = [slice(None)] * 3, [slice(None)] * 3
        sl_lo[a], sl_hi[a] = slice(0, -1), slice(1, None)
        d[tuple(sl_hi)] += t[a][tuple(sl_lo)]
    return d


class _Pattern:
    """The box layout of one sparsity pattern (it stays fixed over an injection: only the values change): for each
    stored entry to a +axis neighbour the position of its face in the (3, box) array, so that the fine face
    coefficients of a new matrix are one scatter."""

    def __init__(self, A: sp.csr_matrix, shape, cells):
        self.indptr, self.indices = A.indptr.copy(), A.indices.copy()
        self.shape, self.cells = tuple(int(s) for s in shape), np.array(cells)
        ijk = np.array(np.unravel_index(self.cells, self.shape))
        lo = ijk.min(axis=1)
        self.box = _even(ijk.max(axis=1) - lo + 1)
        itype = np.int32 if max(np.prod(self.shape), 3 * np.prod(self.box), A.nnz) < 2**31 else np.int64
        self.box_index = np.ravel_multi_index(tuple(ijk - lo[:, None]), self.box).astype(itype)
        del ijk
        strides = np.array([self.shape[1] * self.shape[2], self.shape[2], 1], dtype=itype)
        cells = self.cells.astype(itype)
        rows = np.repeat(np.arange(cells.size, dtype=itype), np.diff(A.indptr))
        step = cells[A.indices]
        step -= cells[rows]
        sel, dest = [], []
        for a in range(3):
            e = np.flatnonzero(step == strides[a]).astype(itype)
            sel.append(e)
            dest.append(itype(a * int(np.prod(self.box))) + self.box_index[rows[e]])
        if 2 * sum(e.size for e in sel) + int(np.count_nonzero(step == 0)) != step.size:
            raise ValueError("the matrix is not a symmetric 7-point operator on the given voxels")
        self.sel, self.dest = np.concatenate(sel), np.concatenate(dest)
        # unknowns that fill a run of the box (sorted, no gaps): the scatter into the box and the gather out of it are
        # slices instead of index arrays (a fancy-index scatter of 2 M float32 is ~5 ms, a slice copy ~0.3 ms)
        lo = int(self.box_index[0]) if self.box_index.size else 0
        run = self.box_index.size and int(self.box_index[-1]) - lo == self.box_index.size - 1
        self.run = slice(lo, lo + self.box_index.size) if run and np.all(np.diff(self.box_index) > 0) else None
        self.coarse: _CoarseLayout | None = None  # the coarsest level's LU layout, kept with the pattern

    def to_box(self, v: np.ndarray, scale: float, out: np.ndarray) -> None:
        """out[unknowns] = scale * v (cast to out's precision); out elsewhere untouched."""
        if self.run is not None:
            np.multiply(v, scale, out=out.reshape(-1)[self.run], casting="same_kind")
        else:
            out.reshape(-1)[self.box_index] = v * scale

    def from_box(self, box: np.ndarray) -> np.ndarray:
        """box[unknowns] (a view when the unknowns fill a run of the box)."""
        return box.reshape(-1)[self.run] if self.run is not None else box.reshape(-1)[self.box_index]

    def matches(self, A: sp.csr_matrix, shape, cells) -> bool:
        return (tuple(shape) == self.shape and np.shape(cells) == self.cells.shape and np.array_equal(cells, self.cells)
                and A.indptr.shape == self.indptr.shape and A.indices.shape == self.indices.shape
                and np.array_equal(A.indptr, self.indptr) and np.array_equal(A.indices, self.indices))

    def coefficients(self, A: sp.csr_matrix):
        """(T, sigma, active) of ``A`` on the box, float64."""
        t = np.zeros((3,) + self.box)
        t.reshape(-1)[self.dest] = -A.data[self.sel]
        sigma = np.zeros(self.box)
        sigma.reshape(-1)[self.box_index] = A @ np.ones(A.shape[0])
        active = np.zeros(self.box, bool)
        active.reshape(-1)[self.box_index] = True
        return t, sigma, active


class _Level:
    """One box level: the negated 7-diagonal operator (float ``dtype``), its inverse diagonal, work buffers."""

    def __init__(self, t, sigma, active, dtype):
        self.shape = active.shape
        self.active = active
        n = active.size
        s = (self.shape[1] * self.shape[2], self.shape[2], 1)
        diag = _diagonal(t, sigma)  # zero on inactive cells (no faces, no sigma there)
        self.offsets = np.array([-s[0], -s[1], -1, 0, 1, s[1], s[0]], dtype=np.int32)
        neg = np.zeros((7, n), dtype)  # -A in scipy's DIA layout: neg[k, j] = -A[j - offset_k, j]
        neg[3] = -diag.reshape(-1)
        for a in range(3):
            ta = t[a].reshape(-1)[: n - s[a]].astype(dtype)  # cast once, copied twice
            neg[6 - a, s[a]:] = ta  # A[j - s, j] = -T[j - s]
            neg[a, : n - s[a]] = ta  # A[j + s, j] = -T[j]
        self.neg = neg
        pos = diag > 0
        safe = np.where(pos, diag, 1.0)
        dinv = np.where(pos, 1.0 / safe, 0.0)
        # Gershgorin: lambda_max(D^-1 A) <= max (A_ii + sum_j |A_ij|) / A_ii = max (2 A_ii - sigma_i) / A_ii <= 2
        self.beta = float(np.where(pos, (2.0 * diag - sigma) / safe, 0.0).max())
        inv_theta, steps = chebyshev_coefficients(self.beta, CHEBYSHEV_DEGREE, CHEBYSHEV_RANGE)
        self.dinv_first = (dinv * inv_theta).astype(dtype)  # the smoother's scalars folded into D^-1
        self.dinv_steps = [(dinv * c_new).astype(dtype) for _, c_new in steps]
        self.c_old = [c_old for c_old, _ in steps]
        self.x, self.b, self.d, self.w = (np.zeros(self.shape, dtype) for _ in range(4))
        self._zero_offset = np.zeros(1, np.int32)

    def residual(self, x: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
        """out = b - A x."""
        np.copyto(out, b)
        n = x.size
        if _dia_matvec is not None:
            _dia_matvec(n, n, 7, n, self.offsets, self.neg, x.reshape(-1), out.reshape(-1))
        else:
            out += (sp.dia_matrix((self.neg, self.offsets), shape=(n, n)) @ x.reshape(-1)).reshape(self.shape)
        return out

    def sub_product(self, v: np.ndarray, r: np.ndarray) -> None:
        """r -= A v in one pass (the DIA kernel accumulates -A v into r)."""
        n = v.size
        if _dia_matvec is not None:
            _dia_matvec(n, n, 7, n, self.offsets, self.neg, v.reshape(-1), r.reshape(-1))
        else:
            r += (sp.dia_matrix((self.neg, self.offsets), shape=(n, n)) @ v.reshape(-1)).reshape(self.shape)

    def fma(self, s: np.ndarray, v: np.ndarray, d: np.ndarray) -> None:
        """d += s * v elementwise in one pass (the DIA kernel with the single diagonal s)."""
        n = v.size
        if _dia_matvec is not None:
            _dia_matvec(n, n, 1, n, self._zero_offset, s.reshape(1, -1), v.reshape(-1), d.reshape(-1))
        else:
            d += s * v

    def smooth(self, x: np.ndarray, b: np.ndarray, first: bool, want_residual: bool) -> None:
        """Chebyshev smoothing of A x = b in place on x (x taken as 0 when ``first``); with ``want_residual`` the
        level's ``w`` holds b - A x on return."""
        chebyshev_smooth_updating(self.sub_product, self.fma, self.residual, self.dinv_first, self.dinv_steps,
                                  self.c_old, b, x, self.w, self.d, first, want_residual, _axpy)

    def restrict_into(self, out: np.ndarray) -> None:
        """out = P^T w (the block sums of the residual ``w``), its two intermediate sums carved out of ``d``, which
        is idle between the smoothers (no allocation)."""
        n0, n1, n2 = self.shape
        flat = self.d.reshape(-1)
        half = flat[: n0 * n1 * n2 // 2].reshape(n0 // 2, n1, n2)
        quarter = flat[n0 * n1 * n2 // 2 : 3 * n0 * n1 * n2 // 4].reshape(n0 // 2, n1 // 2, n2)
        np.add(self.w[0::2], self.w[1::2], out=half)
        np.add(half[:, 0::2], half[:, 1::2], out=quarter)
        np.add(quarter[:, :, 0::2], quarter[:, :, 1::2], out=out)

    def prolongate_add(self, xc: np.ndarray, x: np.ndarray) -> None:
        """x += P xc (piecewise constant over the 2 x 2 x 2 blocks): two ``np.repeat`` (axes 2 and 1) and a broadcast
        add over axis 0 (0.42 ms at 128^3; strided copies into idle buffers measured 0.86 ms)."""
        n0, n1, n2 = self.shape
        e = np.repeat(np.repeat(xc[: n0 // 2, : n1 // 2, : n2 // 2], 2, axis=2), 2, axis=1)
        x.reshape(n0 // 2, 2, n1 * n2)[...] += e.reshape(n0 // 2, 1, n1 * n2)

    def matrix(self) -> sp.csr_matrix:
        """A of the level's active cells (C order), assembled."""
        n = self.active.size
        A = -sp.dia_matrix((self.neg, self.offsets), shape=(n, n)).tocsr()
        keep = np.flatnonzero(self.active.reshape(-1))
        return A[keep][:, keep]


class _CoarseLayout:
    """The coarsest level's sparse layout for its LU, set up once per sparsity pattern (the levels of one pattern
    have the same active cells from step to step; only the values change): the CSC structure of A on the active
    cells (every pair of face neighbours, C order), already in the fill-reducing order of the first factorisation
    (``COARSE_LU_OPTIONS``: minimum degree on A^T + A), and for each stored entry its position in the level's
    7-diagonal array, so that each later factorisation is one gather and SuperLU with the natural order (no
    ordering, no DIA -> CSR conversion and slicing; on the demo VP's 739-cell level the factorisation takes 0.93
    instead of 1.50 ms, and the 0.23 ms of conversion and slicing go)."""

    def __init__(self, level: _Level):
        n_box = level.active.size
        self.active = level.active.copy()
        cells = np.flatnonzero(level.active.reshape(-1))
        lut = np.full(n_box, -1, np.int64)
        lut[cells] = np.arange(cells.size)
        ijk = np.unravel_index(cells, level.shape)
        active = level.active.reshape(-1)
        rows, cols, where = [], [], []
        for k, axis in enumerate((0, 1, 2, None, 2, 1, 0)):  # neg[k, col] = -A[col - offsets[k], col]
            col = cells
            row = col - int(level.offsets[k])
            if axis is None:
                ok = np.ones(cells.size, bool)
            elif k > 3:  # row is col's -axis neighbour
                ok = ijk[axis] > 0
            else:
                ok = ijk[axis] < level.shape[axis] - 1
            ok[ok] = active[row[ok]]
            rows.append(lut[row[ok]])
            cols.append(lut[col[ok]])
            where.append(k * n_box + col[ok])
        rows, cols, where = np.concatenate(rows), np.concatenate(cols), np.concatenate(where)
        neg = level.neg.reshape(-1)
        zero = neg[where] == 0  # neighbours with no face between them (SuperLU's own path drops them too)
        self.zero_where = where[zero]  # a later matrix with a value there needs a new layout (``fits``)
        rows, cols, where = rows[~zero], cols[~zero], where[~zero]
        first = sp.csc_matrix((-neg[where].astype(np.float64), (rows, cols)),
                              shape=(cells.size, cells.size))
        perm = spla.splu(first, **COARSE_LU_OPTIONS).perm_c  # the ordering SuperLU would choose for this structure
        inv = np.empty_like(perm)
        inv[perm] = np.arange(perm.size)
        pos = np.empty(cells.size, np.int64)
        pos[inv] = np.arange(cells.size)  # the factor's row/column of each active cell
        r, c = pos[rows], pos[cols]
        order = np.lexsort((r, c))  # CSC: by column, then row
        self.indices = r[order].astype(np.int32)
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(c, minlength=cells.size))]).astype(np.int32)
        self.where = where[order]
        self.box_index = cells[inv]
        self.options = dict(COARSE_LU_OPTIONS, permc_spec="NATURAL")

    def fits(self, level: _Level) -> bool:
        return (level.active.shape == self.active.shape and np.array_equal(level.active, self.active)
                and not np.any(level.neg.reshape(-1)[self.zero_where]))

    def factorize(self, level: _Level):
        n = self.box_index.size
        values = -level.neg.reshape(-1)[self.where].astype(np.float64)
        return spla.splu(sp.csc_matrix((values, self.indices, self.indptr), shape=(n, n)), **self.options)


def build_hierarchy(A: sp.csr_matrix, shape, cells, max_coarse: int = MAX_COARSE_CELLS,
                    over_correction: float = OVER_CORRECTION, pattern: _Pattern | None = None,
                    dtype=np.float32) -> GMGHierarchy:
    """The structured Galerkin hierarchy of ``A``, whose unknowns are the voxels ``cells`` (flat, C order) of a grid
    of ``shape``. ``pattern``: the box layout of an earlier matrix, reused when ``A`` has the same sparsity pattern
    (``hierarchy.pattern`` holds the one used). ``dtype``: the precision of the V-cycle (float32: half the bytes;
    the conjugate gradients around it keep float64 residuals)."""
    A = sp.csr_matrix(A)
    if not A.has_sorted_indices:
        A = A.sorted_indices()
    if pattern is None or not pattern.matches(A, shape, cells):
        pattern = _Pattern(A, shape, cells)
    t, sigma, active = pattern.coefficients(A)
    levels = [_Level(t, sigma, active, dtype)]
    while int(active.sum()) > max_coarse and max(active.shape) > 2:
        cshape = _even(s // 2 for s in active.shape)
        t = np.stack([_pad_to(_coarse_faces(t[a], a), cshape) for a in range(3)])
        sigma = _pad_to(_block_sum(sigma), cshape)
        active = _pad_to(_block_sum(active.astype(np.int8)) > 0, cshape)
        levels.append(_Level(t, sigma, active, dtype))
    return GMGHierarchy(levels, over_correction, pattern)


class GMGHierarchy:
    """V-cycle of the structured Galerkin hierarchy (see the module docstring)."""

    def __init__(self, levels: list[_Level], over_correction: float, pattern: _Pattern):
        self.pattern = pattern
        self.levels = levels
        self.omega = float(over_correction)
        last = levels[-1]
        if pattern.coarse is None or not pattern.coarse.fits(last):
            pattern.coarse = _CoarseLayout(last)
        layout = pattern.coarse
        self._coarse_index = layout.box_index  # the coarsest unknowns in the factor's (fill-reducing) order
        self._coarse = layout.factorize(last)

    def coarse_solve(self, b: np.ndarray) -> np.ndarray:
        """The coarsest level's LU solve for ``b`` on its active cells in C order (``levels[-1].matrix()``'s)."""
        order = np.searchsorted(np.flatnonzero(self.levels[-1].active.reshape(-1)), self._coarse_index)
        x = np.empty(order.size)
        x[order] = self._coarse.solve(np.asarray(b, dtype=np.float64)[order])
        return x

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    def prolongation(self, k: int) -> sp.csr_matrix:
        """P from the active cells of level k + 1 to those of level k (C order), assembled (for checks)."""
        fine, coarse = self.levels[k].active, self.levels[k + 1].active
        cells = np.flatnonzero(fine.reshape(-1))
        block = np.ravel_multi_index(tuple(i // 2 for i in np.unravel_index(cells, fine.shape)), coarse.shape)
        lut = np.cumsum(coarse.reshape(-1)) - 1
        n_coarse = int(coarse.sum())
        return sp.csr_matrix((np.ones(cells.size), (np.arange(cells.size), lut[block])), shape=(cells.size, n_coarse))

    def vcycle(self, b: np.ndarray) -> np.ndarray:
        """One V-cycle from x = 0 for the unknowns' vector ``b``: an SPD approximation of A^{-1} b (float64)."""
        fine = self.levels[0]
        rb = np.zeros(fine.shape, fine.neg.dtype)
        rb.reshape(-1)[self.pattern.box_index] = b
        return self._cycle(0, rb).reshape(-1)[self.pattern.box_index].astype(np.float64)

    def solve(self, A: sp.csr_matrix, b: np.ndarray, x0: np.ndarray | None, rtol: float, max_iterations: int):
        """x with ||b - A x||_2 <= rtol ||b||_2 by iterative refinement: the residual and the solution are float64
        (``A`` as given, on the unknowns), each correction A d = r is a conjugate-gradient solve in the box layout
        and the V-cycle's precision, preconditioned by one V-cycle, to a reduction of ``INNER_REDUCTION`` (or less
        when that is enough). Returns (x, CG iterations), or (x, None) when it did not converge."""
        fine, pat = self.levels[0], self.pattern
        x = np.zeros(A.shape[0]) if x0 is None else np.array(x0, dtype=np.float64)
        r = np.array(b, dtype=np.float64) if x0 is None else b - A @ x  # from zero the residual is b: no product
        stop = rtol * _norm(b)
        rnorm, total = _norm(r), 0
        rb = np.zeros(fine.shape, fine.neg.dtype)
        while rnorm > stop:
            pat.to_box(r, 1.0 / rnorm, rb)
            d, its = self._inner_cg(rb, max(INNER_REDUCTION, 0.5 * stop / rnorm), max_iterations - total)
            total += its
            x += rnorm * pat.from_box(d)
            r = b - A @ x
            new = _norm(r)
            if total >= max_iterations or new > STAGNATION * rnorm:
                return x, (total if new <= stop else None)
            rnorm = new
        return x, total

    def _inner_cg(self, r: np.ndarray, reduction: float, max_iterations: int):
        """PCG for A d = r from d = 0 in the box layout (``r`` is overwritten); (d, iterations)."""
        lv = self.levels[0]
        d, q = np.zeros_like(r), np.empty_like(r)
        stop = reduction * _norm(r)
        p = self._cycle(0, r).copy()
        rz = _dot(r, p)
        for k in range(1, max(max_iterations, 1) + 1):
            q.fill(0)
            lv.sub_product(p, q)  # q = -A p
            pap = -_dot(p, q)
            if not (pap > 0.0 and rz > 0.0):  # breakdown (A or the cycle not SPD here): the refinement stagnates
                return d, k - 1
            alpha = rz / pap
            _axpy(alpha, p, d)
            _axpy(alpha, q, r)
            if _norm(r) <= stop:
                return d, k
            z = self._cycle(0, r)  # the fine level's x
            rz_new = _dot(r, z)
            _axpy(rz_new / rz, p, z)  # p_new = z + beta p, one pass into z; the next cycle writes into the old p
            p, lv.x = z, p
            rz = rz_new
        return d, max_iterations

    def _cycle(self, k: int, b: np.ndarray) -> np.ndarray:
        lv = self.levels[k]
        x = lv.x
        if k == len(self.levels) - 1:
            x.fill(0)
            x.reshape(-1)[self._coarse_index] = self._coarse.solve(b.reshape(-1)[self._coarse_index].astype(np.float64))
            return x
        lv.smooth(x, b, first=True, want_residual=True)  # lv.w = b - A x
        coarse = self.levels[k + 1]
        n0, n1, n2 = lv.shape
        lv.restrict_into(coarse.b[: n0 // 2, : n1 // 2, : n2 // 2])  # coarse.b's padding stays zero
        xc = self._cycle(k + 1, coarse.b)
        xc *= self.omega
        lv.prolongate_add(xc, x)
        lv.smooth(x, b, first=False, want_residual=False)
        return x
