"""Cannula pressure loss: Hagen-Poiseuille and power-law tube flow (docs/flow.md)."""

import math

import numpy as np
import pytest

from vertaug.errors import ParameterError
from vertaug.physics import cannula


def test_gauge_table_regular_wall_inner_diameters():
    # Needle gauge comparison chart (regular wall): 11 G ID 2.388 mm, 13 G ID 1.803 mm
    assert cannula.CANNULA_GAUGES[11][1] == pytest.approx(2.388e-3, abs=1e-6)
    assert cannula.CANNULA_GAUGES[13][1] == pytest.approx(1.803e-3, abs=1e-6)
    assert cannula.inner_radius_m(11) == pytest.approx(1.194e-3, abs=1e-6)
    with pytest.raises(ParameterError, match="cannula_gauge"):
        cannula.inner_radius_m(8)


def test_reference_sanity_case_newtonian():
    # reference [D]: mu = 100 Pa s, Q = 0.1 mL/s, L = 120 mm, ID 2.4 mm -> 1.47 MPa
    dp = cannula.pressure_drop_pa(1e-7, 0.12, 1.2e-3, viscosity_pa_s=100.0)
    assert dp == pytest.approx(8 * 100 * 0.12 * 1e-7 / (math.pi * 1.2e-3**4), rel=1e-12)
    assert dp == pytest.approx(1.47e6, rel=0.005)


def test_power_law_reduces_to_poiseuille_at_n_1():
    q = np.array([1e-8, 5e-8, 1e-7])
    a = cannula.pressure_drop_pa(q, 0.1, 1.0e-3, viscosity_pa_s=50.0)
    b = cannula.pressure_drop_pa(q, 0.1, 1.0e-3, consistency_pa_sn=50.0, n=1.0)
    np.testing.assert_allclose(a, b, rtol=1e-12)


@pytest.mark.parametrize("n", [1.0, 0.7, 0.5, 0.3])
def test_doubling_inner_diameter_scales_as_r_to_minus_3n_plus_1(n):
    dp1 = cannula.pressure_drop_pa(5e-8, 0.12, 1.0e-3, consistency_pa_sn=200.0, n=n)
    dp2 = cannula.pressure_drop_pa(5e-8, 0.12, 2.0e-3, consistency_pa_sn=200.0, n=n)
    assert dp2 / dp1 == pytest.approx(2.0 ** -(3 * n + 1), rel=1e-12)


def test_flow_rate_scaling_power_law():
    dp1 = cannula.pressure_drop_pa(1e-8, 0.12, 1.0e-3, consistency_pa_sn=200.0, n=0.4)
    dp2 = cannula.pressure_drop_pa(2e-8, 0.12, 1.0e-3, consistency_pa_sn=200.0, n=0.4)
    assert dp2 / dp1 == pytest.approx(2.0**0.4, rel=1e-12)


def test_bad_input():
    with pytest.raises(ParameterError, match="viscosity_pa_s"):
        cannula.pressure_drop_pa(1e-8, 0.12, 1e-3)
    with pytest.raises(ParameterError, match="both"):
        cannula.pressure_drop_pa(1e-8, 0.12, 1e-3, viscosity_pa_s=1.0, consistency_pa_sn=1.0, n=0.5)
    with pytest.raises(ParameterError, match="flow_m3_s"):
        cannula.pressure_drop_pa(-1e-8, 0.12, 1e-3, viscosity_pa_s=1.0)
    with pytest.raises(ParameterError, match="length_m"):
        cannula.pressure_drop_pa(1e-8, 0.0, 1e-3, viscosity_pa_s=1.0)


# ---- yield-stress cement in the cannula (issue 19) ----


def test_herschel_bulkley_tube_flow_converges_to_buckingham_reiner_second_order():
    from orders import assert_expected_order

    r, L, mu_p, tau_y, dp = 1.194e-3, 0.12, 100.0, 500.0, 2e6  # tau_w = 9950 Pa > tau_y
    exact = cannula.buckingham_reiner_flow_m3_s(dp, L, r, mu_p, tau_y)
    ns = np.array([10, 20, 40, 80])
    err = [abs(cannula.herschel_bulkley_flow_m3_s(dp, L, r, mu_p, 1.0, tau_y, int(n)) - exact) / exact for n in ns]
    assert_expected_order(1.0 / ns, err, 2.0, kind="all", tol=0.05)
    assert err[-1] < 1e-4


def test_herschel_bulkley_drop_reduces_to_power_law_and_needs_the_yield_pressure():
    r, L = 1.194e-3, 0.12
    pl = cannula.pressure_drop_pa(5e-8, L, r, consistency_pa_sn=80.0, n=0.6)
    assert cannula.herschel_bulkley_pressure_drop_pa(5e-8, L, r, 80.0, 0.6, 0.0) == pytest.approx(pl, rel=1e-5)
    with_yield = cannula.herschel_bulkley_pressure_drop_pa(5e-8, L, r, 80.0, 0.6, 300.0)
    assert with_yield > pl + 2 * L * 300.0 / r * 0.5  # the plug adds at least part of the yield pressure
    assert cannula.herschel_bulkley_pressure_drop_pa(0.0, L, r, 80.0, 0.6, 300.0) == pytest.approx(2 * L * 300.0 / r)
    assert cannula.buckingham_reiner_flow_m3_s(2 * L * 300.0 / r * 0.99, L, r, 80.0, 300.0) == 0.0
    with pytest.raises(ParameterError, match="yield_stress_pa"):
        cannula.herschel_bulkley_pressure_drop_pa(5e-8, L, r, 80.0, 0.6, -1.0)
