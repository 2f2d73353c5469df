"""Boiling of the unreacted monomer (physics/monomer.py) in the exotherm (physics/thermal.py): the enthalpy step, an
adiabatic block against its closed-form energy balance, and the energy balance with the latent sink.

Adiabatic block (insulated, every voxel alike), cement of heat H per kg at cure alpha_0, placed at T_0, heat capacity
(rho c)_mix per m^3 holding phi_c m^3 of cement per m^3. The cure heats it until it reaches the boiling point at

    alpha_b = alpha_0 + (rho c)_mix (T_b - T_0) / (phi_c rho_c H)

and from there each unit of cure boils off r = H / (w_MMA L) = dH_p / dH_v units of monomer at T_b, until none is
left: alpha_f = alpha_b + (1 - alpha_b) / (1 + r), T_f = T_b, evaporated monomer M (1 - alpha_f) with M = phi_c rho_c
w_MMA V, latent heat M (1 - alpha_f) L.
"""

import dataclasses

import numpy as np
import pytest

from vertaug.model.labels import CORTEX, DEFECT, TRABECULAR
from vertaug.physics import monomer, rheology, thermal

PALACOS = rheology.cement_preset("high")
TB_C = monomer.MMA_BOILING_POINT_K - 273.15


def test_mma_properties_are_the_cited_ones():
    """T_b 373.4 K (NIST); dH_v at T_b from Steele 2002's 8.68 / 7.96 kcal/mol at 340 / 380 K; per kg over 100.12 g."""
    assert monomer.MMA_BOILING_POINT_K == 373.4
    assert monomer.MMA_VAPORISATION_J_MOL == pytest.approx(33.80e3, rel=1e-3)
    assert monomer.MMA_VAPORISATION_J_KG == pytest.approx(3.376e5, rel=1e-3)
    assert PALACOS.monomer_mass_fraction == pytest.approx(0.309, abs=1e-3)  # its pack's w_MMA (docs/cement.md 1b)


