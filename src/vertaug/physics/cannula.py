"""Pressure lost in the cannula (a straight tube of inner radius r and length L) at volume flow Q.

Newtonian, Hagen-Poiseuille:

    dp = 8 mu L Q / (pi r^4)

Power-law fluid (tau = K gamma^n), fully developed laminar tube flow (wall shear rate
gamma_w = ((3n+1)/(4n)) 4Q/(pi r^3), wall stress tau_w = dp r / (2L)):

    dp = (2 K L / r) [ ((3n+1)/n) Q / (pi r^3) ]^n

which reduces to Hagen-Poiseuille for n = 1, K = mu (docs/flow.md, [D]).

Herschel-Bulkley fluid (tau = tau_y + K gamma^n above the yield stress, rigid plug below), fully developed laminar
tube flow, by the Rabinowitsch-Mooney integral over the shear stress (wall stress tau_w = dp r / (2L)):

    Q = (pi r^3 / tau_w^3) int_{tau_y}^{tau_w} tau^2 gamma(tau) dtau,   gamma(tau) = ((tau - tau_y) / K)^(1/n)

evaluated by the midpoint rule on ``n_stress`` intervals (second order) and inverted for dp by Brent's method. No
flow while tau_w <= tau_y: a yield-stress cement needs dp > 2 L tau_y / r to move at all. For n = 1 (Bingham) the
integral has the closed form of Buckingham (1921) and Reiner (1926):

    Q = (pi r^4 dp / (8 mu_p L)) [1 - (4/3) (tau_y / tau_w) + (1/3) (tau_y / tau_w)^4]

(:func:`buckingham_reiner_flow_m3_s`, the check of the numerical integral, tests/test_cannula.py).

Injectors (:data:`INJECTORS`, name -> (plunger pressure limit Pa, source)): the largest plunger pressure an injector
delivers. "hand": 3.215 MPa, the largest peak injection pressure measured in vivo during conventional vertebroplasty
with an instrumented syringe holder (Krebs, Aebli, Goss et al., Spine 2005;30(5):E118-E122, PMID 15738774: mean peak
1693 +/- 653 kPa normal and 1727 +/- 597 kPa wide syringes, maximum 3215 kPa; higher later in the polymerisation) [V].
"none": no limit (the rate is held whatever the pressure; the model before issue 19). No screw or hydraulic injector
rating with a source was found for this version; give ``max_plunger_pressure_pa`` in the plan for one.
The plunger (delivery) pressure is the cannula loss plus the bone pressure at the tip:
p_plunger = dp_cannula + p_tip.

Inner diameters, regular-wall needle tubing: the device table :data:`vertaug.constants.CANNULA_GAUGES` (11 G: outer
3.048 mm, inner 2.388 mm; 13 G: outer 2.413 mm, inner 1.803 mm; source there). Thin-wall cannulas of the same gauge
have larger inner diameters; give ``inner_radius_m`` directly for a specific product.
"""

from __future__ import annotations

import math

import numpy as np

from vertaug.constants import CANNULA_GAUGES
from vertaug.errors import ParameterError, check_range

__all__ = [
    "CANNULA_GAUGES",
    "HAND_INJECTION_PEAK_MEAN_PA",
    "HAND_INJECTION_PEAK_SD_PA",
    "INJECTORS",
    "buckingham_reiner_flow_m3_s",
    "herschel_bulkley_flow_m3_s",
    "herschel_bulkley_pressure_drop_pa",
    "injector_limit_pa",
    "inner_radius_m",
    "pressure_drop_pa",
    "wall_shear_rate_1_s",
]

#: injector name -> (plunger pressure limit in Pa or None for no limit, source); module docstring
INJECTORS: dict[str, tuple[float | None, str]] = {
    "hand": (3.215e6, "Krebs et al. 2005 Spine 30:E118 (PMID 15738774): in-vivo maximum peak 3215 kPa [V]"),
    "none": (None, "no limit"),
}
#: mean peak hand-injection pressure in vivo, Pa (Krebs et al. 2005: 1693 +/- 653 kPa, normal syringes) [V]
HAND_INJECTION_PEAK_MEAN_PA = 1.693e6
#: its standard deviation, Pa (Krebs et al. 2005: 653 kPa) [V]
HAND_INJECTION_PEAK_SD_PA = 0.653e6

#: midpoint intervals of the Rabinowitsch-Mooney integral (relative error ~1e-6 at 400, measured in the tests)
N_STRESS = 400


def inner_radius_m(gauge: int) -> float:
    """Inner radius of a regular-wall cannula of the given gauge (11 or 13)."""
    if gauge not in CANNULA_GAUGES:
        raise ParameterError(
            f"Parameter cannula_gauge={gauge!r} has no inner diameter in CANNULA_GAUGES.",
            f"use one of {sorted(CANNULA_GAUGES)} or give the inner radius in m directly.",
        )
    return CANNULA_GAUGES[gauge][1] / 2.0


def injector_limit_pa(injector: str) -> float | None:
    """Plunger pressure limit of the named injector (:data:`INJECTORS`), Pa; None for "none"."""
    if injector not in INJECTORS:
        raise ParameterError(f"Parameter injector={injector!r} is not in the injector table.",
                             f"use one of {sorted(INJECTORS)} or give max_plunger_pressure_pa.")
    return INJECTORS[injector][0]


def wall_shear_rate_1_s(flow_m3_s, inner_radius_m: float, n: float = 1.0):
    """Wall shear rate of laminar power-law tube flow: ((3n+1)/(4n)) 4Q/(pi r^3)."""
    return (3.0 * n + 1.0) / (4.0 * n) * 4.0 * np.asarray(flow_m3_s, dtype=float) / (math.pi * inner_radius_m**3)


