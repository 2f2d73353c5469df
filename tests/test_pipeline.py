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
                           kp=Kyphoplasty(balloon_ml=3.0, cement_ml=6.0), thermal=True, mechanics=True, fluoro=False,
                           samples=2)
    c, written = written.comparison, written.paths
    return ph, written, c, out


@pytest.mark.slow
def test_pipeline_on_grade2_wedge_phantom(grade2_run):
    ph, written, c, tmp_path = grade2_run
    rows = {r.key: r for r in c.rows}
    # 6 mL planned for both (KP balloons 2 x 3 mL); each injection ends at a recorded clinical rule: here the first
    # leak visible on fluoroscopy, through the phantom's veins (VP after 1.25 mL), and the report says so
    for name, o in (("VP", c.vp), ("KP", c.kp)):
        assert o.injection.injected_ml <= 6.0 * (1 + 1e-6)
        if o.injection.injected_ml < 6.0 * (1 - 0.05):
            assert o.injection.stop_reason != "volume reached"
            assert f"{name} injection stopped: {o.injection.stop_reason}" in rows["injected_ml"].reason
    # KP lifts the depressed endplate of a wedge fracture; VP's postural and hydraulic lift stay below a voxel here
    assert rows["height_restored_mm"].kp > rows["height_restored_mm"].vp == 0.0
    # exotherm: cement core well above body temperature; heat conserved to round-off. VP's generic "low" cement
    # (100 J/g) measured 71.1 C; KP's "high" = Palacos R (167 J/g, its monomer fraction) 185.6 C (2026-11-30), above
    # the cement's adiabatic ceiling from 37 C (159 C) because the rim cures first and preheats the core. Its
    # unreacted monomer boils only where its partial pressure over the cement reaches 1 atm (physics/monomer.py:
    # dissolved in the polymer, T_boil rises ahead of the core as the cure uses the monomer up), so the core is not
    # held at 100 C: 185.9 C (2026-12-01; with the pure-MMA law of the first pass 99-105 C)
    assert 60.0 < rows["peak_temperature_c"].vp < 90.0
    assert 160.0 < rows["peak_temperature_c"].kp < 200.0
    for tag in ("VP", "KP"):
        assert abs(c.extra[tag]["thermal_energy_balance_error"]) < 1e-6
    assert set(c.states) == {"pre-treatment", "VP", "KP"}
    for state in c.states.values():
        assert np.isfinite(state["stiffness_n_per_mm"]) and state["stiffness_n_per_mm"] > 1000.0
    data = json.loads(written["json"].read_text())
    assert {m["key"] for m in data["metrics"]} >= {"leaked_ml", "peak_temperature_c", "stiffness_n_per_mm"}
    html = written["html"].read_text()
    assert "Vertebroplasty" in html and "Kyphoplasty" in html and html.count('<img src="data:image/png;base64,') >= 8
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
def test_report_screenshot_in_headless_chromium(grade2_run, chromium_shot):
    """The report as a reader sees it (scripts/report_screenshot.py, Debian chromium): every figure decoded, the
    page ends inside the shot (>= 200 blank rows at the bottom) and nothing overflows the right edge at 1200 px."""
    shot = chromium_shot
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
    # <img> elements only: the inlined plotly.js holds a 1 x 1 PNG of its own (a WebGL readback placeholder)
    figures = re.findall(r'<img[^>]*\ssrc="data:image/png;base64,([^"]+)"', html)
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

    from vertaug.cli import app
    from vertaug.report import pipeline

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
    """The chains in worker processes (workers=2 with samples: VP, KP and the untreated FE state on the pool of two)
    give the serial run's numbers (round-off: reductions in another process may sum in another order), and so do the
    parameter samples queued behind them on the same pool."""
    ph = make_phantom(fracture="wedge", grade=2)
    runs = {}
    for workers in (1, 2):
        written = run_pipeline(ph.ct, ph.labels, "L1", tmp_path / f"w{workers}", body=ph.body, spacing_mm=1.0,
                               vp=Vertebroplasty(volume_ml=3.0), kp=Kyphoplasty(balloon_ml=1.5), thermal=True,
                               mechanics=True, fluoro=False, workers=workers, samples=1)
        runs[workers] = written.comparison
    serial, parallel = runs[1], runs[2]
    assert {"vertebroplasty", "kyphoplasty", "exotherm_KP", "mechanics_KP", "parameter_samples"} <= set(parallel.timings_s)
    ser_r, par_r = serial.ranges.to_dict(), parallel.ranges.to_dict()
    assert ser_r["transferred"] and ser_r["samples"] == par_r["samples"]
    for tag in ("VP", "KP"):
        for key, xs in ser_r["values"][tag].items():
            assert par_r["values"][tag][key] == pytest.approx(xs, rel=1e-7, abs=1e-12, nan_ok=True), key
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


