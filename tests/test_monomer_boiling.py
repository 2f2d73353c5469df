"""Boiling of the unreacted monomer (physics/monomer.py) in the exotherm (physics/thermal.py) and the 0-D cure
(physics/rheology.py): the boiling law a_1(phi_1) p_sat(T) = p_ambient, the enthalpy step, the 0-D adiabatic cure
against an independent solve of the same energy balance, the 3-D enthalpy method against the 0-D cure with its
0-D cure, and the energy balance with the latent sink.

Independent 0-D solve (:func:`_reference_0d`): state (alpha, e, T), heating c T' = H alpha' until T reaches
T_boil(alpha, e); then T stays on T_boil, so c (T_alpha alpha' + T_e e') = H alpha' - w L e' gives
e' = (H - c T_alpha) alpha' / (c T_e + w L), with T_boil found by root-finding a_1 p_sat(T) = 1 atm and its slopes by
central differences; boiling ends where H = c T_alpha, then heating with e fixed. cure_0d instead solves alpha only,
with e from the energy line T0 + (H (alpha - alpha_0) - w L e) / c = T_boil(alpha, e) (rheology._adiabatic_0d).
"""

import dataclasses

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.optimize import brentq

from vertaug.model.labels import CORTEX, DEFECT, TRABECULAR
from vertaug.physics import monomer, rheology, thermal

PALACOS = rheology.cement_preset("high")
TB_C = monomer.MMA_BOILING_POINT_K - 273.15


def test_mma_properties_are_the_cited_ones():
    """T_b 373.4 K (NIST); dH_v at T_b from Steele 2002's 8.68 / 7.96 kcal/mol at 340 / 380 K; per kg over 100.12 g;
    the monomer+polymer phase of Palacos R is all but its ZrO2 (6.0 g of 59.6 g)."""
    assert monomer.MMA_BOILING_POINT_K == 373.4
    assert monomer.MMA_VAPORISATION_J_MOL == pytest.approx(33.80e3, rel=1e-3)
    assert monomer.MMA_VAPORISATION_J_KG == pytest.approx(3.376e5, rel=1e-3)
    assert monomer.AMBIENT_PRESSURE_PA == 101325.0 and monomer.MMA_PMMA_CHI == 0.0
    assert PALACOS.monomer_mass_fraction == pytest.approx(0.309, abs=1e-3)  # its pack's w_MMA (docs/cement.md 1b)
    assert PALACOS.solution_mass_fraction == pytest.approx(1.0 - 40.8 * 0.147 / 59.6, rel=1e-12)


@pytest.mark.parametrize("chi", [0.0, 0.5])
def test_boiling_temperature_is_where_the_partial_pressure_reaches_one_atmosphere(chi):
    """a_1(phi_1) p_sat(T_boil) = 101325 Pa to 1e-10; pure monomer boils at T_b; T_boil rises as the monomer runs out;
    a positive chi lowers it; dT_boil/dm_1 matches a central difference."""
    law = monomer.BoilingLaw(chi=chi)
    m1 = np.array([1.0, 0.5, 0.2, 0.05, 0.01])
    t_k, slope = law.point_k(m1, 1.0)
    phi = monomer.monomer_volume_fraction(m1, 1.0)
    p = np.exp(monomer.log_activity(phi, chi)) * monomer.vapour_pressure_pa(t_k)
    np.testing.assert_allclose(p, 101325.0, rtol=1e-10)
    assert np.all(np.diff(t_k) > 0)
    h = 1e-7
    fd = (law.point_k(m1 + h, 1.0)[0] - law.point_k(m1 - h, 1.0)[0]) / (2 * h)
    np.testing.assert_allclose(slope, fd, rtol=1e-5)
    assert float(law.point_k(1.0, 0.0)[0]) == pytest.approx(monomer.MMA_BOILING_POINT_K, abs=1e-12)
    if chi > 0:
        assert np.all(t_k < monomer.BoilingLaw(chi=0.0).point_k(m1, 1.0)[0])
    # Clausius-Clapeyron: 0.34 K per kPa above 1 atm at T_b (module docstring)
    up = float(monomer.BoilingLaw(pressure_pa=102325.0).point_k(1.0, 0.0)[0]) - monomer.MMA_BOILING_POINT_K
    assert up == pytest.approx(0.34, abs=0.01)


