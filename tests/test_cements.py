"""Named cements: composition arithmetic, the rheometer fit of the cure kinetics, and the no-rheometry error."""

import math

import pytest

from vertaug.errors import ParameterError
from vertaug.physics import cements as cm
from vertaug.physics import rheology as rh


def test_heat_density_and_heat_capacity_follow_the_pack_composition():
    comp = cm.NAMED_CEMENTS["kyphon hv-r"]
    props = cm.cement_properties(comp)
    w_mma = 9.0 * 0.991 / 29.0  # 9.0 g liquid at 99.1 % MMA in 29.0 g of cement (instructions for use)
    assert props["monomer_mass_fraction"] == pytest.approx(w_mma, rel=1e-12)
    assert props["heat_of_reaction_j_kg"] == pytest.approx(w_mma * 54.0e3 / 0.10012, rel=1e-12)
    w_bas = 20.0 * 0.30 / 29.0
    assert props["density_kg_m3"] == pytest.approx(1.0 / ((1 - w_bas) / 1190.0 + w_bas / 4500.0), rel=1e-12)
    assert props["specific_heat_j_kg_k"] == pytest.approx((1 - w_bas) * 1460.0 + w_bas * 460.0, rel=1e-12)


def test_cure_integral_gives_the_isothermal_time_of_the_kinetics_solver():
    low = rh.cement_preset("low")  # Li 2003: the same exponents, K0 and E
    k = low.k0_1_s * math.exp(-low.activation_energy_j_mol / (rh.GAS_CONSTANT_J_MOL_K * 310.15))
    assert cm._cure_integral(0.5) / k == pytest.approx(rh.set_time_s(low, 37.0), rel=1e-6)


def test_kinetics_fit_recovers_known_parameters_and_reports_its_residual():
    k0, e = 2.0e6, 50.0e3
    integral = cm._cure_integral(cm.ALPHA_GEL)
    pts = tuple(cm.RheometerPoint(tc, integral / (k0 * math.exp(-e / (cm.GAS_CONSTANT_J_MOL_K * (tc + 273.15)))),
                                  7.5e4, "synthetic") for tc in (20.0, 25.0, 37.0))
    fit = cm.fit_cure_kinetics(pts)
    assert fit.k0_1_s == pytest.approx(k0, rel=1e-6) and fit.activation_energy_j_mol == pytest.approx(e, rel=1e-8)
    assert fit.residual_rms_log < 1e-10
    with pytest.raises(ParameterError, match="two temperatures"):
        cm.fit_cure_kinetics(pts[:1])


def test_palacos_r_fit_meets_the_rheometer_times_and_halving_gives_its_activation_energy():
    comp = cm.NAMED_CEMENTS["palacos r"]
    fit = cm.fit_cure_kinetics(comp.rheometry)
    print("\nPalacos R cure kinetics fitted to Nicholas 2007 rheometer curing times:\n" + fit.table())
    e_halved = cm.GAS_CONSTANT_J_MOL_K * math.log(2.0) / (1 / 298.15 - 1 / 310.15)  # time halved 25 -> 37 C
    assert fit.activation_energy_j_mol == pytest.approx(e_halved, rel=1e-6)
    high = rh.cement_preset("high")
    assert high.name == "Palacos R" and high.has_rheometry
    assert rh.time_to_alpha_s(high, cm.ALPHA_GEL, 25.0) == pytest.approx(13.0 * 60, rel=1e-4)
    assert rh.cement_preset("palacos r") is high