@pytest.mark.slow
def test_error_in_the_vp_worker_reaches_the_caller_and_leaves_no_report(tmp_path):
    """With parameter samples the pool has two workers and the VP chain runs in one of them: bad input that only the
    VP chain meets (more cement than the body's pore space) comes back with its fix, and no report folder is left."""
    from vertaug.errors import ParameterError

    ph = make_phantom(fracture="wedge", grade=2, spacing_mm=2.0)
    out = tmp_path / "report"
    with pytest.raises(ParameterError, match="pore space") as info:
        run_pipeline(ph.ct, ph.labels, "L1", out, body=ph.body, spacing_mm=2.0, vp=Vertebroplasty(volume_ml=25.0),
                     kp=Kyphoplasty(balloon_ml=1.0), thermal=False, mechanics=False, workers=2, samples=1)
    assert info.value.fix
    assert not out.exists() and not list(tmp_path.glob(".*partial*"))


def test_pipeline_on_a_virtual_fracture_records_it_and_writes_its_scan(tmp_path):
    """run_pipeline(fracture=...) runs on the fractured scan with its zone map, keeps the scan as it was for the
    'before' figure, and writes the fractured CT and zone map beside the overlays (their base image in 3D Slicer)."""
    from vertaug.anatomy.fracture import fracture_level
    from vertaug.anatomy.io import load_ct

    ph = make_phantom(fracture="none", spacing_mm=1.5)
    fr = fracture_level(ph.ct, ph.labels, "L1", "wedge", 2, body=ph.body)
    run = run_pipeline(ph.ct, ph.labels, "L1", tmp_path / "r", body=ph.body, spacing_mm=1.5, thermal=False,
                       mechanics=False, fracture=fr, vp=Vertebroplasty(volume_ml=2.0),
                       kp=Kyphoplasty(balloon_ml=1.0, cement_ml=2.0))
    c = run.comparison
    assert c.inputs["fracture"]["type"] == "wedge" and c.inputs["fracture"]["grade"] == 2
    assert c.spine["L1"].genant_grade == 2  # measured on the fractured scan, not the scan as it was
    assert {"figure_before_fracture", "nifti_fractured_ct", "nifti_fracture_zone"} <= set(run.paths)
    assert np.array_equal(load_ct(run.paths["nifti_fractured_ct"]).data, np.asarray(fr.ct.data, np.float32))
    assert any("virtual fracture" in n for n in c.vertebra.notes)  # the zone map reached the model
    before = c.inputs["morphometry_before"]  # the level as scanned: intact, taller at the front than after
    assert before["genant_grade"] == 0 and before["height_anterior_mm"] > c.spine["L1"].height_anterior_mm + 3.0
    assert "simulated fracture of a real vertebra" in run.paths["html"].read_text()


