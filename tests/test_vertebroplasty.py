"""Vertebroplasty procedure on the synthetic phantom: plunger = cannula + bone pressure, cement by preset, bad input."""

import numpy as np
import pytest

from vertaug.anatomy.phantom import make_phantom
from vertaug.errors import ParameterError
from vertaug.model.vertebra import vertebra_from_phantom
from vertaug.physics import cannula
from vertaug.procedures.vertebroplasty import (
    Vertebroplasty,
    cement_viscosity_law,
    cannula_pressure_drop_series_pa,
    run_vertebroplasty,
)


@pytest.fixture(scope="module")
def model():
    return vertebra_from_phantom(make_phantom(fracture="wedge", grade=2, cortical_defect=True))


@pytest.fixture(scope="module")
def outcomes(model):
    # the whole planned volume: the clinical stopping rules off (tested on their own below)
    free = dict(stop_at_visible_leak=False, stop_at_posterior_quarter=False)
    return {c: run_vertebroplasty(model, Vertebroplasty(volume_ml=2.0, cement=c, **free)) for c in ("low", "high")}


def test_default_plan_stops_when_the_leak_becomes_visible(model, outcomes):
    """With the stopping rules on, the injection that leaks through the phantom's veins stops when the leak passes
    the visible limit, as a clinician stops at the first sign of leakage, and says so. The 2 mL of the free run leak
    0.057 mL through the veins (route S), under the 0.1 mL fluoroscopy limit, so a limit of 0.02 mL is set here."""
    from vertaug.physics.flow import STOP_LEAK

    assert outcomes["low"].injection.leaked_ml_by_route["S"] == pytest.approx(0.057, rel=0.1)
    o = run_vertebroplasty(model, Vertebroplasty(volume_ml=2.0, cement="low", stop_leak_ml=0.02))
    assert o.injection.stop_reason == STOP_LEAK
    assert o.injection.leaked_ml >= 0.02
    assert o.injection.injected_ml < outcomes["low"].injection.injected_ml


def test_outcome_series_and_balance(outcomes, model):
    o = outcomes["low"]
    m, s = o.metrics, o.series
    assert m["injected_ml"] == pytest.approx(2.0, rel=1e-9)
    assert m["cement_mass_balance_error_max"] < 1e-6
    np.testing.assert_allclose(s["plunger_pressure_pa"], s["cannula_pressure_drop_pa"] + s["tip_pressure_pa"])
    total = s["in_bone_ml"] + sum(s[f"leaked_ml_{r}"] for r in "BSCD")
    np.testing.assert_allclose(total[1:], s["injected_ml"][1:], rtol=1e-9)
    assert o.cement_fraction.shape == model.labels.shape
    in_bone = o.arrival_time_s != 0.0  # arrival 0 marks the cannula tip voxels (full of cement, not bone)
    assert float(o.cement_fraction[in_bone].sum()) * model.voxel_volume_m3 * 1e6 == pytest.approx(
        m["injected_ml"] - m["leaked_ml"], rel=1e-5)  # float32 field
    assert m["injection_time_s"] == pytest.approx(2.0 / 0.05, rel=1e-9)
    assert m["n_cannulas"] == 2


def test_cannula_carries_most_of_the_pressure(outcomes):
    low, high = outcomes["low"].metrics, outcomes["high"].metrics
    print(f"\ncannula share of the plunger pressure: low {low['cannula_share_of_pressure']:.3f}, "
          f"high {high['cannula_share_of_pressure']:.3f} (Baroud & Steffen 2005: ~0.95)")
    print(f"max plunger pressure: low {low['max_injection_pressure_pa'] / 1e3:.1f} kPa, "
          f"high {high['max_injection_pressure_pa'] / 1e3:.1f} kPa")
    assert high["max_injection_pressure_pa"] > low["max_injection_pressure_pa"]
    assert 0.5 < low["cannula_share_of_pressure"] < 1.0
    assert 0.85 < high["cannula_share_of_pressure"] < 1.0


def test_doubling_inner_diameter_cuts_delivery_pressure(outcomes):
    spec = Vertebroplasty(cement="high")
    mu = cement_viscosity_law("high", 37.0)
    o = outcomes["high"]
    t = spec.start_time_s + o.series["t_s"]
    r = cannula.inner_radius_m(11)
    q = 0.05e-6 / 2
    dp1 = cannula_pressure_drop_series_pa(mu, t, q, 0.12, r)
    dp2 = cannula_pressure_drop_series_pa(mu, t, q, 0.12, 2 * r)
    bone = o.series["tip_pressure_pa"]
    cut = 1.0 - (dp2 + bone)[1:] / (dp1 + bone)[1:]
    print(f"\ndoubling the 11 G inner diameter over the whole 120 mm cuts the plunger pressure by "
          f"{100 * cut.min():.0f}-{100 * cut.max():.0f} % (Baroud & Steffen 2005, proximal part only: ~63 %)")
    assert np.all(cut > 0.6)


