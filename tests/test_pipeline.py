"""The whole VP vs KP pipeline on a phantom with exact geometry: every stage runs and lands in the report."""

import json

import numpy as np
import pytest

from vertaug.anatomy.io import load_ct
from vertaug.anatomy.phantom import make_phantom
from vertaug.procedures.kyphoplasty import Kyphoplasty
from vertaug.procedures.vertebroplasty import Vertebroplasty
from vertaug.report.pipeline import run_pipeline


@pytest.mark.slow
def test_pipeline_on_grade2_wedge_phantom(tmp_path):
    ph = make_phantom(fracture="wedge", grade=2, cortical_defect=True)
    written = run_pipeline(ph.ct, ph.labels, "L1", tmp_path, body=ph.body, vp=Vertebroplasty(volume_ml=6.0),
                           kp=Kyphoplasty(balloon_ml=3.0, cement_ml=6.0), thermal=True, mechanics=True, fluoro=False)
    c = written.pop("_comparison")
    rows = {r.key: r for r in c.rows}
    # same cement volume requested: same cement volume for both (KP balloons 2 x 3 mL)
    assert rows["injected_ml"].vp == pytest.approx(6.0, rel=1e-6)
    assert rows["injected_ml"].kp == pytest.approx(6.0, rel=0.05)
    # KP lifts the depressed endplate of a wedge fracture; VP moves no bone in this model
    assert rows["height_restored_mm"].kp > rows["height_restored_mm"].vp == 0.0
    # exotherm: cement core well above body temperature; heat conserved to round-off
    for tag in ("vp", "kp"):
        assert 60.0 < getattr(rows["peak_temperature_c"], tag) < 130.0
    for tag in ("VP", "KP"):
        assert abs(c.extra[tag]["thermal_energy_balance_error"]) < 1e-6
    assert set(c.states) == {"pre-treatment", "VP", "KP"}
    for state in c.states.values():
        assert np.isfinite(state["stiffness_n_per_mm"]) and state["stiffness_n_per_mm"] > 1000.0
    data = json.loads(written["json"].read_text())
    assert {m["key"] for m in data["metrics"]} >= {"leaked_ml", "peak_temperature_c", "stiffness_n_per_mm"}
    html = written["html"].read_text()
    assert "Vertebroplasty" in html and "Kyphoplasty" in html and html.count("data:image/png;base64,") >= 8
    cement = load_ct(written["nifti_cement_VP"])  # overlay on the phantom CT grid
    assert cement.shape == ph.ct.shape
    assert cement.data.sum() * ph.ct.voxel_volume_mm3 / 1000 == pytest.approx(6.0, rel=0.05)
