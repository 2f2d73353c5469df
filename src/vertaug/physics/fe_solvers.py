"""Iterative solvers for the voxel elasticity system K u = f with prescribed (Dirichlet) DOFs.

Dirichlet DOFs are kept in the vector and masked: with P the projector on free DOFs and u = u_D + w,

    A w = b,   A = P K P + (I - P),   b = -P K u_D,

so A is symmetric positive definite when every connected part is held. Nodes touched by no solid voxel
are inactive and treated as fixed (w = 0). Preconditioned conjugate gradients (PCG) stop when
||b - A w|| <= tol ||b||.

Preconditioners:

* ``gmg`` (geometric multigrid, matrix-free): a V-cycle on a hierarchy of voxel grids. A coarse voxel
  holds the mean of the coefficients of its 2x2x2 children (void counts as zero: rediscretisation), the
  prolongation P is trilinear interpolation between nodes and the restriction is P^T. Smoother:
  Chebyshev polynomial of degree 2 in D^-1 A (D the diagonal), on [beta / 10, beta] with beta = 1.1 x a
  power-iteration estimate of lambda_max(D^-1 A); pre- and post-smoothing are the same polynomial, so the
  V-cycle is symmetric. Coarse Dirichlet DOFs are the fine ones dilated by one node and injected. The
  coarsest grid (<= ``max_coarse_dofs``) is assembled and factorised (SuperLU). Levels run in float32 by
  default: half the memory traffic.
* Mixed precision (``solve_gmg``): iterative refinement around float32 PCG. The solution and the true residual
  r = -P K u are float64; each round solves A d = r / ||r|| by PCG with float32 vectors (float32 operator and
  V-cycle) to a 1e-4 reduction, adding each CG step to u in float64. The stopping test ||r|| <= tol ||b|| is on the
  float64 residual. All vectors are in the padded layout of :class:`VoxelOperator` (no copies in the products).
  The float64 residual is streamed block by block into the float32 one (``VoxelOperator.apply_streamed``: no float64
  vector of the model's size), u += c p runs in blocks, and the solve may start from a guess (mechanics passes the
  uniform-strain displacement) while its stopping test stays relative to b = r(u_D).
* Memory (issue 26): on cubic voxels D^-1 is one row shared by the three components (their diagonal entries are
  equal); restriction and prolongation work in the level's idle vectors. ~125 B per voxel of numpy arrays at 1e6.
* ``amg``: the assembled CSR matrix of the free DOFs, pyamg smoothed aggregation with the six
  rigid-body modes as near-nullspace (Vanek, Mandel & Brezina 1996). Needs ~3 kB per voxel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse.linalg as spla

from vertaug.physics.chebyshev import chebyshev_smooth
from vertaug.physics.fe_grid import VoxelOperator, assemble_csr, coarsen_coefficients, prolong, restrict

# Chebyshev degree 2 on [beta / 10, beta] (issue 26, measured, docs/performance.md): 5 fine-level products per CG
# iteration instead of 7 for 13 iterations instead of 11 on the 100^3 bench block (CPU -13 %) and 19 instead of 16 on
# the 0.5 mm L1 phantom, intact and with a cement core (CPU -9 %); degree 3 on [beta / 15, beta] before.
CHEBYSHEV_DEGREE = 2
CHEBYSHEV_RANGE = 10.0
POWER_ITERATIONS = 12
MAX_COARSE_DOFS = 4_000
INNER_REDUCTION = 1e-4  # each float32 CG round reduces its residual by this factor (float32 eps ~ 6e-8)
STAGNATION = 0.9  # stop refining when a round cuts the float64 residual by less than 10 %
F64_CHUNK_ELEMENTS = 8192  # the float64 residual's operator: smaller work arrays (it runs once per round)


def _to_numpy(a):
    return a.get() if hasattr(a, "get") else np.asarray(a)


def pcg(apply_a, b, precond, tol: float, maxiter: int, xp=np):
    """Preconditioned CG from w = 0; returns (w, iterations, relative residual). ``b`` is overwritten (it becomes
    the residual: one vector less)."""
    x = xp.zeros_like(b)
    bnorm = float(xp.linalg.norm(b.ravel()))
    if bnorm == 0.0:
        return x, 0, 0.0
    r = b
    z = precond(r)
    p = z.copy()
    rz = float(xp.vdot(r.ravel(), z.ravel()))
    res = 1.0
    it = 0
    for it in range(1, maxiter + 1):
        q = apply_a(p)
        alpha = rz / float(xp.vdot(p.ravel(), q.ravel()))
        x += alpha * p
        r -= alpha * q
        del q
        res = float(xp.linalg.norm(r.ravel())) / bnorm
        if res <= tol:
            break
        z = precond(r)
        rz_new = float(xp.vdot(r.ravel(), z.ravel()))
        p *= rz_new / rz
        p += z
        rz = rz_new
    return x, it, res


def _dilate_inject(mask: np.ndarray, coarse_node_shape) -> np.ndarray:
    """Coarse-node mask: fine mask dilated by one node along each axis, sampled at fine node min(2i, n)."""
    m = mask.copy()
    for axis in (0, 1, 2):
        lo = [slice(None)] * 4
        hi = [slice(None)] * 4
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        grown = m.copy()
        grown[tuple(lo)] |= m[tuple(hi)]
        grown[tuple(hi)] |= m[tuple(lo)]
        m = grown
    idx = [np.minimum(2 * np.arange(coarse_node_shape[a]), mask.shape[a] - 1) for a in (0, 1, 2)]
    return m[idx[0]][:, idx[1]][:, :, idx[2]]


def _inverse_diagonal(diag, free, krefs, xp):
    """D^-1 on the free DOFs, 0 elsewhere. Where every reference matrix has the same diagonal entry for the three
    components of a corner (cubic voxels), the three rows of D agree and one (1, n) row serves all three: 8 bytes
    per node less. Fixed DOFs need no zero in it then: the level's operator output and every right-hand side the
    smoother sees are zero there, so its updates are too."""
    one_row = all(np.allclose(np.diag(k).reshape(8, 3), np.diag(k).reshape(8, 3)[:, :1], rtol=1e-12, atol=0)
                  for k in krefs)
    if one_row:
        d = diag[0:1].copy()
        d[~free.any(axis=0, keepdims=True)] = 0
    else:
        d = diag
        d[~free] = 0
    pos = d > 0
    d[~pos] = 1
    inv = 1 / d
    inv *= pos
    return inv


@dataclass
class _Level:
    op: VoxelOperator
    free: object  # bool, True on free DOFs (padded layout)
    dinv: object
    beta: float
    lu: object = None  # SuperLU of the free block on the coarsest level
    free_index: np.ndarray | None = None  # free DOFs of the coarsest level (nodal layout, flattened)
    work: object = None  # apply output / residual buffer (padded layout)
    x: object = None  # V-cycle iterate (padded layout); level 0: the preconditioned vector handed to CG
    d: object = None  # Chebyshev update / prolongated correction (padded layout)
    b: object = (
        None  # right-hand side of a coarse level (restricted residual); level 0 uses the caller's vector
    )


class GeometricMultigrid:
    """Matrix-free geometric multigrid V-cycle for the masked voxel elasticity operator.

    Vectors are in the padded layout of :class:`VoxelOperator`. Every level owns three work vectors (x, d, work),
    so a V-cycle allocates nothing on the fine level. The vector returned by a call is level 0's ``x`` buffer: it is
    overwritten by the next call.
    """

    def __init__(
        self,
        coefs,
        krefs_fn,
        spacing_m,
        fixed: np.ndarray,
        xp=np,
        dtype=np.float32,
        max_coarse_dofs: int = MAX_COARSE_DOFS,
    ):
        self.xp, self.dtype = xp, dtype
        self.levels: list[_Level] = []
        h = np.asarray(spacing_m, dtype=float)
        dirichlet = np.asarray(fixed, dtype=bool)
        rng = np.random.default_rng(0)
        while True:
            krefs = krefs_fn(h)
            op = VoxelOperator(coefs, krefs, xp, dtype)
            diag = op.diagonal_padded()
            free = diag > 0
            free[:, : op.n_nodes] &= xp.asarray(~dirichlet.reshape(-1, 3).T)
            if np.prod(op.node_shape) <= max_coarse_dofs or min(op.shape) <= 2:
                a = assemble_csr(coefs, krefs)
                free_index = np.flatnonzero(_to_numpy(op.from_padded(free)).ravel())
                lu = (
                    spla.splu(a[free_index][:, free_index].tocsc(), permc_spec="MMD_AT_PLUS_A")
                    if free_index.size
                    else None
                )
                self.levels.append(
                    _Level(
                        op,
                        free,
                        None,
                        0.0,
                        lu,
                        free_index,
                        work=op.zeros(),
                        x=op.zeros(),
                        b=op.zeros() if self.levels else None,
                    )
                )
                break
            dinv = _inverse_diagonal(diag, free, krefs, xp)
            del diag
            level = _Level(
                op,
                free,
                dinv,
                0.0,
                work=op.zeros(),
                x=op.zeros(),
                d=op.zeros(),
                b=op.zeros() if self.levels else None,
            )
            v = level.x
            v[:] = xp.asarray(rng.standard_normal(op.padded_shape, dtype=np.float32))
            v *= free
            lam = 1.0
            for _ in range(POWER_ITERATIONS):
                w = self._apply(level, v, level.work)
                w *= dinv
                lam = float(xp.linalg.norm(w.ravel()) / xp.linalg.norm(v.ravel()))
                v[:] = w
                v *= 1.0 / float(xp.linalg.norm(v.ravel()))
            level.beta = 1.1 * lam
            self.levels.append(level)
            coefs = [coarsen_coefficients(np.asarray(c, dtype=float)) for c in coefs]
            h = 2.0 * h
            coarse_nodes = tuple(n + 1 for n in coefs[0].shape) + (3,)
            dirichlet = _dilate_inject(dirichlet, coarse_nodes)

    @property
    def nbytes(self) -> int:
        total = 0
        for lv in self.levels:
            total += sum(c.nbytes for c in lv.op.coefs) + lv.free.nbytes
            for arr in (lv.dinv, lv.work, lv.x, lv.d, lv.b):
                total += 0 if arr is None else arr.nbytes
        return int(total)

    @staticmethod
    def _apply(lv: _Level, x, out):
        lv.op.apply_padded(x, out)
        out *= lv.free
        return out

    def _smooth(self, lv: _Level, b, x, first: bool):
        """Chebyshev smoothing of A x = b in place on x (x taken as 0 when ``first``)."""
        xp = self.xp

        def residual(x_, b_, out):
            self._apply(lv, x_, out)
            return xp.subtract(b_, out, out=out)

        return chebyshev_smooth(residual, lv.dinv, lv.beta, b, x, lv.d, lv.work, first, CHEBYSHEV_DEGREE,
                                CHEBYSHEV_RANGE)

    def _vcycle(self, k: int, b):
        lv = self.levels[k]
        xp = self.xp
        x = lv.x
        if lv.dinv is None:  # coarsest level: direct solve
            x.fill(0)
            if lv.lu is not None:
                flat = np.zeros(int(np.prod(lv.op.node_shape)))
                flat[lv.free_index] = lv.lu.solve(
                    _to_numpy(lv.op.from_padded(b)).ravel()[lv.free_index].astype(np.float64)
                )
                lv.op.to_padded(xp.asarray(flat.reshape(lv.op.node_shape), dtype=self.dtype), x)
            return x
        self._smooth(lv, b, x, first=True)
        w = self._apply(lv, x, lv.work)
        xp.subtract(b, w, out=w)
        coarse = self.levels[k + 1]
        bc = coarse.b
        coarse.op.grid_view(bc)[...] = restrict(
            lv.op.grid_view(w), coarse.op.node_shape, xp, component_axis=0, overwrite=True, scratch=lv.d.reshape(-1)
        )
        bc *= coarse.free
        xc = self._vcycle(k + 1, bc)
        prolong(coarse.op.grid_view(xc), lv.op.node_shape, xp, out=lv.op.grid_view(lv.d), component_axis=0,
                scratch=lv.work.reshape(-1))
        lv.d *= lv.free
        x += lv.d
        return self._smooth(lv, b, x, first=False)

    def __call__(self, r):
        """One V-cycle for A z = r (r in the padded layout, level dtype); returns level 0's ``x`` buffer."""
        if r.dtype != self.dtype:
            r = r.astype(self.dtype)
        return self._vcycle(0, r)