def test_bad_input():
    with pytest.raises(ParameterError, match="volume_ml"):
        Vertebroplasty(volume_ml=0.0)
    with pytest.raises(ParameterError, match="rate_ml_s"):
        Vertebroplasty(rate_ml_s=-0.05)
    with pytest.raises(ParameterError, match="cannula_gauge"):
        Vertebroplasty(cannula_gauge=12)
    with pytest.raises(ParameterError, match="approach"):
        Vertebroplasty(approach="transforaminal")


# ---- injection as it is done (issue 19): stop reason, detection limits, injector limit, bad input ----


def test_stop_reason_and_detection_limits_are_recorded(outcomes, model):
    from vertaug.physics.flow import STOP_LEAK, STOP_POSTERIOR, STOP_PRESSURE, STOP_VOLUME

    inj = outcomes["low"].injection
    assert inj.stop_reason in (STOP_VOLUME, STOP_POSTERIOR, STOP_LEAK, STOP_PRESSURE)
    assert inj.pressure_limit_pa == cannula.INJECTORS["hand"][0]
    assert inj.ct_detection_limit_ml == pytest.approx(model.voxel_volume_m3 * 1e6)
    assert inj.fluoro_detection_limit_ml == pytest.approx(0.1)
    for r, v in inj.leaked_ml_by_route.items():  # below one voxel: reported as none, not 1e-35 mL
        assert inj.leaked_ml_by_route_ct[r] == (v if v >= inj.ct_detection_limit_ml else 0.0)
    assert inj.leak_on_ct == (inj.leaked_ml >= inj.ct_detection_limit_ml)
    assert outcomes["low"].metrics["stop_reason"] == inj.stop_reason


def test_injector_limit_caps_the_plunger_pressure_and_stops_a_late_injection(model):
    from vertaug.physics.flow import STOP_PRESSURE

    # Palacos R ("high") 13 min after mixing (its rheometer curing time at 25 C, Nicholas 2007): thickening fast
    late = run_vertebroplasty(model, Vertebroplasty(volume_ml=4.0, cement="high", start_time_s=780.0,
                                                    stop_at_visible_leak=False))
    assert late.series["plunger_pressure_pa"].max() <= cannula.INJECTORS["hand"][0] * (1 + 1e-6)
    assert late.injection.stop_reason == STOP_PRESSURE
    assert late.injection.injected_ml < 4.0
    assert any("injector stalled" in n for n in late.notes)
    free = run_vertebroplasty(model, Vertebroplasty(volume_ml=late.injection.injected_ml + 0.2, cement="high",
                                                    start_time_s=780.0, injector="none", stop_at_visible_leak=False))
    assert free.series["plunger_pressure_pa"].max() > cannula.INJECTORS["hand"][0]  # what the limit prevented


def test_posterior_quarter_mask_is_the_posterior_part_of_the_body(model):
    from vertaug.procedures.vertebroplasty import posterior_quarter_mask

    m = posterior_quarter_mask(model)
    body = model.body_mask
    assert m.any() and not (m & ~body).any()
    a = np.asarray(model.landmarks.anterior_axis)
    proj_m = np.argwhere(m) @ a
    proj_rest = np.argwhere(body & ~m) @ a
    assert proj_m.max() < proj_rest.min() + 1e-9
    assert 0.1 < m.sum() / body.sum() < 0.4


def test_injection_plan_bad_input_one_line_errors():
    from vertaug.procedures.kyphoplasty import Kyphoplasty
    from vertaug.physics.rheology import LOW_VISCOSITY, Cement
    from dataclasses import replace

    for make in (lambda: Vertebroplasty(max_plunger_pressure_pa=1e3), lambda: Kyphoplasty(max_plunger_pressure_pa=0.0)):
        with pytest.raises(ParameterError, match="not above the venous pressure") as e:
            make()
        assert "\n" not in str(e.value)
    with pytest.raises(ParameterError, match="injector"):
        Vertebroplasty(injector="screw")
    with pytest.raises(ParameterError, match="yield_stress_pa.*negative") as e:
        replace(LOW_VISCOSITY, yield_stress_pa=-5.0)
    assert "\n" not in str(e.value)
    assert isinstance(replace(LOW_VISCOSITY, yield_stress_pa=50.0), Cement)


