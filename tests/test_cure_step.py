"""The isothermal cure step (rheology.advance_cure_isothermal) against the exact isothermal solution and the RK4
sub-steps it replaced in physics/thermal.py.

Exact: at fixed T with ceiling c, the time from alpha_a to alpha_b is (I(alpha_b / c) - I(alpha_a / c)) c^(1-m-n) / k
with I(u) = int du / (u^m (1 - u)^n) (scipy quad). The step's only error is its table of I (cubic Hermite in
s = logit(u), error O(ds^4)): observed order 4 in the table spacing.
"""

import dataclasses

import numpy as np
import pytest
from orders import assert_expected_order, fitted_order
from scipy.integrate import quad
from scipy.special import expit, logit

from vertaug.physics import rheology

PALACOS = dataclasses.replace(rheology.cement_preset("high"), vitrification_tg_k=None)
LI = dataclasses.replace(rheology.LOW_VISCOSITY, vitrification_tg_k=None)


def _k(cement, temp_k):
    return cement.k0_1_s * np.exp(-cement.activation_energy_j_mol / (rheology.GAS_CONSTANT_J_MOL_K * temp_k))


def _exact_time_s(cement, a_from, a_to, temp_k, ceiling=1.0):
    m, n = cement.exponent_m, cement.exponent_n
    integral, _ = quad(lambda u: u**-m * (1.0 - u) ** -n, a_from / ceiling, a_to / ceiling, epsabs=0, epsrel=1e-13,
                       limit=200)
    return integral * ceiling ** (1.0 - m - n) / _k(cement, temp_k)


def _rk4(cement, alpha, temp_k, dt_s, nsub, ceiling=1.0):
    """The RK4 sub-steps thermal.py used before (its rule: nsub = ceil(dt k / 0.1))."""
    h = dt_s / nsub

    def rate(a):
        return _k(cement, temp_k) * a**cement.exponent_m * np.clip(ceiling - a, 0.0, None) ** cement.exponent_n

    a = np.asarray(alpha, dtype=float)
    for _ in range(nsub):
        k1 = rate(a)
        k2 = rate(a + 0.5 * h * k1)
        k3 = rate(a + 0.5 * h * k2)
        k4 = rate(a + h * k3)
        a = np.minimum(a + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4), ceiling)
    return a


@pytest.mark.parametrize("cement", [PALACOS, LI], ids=["Palacos R", "Li 2003"])
@pytest.mark.parametrize("temp_c", [23.0, 100.0, 170.0])
@pytest.mark.parametrize("ceiling", [1.0, 0.7])
def test_one_step_reaches_the_exact_isothermal_cure(cement, temp_c, ceiling):
    """From alpha0 to 0.05, 0.5 and 0.95 of the ceiling in one step each: the cure degree the exact time gives, to
    1e-9."""
    targets = ceiling * np.array([0.05, 0.5, 0.95])
    for a in targets:
        t = _exact_time_s(cement, cement.alpha0, a, temp_c + 273.15, ceiling)
        got = rheology.advance_cure_isothermal(cement, np.array([cement.alpha0]), temp_c + 273.15, t,
                                               ceiling=ceiling)[0]
        assert got == pytest.approx(a, abs=1e-9)


def test_table_error_falls_with_fourth_order():
    """Palacos R at 37 C, 0.2 -> 0.9 in one step: error of the table inverse at 1 / 2 / 4 / 8 nodes per unit of
    s; the default (80) sits below 1e-10."""
    cement, temp_k = PALACOS, 310.15
    t = _exact_time_s(cement, 0.2, 0.9, temp_k)
    s_lo = float(np.floor(logit(cement.alpha0))) - 1.0
    spacing, errors = [], []
    for nodes in (1, 2, 4, 8):
        fwd, inv = rheology._cure_integral_table(cement.exponent_m, cement.exponent_n, s_lo, nodes)
        got = expit(inv(fwd(logit(0.2)) + _k(cement, temp_k) * t))
        spacing.append(1.0 / nodes)
        errors.append(abs(got - 0.9))
    print(f"table spacing {spacing} errors {errors} observed order {fitted_order(spacing, errors):.2f}")
    assert_expected_order(spacing, errors, expected=4.0, tol=0.5, kind="fit")
    default = rheology.advance_cure_isothermal(cement, np.array([0.2]), temp_k, t)[0]
    assert abs(default - 0.9) < 1e-10


def test_agrees_with_the_rk4_sub_steps_it_replaced():
    """A cure history in 2.5 s steps at 37 C, then 100 C, then 170 C (Palacos R): the step and RK4 with the old rule
    (sub-step 0.1 / k) differ by less than 1e-6 in alpha; RK4 converges to the step with order 4."""
    cement = PALACOS
    a_step = a_rk4 = np.array([cement.alpha0])
    for temp_c, n_steps in ((37.0, 150), (100.0, 4), (170.0, 2)):
        temp_k = temp_c + 273.15
        nsub = max(1, int(np.ceil(2.5 * _k(cement, temp_k) / 0.1)))
        for _ in range(n_steps):
            a_step = rheology.advance_cure_isothermal(cement, a_step, temp_k, 2.5)
            a_rk4 = _rk4(cement, a_rk4, temp_k, 2.5, nsub)
        print(f"{temp_c} C ({nsub} RK4 sub-steps per 2.5 s): step {a_step[0]:.10f} RK4 {a_rk4[0]:.10f}")
        assert abs(a_step[0] - a_rk4[0]) < 1e-6
    a0, temp_k, dt = 0.3, 310.15 + 40.0, 60.0
    exact = rheology.advance_cure_isothermal(cement, np.array([a0]), temp_k, dt)[0]
    hs = [dt / n for n in (8, 16, 32)]
    errs = [abs(_rk4(cement, np.array([a0]), temp_k, dt, n)[0] - exact) for n in (8, 16, 32)]
    print(f"RK4 h {hs} errors {errs} observed order {fitted_order(hs, errs):.2f}")
    assert_expected_order(hs, errs, expected=4.0, tol=0.5, kind="fit")


def test_vitrification_and_no_reversal():
    """With the vitrification limit the step stops at alpha_v = T_hot / Tg; a voxel past it, or at its ceiling, keeps
    its cure."""
    cement = rheology.cement_preset("high")
    got = rheology.advance_cure_isothermal(cement, np.array([0.5, 0.9, 0.6]), 310.15, 3600.0,
                                           ceiling=np.array([1.0, 1.0, 0.5]))
    assert got[0] == pytest.approx(310.15 / cement.vitrification_tg_k, abs=1e-12)
    assert got[1] == 0.9 and got[2] == 0.6