def _dot(a, b, xp=np) -> float:
    """a . b accumulated in float64 (chunks of float32 BLAS dots, so no float32 sum runs over millions of terms)."""
    a, b = a.ravel(), b.ravel()
    if xp is not np:
        return float(xp.dot(a.astype(xp.float64), b.astype(xp.float64)))
    step = 1 << 16
    return float(sum(float(np.dot(a[i : i + step], b[i : i + step])) for i in range(0, a.size, step)))


def _true_residual(op: VoxelOperator, u, free, r, xp) -> float:
    """r <- -P K u / ||P K u|| (r float32; the product and the norm in float64); returns ||P K u||.

    On numpy the float64 product is streamed block by block into ``r`` (no float64 vector of its size)."""
    if xp is not np:
        r64 = op.apply_padded(u)
        r64 *= free
        nrm = float(xp.linalg.norm(r64.ravel()))
        if nrm > 0:
            r64 *= -1.0 / nrm
        r[:] = r64
        return nrm
    sq = 0.0
    for n0, n1, f in op.apply_streamed(u):
        f *= free[:, n0:n1]
        sq += float(np.einsum("ij,ij->", f, f))
        r[:, n0:n1] = f
    nrm = float(np.sqrt(sq))
    if nrm > 0:
        r *= np.float32(-1.0 / nrm)
    return nrm