@pytest.mark.slow
def test_every_favoured_mark_has_a_range_that_excludes_zero(grade2_run):
    _, written, _, _ = grade2_run
    data = json.loads(written["json"].read_text())
    simulated = [m for m in data["metrics"] if "(evidence)" not in m["label"]]
    for m in simulated:
        if m["favoured"] in ("VP", "KP"):
            lo, hi = m["kp_minus_vp_range"]
            assert lo > 0 or hi < 0, m
        elif m["favoured"] == "equal" and m["kp_minus_vp_range"] is not None:
            lo, hi = m["kp_minus_vp_range"]
            assert lo <= 0 <= hi, m
    # the FE rows and the temperatures have ranges; a volume under one voxel is none
    keyed = {m["key"]: m for m in simulated}
    for key in ("peak_temperature_c", "stiffness_n_per_mm", "strength_n", "necrosis_volume_ml"):
        assert keyed[key]["kp_minus_vp_range"] is not None, key
    # the parameter samples (2 here) give every simulated row its 5/50/95 % points, and the favoured range holds the
    # sampled 5-95 % of the difference
    assert data["parameter_ranges"]["n_samples"] == 2 and data["parameter_ranges"]["transferred"]
    for key in ("leaked_ml", "max_injection_pressure_pa", "peak_temperature_c", "stiffness_n_per_mm", "strength_n"):
        q = keyed[key]["kp_minus_vp_p5_p50_p95"]
        lo, hi = keyed[key]["kp_minus_vp_range"]
        assert q is not None and lo <= q[0] <= q[2] <= hi, key
    assert "5-95 % range over 2 samples" in written["html"].read_text()


@pytest.mark.slow
def test_overlay_volumes_equal_the_reports(grade2_run):
    """Cement overlays sum to the model's cement, thermal_necrosis_* to the report's necrosis row, within 1 %."""
    ph, written, c, _ = grade2_run
    rows = {r.key: r for r in c.rows}
    ml = ph.ct.voxel_volume_mm3 / 1000.0
    for tag, outcome in (("VP", c.vp), ("KP", c.kp)):
        model_ml = float(np.asarray(outcome.cement_fraction, float).sum()) * outcome.model_after.voxel_volume_m3 * 1e6
        assert load_ct(written[f"nifti_cement_{tag}"]).data.sum() * ml == pytest.approx(model_ml, rel=0.01)
        necro = load_ct(written[f"nifti_necrosis_{tag}"]).data.sum() * ml
        assert necro == pytest.approx(getattr(rows["necrosis_volume_ml"], tag.lower()), rel=0.01, abs=1e-3)
    import nibabel as nib

    labels_model = nib.load(written["nifti_labels_model_grid"])
    assert set(np.unique(np.asanyarray(labels_model.dataobj))) == set(np.unique(c.vertebra.labels))
    assert b"labels" in labels_model.header["descrip"].tobytes()
    assert b"mL/mL" in nib.load(written["nifti_cement_VP"]).header["descrip"].tobytes()


@pytest.mark.slow
def test_no_value_under_its_detection_limit_shows_as_non_zero(grade2_run):
    _, written, c, _ = grade2_run
    html = written["html"].read_text()
    assert "-0.000" not in html and "-0.00<" not in html
    import html as html_lib
    import re

    # the table as rendered: each row's VP and KP cells, read back from report.html
    cells = {}
    for label, vp_cell, kp_cell in re.findall(r'<tr><td>([^<]+)</td><td>[^<]*</td>\s*<td class="num">([^<]+)'
                                              r'.*?</td>\s*<td class="num">([^<]+)', html):
        cells[html_lib.unescape(label).strip()] = (vp_cell.strip(), kp_cell.strip())
    from vertaug.report.compare import _outcome_metrics

    # the values as the procedures computed them (before the rows set those under the limit to 0)
    raw = ({**_outcome_metrics(c.vp), **c.extra["VP"]}, {**_outcome_metrics(c.kp), **c.extra["KP"]})
    checked = 0
    for r in c.rows:
        shown = cells[r.label.strip()]
        for i, text in enumerate((r.vp_text, r.kp_text)):
            assert shown[i] == text, (r.key, shown[i], text)  # the page shows what the row says
            v = raw[i].get(r.key)
            if r.limit is not None and v is not None and abs(v) < r.limit:
                assert text == "none", (r.key, v, text)
                checked += 1
            if v is not None and text not in ("none", "-"):
                assert not text.startswith("-0") or float(text.replace(",", "")) != 0.0, (r.key, text)
    assert checked >= 2  # the phantom's basivertebral, cortical and disc routes leak nothing measurable


