"""Cure kinetics, viscosity law and clinical times of the PMMA cement presets (physics/rheology.py)."""

import dataclasses

import numpy as np
import pytest

from vertaug.errors import ParameterError
from vertaug.physics import rheology as rh

LOW, HIGH = rh.LOW_VISCOSITY, rh.HIGH_VISCOSITY


def test_isothermal_37c_li2003_reaches_half_cure_near_10_min():
    # Li 2003 0-D check, docs/validation.md [D]: alpha = 0.5 at ~10 min (we accept +/- 10 %)
    res = rh.cure_0d(LOW, 1800.0, "isothermal", temperature_c=37.0)
    t_half_min = res.time_at_alpha_s(0.5) / 60.0
    print(f"isothermal 37 C: alpha=0.5 at {t_half_min:.2f} min")
    assert 9.0 <= t_half_min <= 11.0
    assert rh.set_time_s(LOW, 37.0) / 60.0 == pytest.approx(t_half_min, rel=2e-3)


def test_adiabatic_from_23c_peaks_near_94c_and_equals_energy_bound():
    li = dataclasses.replace(LOW, vitrification_tg_k=None)  # Li 2003 as published: alpha_max = 1
    res = rh.cure_0d(li, 7200.0, "adiabatic", temperature_c=23.0)
    print(f"adiabatic from 23 C: peak {res.peak_temperature_c:.2f} C")
    assert res.peak_temperature_c == pytest.approx(94.0, rel=0.05)
    # the peak is the full-cure energy bound 23 + H/c (1e5/1400 = 71.43 K)
    assert res.peak_temperature_c == pytest.approx(23.0 + 1e5 / 1400.0 - 71.43 * LOW.alpha0, abs=0.01)


def test_vitrification_stops_the_adiabatic_cure_where_t_over_tg_meets_alpha():
    """With vitrification the adiabatic cure stops where alpha = T / Tg and T = T0 + (H/c)(alpha - alpha0): the
    fixed point alpha = (T0 - (H/c) alpha0) / (Tg - H/c); isothermal at 37 C it stops at 310.15 / 378."""
    rise, tg, t0 = LOW.adiabatic_rise_k, LOW.vitrification_tg_k, 296.15
    alpha_end = (t0 - rise * LOW.alpha0) / (tg - rise)
    res = rh.cure_0d(LOW, 7200.0, "adiabatic", temperature_c=23.0)
    assert res.alpha[-1] == pytest.approx(alpha_end, abs=1e-6)
    assert res.peak_temperature_c == pytest.approx(23.0 + rise * (alpha_end - LOW.alpha0), abs=1e-4)
    iso = rh.cure_0d(LOW, 7200.0, "isothermal", temperature_c=37.0)
    assert iso.alpha[-1] == pytest.approx(310.15 / tg, abs=1e-6)
    assert rh.cure_rate_1_s(LOW, 0.85, 310.15) == 0.0  # vitrified at 37 C
    assert rh.cure_rate_1_s(LOW, 0.85, 310.15, hottest_k=350.0) > 0.0  # not after a hotter spell
    with pytest.raises(ParameterError, match="vitrification_tg_k"):
        rh.Cement(name="x", vitrification_tg_k=100.0)


def test_borzacchiello_alpha_max_is_t_over_tg():
    borz = rh.Cement(
        name="borz1",
        kinetics="Borzacchiello 1998 #1",
        k0_1_s=1.2088e4,
        activation_energy_j_mol=33240.0,
        exponent_m=0.98,
        exponent_n=1.14,
        tg_k=378.15,
    )
    res = rh.cure_0d(borz, 7200.0, "isothermal", temperature_c=37.0)
    assert res.alpha[-1] == pytest.approx(310.15 / 378.15, abs=2e-3)
    with pytest.raises(ParameterError, match="alpha_max"):
        rh.time_to_alpha_s(borz, 0.9, 37.0)