def _axpy(y, a: float, x, xp=np, step: int = 1 << 16) -> None:
    """y += a x in place, y float64 and x float32, in blocks (no temporary of the vectors' size on numpy)."""
    if xp is not np:
        y += a * x
        return
    yf, xf = y.reshape(-1), x.reshape(-1)
    for i in range(0, yf.size, step):
        yf[i : i + step] += a * xf[i : i + step]


def _set_dofs(op: VoxelOperator, u, mask, values, xp):
    """u <- values on the DOFs of ``mask`` ((NX, NY, NZ, 3) bool; ``values`` broadcastable to it); returns u."""
    mask = np.asarray(_to_numpy(mask), dtype=bool)
    vals = np.broadcast_to(np.asarray(values, dtype=np.float64), mask.shape)
    grid = op.grid_view(u)
    for k in range(3):
        if xp is np:
            np.copyto(grid[k], vals[..., k], where=mask[..., k])
        else:
            grid[k] = xp.where(xp.asarray(mask[..., k]), xp.asarray(vals[..., k]), grid[k])
    return u


def solve_gmg(coefs, krefs_fn, spacing_m, fixed, u_dirichlet, tol, maxiter, xp=np, dtype=np.float32, u_guess=None):
    """Solve K u = 0 on the free DOFs, u = u_D on the fixed ones, by mixed-precision PCG + matrix-free GMG.

    ``fixed``: (NX, NY, NZ, 3) bool; ``u_dirichlet``: prescribed values, any array broadcastable to that shape (only
    its values on fixed DOFs are used); ``u_guess``: optional start on the free DOFs (broadcastable likewise; the
    stopping test stays relative to b = r(u_D), so a good guess saves iterations without loosening it). Returns
    (u (NX, NY, NZ, 3) float64, iterations, relative residual, setup_s,
    solve_s, info).

    Iterative refinement (Wilkinson; mixed-precision CG as in e.g. Carson & Higham 2018): the solution ``u`` and the
    true residual r = -P K u (P: free DOFs) are float64; each round solves A d = r / ||r|| by PCG with float32 vectors
    and the float32 multigrid preconditioner until its recursive residual falls by ``INNER_REDUCTION`` (or below the
    outer target), adding each CG step to ``u`` in float64. The stopping test is on the float64 residual:
    ||r|| <= tol ||b||, b = r(u_D). ``iterations`` counts the inner CG steps of all rounds.
    """
    import time

    t0 = time.perf_counter()
    h = np.asarray(spacing_m, dtype=float)
    mg = GeometricMultigrid(coefs, krefs_fn, h, fixed, xp=xp, dtype=dtype)
    lv0 = mg.levels[0]
    free = lv0.free
    op = VoxelOperator(coefs, krefs_fn(h), xp, np.float64, chunk=F64_CHUNK_ELEMENTS)
    u = _set_dofs(op, op.zeros(np.float64), fixed, u_dirichlet, xp)
    r = lv0.op.zeros()

    bnorm = _true_residual(op, u, free, r, xp)
    rnorm = bnorm
    if u_guess is not None and bnorm > 0:
        _set_dofs(op, u, op.grid_view(free).transpose(1, 2, 3, 0), u_guess, xp)
        rnorm = _true_residual(op, u, free, r, xp)
    t1 = time.perf_counter()
    it = rounds = 0
    res = 0.0
    if bnorm > 0:
        res = rnorm / bnorm
        while res > tol and it < maxiter:
            rounds += 1
            target = max(INNER_REDUCTION, 0.5 * tol * bnorm / rnorm)
            z = mg(r)
            p = z.copy()
            rz = _dot(r, z, xp)
            while True:
                q = mg._apply(lv0, p, lv0.work)
                alpha = rz / _dot(p, q, xp)
                _axpy(u, alpha * rnorm, p, xp)
                q *= alpha
                r -= q
                del q
                it += 1
                if float(xp.linalg.norm(r.ravel())) <= target or it >= maxiter:
                    break
                z = mg(r)
                rz_new = _dot(r, z, xp)
                p *= rz_new / rz
                p += z
                rz = rz_new
            del p, z
            rnorm_new = _true_residual(op, u, free, r, xp)
            res = rnorm_new / bnorm
            if rnorm_new > STAGNATION * rnorm:
                break  # float32 rounding floor: caller warns (res > tol)
            rnorm = rnorm_new
    t2 = time.perf_counter()
    info = {"levels": len(mg.levels), "mg_bytes": mg.nbytes, "refinement_rounds": rounds}
    del mg, lv0, free, r
    out = xp.ascontiguousarray(op.from_padded(u))
    return out, it, res, t1 - t0, t2 - t1, info


