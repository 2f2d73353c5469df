"""The adiabatic ceiling of the exotherm: where it must hold, it holds; where a cold bolus sits in warm bone, the
peak passes it, and an independent solver of the same equations finds the same.

A voxel holding the cement fraction phi_c of its volume can heat itself by at most
    rise = phi_c rho_c H (alpha_max - alpha_start) / (rho c)_mix
(rheology.Cement.adiabatic_rise_k for pure cement). With one start temperature everywhere and cooling or insulated
boundaries, no voxel can pass T_start + the largest such rise. A bolus placed at 23 C into bone at 37 C is not that
case: its rim is warmed by the bone, cures first and conducts heat inward into cement that has not yet reacted, which
then adds its own full heat on top (the monomer does not diffuse: a reaction front converging on the centre). The
centre of a KP-like ball then exceeds 37 C + H/c, in the voxel model and in the radial reference alike.
"""

import dataclasses

import numpy as np
import pytest
from exotherm_radial import radial_ball_peak

from vertaug.model.labels import DEFECT, TRABECULAR
from vertaug.physics import rheology, thermal

PALACOS = rheology.cement_preset("high")
#: the same without the monomer's boiling (physics/monomer.py): the ceilings below are those of the heat equation
#: with the cure source alone (the radial reference has no boiling either)
PALACOS_NO_BOIL = dataclasses.replace(PALACOS, monomer_boiling_point_k=None)
BALL_MM, HALF_MM = 8.0, 16.0  # a KP-like 2.1 mL ball of pure cement, bone out to 16 mm (far field 37 C)


def _ball(h_mm, radius_mm=BALL_MM, half_mm=HALF_MM, inside=DEFECT):
    n = round(2 * half_mm / h_mm)
    n += n % 2 == 0  # odd: a voxel centred on the ball's centre
    x = (np.arange(n) - n // 2) * h_mm
    ball = np.sum(np.square(np.meshgrid(x, x, x, indexing="ij")), axis=0) <= radius_mm**2
    return np.where(ball, inside, TRABECULAR).astype(np.uint8), ball.astype(float), (h_mm * 1e-3,) * 3, n // 2


def _start_alpha(cement, age_s, temp_c):
    return float(rheology.cure_0d(cement, age_s, "isothermal", temp_c, n_out=2).alpha[-1])


@pytest.mark.parametrize("inside", [DEFECT, TRABECULAR])
def test_uniform_start_never_passes_the_hottest_ceiling(inside):
    """Cement and bone at 37 C, far field 37 C: no voxel above 37 C + the largest voxel rise (pure cement: H/c; cement
    filling trabecular pores: the mixture's own, lower rise), to 1e-6 C; the cement voxel's rise uses its own heat
    capacity (a source per voxel volume, or a capacity without the cement, would break this)."""
    lab, frac, h, c = _ball(2.0, radius_mm=6.0, half_mm=10.0, inside=inside)
    res = thermal.simulate_exotherm(lab, h, frac, 900.0, dt_s=2.0, cement=PALACOS, cement_temperature_c=37.0,
                                    age_at_placement_s=120.0, theta=1.0, probes={"c": (c, c, c)})
    _, rho_c, _, phi_c = thermal.mix_properties(lab, frac, PALACOS)
    a0 = _start_alpha(PALACOS, 120.0, 37.0)
    rise = phi_c * PALACOS.density_kg_m3 * PALACOS.heat_of_reaction_j_kg * (1.0 - a0) / rho_c
    assert res.max_temperature_c.max() <= 37.0 + rise.max() + 1e-6
    assert res.energy_balance_error_rel < 1e-6
    if inside == TRABECULAR:  # the mixture ceiling is well below pure cement's
        assert 37.0 + rise.max() < 37.0 + PALACOS.adiabatic_rise_k - 10.0


def test_insulated_mixture_block_reaches_its_own_ceiling():
    """Trabecular bone (pore fraction 0.9) filled with cement, insulated: the 0-D balance of the mixture,
    T_end = T_0 + phi_c rho_c H (alpha_end - alpha_0) / (rho c)_mix, to 1e-6 C (without boiling: with it the block
    stops at the boiling point, tests/test_monomer_boiling.py)."""
    lab = np.full((3, 3, 3), TRABECULAR, np.uint8)
    res = thermal.simulate_exotherm(lab, (1e-3,) * 3, np.ones(lab.shape), 1200.0, 4.0, cement=PALACOS_NO_BOIL,
                                    cement_temperature_c=37.0, film_w_m2k=0.0, perfusion=False,
                                    probes={"c": (1, 1, 1)})
    _, rho_c, _, phi_c = thermal.mix_properties(lab, np.ones(lab.shape), PALACOS)
    gain = phi_c[1, 1, 1] * PALACOS.density_kg_m3 * PALACOS.heat_of_reaction_j_kg / rho_c[1, 1, 1]
    expected = 37.0 + gain * (res.alpha_final[1, 1, 1] - PALACOS.alpha0)
    assert res.probe_temperature_c["c"][-1] == pytest.approx(expected, abs=1e-6)
    assert res.cement_peak_c == pytest.approx(expected, abs=1e-6)


def test_cold_ball_in_warm_bone_passes_the_ceiling_as_the_radial_reference_does():
    """KP-like ball of Palacos R placed at 23 C, 300 s after mixing, in trabecular bone at 37 C (perfused): the centre
    peak of the voxel model approaches the radial method-of-lines reference as the voxels shrink (2 -> 1 mm), and
    both lie above 37 C + H/c (measured: reference 185.7 C at 252 s; voxels 176.3 / 180.3 / 182.0 C at 2 / 1 /
    0.5 mm; ceiling 159.5 C). Without boiling, as the reference: with it the ball stops near 100 C
    (tests/test_monomer_boiling.py)."""
    ref_c, ref_t, _ = radial_ball_peak(PALACOS, BALL_MM * 1e-3, HALF_MM * 1e-3, 400.0, age_s=300.0, cells=200)
    ceiling = 37.0 + PALACOS.adiabatic_rise_k
    errors = []
    for h_mm in (2.0, 1.0):
        lab, frac, h, c = _ball(h_mm)
        res = thermal.simulate_exotherm(lab, h, frac, 400.0, dt_s=1.0, dt_max_s=4.0, theta=0.5,
                                        cement=PALACOS_NO_BOIL, age_at_placement_s=300.0, solver_rtol=1e-10, probes={"c": (c, c, c)})
        centre = res.probe_temperature_c["c"]
        errors.append(abs(centre.max() - ref_c))
        assert res.t_s[np.argmax(centre)] == pytest.approx(ref_t, abs=10.0)
        assert res.energy_balance_error_rel < 1e-6
    assert ref_c > ceiling + 10.0
    assert errors[1] < errors[0]
    assert errors[1] < 0.05 * (ref_c - 37.0)
