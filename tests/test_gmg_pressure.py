"""Geometric multigrid pressure solver (physics/gmg_pressure.py): a manufactured solution with its observed order,
agreement with pyamg smoothed aggregation on a heterogeneous block with inactive cells, contrast robustness."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
from orders import assert_expected_order

from vertaug.errors import ParameterError
from vertaug.physics.gmg_pressure import build_hierarchy
from vertaug.physics.solvers import PressureSolver


def _two_point_matrix(k, active, h, dirichlet_x0=True):
    """Cell-centred two-point flux matrix of -div(k grad p) on the ``active`` voxels (harmonic face k), p = 0 on the
    x = 0 face (half-cell transmissibility), no flux elsewhere; returns (A, cells)."""
    shape = k.shape
    cells = np.flatnonzero(active)
    idx = np.full(k.size, -1)
    idx[cells] = np.arange(cells.size)
    idx = idx.reshape(shape)
    rows, cols, vals = [], [], []
    diag = np.zeros(cells.size)
    for a in range(3):
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[a], hi[a] = slice(0, -1), slice(1, None)
        i, j = idx[tuple(lo)].ravel(), idx[tuple(hi)].ravel()
        kl, kh = k[tuple(lo)].ravel(), k[tuple(hi)].ravel()
        keep = (i >= 0) & (j >= 0)
        t = (2 * kl * kh / (kl + kh))[keep] * h  # k A / h with A = h^2
        i, j = i[keep], j[keep]
        rows += [i, j]
        cols += [j, i]
        vals += [-t, -t]
        np.add.at(diag, i, t)
        np.add.at(diag, j, t)
    if dirichlet_x0:
        first = idx[0][idx[0] >= 0]
        np.add.at(diag, first, 2 * k[0][idx[0] >= 0] * h)
    rows.append(np.arange(cells.size))
    cols.append(np.arange(cells.size))
    vals.append(diag)
    A = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(cells.size,) * 2)
    return A, cells


def _manufactured(n):
    """p = sin(pi x / 2) cos(pi y) cos(pi z) on the unit cube, k = 1 + x + y^2 / 2: p = 0 at x = 0, no flux on the
    other faces; returns the L2 error of the GMG-solved finite-volume pressure at the cell centres."""
    h = 1.0 / n
    c = (np.arange(n) + 0.5) * h
    x, y, z = np.meshgrid(c, c, c, indexing="ij")
    k = 1 + x + 0.5 * y**2
    sx, cx = np.sin(np.pi * x / 2), np.cos(np.pi * x / 2)
    cy, sy, cz = np.cos(np.pi * y), np.sin(np.pi * y), np.cos(np.pi * z)
    p = sx * cy * cz
    # f = -div(k grad p) = -(k_x p_x + k_y p_y) - k lap p
    px, py = np.pi / 2 * cx * cy * cz, -np.pi * sx * sy * cz
    lap = -(np.pi**2 / 4 + 2 * np.pi**2) * p
    f = -(px + y * py) - k * lap
    A, cells = _two_point_matrix(k, np.ones(k.shape, bool), h)
    s = PressureSolver("gmg", rtol=1e-10, direct_max_unknowns=0)
    ph = s.solve(A, f.ravel() * h**3, voxels=(k.shape, cells))
    return float(np.sqrt(np.mean((ph - p.ravel()) ** 2)))


def test_manufactured_solution_second_order():
    ns = [8, 16, 32]
    errors = [_manufactured(n) for n in ns]
    assert_expected_order([1.0 / n for n in ns], errors, 2.0, tol=0.15, kind="all")


def _heterogeneous_block(n=24, contrast=1e3, seed=1):
    rng = np.random.default_rng(seed)
    k = 10.0 ** rng.uniform(-1, 1, (n, n, n))
    ijk = np.indices(k.shape).transpose(1, 2, 3, 0)
    ball = np.linalg.norm(ijk - n / 2, axis=-1) < n / 4  # cement: mobility / contrast
    k[ball] /= contrast
    active = np.linalg.norm(ijk - np.array([0, n / 2, n / 2]), axis=-1) < 1.1 * n  # a rounded block: voids outside
    A, cells = _two_point_matrix(k, active, 1.0)
    b = np.zeros(cells.size)
    b[np.argmin(np.linalg.norm(np.array(np.unravel_index(cells, k.shape)).T - n / 2, axis=1))] = 1.0
    return A, b, (k.shape, cells)


@pytest.mark.parametrize("contrast", [1e0, 1e3, 1e6])
def test_gmg_agrees_with_amg_and_direct_on_a_heterogeneous_block(contrast):
    A, b, vox = _heterogeneous_block(contrast=contrast)
    rtol = 1e-10
    g = PressureSolver("gmg", rtol=rtol, direct_max_unknowns=0)
    x_g = g.solve(A, b, voxels=vox)
    x_a = PressureSolver("sa", rtol=rtol, direct_max_unknowns=0).solve(A, b)
    x_d = PressureSolver("direct").solve(A, b)
    assert np.linalg.norm(b - A @ x_g) <= rtol * np.linalg.norm(b)
    scale = np.linalg.norm(x_d)
    cond_bound = 1e3 * contrast * rtol  # ||x - x*|| / ||x*|| <= cond(A) rtol; cond ~ n^2 contrast
    assert np.linalg.norm(x_g - x_d) / scale < cond_bound
    assert np.linalg.norm(x_g - x_a) / scale < cond_bound
    assert g.stats.iterations[-1] <= 40  # the Galerkin hierarchy keeps the contrast: no growth with it


def test_hierarchy_is_galerkin_and_coarsens_the_voxel_grid():
    A, _, (shape, cells) = _heterogeneous_block(n=16)
    h = build_hierarchy(A, shape, cells, max_coarse=10, dtype=np.float64)
    assert h.n_levels >= 3
    assert abs(h.levels[0].matrix() - A).max() < 1e-12 * abs(A).max()  # the box operator is A
    for k in range(h.n_levels - 1):
        P = h.prolongation(k)
        Ak = h.levels[k].matrix()
        assert abs(P.T @ Ak @ P - h.levels[k + 1].matrix()).max() < 1e-12 * abs(A).max()
    u, v = np.random.default_rng(0).standard_normal((2, cells.size))
    assert abs(u @ h.vcycle(v) - v @ h.vcycle(u)) < 1e-10 * abs(u @ h.vcycle(u))


def test_float32_vcycle_is_symmetric_to_its_precision():
    A, _, (shape, cells) = _heterogeneous_block(n=16, contrast=1e3)
    h = build_hierarchy(A, shape, cells, max_coarse=10)
    u, v = np.random.default_rng(1).standard_normal((2, cells.size))
    assert abs(u @ h.vcycle(v) - v @ h.vcycle(u)) < 1e-5 * abs(u @ h.vcycle(u))


def test_gmg_without_geometry_is_a_parameter_error():
    A, b, _ = _heterogeneous_block(n=14)
    with pytest.raises(ParameterError):
        PressureSolver("gmg", direct_max_unknowns=0).solve(A, b)


@pytest.mark.parametrize("shape", [(1, 40, 40), (3, 5, 70), (2, 2, 2)])
def test_gmg_on_slabs_rods_and_a_single_block(shape):
    """Odd and unit box sides (padded to even, coarsened until <= 2 or few cells) give the direct solution."""
    rng = np.random.default_rng(4)
    k = 10.0 ** rng.uniform(-1, 1, shape)
    A, cells = _two_point_matrix(k, np.ones(shape, bool), 1.0)
    b = rng.standard_normal(cells.size)
    x = PressureSolver("gmg", rtol=1e-10, direct_max_unknowns=0).solve(A, b, voxels=(shape, cells))
    assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b)


def test_box_scatter_by_slice_and_by_index_agree():
    """Unknowns filling a run of the box take the slice path into and out of the box; the index path gives the same
    solve, and a start x0 the same answer."""
    rng = np.random.default_rng(5)
    shape = (11, 10, 8)  # the box pads axis 0 to 12: the unknowns are its first 880 cells, a run
    k = 10.0 ** rng.uniform(-1, 1, shape)
    A, cells = _two_point_matrix(k, np.ones(shape, bool), 1.0)
    b = rng.standard_normal(cells.size)
    h = build_hierarchy(A, shape, cells, max_coarse=10)
    assert h.pattern.run is not None
    x_run, its_run = h.solve(A, b, None, 1e-10, 200)
    x_warm, _ = h.solve(A, b, 0.5 * x_run, 1e-10, 200)
    h.pattern.run = None
    x_idx, its_idx = h.solve(A, b, None, 1e-10, 200)
    assert its_run == its_idx
    assert np.array_equal(x_run, x_idx)
    for x in (x_run, x_warm):
        assert np.linalg.norm(b - A @ x) <= 1e-10 * np.linalg.norm(b)
    A_round, _, (shape_round, cells_round) = _heterogeneous_block(n=14)  # a rounded block: gaps in the box
    assert build_hierarchy(A_round, shape_round, cells_round).pattern.run is None


def test_coarsest_lu_without_pivoting_solves_the_spd_coarse_level_to_rounding():
    """The coarsest operator is SPD, so its SuperLU factorisation in symmetric mode (minimum degree on A^T + A, no
    pivoting; gmg_pressure.COARSE_LU_OPTIONS) is stable at a contrast of 1e6: its residual is at float64 rounding
    and its solution that of COLAMD with partial pivoting to 1e-10."""
    A, _, (shape, cells) = _heterogeneous_block(n=24, contrast=1e6)
    h = build_hierarchy(A, shape, cells, max_coarse=2000)
    C = sp.csc_matrix(h.levels[-1].matrix().astype(np.float64))
    assert 1000 < C.shape[0] <= 2000
    b = np.random.default_rng(2).standard_normal(C.shape[0])
    x, ref = h.coarse_solve(b), spla.splu(C).solve(b)
    residual = np.linalg.norm(b - C @ x) / (abs(C).max() * np.linalg.norm(x))
    assert residual < 1e-14
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) < 1e-10


def test_coarsest_layout_is_kept_with_the_pattern_and_factorises_each_new_matrix():
    """The coarsest LU's layout (structure and fill-reducing order) is made once per sparsity pattern: a second matrix
    of the same pattern (other values: seed 2) reuses it and its coarse solve is SuperLU's on that matrix to
    rounding."""
    A1, _, (shape, cells) = _heterogeneous_block(n=16, contrast=1e3, seed=1)
    A2, _, _ = _heterogeneous_block(n=16, contrast=1e3, seed=2)
    h1 = build_hierarchy(A1, shape, cells, max_coarse=300)
    layout = h1.pattern.coarse
    h2 = build_hierarchy(A2, shape, cells, max_coarse=300, pattern=h1.pattern)
    assert h2.pattern is h1.pattern and h2.pattern.coarse is layout
    C = sp.csc_matrix(h2.levels[-1].matrix().astype(np.float64))
    b = np.random.default_rng(3).standard_normal(C.shape[0])
    x, ref = h2.coarse_solve(b), spla.splu(C).solve(b)
    assert np.linalg.norm(x - ref) / np.linalg.norm(ref) < 1e-12


def test_coarsest_layout_leaves_out_neighbour_blocks_without_a_face_and_notices_one():
    """Two neighbouring coarse blocks with no fine face between them (a wall of inactive voxels at x = 3 with a
    hole) have no entry in the coarse matrix (SuperLU's own path drops the zero) nor in the layout; a value there in a
    later matrix makes the layout unfit (a new one is made)."""
    n = 8
    active = np.ones((n, n, n), bool)
    active[3] = False
    active[3, :2, :2] = True  # the hole that keeps the block connected
    A, cells = _two_point_matrix(np.ones(active.shape), active, 1.0)
    h = build_hierarchy(A, active.shape, cells, max_coarse=100)
    layout, last = h.pattern.coarse, h.levels[-1]
    assert len(h.levels) == 2 and layout.zero_where.size > 0
    C = sp.csc_matrix(last.matrix().astype(np.float64))
    b = np.random.default_rng(4).standard_normal(C.shape[0])
    assert np.linalg.norm(h.coarse_solve(b) - spla.splu(C).solve(b)) < 1e-12 * np.linalg.norm(spla.splu(C).solve(b))
    assert layout.fits(last)
    last.neg.reshape(-1)[layout.zero_where[0]] = 1.0
    assert not layout.fits(last)