def solve_amg(coefs, krefs_fn, spacing_m, fixed, u_dirichlet, tol, maxiter):
    """Solve with PCG + pyamg smoothed aggregation (rigid-body near-nullspace) on the assembled matrix."""
    import time

    import pyamg

    from vertaug.physics.fe_grid import rigid_body_modes

    t0 = time.perf_counter()
    h = np.asarray(spacing_m, dtype=float)
    k = assemble_csr(coefs, krefs_fn(h))
    diag = k.diagonal()
    free_index = np.flatnonzero(~np.asarray(fixed).ravel() & (diag > 0))
    fixed = np.asarray(fixed, dtype=bool)
    u_d = np.where(fixed, np.broadcast_to(np.asarray(u_dirichlet, dtype=float), fixed.shape), 0.0).ravel()
    b = -(k @ u_d)[free_index]
    a = k[free_index][:, free_index].tocsr()
    del k
    modes = rigid_body_modes(coefs[0].shape, h / h.min())[free_index]
    ml = pyamg.smoothed_aggregation_solver(
        a, B=modes, symmetry="symmetric", max_coarse=1000, coarse_solver="splu"
    )
    t1 = time.perf_counter()
    w, it, res = pcg(a.dot, b, ml.aspreconditioner(cycle="V"), tol, maxiter)
    t2 = time.perf_counter()
    u = u_d.copy()
    u[free_index] += w
    info = {
        "levels": len(ml.levels),
        "matrix_bytes": int(a.data.nbytes + a.indices.nbytes + a.indptr.nbytes),
        "operator_complexity": float(ml.operator_complexity()),
    }
    return u.reshape(fixed.shape), it, res, t1 - t0, t2 - t1, info
