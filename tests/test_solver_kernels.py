"""The solvers' memory- and pass-saving kernels (issue 26) against their plain forms: the streamed float64 product of
the voxel FE, restriction and prolongation in scratch space, the compact inverse diagonal, the start from a guess,
and the residual-updating Chebyshev smoother of the pressure multigrid."""

from __future__ import annotations

import numpy as np
import pytest

from vertaug.physics import fe_grid, fe_solvers
from vertaug.physics import gmg_pressure as gp
from vertaug.physics.chebyshev import chebyshev_coefficients, chebyshev_smooth, chebyshev_smooth_updating


def _random_model(shape, seed, void=0.3):
    rng = np.random.default_rng(seed)
    return rng.uniform(1e8, 1e10, shape) * (rng.random(shape) > void)


@pytest.mark.parametrize("chunk", [7, 64, 100_000])
def test_streamed_product_equals_the_whole_product(chunk):
    e = _random_model((7, 6, 5), 0)
    mat = fe_grid.Material(e, 0.3)
    op = fe_grid.VoxelOperator(mat.coefs, mat.krefs(np.array([1e-3, 1e-3, 2e-3])), np, np.float64, chunk=chunk)
    u = op.zeros()
    u[:, : op.n_nodes] = np.random.default_rng(1).standard_normal((3, op.n_nodes))
    whole = op.apply_padded(u)
    streamed = np.zeros_like(whole)
    for n0, n1, f in op.apply_streamed(u):
        streamed[:, n0:n1] = f
    assert np.array_equal(streamed, whole)


@pytest.mark.parametrize("fine", [(9, 8, 7), (4, 3, 5), (17, 16, 9)])
def test_transfers_in_scratch_space_equal_the_allocating_ones(fine):
    rng = np.random.default_rng(2)
    coarse = tuple(n // 2 + 1 for n in fine)  # node counts: n - 1 cells, halved upwards, plus one
    c = rng.standard_normal((3,) + coarse)
    f = rng.standard_normal((3,) + fine)
    scratch = np.full(3 * int(np.prod(fine)), np.nan)
    plain = fe_grid.prolong(c, fine, component_axis=0)
    into = fe_grid.prolong(c, fine, component_axis=0, out=np.empty_like(f), scratch=scratch)
    assert np.array_equal(plain, into)
    scratch[:] = np.nan
    assert np.array_equal(fe_grid.restrict(f.copy(), coarse, component_axis=0, overwrite=True),
                          fe_grid.restrict(f.copy(), coarse, component_axis=0, overwrite=True, scratch=scratch))


@pytest.mark.parametrize("spacing, rows", [((1e-3, 1e-3, 1e-3), 1), ((1e-3, 1e-3, 2e-3), 3)])
def test_inverse_diagonal_one_row_on_cubic_voxels(spacing, rows):
    e = _random_model((5, 4, 6), 3)
    mat = fe_grid.Material(e, 0.3)
    krefs = mat.krefs(np.array(spacing))
    op = fe_grid.VoxelOperator(mat.coefs, krefs, np, np.float64)
    diag = op.diagonal_padded()
    free = diag > 0
    free[2, ::5] = False  # some fixed DOFs
    inv = fe_solvers._inverse_diagonal(diag.copy(), free, krefs, np)
    assert inv.shape[0] == rows
    full = np.broadcast_to(inv, diag.shape)
    assert np.allclose(full[free], 1.0 / diag[free], rtol=1e-12)
    assert np.all(full[diag == 0] == 0)


def test_start_from_a_guess_keeps_the_answer_and_saves_iterations():
    from scipy import ndimage

    from vertaug.physics import mechanics as mech

    rng = np.random.default_rng(4)
    e = 1e9 * 10 ** (0.5 * ndimage.gaussian_filter(rng.standard_normal((24, 24, 24)), 2.0, mode="wrap"))
    pb = mech._fe_problem(e, (0.5e-3,) * 3, 0.3, mech.compression_between_end_caps(), 1e-10, "gmg", None, 500)
    args = (pb.mat.coefs, pb.mat.krefs, pb.spacing, pb.fixed, pb.u_d, 1e-10, 500)
    u0, it0, res0, *_ = fe_solvers.solve_gmg(*args)
    u1, it1, res1, *_ = fe_solvers.solve_gmg(*args, u_guess=mech._uniform_strain(pb))
    assert res0 <= 1e-10 and res1 <= 1e-10
    assert it1 <= it0
    assert np.abs(u1 - u0).max() <= 1e-7 * np.abs(u0).max()


@pytest.mark.parametrize("first, degree", [(True, 2), (False, 2), (True, 3), (False, 4)])
def test_residual_updating_chebyshev_is_the_same_polynomial(first, degree):
    rng = np.random.default_rng(6)
    n = 40
    m = rng.standard_normal((n, n))
    a = m @ m.T + n * np.eye(n)
    dinv = 1.0 / np.diag(a)
    beta = float(np.max(np.abs(np.linalg.eigvals(dinv[:, None] * a))))
    b, x0 = rng.standard_normal(n), rng.standard_normal(n)

    def residual(x, b_, out):
        np.subtract(b_, a @ x, out=out)
        return out

    ref = x0.copy()
    chebyshev_smooth(residual, dinv, beta, b, ref, np.empty(n), np.empty(n), first, degree, 4.0)
    inv_theta, steps = chebyshev_coefficients(beta, degree, 4.0)
    x, r, d = x0.copy(), np.empty(n), np.empty(n)

    def sub_product(v, r_):
        r_ -= a @ v

    def fma(s, v, d_):
        d_ += s * v

    chebyshev_smooth_updating(sub_product, fma, residual, dinv * inv_theta, [dinv * c for _, c in steps],
                              [c for c, _ in steps], b, x, r, d, first, True)
    assert np.allclose(x, ref, rtol=1e-12, atol=1e-12)
    assert np.allclose(r, b - a @ x, rtol=1e-10, atol=1e-10)

    def axpy(c, v, y):
        y += c * v

    # the fused last step (no residual wanted): the last update goes straight into x, same polynomial
    x2 = x0.copy()
    chebyshev_smooth_updating(sub_product, fma, residual, dinv * inv_theta, [dinv * c for _, c in steps],
                              [c for c, _ in steps], b, x2, np.empty(n), np.empty(n), first, False, axpy)
    assert np.allclose(x2, ref, rtol=1e-12, atol=1e-12)


def test_blocked_float32_dot_and_axpy():
    rng = np.random.default_rng(7)
    a = rng.standard_normal(300_001).astype(np.float32)
    b = rng.standard_normal(300_001).astype(np.float32)
    exact = float(np.dot(a.astype(np.float64), b.astype(np.float64)))
    assert gp._dot(a, b) == pytest.approx(exact, rel=1e-5, abs=1e-3)
    y = b.copy()
    gp._axpy(0.25, a, y)
    assert np.allclose(y, b + np.float32(0.25) * a, rtol=1e-6, atol=1e-6)
