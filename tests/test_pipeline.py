"""The whole VP vs KP pipeline on a phantom with exact geometry: every stage runs and lands in the report."""

import json

import numpy as np
import pytest

from vertaug.anatomy.io import load_ct
from vertaug.anatomy.phantom import make_phantom
from vertaug.procedures.kyphoplasty import Kyphoplasty
from vertaug.procedures.vertebroplasty import Vertebroplasty
from vertaug.report.pipeline import run_pipeline


@pytest.fixture(scope="module")
def grade2_run(tmp_path_factory):
    """The whole pipeline once on a grade-2 wedge phantom with a cortical defect (shared by the tests below)."""
    out = tmp_path_factory.mktemp("grade2")
    ph = make_phantom(fracture="wedge", grade=2, cortical_defect=True)
    written = run_pipeline(ph.ct, ph.labels, "L1", out / "report", body=ph.body, vp=Vertebroplasty(volume_ml=6.0),
                           kp=Kyphoplasty(balloon_ml=3.0, cement_ml=6.0), thermal=True, mechanics=True, fluoro=False)
    c, written = written.comparison, written.paths
    return ph, written, c, out


@pytest.mark.slow
def test_pipeline_on_grade2_wedge_phantom(grade2_run):
    ph, written, c, tmp_path = grade2_run
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
    # comparison.json validates against its documented schema
    from importlib.resources import files

    import jsonschema

    schema = json.loads((files("vertaug.report") / "templates" / "comparison.schema.json").read_text())
    jsonschema.validate(data, schema)
    # overlays lie on the CT grid: same shape and affine, so they open over the original CT in 3D Slicer
    cement = load_ct(written["nifti_cement_VP"])
    assert cement.shape == ph.ct.shape
    np.testing.assert_allclose(cement.affine_mm, ph.ct.affine_mm, atol=1e-6)
    for tag in ("pre", "vp", "kp"):  # FE strain at the failure load, one overlay per state
        strain = load_ct(written[f"nifti_strain_at_failure_pct_{tag}"])
        np.testing.assert_allclose(strain.affine_mm, ph.ct.affine_mm, atol=1e-6)
        assert 0.7 < strain.data.max() < 20.0
    tmax = load_ct(written["nifti_max_temperature_c_KP"])
    np.testing.assert_allclose(tmax.affine_mm, ph.ct.affine_mm, atol=1e-6)
    assert tmax.data.min() == pytest.approx(37.0, abs=0.5) and tmax.data.max() > 60.0
    assert not list(tmp_path.glob(".*partial*"))  # the temporary folder was moved into place
    # the cement left in the bone: injected less what leaked (with the phantom's veins, VP leaks through route S)
    in_bone_ml = rows["injected_ml"].vp - rows["leaked_ml"].vp
    assert cement.data.sum() * ph.ct.voxel_volume_mm3 / 1000 == pytest.approx(in_bone_ml, rel=0.05)


@pytest.mark.slow
def test_report_screenshot_in_headless_chromium(grade2_run):
    """The report as a reader sees it (scripts/report_screenshot.py, Debian chromium): every figure decoded, the
    page ends inside the shot (>= 200 blank rows at the bottom) and nothing overflows the right edge at 1200 px."""
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "report_screenshot.py"
    spec = importlib.util.spec_from_file_location("report_screenshot", script)
    shot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shot)
    if shot.chromium() is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    _, written, _, tmp_path = grade2_run
    png = tmp_path / "report.png"
    info = shot.screenshot(written["html"], png, width=1200)
    assert info["bottom_blank"] and info["right_blank"], info
    assert info["content_height_px"] > 3000  # the morphometry, both procedures, evidence, claims and limitations
    assert info["coloured_fraction"] > 0.003, info  # the figures (coloured cement, curves, bars) were drawn
    # each inline figure is a decodable PNG: what the browser was given to draw
    import base64
    import io
    import re

    import matplotlib.image as mpimg

    html = written["html"].read_text()
    figures = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(figures) >= 8
    for b64 in figures:
        img = mpimg.imread(io.BytesIO(base64.b64decode(b64)), format="png")
        assert img.shape[0] > 100 and img.shape[1] > 100 and img[..., :3].std() > 0.01