def test_boil_off_takes_the_excess_energy_as_latent_heat():
    """Below T_b or without monomer: unchanged; with enough monomer: at T_b; with too little: all of it boils and the
    rest heats the voxel. Energy C (T_in - T_out) = evaporated L exactly."""
    temp = np.array([90.0, 110.0, 110.0, 110.0])
    cap = np.array([2.0, 2.0, 2.0, 2.0])  # J/K
    left = np.array([1.0, 1.0, 1e-5, 0.0])  # kg
    latent = 1e6  # J/kg: 20 J of excess evaporates 2e-5 kg
    out, ev = monomer.boil_off(temp, cap, left, 100.0, latent)
    assert out[0] == 90.0 and ev[0] == 0.0
    assert out[1] == pytest.approx(100.0, abs=1e-12) and ev[1] == pytest.approx(2e-5, rel=1e-12)
    assert ev[2] == pytest.approx(1e-5, rel=1e-12) and out[2] == pytest.approx(105.0, abs=1e-12)
    assert out[3] == 110.0 and ev[3] == 0.0
    np.testing.assert_allclose(cap * (temp - out), ev * latent, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("label", [DEFECT, TRABECULAR])
def test_adiabatic_block_boils_off_what_the_energy_balance_says(label):
    """Insulated block of pure cement (open label) or cement-filled trabecular bone, Palacos R from 23 C: ends at T_b
    with the cure and the evaporated monomer of the closed form (module docstring), to 1e-6."""
    lab = np.full((3, 3, 3), label, np.uint8)
    frac = np.ones(lab.shape)
    res = thermal.simulate_exotherm(lab, (1e-3,) * 3, frac, 1800.0, 2.0, cement=PALACOS, cement_temperature_c=23.0,
                                    initial_temperature_c=23.0, film_w_m2k=0.0, perfusion=False,
                                    probes={"c": (1, 1, 1)})
    _, rho_c, _, phi_c = thermal.mix_properties(lab, frac, PALACOS)
    w, h_j_kg = PALACOS.monomer_mass_fraction, PALACOS.heat_of_reaction_j_kg
    alpha_b = PALACOS.alpha0 + rho_c[1, 1, 1] * (TB_C - 23.0) / (phi_c[1, 1, 1] * PALACOS.density_kg_m3 * h_j_kg)
    r = h_j_kg / (w * PALACOS.monomer_vaporisation_heat_j_kg)
    alpha_f = alpha_b + (1.0 - alpha_b) / (1.0 + r)
    monomer_kg = phi_c.sum() * 1e-9 * PALACOS.density_kg_m3 * w
    print(f"label {label}: alpha_b {alpha_b:.6f}, alpha_f {alpha_f:.6f} (model {res.alpha_final[1, 1, 1]:.6f}), "
          f"boiled {res.monomer_boiled_off_kg / res.monomer_kg:.4f} of the monomer, "
          f"final {res.probe_temperature_c['c'][-1]:.6f} C, energy error {res.energy_balance_error_rel:.1e}")
    assert 0.3 < alpha_b < alpha_f < 1.0
    assert res.probe_temperature_c["c"][-1] == pytest.approx(TB_C, abs=1e-6)
    assert res.cement_peak_c == pytest.approx(TB_C, abs=1e-6)
    np.testing.assert_allclose(res.alpha_final, alpha_f, atol=1e-6)
    assert res.monomer_kg == pytest.approx(monomer_kg, rel=1e-12)
    assert res.monomer_boiled_off_kg == pytest.approx(monomer_kg * (1.0 - alpha_f), rel=1e-5)
    assert res.vaporised_j == pytest.approx(res.monomer_boiled_off_kg * PALACOS.monomer_vaporisation_heat_j_kg)
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
    """A KP-like 2.1 mL ball of Palacos R at 23 C, 300 s after mixing, in perfused bone at 37 C: it boils
    (released = stored + conducted + perfused + vaporised, to 1e-6), and no voxel passes T_b by more than the
    step's split error (heat conducted within a step from a neighbour's uncorrected temperature into a voxel whose
    monomer is gone; measured, backward Euler: 1.26 / 0.85 / 0 / 0 C at dt 4 / 2 / 1 / 0.5 s, boiled-off fraction
    0.105 / 0.121 / 0.129 / 0.132); without boiling the same ball passes 170 C (tests/test_exotherm_ceiling.py)."""
    lab, frac = _ball()
    res = thermal.simulate_exotherm(lab, (2e-3,) * 3, frac, 600.0, 2.0, cement=PALACOS, age_at_placement_s=300.0,
                                    solver_rtol=1e-10, probes={"c": (6, 6, 6)}, **kwargs)
    print(f"{kwargs}: released {res.released_j:.2f} J = stored {res.stored_j:.2f} + out {res.conducted_out_j:.2f} + "
          f"perfused {res.perfused_j:.2f} + vaporised {res.vaporised_j:.2f}; boiled "
          f"{1e6 * res.monomer_boiled_off_kg:.1f} mg of {1e6 * res.monomer_kg:.1f} mg; peak {res.cement_peak_c:.3f} C; "
          f"error {res.energy_balance_error_rel:.1e}")
    assert res.vaporised_j > 0.02 * res.released_j
    assert res.energy_balance_error_rel < 1e-6
    assert TB_C - 1.0 < res.cement_peak_c < TB_C + 1.0


@pytest.mark.parametrize("name", ["Palacos R", "CMW 1", "Kyphon HV-R", "Vertecem V+"])
def test_0d_adiabatic_cure_boils_to_the_closed_form(name):
    """rheology.cure_0d adiabatic from 23 C: T stops at T_b, alpha ends at alpha_b + (1 - alpha_b) / (1 + r), to 1e-8
    (without boiling the same cements pass 140 C and cure fully)."""
    cement = rheology.cement_preset(name)
    res = rheology.cure_0d(cement, 7200.0, "adiabatic", 23.0)
    h_j_kg, c = cement.heat_of_reaction_j_kg, cement.specific_heat_j_kg_k
    alpha_b = cement.alpha0 + c * (TB_C - 23.0) / h_j_kg
    r = h_j_kg / (cement.monomer_mass_fraction * cement.monomer_vaporisation_heat_j_kg)
    assert res.peak_temperature_c == pytest.approx(TB_C, abs=1e-6)
    assert res.alpha[-1] == pytest.approx(alpha_b + (1.0 - alpha_b) / (1.0 + r), abs=1e-8)
    no_boil = rheology.cure_0d(dataclasses.replace(cement, monomer_boiling_point_k=None), 7200.0, "adiabatic", 23.0)
    assert no_boil.peak_temperature_c > 140.0