@pytest.mark.slow
def test_3d_view_loads_in_headless_chromium_without_console_errors_and_is_drawn(grade2_run, chromium_shot):
    """The report's scripts (plotly.js inlined, the figure, the camera link) run in Chromium with software WebGL
    without a console message or an uncaught error; plotly drew its WebGL scenes (not its "WebGL is not supported"
    notice), and the view, shot alone, shows the translucent body and the cement (orange) of both procedures."""
    shot = chromium_shot
    _, written, _, tmp_path = grade2_run
    messages, dom = shot.console_messages(written["html"])
    assert messages == []
    view = dom.split('id="v3d"')[1].split("<script")[0]  # the view's div as plotly left it
    assert "js-plotly-plot" in view and view.count("<canvas") >= 1 and "WebGL is not supported" not in view
    rgb = shot.shoot_only(written["html"], "view3d", tmp_path / "view3d.png")[:440]  # the scenes, above the legend
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    cement = (r > 0.5) & (r > g + 0.1) & (g > b) & (r - b > 0.3)  # #e07b00, shaded: orange to brown
    half = rgb.shape[1] // 2
    assert cement[:, :half].mean() > 0.005 and cement[:, half:].mean() > 0.005, (cement[:, :half].mean(),
                                                                                  cement[:, half:].mean())
    assert rgb.std() > 0.05  # not a blank window


def test_3d_view_turns_both_scenes_together_in_headless_chromium(grade2_run, tmp_path, chromium_shot):
    """The page's camera link: a camera set on VP's scene (as a drag ends) is copied to KP's. A copy of the report
    with one script added that turns the first scene after plotly drew, then writes the second scene's eye into the
    page, read back from Chromium's DOM."""
    shot = chromium_shot
    _, written, _, _ = grade2_run
    probe = ('<script>setTimeout(function(){var el=document.getElementById("v3d");'
             'Plotly.relayout(el,{"scene.camera":{"eye":{"x":0.3,"y":-2.1,"z":0.4}}}).then(function(){'
             'setTimeout(function(){var e=el.layout.scene2.camera.eye;var d=document.createElement("div");'
             'd.id="probe";d.textContent="eye2="+[e.x,e.y,e.z].join(",");document.body.appendChild(d);},500);});},'
             '2000);</script></body>')
    page = tmp_path / "report_probe.html"
    page.write_text(written["html"].read_text(encoding="utf-8").replace("</body>", probe, 1), encoding="utf-8")
    messages, dom = shot.console_messages(page)
    assert messages == []
    assert 'id="probe">eye2=0.3,-2.1,0.4<' in dom


@pytest.mark.slow
def test_report_has_a_self_contained_3d_view(grade2_run):
    """No file or address is fetched: no <script src>, no <link>, no <iframe>, no url( in the page; the view's
    figure is inline and its surfaces are in the CT's mm; built in seconds."""
    import re

    _, written, c, _ = grade2_run
    html = written["html"].read_text()
    assert 'id="v3d"' in html and "Plotly.newPlot" in html
    assert not re.search(r"<script[^>]+src=|<link[^>]+href=|<iframe|<img[^>]+src=\"(?!data:)", html)
    assert c.timings_s["view3d"] < 30.0
    fig = re.search(r"fig=(\{.*?\}),busy=false;", html, re.DOTALL).group(1)
    names = [t["name"] for t in json.loads(fig)["data"]]
    assert "VP: cement in the body" in names and "KP: cement in the body" in names and "KP: balloon cavity" in names


def test_samples_option_is_checked_before_anything_is_loaded(tmp_path):
    from typer.testing import CliRunner

    from vertaug.cli import app

    res = CliRunner().invoke(app, ["compare", "--phantom", "wedge:2", "--level", "L1", "--out", str(tmp_path / "r"),
                                   "--samples", "-1"])
    assert res.exit_code == 2 and "--samples" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "r").exists()