def test_compare_cli_bad_input_exits_with_one_line_and_no_report(tmp_path, example):
    from typer.testing import CliRunner

    from vertaug.cli import app

    runner = CliRunner()
    out = tmp_path / "report"
    res = runner.invoke(app, ["compare", str(tmp_path / "missing.nii.gz"), str(example["seg"]), "--level", "L1",
                              "--out", str(out)])
    assert res.exit_code == 2 and "does not exist" in res.output and "Traceback" not in res.output
    assert not out.exists()
    res = runner.invoke(app, ["compare", str(example["ct"]), str(example["seg"]), "--level", "T12", "--body",
                              str(example["body"]), "--out", str(out), "--no-thermal", "--no-mechanics"])
    assert res.exit_code == 2 and "cannot be modelled" in res.output and "Traceback" not in res.output
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
    res = runner.invoke(app, ["compare", str(example["ct"]), str(example["seg"]), "--level", "L1", "--out", str(out),
                              "--vp-volume", "-1"])
    assert res.exit_code == 2 and "volume_ml" in res.output and not out.exists()


def test_compare_cli_numerical_failure_is_one_line(tmp_path, example, monkeypatch):
    """A solver failure (RuntimeError, not bad input) exits 3 with one line; VERTAUG_TRACEBACK=1 shows the traceback."""
    from typer.testing import CliRunner

    import vertaug.report.pipeline as pipeline
    from vertaug.cli import app

    def fails(*args, **kwargs):
        raise RuntimeError("saturation step did not converge at step 2 even at dt = 0.003 s")

    monkeypatch.setattr(pipeline, "run_pipeline", fails)
    args = ["compare", str(example["ct"]), str(example["seg"]), "--level", "L1", "--out", str(tmp_path / "r")]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 3 and "numerical failure" in res.output and "Traceback" not in res.output
    assert "VERTAUG_TRACEBACK=1" in res.output
    monkeypatch.setenv("VERTAUG_TRACEBACK", "1")
    res = CliRunner().invoke(app, args)
    assert isinstance(res.exception, RuntimeError)


@pytest.mark.slow
def test_two_workers_give_the_serial_results(tmp_path):
    """The KP chain in a second process (workers=2) gives the serial run's numbers (round-off: reductions in
    another process may sum in another order)."""
    ph = make_phantom(fracture="wedge", grade=2)
    runs = {}
    for workers in (1, 2):
        written = run_pipeline(ph.ct, ph.labels, "L1", tmp_path / f"w{workers}", body=ph.body, spacing_mm=1.0,
                               vp=Vertebroplasty(volume_ml=3.0), kp=Kyphoplasty(balloon_ml=1.5), thermal=True,
                               mechanics=True, fluoro=False, workers=workers)
        runs[workers] = written.comparison
    serial, parallel = runs[1], runs[2]
    assert {"vertebroplasty", "kyphoplasty", "exotherm_KP", "mechanics_KP"} <= set(parallel.timings_s)
    for a, b in zip(serial.rows, parallel.rows):
        assert a.key == b.key
        for x, y in ((a.vp, b.vp), (a.kp, b.kp)):
            if isinstance(x, float) and np.isfinite(x):
                assert y == pytest.approx(x, rel=1e-7, abs=1e-12), a.key
    assert set(parallel.states) == {"pre-treatment", "VP", "KP"}
    for name, st in serial.states.items():
        assert parallel.states[name]["stiffness_n_per_mm"] == pytest.approx(st["stiffness_n_per_mm"], rel=1e-7)


def test_workers_out_of_range_is_a_parameter_error(tmp_path):
    from vertaug.errors import ParameterError

    ph = make_phantom(fracture="none", spacing_mm=2.0)
    with pytest.raises(ParameterError, match="workers"):
        run_pipeline(ph.ct, ph.labels, "L1", tmp_path / "x", body=ph.body, workers=0)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow
def test_error_in_the_kp_worker_reaches_the_caller_and_leaves_no_report(tmp_path):
    """Bad input that only the KP chain meets (more cement than the body's pore space), run in the second process:
    the InputError comes back with its message and fix, the worker is stopped, and no report folder is left."""
    from vertaug.errors import ParameterError

    ph = make_phantom(fracture="wedge", grade=2)
    out = tmp_path / "report"
    with pytest.raises(ParameterError, match="pore space") as info:
        run_pipeline(ph.ct, ph.labels, "L1", out, body=ph.body, vp=Vertebroplasty(volume_ml=2.0),
                     kp=Kyphoplasty(balloon_ml=1.0, cement_ml=30.0), thermal=False, mechanics=False, workers=2)
    assert info.value.fix  # the fix survived the trip between processes
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))