def pressure_drop_pa(
    flow_m3_s,
    length_m: float,
    inner_radius_m: float,
    viscosity_pa_s: float | None = None,
    consistency_pa_sn: float | None = None,
    n: float | None = None,
):
    """Pressure drop along the cannula, Pa (array in, array out).

    Give either ``viscosity_pa_s`` (Newtonian) or ``consistency_pa_sn`` and ``n`` (power law).
    """
    q = np.asarray(flow_m3_s, dtype=float)
    if np.any(q < 0) or not np.all(np.isfinite(q)):
        raise ParameterError(f"Parameter flow_m3_s={flow_m3_s!r} must be finite and >= 0.", "give a flow in m^3/s.")
    L = check_range("length_m", length_m, 1e-4, 1.0, "m", "cannula lengths are about 0.1-0.15 m.")
    r = check_range("inner_radius_m", inner_radius_m, 1e-5, 1e-2, "m", "an 11 G cannula has r = 1.19e-3 m.")
    if viscosity_pa_s is not None:
        if consistency_pa_sn is not None or n is not None:
            raise ParameterError(
                "Parameters viscosity_pa_s and consistency_pa_sn/n were both given.",
                "give viscosity_pa_s (Newtonian) or consistency_pa_sn with n (power law), not both.",
            )
        mu = check_range("viscosity_pa_s", viscosity_pa_s, 1e-6, 1e7, "Pa s")
        dp = 8.0 * mu * L * q / (math.pi * r**4)
    else:
        if consistency_pa_sn is None or n is None:
            raise ParameterError(
                "Neither viscosity_pa_s nor both consistency_pa_sn and n were given.",
                "give viscosity_pa_s (Newtonian) or consistency_pa_sn with n (power law).",
            )
        K = check_range("consistency_pa_sn", consistency_pa_sn, 1e-6, 1e8, "Pa s^n")
        nn = check_range("n", n, 0.05, 2.0, "", "power-law index of bone cement is about 0.2-0.7.")
        dp = (2.0 * K * L / r) * (((3.0 * nn + 1.0) / nn) * q / (math.pi * r**3)) ** nn
    return dp if dp.ndim else float(dp)


def buckingham_reiner_flow_m3_s(dp_pa: float, length_m: float, inner_radius_m: float, plastic_viscosity_pa_s: float,
                                yield_stress_pa: float) -> float:
    """Bingham fluid in a tube: the Buckingham-Reiner volume flow (module docstring); 0 below the yield stress."""
    tau_w = dp_pa * inner_radius_m / (2.0 * length_m)
    if tau_w <= yield_stress_pa:
        return 0.0
    x = yield_stress_pa / tau_w
    return math.pi * inner_radius_m**4 * dp_pa / (8.0 * plastic_viscosity_pa_s * length_m) * (
        1.0 - 4.0 / 3.0 * x + x**4 / 3.0)


def herschel_bulkley_flow_m3_s(dp_pa: float, length_m: float, inner_radius_m: float, consistency_pa_sn: float,
                               n: float, yield_stress_pa: float, n_stress: int = N_STRESS) -> float:
    """Volume flow of a Herschel-Bulkley fluid in a tube at pressure drop ``dp_pa`` (midpoint rule, module docstring)."""
    tau_w = dp_pa * inner_radius_m / (2.0 * length_m)
    if tau_w <= yield_stress_pa:
        return 0.0
    d = (tau_w - yield_stress_pa) / int(n_stress)
    tau = yield_stress_pa + (np.arange(int(n_stress)) + 0.5) * d
    gamma = ((tau - yield_stress_pa) / consistency_pa_sn) ** (1.0 / n)
    return float(math.pi * inner_radius_m**3 / tau_w**3 * np.sum(tau**2 * gamma) * d)


def herschel_bulkley_pressure_drop_pa(flow_m3_s: float, length_m: float, inner_radius_m: float,
                                      consistency_pa_sn: float, n: float, yield_stress_pa: float) -> float:
    """Pressure drop that drives ``flow_m3_s`` of a Herschel-Bulkley fluid through the tube (Brent on the flow)."""
    from scipy.optimize import brentq

    q = float(flow_m3_s)
    if not (q >= 0.0 and math.isfinite(q)):
        raise ParameterError(f"Parameter flow_m3_s={flow_m3_s!r} must be finite and >= 0.", "give a flow in m^3/s.")
    if yield_stress_pa < 0.0:
        raise ParameterError(f"Parameter yield_stress_pa={yield_stress_pa!r} is negative.", "give a yield stress >= 0 Pa.")
    dp_yield = 2.0 * length_m * yield_stress_pa / inner_radius_m
    if q == 0.0:
        return dp_yield
    dp_pl = float(pressure_drop_pa(q, length_m, inner_radius_m, consistency_pa_sn=consistency_pa_sn, n=n))
    lo, hi = dp_yield, dp_yield + 2.0 * dp_pl  # bracket: doubled until the flow at hi passes q
    while herschel_bulkley_flow_m3_s(hi, length_m, inner_radius_m, consistency_pa_sn, n, yield_stress_pa) < q:
        hi *= 2.0
    return float(brentq(lambda dp: herschel_bulkley_flow_m3_s(dp, length_m, inner_radius_m, consistency_pa_sn, n,
                                                               yield_stress_pa) - q, lo, hi, rtol=1e-12))
