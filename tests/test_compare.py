"""Side-by-side metrics, claims check and overlays of the comparison report."""

import math

import numpy as np
import pytest

from vertaug.anatomy.io import Volume
from vertaug.report.claims import check_claims
from vertaug.report.compare import metric_rows, resample_to_ct


def test_favoured_follows_each_metric_direction():
    rows = {r.key: r for r in metric_rows(
        {"leaked_ml": 0.50, "height_restored_mm": 0.5, "stiffness_n_per_mm": 10000.0, "injected_ml": 4.0,
         "max_injection_pressure_pa": 2.0e6},
        {"leaked_ml": 0.10, "height_restored_mm": 3.0, "stiffness_n_per_mm": 10100.0, "injected_ml": 4.0,
         "max_injection_pressure_pa": 1.0e6})}
    assert rows["leaked_ml"].favoured == "KP" and rows["leaked_ml"].difference == pytest.approx(-0.4)
    assert rows["height_restored_mm"].favoured == "KP"
    assert rows["stiffness_n_per_mm"].favoured == "equal"  # 1 % apart: within the 2 % band
    assert rows["injected_ml"].favoured == "-"  # no preferred direction
    assert rows["max_injection_pressure_pa"].vp_text == "2.00" and rows["max_injection_pressure_pa"].unit == "MPa"
    assert "vp>kp" in rows["leaked_ml"].evidence  # evidence direction shown next to the simulated one


def test_claims_use_simulated_numbers_when_given():
    claims = {c.number: c for c in check_claims("osteoporosis", {"vp_leaked_ml": 0.4, "kp_leaked_ml": 0.1})}
    assert claims[5].status == "supported" and claims[5].simulated["hardened_time_min"] < 30
    assert "VP leaked 0.40 mL, KP 0.10 mL" in claims[6].finding
    assert "not supported" in claims[6].finding  # the infection half
    assert claims[4].status == "partly supported" and "sham" in claims[4].finding


def test_resample_to_ct_round_trip():
    ct_aff = np.diag([3.0, 3.0, 3.0, 1.0])
    ct = Volume(np.zeros((20, 20, 20), np.float32), ct_aff, "ct")
    m_aff = np.diag([1.0, 1.0, 1.0, 1.0])
    m_aff[:3, 3] = [15.0, 15.0, 15.0]
    field = np.zeros((30, 30, 30), np.float32)
    field[6:24, 6:24, 6:24] = 1.0  # 18 mm cube in model space = world 21..38 mm
    out = resample_to_ct(field, m_aff, ct, order=0)
    vol_model = field.sum() * 1.0
    vol_ct = out.sum() * 27.0
    assert vol_ct == pytest.approx(vol_model, rel=0.35)  # 3 mm voxels sample an 18 mm cube coarsely
    assert out[9, 9, 9] == 1.0 and out[2, 2, 2] == 0.0
    assert not math.isnan(out.sum())