def test_boil_off_takes_the_excess_energy_as_latent_heat():
    """Pure monomer (no polymer): below T_b or without monomer unchanged; with enough monomer at T_b; with too little
    all of it boils and the rest heats the voxel. Dissolved: the voxel ends at the T_boil of what is left (1e-9 K).
    Energy C (T_in - T_out) = evaporated L exactly."""
    temp = np.array([90.0, 110.0, 110.0, 110.0])
    cap = np.array([2.0, 2.0, 2.0, 2.0])  # J/K
    left = np.array([1.0, 1.0, 1e-5, 0.0])  # kg
    latent = 1e6  # J/kg: 20 J of excess evaporates 2e-5 kg at T_b = 100.25 C
    out, ev = monomer.boil_off(temp, cap, left, 0.0, latent)
    assert out[0] == 90.0 and ev[0] == 0.0
    assert out[1] == pytest.approx(TB_C, abs=1e-9) and ev[1] == pytest.approx((110.0 - TB_C) * 2e-6, rel=1e-9)
    assert ev[2] == pytest.approx(1e-5, rel=1e-12) and out[2] == pytest.approx(105.0, abs=1e-9)
    assert out[3] == 110.0 and ev[3] == 0.0
    np.testing.assert_allclose(cap * (temp - out), ev * latent, rtol=1e-14, atol=1e-14)
    hot = np.array([150.0, 130.0, 200.0, 105.0])
    pol = np.full(4, 2e-4)
    out, ev = monomer.boil_off(hot, cap, np.full(4, 1e-4), pol, 3.4e5)
    t_boil = monomer.BoilingLaw().point_k(1e-4 - ev, pol)[0] - 273.15
    boiled = ev > 0
    assert boiled[:3].all() and not boiled[3]  # 105 C is below T_boil at phi_1 = 0.39 (111 C)
    np.testing.assert_allclose(out[boiled], t_boil[boiled], atol=1e-9)
    np.testing.assert_allclose(cap * (hot - out), ev * 3.4e5, rtol=1e-13, atol=1e-13)


def _t_boil_k(cement, alpha, e):
    """T_boil by root-finding a_1 p_sat(T) = 1 atm (independent of BoilingLaw's closed form)."""
    m1, m2 = monomer.solution_masses(cement.monomer_mass_fraction, cement.solution_mass_fraction, alpha, e)
    ln_a = float(monomer.log_activity(monomer.monomer_volume_fraction(m1, m2), cement.monomer_polymer_chi))
    return brentq(lambda t: ln_a + np.log(monomer.vapour_pressure_pa(t) / 101325.0), 250.0, 2000.0, xtol=1e-13)


def _reference_0d(cement, t0_c, t_end_s):
    """(alpha, e, T) at t_end: the differential form of the adiabatic energy balance (module docstring)."""
    h_j, c, w_l = cement.heat_of_reaction_j_kg, cement.specific_heat_j_kg_k, (
        cement.monomer_mass_fraction * cement.monomer_vaporisation_heat_j_kg)

    def rate(a, e, t_k):
        return rheology._rate_below(cement, a, t_k, 1.0 - e)

    def slopes(a, e, d=1e-6):
        return ((_t_boil_k(cement, a + d, e) - _t_boil_k(cement, a - d, e)) / (2 * d),
                (_t_boil_k(cement, a, e + d) - _t_boil_k(cement, a, e - d)) / (2 * d))

    def heat(_t, y):
        r = rate(*y)
        return [r, 0.0, h_j * r / c]

    def boil(_t, y):
        r = rate(*y)
        t_a, t_e = slopes(y[0], y[1])
        de = (h_j - c * t_a) * r / (c * t_e + w_l)
        return [r, de, (h_j * r - w_l * de) / c]

    def reaches(_t, y):
        return y[2] - _t_boil_k(cement, y[0], y[1])

    def stops(_t, y):
        return h_j - c * slopes(y[0], y[1])[0]

    reaches.terminal, reaches.direction, stops.terminal = True, 1.0, True
    y, t_s = [cement.alpha0, 0.0, t0_c + 273.15], 0.0
    for rhs, ev in ((heat, reaches), (boil, stops), (heat, None)):
        sol = solve_ivp(rhs, (t_s, t_end_s), y, method="LSODA", rtol=1e-10, atol=1e-12, events=ev)
        if sol.status != 1:
            return sol.y[:, -1]
        t_s, y = float(sol.t_events[0][0]), list(sol.y_events[0][0])
    raise AssertionError("unreachable")


@pytest.mark.parametrize("name,t0_c,chi", [("Palacos R", 80.0, 0.0), ("Palacos R", 60.0, 0.5),
                                           ("Kyphon HV-R", 80.0, 0.0)])
