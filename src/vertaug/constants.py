"""Physical constants, unit factors and device defaults shared by every layer (one home; a leaf module, no imports).

Temperatures are in C in the API, in K inside the kinetics (``T_K = T_C + KELVIN``). Pressures are in Pa inside;
psi (balloon inflators) and mmHg (venous pressure) appear only at the edges. The cannula gauge table (outer and inner
diameter per gauge, with its source) is the device table :data:`CANNULA_GAUGES`; ``physics/cannula.py`` computes
with it.
"""

from __future__ import annotations

__all__ = [
    "BODY_TEMPERATURE_C",
    "CANNULA_GAUGES",
    "DEFAULT_CANNULA_GAUGE",
    "KELVIN",
    "MMHG_PA",
    "PSI_PA",
    "ROOM_TEMPERATURE_C",
]

#: 0 C in kelvin (T_K = T_C + KELVIN).
KELVIN = 273.15
#: Core body temperature (C): the far field and perfused tissue of every in-vivo thermal run.
BODY_TEMPERATURE_C = 37.0
#: Operating-room / bench temperature (C): cement mixed and stored at it, bench tests run at it.
ROOM_TEMPERATURE_C = 23.0

#: One pound-force per square inch in Pa (exact by definition of the pound and the inch).
PSI_PA = 6894.757293168
#: One millimetre of mercury in Pa, to the 6 digits used in the venous pressure (133.322387415 exactly).
MMHG_PA = 133.322

#: gauge -> (outer diameter m, inner diameter m), regular-wall needle tubing (nominal, Birmingham gauge; "Needle gauge
#: comparison chart", Wikipedia, https://en.wikipedia.org/wiki/Needle_gauge_comparison_chart, seen 2026-11-24).
#: Thin-wall cannulas of the same gauge have larger inner diameters.
CANNULA_GAUGES: dict[int, tuple[float, float]] = {
    11: (3.048e-3, 2.388e-3),
    13: (2.413e-3, 1.803e-3),
}
#: The cannula of both procedures unless a plan says otherwise: 11 G (vertebroplasty and kyphoplasty kits).
DEFAULT_CANNULA_GAUGE = 11