def test_viscosity_law_directions_and_cap():
    a = np.array([0.0, 0.2, 0.4, 0.49])
    mu = rh.viscosity_pa_s(LOW, a, 310.15, 1.0)
    assert np.all(np.diff(mu) > 0)  # rises with cure
    assert mu[0] == pytest.approx(
        20.0 * np.exp(25e3 / rh.GAS_CONSTANT_J_MOL_K * (1 / 310.15 - 1 / 296.15)), rel=1e-12
    )
    assert rh.viscosity_pa_s(LOW, 0.5, 310.15) == LOW.viscosity_max_pa_s  # solid at the gel point
    assert rh.viscosity_pa_s(LOW, 0.1, 310.15, 100.0) < rh.viscosity_pa_s(
        LOW, 0.1, 310.15, 1.0
    )  # shear thinning
    assert rh.viscosity_pa_s(LOW, 0.1, 320.0) < rh.viscosity_pa_s(LOW, 0.1, 300.0)  # thinner when warm
    assert rh.viscosity_pa_s(HIGH, 0.1, 310.15) == pytest.approx(15.0 * rh.viscosity_pa_s(LOW, 0.1, 310.15))
    grid = rh.viscosity_pa_s(LOW, np.zeros((3, 4)), np.full((3, 1), 310.15), np.ones(4))
    assert grid.shape == (3, 4)


def test_clinical_times_order():
    for c in (LOW, HIGH):
        for temp in (23.0, 37.0):
            w, s, hard = rh.working_time_s(c, temp), rh.set_time_s(c, temp), rh.hardened_time_s(c, temp)
            print(f"{c.name} {temp} C: working {w / 60:.2f} set {s / 60:.2f} hardened {hard / 60:.2f} min")
            assert 0 < w < s < hard
    assert rh.working_time_s(HIGH, 23.0) < rh.working_time_s(LOW, 23.0)
    assert rh.hardened_time_s(LOW, 37.0) / 60 < 30.0  # the patient-article claim "hardens within 30 minutes"


def test_cure_rate_is_vectorised_and_zero_outside_range():
    r = rh.cure_rate_1_s(LOW, np.array([0.0, 0.3, 1.0]), np.array([310.15, 310.15, 310.15]))
    assert r[0] == 0.0 and r[2] == 0.0 and r[1] > 0


def test_bad_parameters_raise_clear_errors():
    with pytest.raises(ParameterError, match="temperature_c"):
        rh.cure_0d(LOW, 600.0, "isothermal", temperature_c=-5.0)
    with pytest.raises(ParameterError, match="alpha0"):
        rh.Cement(name="x", alpha0=0.0)
    with pytest.raises(ParameterError, match="density"):
        rh.Cement(name="x", density_kg_m3=-1100.0)
    with pytest.raises(ParameterError, match="never cures"):
        rh.set_time_s(rh.Cement(name="slow", k0_1_s=1e-3), 37.0)
    with pytest.raises(ParameterError, match="mode"):
        rh.cure_0d(LOW, 600.0, "boiling")
    with pytest.raises(ParameterError, match="preset"):
        rh.cement_preset("medium")
    assert rh.cement_preset("High") is HIGH


def test_cure_and_probe_figures_are_written(tmp_path):
    from vertaug.physics import thermal
    from vertaug.report import figures_cement as fc

    path = fc.plot_cure_curves(tmp_path / "cure.png", t_end_s=1200.0)
    assert path.stat().st_size > 10_000
    lab = np.ones((6, 6, 6), np.uint8)
    frac = np.zeros(lab.shape)
    frac[2:4, 2:4, 2:4] = 1.0
    res = thermal.simulate_exotherm(
        lab, (1e-3,) * 3, frac, 30.0, 1.0, probes={"core": (2, 2, 2), "edge": (0, 0, 0)}
    )
    out = fc.plot_probe_temperatures(res, tmp_path / "probes.png", "tiny")
    assert out.stat().st_size > 10_000


def test_yield_stress_adds_tau_y_over_shear_rate():
    from dataclasses import replace

    from vertaug.physics.rheology import LOW_VISCOSITY, viscosity_pa_s

    c = replace(LOW_VISCOSITY, yield_stress_pa=100.0)
    g = np.array([0.1, 1.0, 10.0])
    base = viscosity_pa_s(LOW_VISCOSITY, 0.01, 310.15, g)
    np.testing.assert_allclose(viscosity_pa_s(c, 0.01, 310.15, g), base + 100.0 / g, rtol=1e-12)
    # below the regularisation shear rate the yield term is capped at tau_y / gamma_min
    assert viscosity_pa_s(c, 0.01, 310.15, 0.0) == pytest.approx(
        float(viscosity_pa_s(LOW_VISCOSITY, 0.01, 310.15, 0.0)) + 100.0 / c.shear_rate_min_1_s)