def test_0d_adiabatic_cure_matches_an_independent_solve_of_the_energy_balance(name, t0_c, chi):
    """cure_0d adiabatic (alpha only, e from the energy line) against the differential (alpha, e, T) solve: the peak,
    the final cure and the monomer boiled off agree to 1e-5; the energy closes: c (T - T0) = H (alpha - alpha_0)
    - w L e at every output time (1e-9 K)."""
    cement = dataclasses.replace(rheology.cement_preset(name), monomer_polymer_chi=chi)
    res = rheology.cure_0d(cement, 3600.0, "adiabatic", t0_c, rtol=1e-10)
    a_ref, e_ref, t_ref = _reference_0d(cement, t0_c, 3600.0)
    print(f"{name} from {t0_c} C, chi {chi}: peak {res.peak_temperature_c:.6f} C (ref {t_ref - 273.15:.6f}), "
          f"alpha {res.alpha[-1]:.7f} (ref {a_ref:.7f}), boiled {res.boiled[-1]:.7f} (ref {e_ref:.7f})")
    assert res.boiled[-1] > 0.01  # it boils
    assert res.peak_temperature_c == pytest.approx(t_ref - 273.15, abs=1e-4)
    assert res.alpha[-1] == pytest.approx(a_ref, abs=1e-5)
    assert res.boiled[-1] == pytest.approx(e_ref, abs=1e-5)
    c, w_l = cement.specific_heat_j_kg_k, cement.monomer_mass_fraction * cement.monomer_vaporisation_heat_j_kg
    np.testing.assert_allclose(c * (res.temperature_c - t0_c),
                               cement.heat_of_reaction_j_kg * (res.alpha - cement.alpha0) - w_l * res.boiled,
                               atol=1e-9 * c)


@pytest.mark.parametrize("name", ["Palacos R", "CMW 1", "Kyphon HV-R", "Vertecem V+"])
def test_an_adiabatic_cement_from_room_temperature_does_not_boil_with_chi_0(name):
    """From 23 C the adiabatic energy line stays below T_boil(alpha) (it rises with the cure faster than the cure's
    heat): no monomer boils and the peak equals the run without boiling (docs/cement.md 7d)."""
    cement = rheology.cement_preset(name)
    res = rheology.cure_0d(cement, 7200.0, "adiabatic", 23.0)
    no_boil = rheology.cure_0d(dataclasses.replace(cement, monomer_boiling_point_k=None), 7200.0, "adiabatic", 23.0)
    assert res.boiled[-1] == 0.0
    assert res.peak_temperature_c == pytest.approx(no_boil.peak_temperature_c, abs=1e-9)
    assert res.peak_temperature_c > 140.0


@pytest.mark.parametrize("dt_s,tol_e", [(0.4, 2e-3), (0.1, 2e-5)])
def test_adiabatic_block_boils_off_what_the_0d_cure_does(dt_s, tol_e):
    """An insulated block of Palacos R from 80 C, the 3-D exotherm with its enthalpy step against cure_0d.

    Adiabatic, T is a function of the state (alpha, e) (the energy line), and while a voxel boils the enthalpy step
    puts it on T_boil(alpha, e): the boiled fraction is e*(alpha) whatever the step. Boiling stops at the largest
    e*(alpha) over the cure degrees the steps visit, so the block boils off at most what the 0-D cure does, short by
    O(d_alpha^2) (d_alpha: the cure of the step that passes the stop; erratic in dt, so no order is fitted; measured
    1.0e-3 / 1.5e-3 / 6.3e-6 / 9.6e-6 at dt 0.4 / 0.2 / 0.1 / 0.05 s). Energy to 1e-9."""
    lab = np.full((3, 3, 3), DEFECT, np.uint8)
    ref = rheology.cure_0d(PALACOS, 120.0, "adiabatic", 80.0, rtol=1e-10)
    res = thermal.simulate_exotherm(lab, (1e-3,) * 3, np.ones(lab.shape), 120.0, dt_s, cement=PALACOS,
                                    cement_temperature_c=80.0, initial_temperature_c=80.0, film_w_m2k=0.0,
                                    perfusion=False)
    e_3d = res.monomer_boiled_off_kg / res.monomer_kg
    print(f"dt {dt_s}: peak {res.cement_peak_c:.4f} C (0-D {ref.peak_temperature_c:.4f}), alpha "
          f"{res.alpha_final[1, 1, 1]:.6f} ({ref.alpha[-1]:.6f}), boiled {e_3d:.6f} ({ref.boiled[-1]:.6f}); energy "
          f"{res.energy_balance_error_rel:.1e}")
    assert ref.boiled[-1] > 0.05
    assert ref.boiled[-1] - tol_e < e_3d <= ref.boiled[-1] + 1e-9
    np.testing.assert_allclose(res.alpha_final, ref.alpha[-1], atol=tol_e)
    c, w_l = PALACOS.specific_heat_j_kg_k, PALACOS.monomer_mass_fraction * PALACOS.monomer_vaporisation_heat_j_kg
    line_c = 80.0 + (PALACOS.heat_of_reaction_j_kg * (res.alpha_final[1, 1, 1] - PALACOS.alpha0) - w_l * e_3d) / c
    assert res.cement_peak_c == pytest.approx(line_c, abs=1e-6)
    assert res.energy_balance_error_rel < 1e-9


