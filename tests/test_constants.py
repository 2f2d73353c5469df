"""One home for constants: vertaug.constants. The copies that remain until the physics split lands must equal it."""

import pytest

from vertaug import constants as C
from vertaug.model.labels import LABEL_NAMES
from vertaug.physics import balloon, cannula, flow, thermal


def test_values():
    assert C.KELVIN == 273.15
    assert C.BODY_TEMPERATURE_C == 37.0
    assert C.PSI_PA == pytest.approx(0.45359237 * 9.80665 / 0.0254**2, rel=1e-12)
    assert C.MMHG_PA == pytest.approx(133.322387415, rel=1e-5)
    assert C.DEFAULT_CANNULA_GAUGE in C.CANNULA_GAUGES
    assert cannula.CANNULA_GAUGES is C.CANNULA_GAUGES


def test_physics_names_are_the_constants():
    assert thermal.KELVIN == C.KELVIN
    assert thermal.BODY_C == C.BODY_TEMPERATURE_C
    assert balloon.PSI_PA == C.PSI_PA
    assert flow.VENOUS_PRESSURE_PA == 25.0 * C.MMHG_PA


def test_thermal_table_covers_every_label():
    assert set(thermal.LABEL_THERMAL) == set(LABEL_NAMES)
