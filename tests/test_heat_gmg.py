"""The heat equation's implicit steps with the geometric multigrid (physics/gmg_pressure.py via thermal solver="gmg"):
the same exotherm as the default Jacobi-PCG to the solver tolerance, energy balance closed, and a clear error
without the grid."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from vertaug.errors import ParameterError
from vertaug.physics import thermal


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