def test_a_named_cement_without_rheometry_cannot_be_used_for_flow():
    from vertaug.procedures.injection import cement_viscosity_law
    from vertaug.procedures.vertebroplasty import Vertebroplasty

    hvr = rh.cement_preset("Kyphon HV-R")
    assert not hvr.has_rheometry and hvr.heat_of_reaction_j_kg > 1.5e5  # usable for the exotherm
    with pytest.raises(ParameterError, match="'Kyphon HV-R' has no rheometry") as err:
        cement_viscosity_law("Kyphon HV-R")
    assert "\n" not in str(err.value)
    with pytest.raises(ParameterError, match="has no rheometry"):
        Vertebroplasty(cement="Kyphon HV-R")
    with pytest.raises(ParameterError, match="Palacos R"):
        rh.cement_preset("Osteopal X")


def _series(cement, times_s, shear_rates, temperature_c=25.0, factors=None):
    """Working-phase viscosities of ``cement`` itself (its own law and kinetics), optionally scaled by ``factors``."""
    pts = []
    for i, (t, g) in enumerate((t, g) for t in times_s for g in shear_rates):
        a = cm._alpha_at(cement, t, temperature_c)
        mu = float(rh.viscosity_pa_s(cement, a, temperature_c + 273.15, g)) * (factors[i] if factors else 1.0)
        pts.append(cm.ViscosityPoint(temperature_c, t, mu, g, "synthetic"))
    return tuple(pts)


def test_working_viscosity_fit_recovers_known_consistency_and_flow_index():
    from dataclasses import replace

    high = rh.cement_preset("high")
    truth = replace(high, consistency_pa_sn=123.0, flow_index_start=0.55)
    pts = _series(truth, (120.0, 300.0, 480.0, 660.0), (1.0, 10.0))
    fit = cm.fit_working_viscosity(high, pts, fit=("consistency", "flow_index"))
    print("\nworking-phase fit to a synthetic series (K0_mu 123, n_0 0.55):\n" + fit.table())
    assert fit.values["consistency_pa_sn"] == pytest.approx(123.0, rel=1e-6)
    assert fit.values["flow_index_start"] == pytest.approx(0.55, rel=1e-6)
    assert fit.residual_rms_log < 1e-8
    only_k = cm.fit_working_viscosity(high, _series(replace(high, consistency_pa_sn=40.0), (60.0, 400.0), (1.0,)))
    assert only_k.values == {"consistency_pa_sn": pytest.approx(40.0, rel=1e-6)}


def test_working_viscosity_fit_meets_scattered_data_within_its_residual():
    from dataclasses import replace

    high = rh.cement_preset("high")
    factors = (1.3, 0.8, 1.1, 0.9, 1.2, 0.75)  # +/- 30 % scatter about a K0_mu = 200 series
    pts = _series(replace(high, consistency_pa_sn=200.0), (60.0, 180.0, 300.0, 420.0, 540.0, 600.0), (1.0,),
                  factors=factors)
    fit = cm.fit_working_viscosity(high, pts)
    ln_res = [math.log(m / p.viscosity_pa_s) for m, p in zip(fit.model_viscosity_pa_s, pts)]
    assert fit.residual_rms_log == pytest.approx(math.sqrt(sum(r * r for r in ln_res) / len(ln_res)), rel=1e-9)
    assert 0.05 < fit.residual_rms_log < 0.3  # the scatter shows, the law does not absorb it
    assert all(abs(r) <= 2.0 * fit.residual_rms_log for r in ln_res)
    # least squares in ln: the fitted K0_mu is the geometric mean correction of the scattered series
    geo = math.exp(-sum(math.log(f) for f in factors) / len(factors))
    assert fit.values["consistency_pa_sn"] == pytest.approx(200.0 / geo, rel=1e-6)


