"""Voxel grid finite elements: one 8-node hexahedron per voxel, matrix-free.

Linear elasticity, small strain, isotropic:

    div sigma = 0,   sigma = lambda tr(eps) I + 2 mu eps,   eps = (grad u + grad u^T) / 2,
    lambda = E nu / ((1 + nu)(1 - 2 nu)),   mu = E / (2 (1 + nu)).

Every voxel is a trilinear brick of size (hx, hy, hz). Its stiffness is

    K_e = lambda_e K_lambda + mu_e K_mu,
    K_lambda = int B^T m m^T B dV,   K_mu = int B^T diag(2, 2, 2, 1, 1, 1) B dV,   m = (1, 1, 1, 0, 0, 0),

integrated exactly by 2x2x2 Gauss points (the integrand of a brick is at most quadratic per coordinate).
With a scalar Poisson ratio the two reference matrices fold into one, K_e = E_e K_ref(nu), so the whole
model uses one 24x24 matrix scaled by each voxel's modulus.

Layout (fixed for the whole package): element arrays have shape (nx, ny, nz) on axes (right, anterior,
superior); nodal vectors have shape (nx+1, ny+1, nz+1, 3), component last. Element-local node c has
offset (a, b, d) with c = a + 2 b + 4 d; its DOFs are 3 c + k, k the component.

The operator ``K u`` is applied chunk by chunk: gather the 8 corner displacements of every voxel
of the chunk into a (24, n) array, multiply by the reference matrix (one BLAS call), scale by the voxel
coefficient, scatter-add back. It stores no matrix: memory is the coefficient array plus the vectors.
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.sparse as sp

CORNERS = tuple((a, b, d) for d in (0, 1) for b in (0, 1) for a in (0, 1))
_CHUNK_ELEMENTS = 16384  # elements per chunk: fewer numpy calls per product; 24 x 16384 float32 work arrays


def _shape_gradients(xi: np.ndarray, spacing_m) -> np.ndarray:
    """dN_c/dx_j at reference point xi in [-1, 1]^3, shape (8, 3)."""
    s = 2.0 * np.array(CORNERS, dtype=float) - 1.0
    dn = np.empty((8, 3))
    for j in range(3):
        t = np.ones(8)
        for k in range(3):
            if k != j:
                t = t * (1.0 + s[:, k] * xi[k])
        dn[:, j] = s[:, j] * t / 8.0
    return dn * (2.0 / np.asarray(spacing_m, dtype=float))


def strain_matrix(xi, spacing_m) -> np.ndarray:
    """B (6 x 24) mapping element DOFs to (exx, eyy, ezz, gxy, gyz, gzx) at xi (engineering shear)."""
    g = _shape_gradients(np.asarray(xi, dtype=float), spacing_m)
    b = np.zeros((6, 24))
    for c in range(8):
        gx, gy, gz = g[c]
        b[0, 3 * c] = gx
        b[1, 3 * c + 1] = gy
        b[2, 3 * c + 2] = gz
        b[3, 3 * c], b[3, 3 * c + 1] = gy, gx
        b[4, 3 * c + 1], b[4, 3 * c + 2] = gz, gy
        b[5, 3 * c], b[5, 3 * c + 2] = gz, gx
    return b


def hex8_reference_matrices(spacing_m) -> tuple[np.ndarray, np.ndarray]:
    """(K_lambda, K_mu), each 24 x 24, for a brick of the given spacing (m)."""
    g = 1.0 / np.sqrt(3.0)
    det_j = float(np.prod(spacing_m)) / 8.0
    m = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    w_mu = np.diag([2.0, 2.0, 2.0, 1.0, 1.0, 1.0])
    k_lam = np.zeros((24, 24))
    k_mu = np.zeros((24, 24))
    for xi in itertools.product((-g, g), repeat=3):
        b = strain_matrix(xi, spacing_m)
        mb = m @ b
        k_lam += det_j * np.outer(mb, mb)
        k_mu += det_j * b.T @ w_mu @ b
    return k_lam, k_mu


def lame_factors(nu):
    """lambda/E and mu/E for Poisson ratio nu (scalar or array)."""
    nu = np.asarray(nu, dtype=float)
    return nu / ((1.0 + nu) * (1.0 - 2.0 * nu)), 1.0 / (2.0 * (1.0 + nu))


class Material:
    """Voxel coefficients and reference matrices: K_e = sum_i coefs[i][e] * krefs(spacing)[i]."""

    def __init__(self, e_pa: np.ndarray, nu):
        nu_arr = np.asarray(nu, dtype=float)
        self.scalar_nu = nu_arr.ndim == 0
        if self.scalar_nu:
            self.coefs = [np.asarray(e_pa, dtype=float)]
            self.nu = float(nu_arr)
        else:
            lam, mu = lame_factors(nu_arr)
            self.coefs = [e_pa * lam, e_pa * mu]
            self.nu = None

    def krefs(self, spacing_m) -> list[np.ndarray]:
        k_lam, k_mu = hex8_reference_matrices(spacing_m)
        if self.scalar_nu:
            lam, mu = lame_factors(self.nu)
            return [float(lam) * k_lam + float(mu) * k_mu]
        return [k_lam, k_mu]


def coarsen_coefficients(coef: np.ndarray) -> np.ndarray:
    """Mean over 2x2x2 blocks (the model padded with void to even size): rediscretised coarse voxels."""
    nx, ny, nz = coef.shape
    px, py, pz = nx + nx % 2, ny + ny % 2, nz + nz % 2
    padded = np.zeros((px, py, pz), dtype=coef.dtype)
    padded[:nx, :ny, :nz] = coef
    return padded.reshape(px // 2, 2, py // 2, 2, pz // 2, 2).mean(axis=(1, 3, 5))


class VoxelOperator:
    """Matrix-free y = K u on a regular voxel grid (see module docstring for the layout).

    Elements are indexed on the node grid (NX, NY, NZ) = (nx+1, ny+1, nz+1), the last layer of each axis padded
    with zero coefficients, so that corner (a, b, d) of the element at flat node index p is node p + off(a, b, d),
    off = (a NY + b) NZ + d. Vectors in the *padded layout* are component-major arrays (3, n_nodes + pad) whose
    tail (the last ``pad`` entries of each component) stays zero: every gather and scatter is a contiguous block
    copy and :meth:`apply_padded` needs no copy of its input; the product is K_ref (24 x 24) times u_e (24 x n).
    The solvers keep all their vectors in this layout; :meth:`apply` takes and returns the nodal layout.
    """

    def __init__(self, coefs, krefs, xp=np, dtype=np.float64, chunk: int = _CHUNK_ELEMENTS):
        self.xp = xp
        self.dtype = dtype
        self.shape = tuple(int(n) for n in coefs[0].shape)
        nx, ny, nz = self.shape
        self.node_shape = (nx + 1, ny + 1, nz + 1, 3)
        self.n_nodes = (nx + 1) * (ny + 1) * (nz + 1)
        self.offsets = [(a * (ny + 1) + b) * (nz + 1) + d for a, b, d in CORNERS]
        self.pad = max(self.offsets)
        self.kref = [xp.asarray(k, dtype=dtype) for k in krefs]
        self.diag_kref = [xp.asarray(np.diag(k), dtype=dtype) for k in krefs]
        solid = np.zeros(self.n_nodes, bool)
        flat = []
        for c in coefs:
            g = np.zeros(self.node_shape[:3], dtype=dtype)
            g[:nx, :ny, :nz] = c
            g = g.ravel()
            solid |= g != 0
            flat.append(xp.asarray(g))
        self.coefs = flat
        self._buffers = {}
        self.chunk = chunk
        self.chunks = []
        for s0 in range(0, self.n_nodes, chunk):
            idx = np.flatnonzero(solid[s0 : s0 + chunk])
            if idx.size:
                self.chunks.append((s0 + int(idx[0]), s0 + int(idx[-1]) + 1))

    # ----------------------------------------------------------------- layouts
    @property
    def padded_shape(self) -> tuple[int, int]:
        return (3, self.n_nodes + self.pad)

    def zeros(self, dtype=None):
        """A zero vector in the padded layout."""
        return self.xp.zeros(self.padded_shape, dtype=dtype or self.dtype)

    def to_padded(self, u, out=None):
        """Nodal (NX, NY, NZ, 3) array -> padded layout (into ``out`` if given; its tail must be zero)."""
        if out is None:
            out = self.zeros(u.dtype)
        out[:, : self.n_nodes] = u.reshape(-1, 3).T
        return out

    def grid_view(self, v):
        """The (3, NX, NY, NZ) view of a padded-layout vector (no copy)."""
        return v[:, : self.n_nodes].reshape((3,) + self.node_shape[:3])

    def from_padded(self, v):
        """Padded layout -> nodal (NX, NY, NZ, 3) view (transposed; no copy)."""
        return v[:, : self.n_nodes].T.reshape(self.node_shape)

    def _padded(self, u):
        """u as a component-major (3, n_nodes + pad) cached buffer whose tail stays zero."""
        buf = self._buffers.get(u.dtype)
        if buf is None:
            buf = self._buffers[u.dtype] = self.zeros(u.dtype)
        return self.to_padded(u, buf)

    # ----------------------------------------------------------------- products
    def _work(self, dtype):
        """(ue, fe[, term]): (24, chunk) work arrays for one product, shared by its chunks and freed with it."""
        n = min(self.chunk, max((s1 - s0 for s0, s1 in self.chunks), default=1))
        return tuple(self.xp.empty((24, n), dtype=dtype) for _ in range(2 + (len(self.kref) > 1)))

    def _element_forces(self, upad, s0, s1, work):
        """(ue, fe): the (24, n) element DOF values and forces K_e u_e of elements [s0, s1), views of ``work``
        (from :meth:`_work`; overwritten by the next call)."""
        n = s1 - s0
        ue, fe = work[0][:, :n], work[1][:, :n]
        for c, off in enumerate(self.offsets):
            ue[3 * c : 3 * c + 3] = upad[:, s0 + off : s1 + off]
        for i, (k, coef) in enumerate(zip(self.kref, self.coefs)):
            term = fe if i == 0 else work[2][:, :n]
            self.xp.matmul(k, ue, out=term)
            term *= coef[None, s0:s1]
            if i:
                fe += term
        return ue, fe

    def _scatter(self, fpad, fe, s0, s1):
        for c, off in enumerate(self.offsets):
            fpad[:, s0 + off : s1 + off] += fe[3 * c : 3 * c + 3]

    def element_fields(self, u):
        """Yield (s0, s1, ue, fe) per chunk: element DOF values and forces K_e u_e, each (n, 24).

        Element p of a chunk is voxel np.unravel_index(p, node_shape[:3]) (padded layers included).
        """
        upad = self._padded(u)
        work = self._work(upad.dtype)
        for s0, s1 in self.chunks:
            ue, fe = self._element_forces(upad, s0, s1, work)
            yield s0, s1, ue.T, fe.T

    def apply_padded(self, upad, out=None):
        """K u for u in the padded layout, written into ``out`` (padded layout, overwritten) and returned."""
        if out is None:
            out = self.zeros(upad.dtype)
        else:
            out.fill(0)
        work = self._work(upad.dtype)
        for s0, s1 in self.chunks:
            _, fe = self._element_forces(upad, s0, s1, work)
            self._scatter(out, fe, s0, s1)
        return out

    def apply_streamed(self, upad):
        """Yield (n0, n1, f): f = (K u)[:, n0:n1] for consecutive node blocks covering [0, n_nodes), u in the padded
        layout (numpy only). Element p touches nodes p .. p + pad, so once the chunks below n1 are summed the block
        [n0, n1) is final: the product never exists whole, only a (3, chunk + pad) window (f is a view of it, valid
        until the next block)."""
        ch, pad = self.chunk, self.pad
        acc = np.zeros((3, ch + pad), dtype=upad.dtype)
        work = self._work(upad.dtype)
        spans = {s0 // ch: (s0, s1) for s0, s1 in self.chunks}
        for n0 in range(0, self.n_nodes, ch):
            n1 = min(n0 + ch, self.n_nodes)
            if n0 // ch in spans:
                s0, s1 = spans[n0 // ch]
                _, fe = self._element_forces(upad, s0, s1, work)
                for c, off in enumerate(self.offsets):
                    acc[:, s0 - n0 + off : s1 - n0 + off] += fe[3 * c : 3 * c + 3]
            yield n0, n1, acc[:, : n1 - n0]
            acc[:, :pad] = acc[:, ch : ch + pad].copy()
            acc[:, pad:] = 0

    def apply(self, u):
        """K u as an (NX, NY, NZ, 3) array (a transposed view of a component-major work buffer)."""
        return self.from_padded(self.apply_padded(self._padded(u)))

    def diagonal_padded(self):
        """diag(K) in the padded layout."""
        fpad = self.zeros()
        for s0, s1 in self.chunks:
            fe = None
            for d, coef in zip(self.diag_kref, self.coefs):
                term = d[:, None] * coef[None, s0:s1]
                fe = term if fe is None else fe + term
            self._scatter(fpad, fe, s0, s1)
        return fpad

    def diagonal(self):
        return self.xp.ascontiguousarray(self.from_padded(self.diagonal_padded()))


def _axis_slices(axis: int, ndim: int, **sl):
    out = {}
    for name, s in sl.items():
        idx = [slice(None)] * ndim
        idx[axis] = s
        out[name] = tuple(idx)
    return out


def _intermediate(scratch, step: int, prev, shape, xp, dtype):
    """Work array of ``shape`` for one axis pass: carved from the flat ``scratch`` (even passes at its start, odd ones
    after the previous pass's array, so a pass's input and output never overlap), or allocated when it does not fit."""
    size = int(np.prod(shape))
    start = 0 if step % 2 == 0 else (prev.size if prev is not None else 0)
    if scratch is None or start + size > scratch.size or scratch.dtype != dtype:
        return xp.empty(shape, dtype=dtype)
    return scratch[start : start + size].reshape(shape)


def prolong(c, fine_node_shape, xp=np, out=None, component_axis: int = 3, scratch=None):
    """Trilinear interpolation of a coarse nodal vector to the fine nodes.

    ``c`` is (NXc, NYc, NZc, 3) (``component_axis=3``, the nodal layout) or (3, NXc, NYc, NZc)
    (``component_axis=0``, the grid view of the padded layout); ``out`` receives the result if given. ``scratch``: an
    optional flat work array (any contents, not overlapping ``c`` or ``out``) for the two intermediate passes.
    """
    cur = c
    spatial = (0, 1, 2) if component_axis == 3 else (1, 2, 3)
    prev = None
    for step, axis in enumerate(spatial):
        nf = fine_node_shape[step]
        shape = list(cur.shape)
        shape[axis] = nf
        if step == 2 and out is not None:
            new = out
        else:
            new = _intermediate(scratch, step, prev, shape, xp, c.dtype)
            prev = new
        ne, no = (nf + 1) // 2, nf // 2
        s = _axis_slices(
            axis,
            4,
            ev=slice(0, None, 2),
            od=slice(1, None, 2),
            src=slice(0, ne),
            lo=slice(0, no),
            hi=slice(1, no + 1),
        )
        new[s["ev"]] = cur[s["src"]]
        odd = new[s["od"]]
        xp.add(cur[s["lo"]], cur[s["hi"]], out=odd)
        odd *= 0.5
        cur = new
    return cur


def restrict(r, coarse_node_shape, xp=np, component_axis: int = 3, overwrite: bool = False, scratch=None):
    """Transpose of :func:`prolong` (same layouts). ``overwrite=True`` lets it scale ``r`` in place (no temporary);
    ``scratch`` as in :func:`prolong` (the result is then a view of it)."""
    cur = r
    spatial = (0, 1, 2) if component_axis == 3 else (1, 2, 3)
    prev = None
    for step, axis in enumerate(spatial):
        nf = cur.shape[axis]
        shape = list(cur.shape)
        shape[axis] = coarse_node_shape[step]
        new = _intermediate(scratch, step, prev, shape, xp, r.dtype)
        new.fill(0)
        prev = new
        ne, no = (nf + 1) // 2, nf // 2
        s = _axis_slices(
            axis,
            4,
            ev=slice(0, None, 2),
            od=slice(1, None, 2),
            t0=slice(0, ne),
            t1=slice(0, no),
            t2=slice(1, no + 1),
        )
        new[s["t0"]] += cur[s["ev"]]
        if overwrite or step > 0:
            half = cur[s["od"]]
            half *= 0.5
        else:
            half = 0.5 * cur[s["od"]]
        new[s["t1"]] += half
        new[s["t2"]] += half
        cur = new
    return cur


def element_dof_indices(shape, i0: int, i1: int) -> np.ndarray:
    """Global DOF numbers (24, n) of the elements of slab [i0, i1) (nodal vector layout, flattened)."""
    _nx, ny, nz = shape
    ii, jj, kk = np.meshgrid(np.arange(i0, i1), np.arange(ny), np.arange(nz), indexing="ij")
    out = np.empty((24, ii.size), dtype=np.int64)
    for c, (a, b, d) in enumerate(CORNERS):
        node = ((ii + a) * (ny + 1) + (jj + b)) * (nz + 1) + (kk + d)
        for k in range(3):
            out[3 * c + k] = 3 * node.ravel() + k
    return out


def assemble_csr(coefs, krefs) -> sp.csr_matrix:
    """Assembled global stiffness (CSR), slab by slab, void voxels skipped."""
    shape = coefs[0].shape
    nx, ny, nz = shape
    ndof = 3 * (nx + 1) * (ny + 1) * (nz + 1)
    step = max(1, 200_000 // max(1, ny * nz))
    total = sp.csr_matrix((ndof, ndof))
    for i0 in range(0, nx, step):
        i1 = min(i0 + step, nx)
        sub = [np.asarray(c[i0:i1]).ravel() for c in coefs]
        keep = np.flatnonzero(sum(np.abs(c) for c in sub) != 0)
        if keep.size == 0:
            continue
        edofs = element_dof_indices(shape, i0, i1)[:, keep]
        vals = sum(k.reshape(24, 24, 1) * c[keep].reshape(1, 1, -1) for k, c in zip(krefs, sub))
        rows = np.broadcast_to(edofs[:, None, :], (24, 24, keep.size)).ravel()
        cols = np.broadcast_to(edofs[None, :, :], (24, 24, keep.size)).ravel()
        total = total + sp.csr_matrix((vals.ravel(), (rows, cols)), shape=(ndof, ndof))
    total.sum_duplicates()
    return total


def node_coordinates(shape, spacing_m) -> np.ndarray:
    """Node coordinates (3, nx+1, ny+1, nz+1) in metres, origin at node (0, 0, 0)."""
    axes = [np.arange(n + 1) * h for n, h in zip(shape, spacing_m)]
    return np.stack(np.meshgrid(*axes, indexing="ij"))


def rigid_body_modes(shape, spacing_m) -> np.ndarray:
    """The six rigid-body modes (ndof, 6) in the nodal vector layout: 3 translations, 3 rotations."""
    x, y, z = (c.ravel() for c in node_coordinates(shape, spacing_m))
    modes = np.zeros((x.size, 3, 6))
    for k in range(3):
        modes[:, k, k] = 1.0
    modes[:, 0, 3], modes[:, 1, 3] = -y, x
    modes[:, 1, 4], modes[:, 2, 4] = -z, y
    modes[:, 0, 5], modes[:, 2, 5] = z, -x
    return modes.reshape(-1, 6)
