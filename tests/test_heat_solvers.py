"""The heat equation's implicit-step solvers: the mixed-precision Jacobi-PCG (physics/heat_pcg.py, the default "cg")
meets the float64 tolerance and agrees with a direct solve; the geometric multigrid (physics/gmg_pressure.py via
thermal solver="gmg") gives the same exotherm as the default to the solver tolerance, energy balance closed, and a
clear error without the grid."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from vertaug.errors import ParameterError
from vertaug.physics import thermal
from vertaug.physics.heat_pcg import jacobi_scaled, mixed_jacobi_pcg


def _bolus(n=16, h=1e-3, radius_m=4e-3):
    lab = np.ones((n, n, n), np.uint8)
    x = (np.arange(n) - n / 2 + 0.5) * h
    r = np.sqrt(x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2)
    return lab, (r < radius_m).astype(float)


def test_gmg_exotherm_matches_jacobi_pcg():
    lab, frac = _bolus()
    kw = {"probes": {"core": (8, 8, 8)}, "dt_max_s": 10.0, "solver_rtol": 1e-10}
    ref = thermal.simulate_exotherm(lab, (1e-3,) * 3, frac, 600.0, 2.5, solver="cg", **kw)
    gmg = thermal.simulate_exotherm(lab, (1e-3,) * 3, frac, 600.0, 2.5, solver="gmg", **kw)
    assert gmg.solver == "gmg"
    assert gmg.energy_balance_error_rel < 1e-6
    assert ref.t_s.size == gmg.t_s.size
    assert np.abs(gmg.max_temperature_c - ref.max_temperature_c).max() < 1e-6  # C, with peaks ~ 20 C above 37
    assert gmg.probe_temperature_c["core"].max() > 45.0


def test_gmg_heat_solver_needs_the_grid():
    a = sp.diags(np.full(8, 2.0)).tocsr()
    with pytest.raises(ParameterError):
        thermal._Solver(a, "gmg")


def test_mixed_precision_pcg_meets_the_float64_tolerance():
    """C/dt + L/2 of a heterogeneous 12^3 block (conductivity over two decades): the float32 inner solves still give
    ||b - A x|| <= 1e-12 ||b|| in float64, and x agrees with SuperLU to the conditioning."""
    n = 12
    rng = np.random.default_rng(3)
    k = 10.0 ** rng.uniform(-1, 1, (n, n, n))
    lmat, _ = thermal.assemble_conduction(k, (1e-3,) * 3)
    a = (sp.diags(np.full(n**3, 4e3 * 1e-9 / 2.5)) + 0.5 * lmat).tocsr()
    x_true = 37.0 + rng.standard_normal(n**3)
    b = a @ x_true
    x, its = mixed_jacobi_pcg(a, jacobi_scaled(a), b,
                              np.full(n**3, 37.0), 1e-12, 500)
    assert np.linalg.norm(b - a @ x) <= 1e-12 * np.linalg.norm(b)
    assert np.abs(x - spla.spsolve(a.tocsc(), b)).max() < 1e-8
    assert its > 1


def test_jacobi_scaled_matrix_has_unit_diagonal_and_stays_seven_diagonals():
    """S A S with S = diag(A)^-1/2 of a 6^3 C/dt + L/2: unit diagonal, symmetric, the same 7 offsets in DIA form,
    float32; its off-diagonal entries are -g_ij / sqrt(a_ii a_jj)."""
    n = 6
    k = 10.0 ** np.random.default_rng(5).uniform(-1, 1, (n, n, n))
    lmat, _ = thermal.assemble_conduction(k, (1e-3,) * 3)
    a = (sp.diags(np.full(n**3, 4e3 * 1e-9 / 2.5)) + 0.5 * lmat).tocsr()
    sas, s = jacobi_scaled(a.todia())
    assert sas.format == "dia" and sorted(sas.offsets.tolist()) == [-36, -6, -1, 0, 1, 6, 36]
    assert sas.dtype == np.float32 and s.dtype == np.float32
    np.testing.assert_allclose(sas.diagonal(), 1.0, rtol=1e-6)
    dense = sas.toarray()
    np.testing.assert_allclose(dense, dense.T, rtol=1e-6)
    assert dense[0, 1] == pytest.approx(a[0, 1] / np.sqrt(a[0, 0] * a[1, 1]), rel=1e-6)


@pytest.mark.parametrize("shape", [(7, 5, 6), (5, 1, 4), (1, 1, 6)])
def test_step_matrix_built_on_the_diagonals_is_scipys_bit_for_bit(shape):
    """The exotherm's DIA path (thermal._as_dia from CSR's index arrays, thermal._add_to_diagonal for C/dt + theta
    (L + P), heat_pcg.jacobi_scaled on the diagonals) gives the same offsets and bits as scipy's todia, CSR sum and
    S @ A @ S, mixed films, degenerate axes included."""
    rng = np.random.default_rng(11)
    lmat, _ = thermal.assemble_conduction(rng.uniform(0.2, 0.6, shape), (1e-3, 2e-3, 1.5e-3),
                                          film_w_m2k=(np.inf, 10.0, 0.0, 0.0, 5.0, np.inf))
    n = lmat.shape[0]
    full = (lmat + sp.diags(rng.uniform(0.0, 1e-4, n))).tocsr()
    cap_dt = rng.uniform(1e-3, 2e-3, n)
    ours = thermal._as_dia(full)
    ref = full.todia()
    np.testing.assert_array_equal(ours.offsets, ref.offsets)
    np.testing.assert_array_equal(ours.data, ref.data)
    a = thermal._add_to_diagonal(ours, 0.5, cap_dt)
    a_ref = (sp.diags(cap_dt) + 0.5 * full).tocsr().todia()
    np.testing.assert_array_equal(a.offsets, a_ref.offsets)
    np.testing.assert_array_equal(a.data, a_ref.data)
    sas, s = jacobi_scaled(a)
    sc = sp.diags(1.0 / np.sqrt(a_ref.diagonal()))
    sas_ref = (sc @ a_ref @ sc).astype(np.float32)
    assert sas.format == "dia" and s.dtype == np.float32
    np.testing.assert_array_equal(sas.toarray(), sas_ref.toarray())