def test_working_viscosity_fit_refuses_points_it_cannot_use():
    high = rh.cement_preset("high")
    ok = cm.ViscosityPoint(25.0, 120.0, 300.0, 1.0, "synthetic")
    with pytest.raises(ParameterError, match="point"):
        cm.fit_working_viscosity(high, ())
    with pytest.raises(ParameterError, match="gel point"):  # Palacos R gels at 13 min at 25 C
        cm.fit_working_viscosity(high, (ok, cm.ViscosityPoint(25.0, 14 * 60.0, 5e4, 1.0, "synthetic")))
    with pytest.raises(ParameterError, match="one shear rate"):
        cm.fit_working_viscosity(high, (ok, ok), fit=("consistency", "flow_index"))
    with pytest.raises(ParameterError, match="<= 0"):
        cm.fit_working_viscosity(high, (cm.ViscosityPoint(25.0, 120.0, -1.0, 1.0, "synthetic"),))
    with pytest.raises(ParameterError, match="cannot fit"):
        cm.fit_working_viscosity(high, (ok,), fit=("gel_exponent",))


def test_named_cement_takes_its_working_series_or_says_it_has_the_class_value(monkeypatch):
    from dataclasses import replace

    high = rh.cement_preset("high")
    assert high.consistency_pa_sn == 300.0 and high.working_viscosity_fit_rms_log is None
    assert "class value" in high.sources[-1] and "no working-phase viscosity series" in high.sources[-1]
    series = _series(replace(high, consistency_pa_sn=250.0), (90.0, 240.0, 420.0), (1.0,))
    comp = replace(cm.NAMED_CEMENTS["palacos r"], name="Palacos test", working_viscosity=series)
    monkeypatch.setitem(cm.NAMED_CEMENTS, "palacos test", comp)
    named = rh.named_cement("Palacos test")
    assert named.consistency_pa_sn == pytest.approx(250.0, rel=1e-6)
    assert named.working_viscosity_fit_rms_log < 1e-8 and "fitted to 3 working-phase" in named.sources[-1]


def test_vertecem_composition_gives_its_heat_density_and_heat_capacity_with_the_hydroxyapatite_filler():
    comp = cm.NAMED_CEMENTS["vertecem v+"]
    props = cm.cement_properties(comp)
    liquid_g = 10.0 * 0.936  # 10 mL of MMA at 0.936 g/mL
    total = 26.0 + liquid_g
    w_mma, w_zr, w_ha = liquid_g * 0.9935 / total, 26.0 * 0.40 / total, 26.0 * 0.15 / total
    assert props["heat_of_reaction_j_kg"] == pytest.approx(w_mma * 54.0e3 / 0.10012, rel=1e-12)
    w_pol = 1.0 - w_zr - w_ha
    assert props["density_kg_m3"] == pytest.approx(1.0 / (w_pol / 1190.0 + w_zr / 5680.0 + w_ha / 3160.0), rel=1e-12)
    assert props["specific_heat_j_kg_k"] == pytest.approx(w_pol * 1460.0 + w_zr * 460.0 + w_ha * 767.0, rel=1e-12)
    vv = rh.cement_preset("Vertecem V+")
    assert not vv.has_rheometry and vv.heat_of_reaction_j_kg < rh.cement_preset("high").heat_of_reaction_j_kg
    with pytest.raises(ParameterError, match="'Vertecem V\\+' has no rheometry"):
        rh.require_rheometry(vv)


def test_working_viscosity_fit_recovers_a_yield_stress_where_the_series_shows_one():
    from dataclasses import replace

    high = rh.cement_preset("high")
    truth = replace(high, consistency_pa_sn=80.0, yield_stress_pa=60.0)
    pts = _series(truth, (120.0, 360.0), (0.1, 1.0, 10.0))
    fit = cm.fit_working_viscosity(high, pts, fit=("consistency", "yield_stress"))
    assert fit.values["yield_stress_pa"] == pytest.approx(60.0, rel=1e-5)
    assert fit.values["consistency_pa_sn"] == pytest.approx(80.0, rel=1e-5)
    no_yield = cm.fit_working_viscosity(high, _series(replace(high, consistency_pa_sn=80.0), (120.0, 360.0),
                                                      (0.1, 1.0, 10.0)), fit=("consistency", "yield_stress"))
    assert no_yield.values["yield_stress_pa"] < 1e-6  # none in the data: none fitted