def test_extraosseous_veins_continue_the_sampled_veins(model):
    """procedures.injection.exit_veins: the trunk goes on as route B's vein, the branches as route S's, at their
    radii and the module's lengths; a model without sampled veins has none."""
    from vertaug.physics.flow import ExitVein
    from vertaug.procedures.injection import BASIVERTEBRAL_EXIT_LENGTH_M, SEGMENTAL_EXIT_LENGTH_M, exit_veins

    net = model.extra["veins"]
    v = exit_veins(model)
    assert v["B"] == ExitVein(net.trunk_diameter_mm / 2 * 1e-3, BASIVERTEBRAL_EXIT_LENGTH_M, 1)
    assert v["S"].n_parallel == net.n_branches and v["S"].length_m == SEGMENTAL_EXIT_LENGTH_M
    assert v["S"].radius_m == pytest.approx(net.trunk_diameter_mm / 2 * 1e-3 * net.n_branches ** (-1 / 3))
    bare = vertebra_from_phantom(make_phantom(fracture="wedge", grade=2, spacing_mm=2.0), veins_seed=None)
    assert exit_veins(bare) is None


def test_demo_line_states_plunger_pressure_stop_rule_and_hand_injection(outcomes):
    from vertaug.demo import injection_line

    inj = outcomes["low"].injection
    line = injection_line(inj)
    assert f"{inj.max_injection_pressure_pa / 1e6:.3f} MPa" in line and inj.stop_reason in line
    assert "1.69 +/- 0.65 MPa" in line and "3.21 MPa" in line and "Krebs" in line


def test_an_injection_stalled_at_its_first_step_records_the_limit_not_the_needed_pressure(model):
    """Cement injected after it has set stalls at once: the recorded plunger pressure is what the injector could
    deliver (its limit), not the hundreds of MPa the planned rate would have needed (issue 22: a sampled range
    showed 282 MPa)."""
    from vertaug.physics.flow import STOP_PRESSURE

    limit = cannula.INJECTORS["hand"][0]
    dead = run_vertebroplasty(model, Vertebroplasty(volume_ml=2.0, cement="high", start_time_s=1800.0,
                                                    stop_at_visible_leak=False))
    assert dead.injection.stop_reason == STOP_PRESSURE
    assert dead.injection.injected_ml < 0.05
    assert dead.injection.max_injection_pressure_pa == pytest.approx(limit, rel=1e-6)
    assert dead.injection.max_injection_pressure_cannula_pa <= limit


def test_the_cement_waits_in_the_syringe_at_room_temperature(model):
    """Palacos R ("high") 6.5 min after mixing: held at room temperature in the syringe it is in its working phase
    (rheometer curing time 13 min at 25 C, Nicholas 2007) and the whole volume goes in; had it cured at body
    temperature since mixing (6.5 min curing time at 37 C) it would have set and the injector would stall at once.
    The cure at body temperature starts when the injection starts."""
    from vertaug.physics.flow import STOP_PRESSURE
    from vertaug.procedures.injection import cement_viscosity_law

    plan = {"volume_ml": 1.0, "cement": "high", "start_time_s": 390.0, "stop_at_visible_leak": False}
    room = run_vertebroplasty(model, Vertebroplasty(**plan))
    warm = run_vertebroplasty(model, Vertebroplasty(**plan, syringe_temperature_c=37.0))
    assert room.injection.injected_ml == pytest.approx(1.0, rel=1e-6)
    assert room.series["plunger_pressure_pa"].max() < 1.0e6
    assert warm.injection.stop_reason == STOP_PRESSURE and warm.injection.injected_ml < 0.05
    mu_room = cement_viscosity_law("high", 37.0, 390.0, 23.0)
    mu_body = cement_viscosity_law("high", 37.0)
    assert float(mu_room(390.0, 1.0)) == pytest.approx(192.7, rel=0.02)  # still near its mixing viscosity
    assert float(mu_body(390.0, 1.0)) > 1e4  # set
    # in the bone it cures at 37 C from the start of the injection on
    assert float(mu_room(390.0 + 120.0, 1.0)) > float(mu_room(390.0, 1.0)) * 1.2


def test_a_syringe_temperature_out_of_range_is_one_line():
    with pytest.raises(ParameterError, match="syringe_temperature_c") as e:
        Vertebroplasty(syringe_temperature_c=-5.0)
    assert "\n" not in str(e.value)