def test_a_cement_that_stays_below_the_boiling_point_loses_no_monomer():
    """The generic "low" preset heats an insulated block from 23 C to 92 C (vitrification): nothing boils, and the
    run equals the one without boiling."""
    lab = np.full((3, 3, 3), DEFECT, np.uint8)
    runs = [thermal.simulate_exotherm(lab, (1e-3,) * 3, np.ones(lab.shape), 3600.0, 2.0, cement=cement,
                                      film_w_m2k=0.0, perfusion=False)
            for cement in (rheology.LOW_VISCOSITY,
                           dataclasses.replace(rheology.LOW_VISCOSITY, monomer_boiling_point_k=None))]
    assert runs[0].cement_peak_c < TB_C - 5.0
    assert runs[0].vaporised_j == 0.0 and runs[0].monomer_boiled_off_kg == 0.0
    assert runs[0].cement_peak_c == runs[1].cement_peak_c


def _ball(n=13, h_mm=2.0, radius_mm=8.0):
    x = (np.arange(n) - n // 2) * h_mm
    ball = np.sum(np.square(np.meshgrid(x, x, x, indexing="ij")), axis=0) <= radius_mm**2
    lab = np.where(ball, DEFECT, TRABECULAR).astype(np.uint8)
    lab[0], lab[-1] = CORTEX, CORTEX
    return lab, ball.astype(float)


@pytest.mark.parametrize("kwargs", [{"theta": 1.0}, {"theta": 0.5, "dt_max_s": 8.0, "film_w_m2k": 50.0}])
def test_energy_balance_closes_with_the_latent_sink(kwargs):
    """A KP-like 2.1 mL ball of Palacos R at 23 C, 300 s after mixing, in perfused bone at 37 C. As the law has it
    (chi = 0) nothing boils, and the run equals the one without boiling. In the law's pure-monomer limit (no bead
    polymer in the solution: solution_mass_fraction = w_MMA, so T_boil starts at T_b) it boils: released = stored
    + conducted + perfused + vaporised to 1e-6, and it peaks below the ball without boiling."""
    lab, frac = _ball()
    cements = (PALACOS, dataclasses.replace(PALACOS, monomer_boiling_point_k=None),
               dataclasses.replace(PALACOS, solution_mass_fraction=PALACOS.monomer_mass_fraction))
    law, none, pure = (thermal.simulate_exotherm(lab, (2e-3,) * 3, frac, 600.0, 2.0, cement=cement,
                                                 age_at_placement_s=300.0, solver_rtol=1e-10, probes={"c": (6, 6, 6)},
                                                 **kwargs) for cement in cements)
    print(f"{kwargs}: peak {law.cement_peak_c:.3f} C (without boiling {none.cement_peak_c:.3f} C, pure-monomer limit "
          f"{pure.cement_peak_c:.3f} C); pure limit: released {pure.released_j:.2f} J = stored {pure.stored_j:.2f} + "
          f"out {pure.conducted_out_j:.2f} + perfused {pure.perfused_j:.2f} + vaporised {pure.vaporised_j:.2f}; boiled "
          f"{1e6 * pure.monomer_boiled_off_kg:.1f} mg of {1e6 * pure.monomer_kg:.1f} mg; error "
          f"{pure.energy_balance_error_rel:.1e}")
    assert law.vaporised_j == 0.0 and law.cement_peak_c == none.cement_peak_c
    assert pure.vaporised_j > 0.002 * pure.released_j
    assert pure.energy_balance_error_rel < 1e-6
    assert pure.cement_peak_c < none.cement_peak_c - 10.0
