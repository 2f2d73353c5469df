"""Pressure lost in the cannula (a straight tube of inner radius r and length L) at volume flow Q.

Newtonian, Hagen-Poiseuille:

    dp = 8 mu L Q / (pi r^4)

Power-law fluid (tau = K gamma^n), fully developed laminar tube flow (wall shear rate
gamma_w = ((3n+1)/(4n)) 4Q/(pi r^3), wall stress tau_w = dp r / (2L)):

    dp = (2 K L / r) [ ((3n+1)/n) Q / (pi r^3) ]^n

which reduces to Hagen-Poiseuille for n = 1, K = mu (docs/flow.md, [D]).
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

__all__ = ["CANNULA_GAUGES", "inner_radius_m", "pressure_drop_pa", "wall_shear_rate_1_s"]


def inner_radius_m(gauge: int) -> float:
    """Inner radius of a regular-wall cannula of the given gauge (11 or 13)."""
    if gauge not in CANNULA_GAUGES:
        raise ParameterError(
            f"Parameter cannula_gauge={gauge!r} has no inner diameter in CANNULA_GAUGES.",
            f"use one of {sorted(CANNULA_GAUGES)} or give the inner radius in m directly.",
        )
    return CANNULA_GAUGES[gauge][1] / 2.0


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
