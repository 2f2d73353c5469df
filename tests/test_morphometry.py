"""Morphometry on phantoms of exactly known geometry, and on the bundled real CT."""

import json
import math

import numpy as np
import pytest

from vertaug.anatomy.morphometry import density_class, genant_from_heights, genant_grade, measure_spine, measure_volumes
from vertaug.anatomy.phantom import GRADE_DEFORMITY, make_phantom

CASES = [("none", 0)] + [(kind, g) for kind in ("wedge", "biconcave", "crush") for g in (1, 2, 3)]


@pytest.mark.parametrize("kind,grade", CASES)
def test_phantom_heights_grade_and_type(kind, grade):
    # the CT as a scanner forms it (partial volume of the endplates through the slice profile): the default
    # morphometry fits the CT's endplate edge; the phantom's 1 mm plate reads ~0.33 mm inside each face (the edge model
    # assumes 0.35 mm, Silva 1994)
    ph = make_phantom(fracture=kind, grade=grade, spacing_mm=1.0, partial_volume=True)
    spine = measure_volumes(ph.ct, ph.labels, ph.body)
    m = spine["L1"]
    truth = ph.truth["levels"]["L1"]
    voxel = 1.0
    for key in ("anterior", "middle", "posterior"):
        # the biconcave phantom's dish rim lies exactly at the 15 and 85 % positions (b = 0 at |u - 0.5| = 0.35): the
        # default's local plane over +-1 voxel of depth straddles the rim and reads part of the dish (measured:
        # Ha / Hp -1.02 / -0.90, -1.01 / -1.12, -1.42 / -1.23 mm at grades 1, 2, 3, of which -0.65 is the 1 mm
        # plate read inside the faces; the per-line fit: -1.06 / -0.86 at grade 3)
        tol = 1.5 if kind == "biconcave" and key != "middle" else voxel
        assert abs(getattr(m, f"height_{key}_mm") - truth[f"height_{key}_mm"]) <= tol, key
    assert m.genant_grade == grade
    assert m.genant_type == kind
    assert m.deformity == pytest.approx(GRADE_DEFORMITY[grade], abs=0.03)
    if kind == "wedge":
        assert m.wedge_angle_deg == pytest.approx(truth["wedge_angle_deg"], abs=1.5)
    else:
        assert abs(m.wedge_angle_deg) < 1.5
    # neighbours are intact and measured too
    for name in ("T12", "L2"):
        n = spine[name]
        assert n.genant_grade == 0
        assert n.height_posterior_mm == pytest.approx(ph.truth["levels"][name]["height_posterior_mm"], abs=voxel)


def test_phantom_at_half_millimetre_is_within_half_a_millimetre():
    ph = make_phantom(fracture="wedge", grade=2, spacing_mm=0.5, partial_volume=True, endplate_mm=0.35)
    m = measure_volumes(ph.ct, ph.labels, ph.body)["L1"]
    t = ph.truth["levels"]["L1"]
    for key in ("anterior", "middle", "posterior"):
        assert abs(getattr(m, f"height_{key}_mm") - t[f"height_{key}_mm"]) <= 0.5


def test_phantom_without_body_map_separates_body_from_posterior_elements():
    ph = make_phantom(fracture="wedge", grade=2)
    with_body = measure_volumes(ph.ct, ph.labels, ph.body)["L1"]
    without = measure_volumes(ph.ct, ph.labels, None)["L1"]
    assert without.genant_grade == 2 and without.genant_type == "wedge"
    assert without.height_anterior_mm == pytest.approx(with_body.height_anterior_mm, abs=1.0)
    # posterior elements not counted as body (31.0 mm with the map). Measured 27.5 mm: the depth is between the walls
    # as the medians of the lines (the outermost voxels gave 31.0); the cut at the canal's front takes ~3 mm off this
    # phantom's posterior wall in the mid-sagittal band
    assert 26.0 <= without.ap_depth_mm <= 32.5


def test_phantom_volume_and_hu():
    ph = make_phantom(trabecular_hu=80.0, noise_hu=20.0, seed=3)
    m = measure_volumes(ph.ct, ph.labels, ph.body)["L1"]
    # D-shaped body: area of the ellipse part in front of its flat back wall times height
    a, b, c = 21.0, 0.55 * 31.0, 0.45 * 31.0
    seg = b * b * math.acos(c / b) - c * math.sqrt(b * b - c * c)  # circular-segment area of the unit-scaled cut
    area = a / b * (math.pi * b * b - seg)
    assert m.volume_ml == pytest.approx(area * 25.0 / 1000.0, rel=0.03)
    assert m.hu_mean == pytest.approx(80.0, abs=3.0)  # core is trabecular only: cortex (700 HU) excluded
    assert m.density_class == "osteoporosis"


def test_genant_bands_at_their_edges():
    assert [genant_grade(d) for d in (0.0, 0.199, 0.20, 0.249, 0.25, 0.40, 0.401)] == [0, 0, 1, 1, 2, 2, 3]
    assert genant_grade(float("nan")) is None
    g = genant_from_heights(ha=15.0, hm=20.0, hp=25.0)  # exactly 40 %: still moderate (severe is > 40 %)
    assert g["genant_type"] == "wedge" and g["genant_grade"] == 2 and g["deformity"] == pytest.approx(0.4)
    assert genant_from_heights(ha=14.0, hm=20.0, hp=25.0)["genant_grade"] == 3
    assert math.isnan(g["deformity_crush"])  # no neighbour reference
    g = genant_from_heights(ha=20.0, hm=20.0, hp=20.0, hp_reference=25.0)
    assert g["genant_type"] == "crush" and g["genant_grade"] == 1


def test_density_class_thresholds():
    # Pickhardt 2013 (L1): <= 160 HU 90 % sensitive, <= 110 HU > 90 % specific for DXA osteoporosis
    assert [density_class(v) for v in (200, 160.1, 160, 110.1, 110, 80)] == [
        "normal", "normal", "osteopenia", "osteopenia", "osteoporosis", "osteoporosis"]
    assert density_class(float("nan")) is None


def test_bundled_ct_lumbar_levels_all_measured(example):
    spine = measure_spine(example["ct"], example["seg"], body=example["body"])
    for name in ("L1", "L2", "L3", "L4", "L5"):
        m = spine[name]
        assert m.evaluable, (name, m.reason)
        for key in ("anterior", "middle", "posterior"):
            assert 18.0 < getattr(m, f"height_{key}_mm") < 36.0  # adult lumbar range at 3 mm voxels
        assert 25.0 < m.volume_ml < 70.0
        assert 60.0 < m.hu_mean < 250.0
        assert m.genant_grade in (0, 1, 2, 3)
    # T12 and T11 run out of the field of view at the top: reported, not measured
    for name in ("T11", "T12"):
        assert not spine[name].evaluable
        assert "field of view" in spine[name].reason
    assert not spine["S1"].evaluable


def test_morpho_cli_writes_json(example, tmp_path):
    from typer.testing import CliRunner

    from vertaug.cli import app

    out = tmp_path / "m.json"
    res = CliRunner().invoke(app, ["morpho", str(example["ct"]), str(example["seg"]), "--body", str(example["body"]),
                                   "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    assert set(["L1", "L2", "L3", "L4", "L5"]) <= set(data["levels"])
    assert data["units"]["height"] == "mm"
    assert data["levels"]["T12"]["evaluable"] is False


def test_morpho_cli_reports_bad_input(tmp_path):
    from typer.testing import CliRunner

    from vertaug.cli import app

    res = CliRunner().invoke(app, ["morpho", str(tmp_path / "no.nii.gz"), str(tmp_path / "no2.nii.gz")])
    assert res.exit_code == 2
    assert "does not exist" in res.output


def test_demo_writes_outputs(tmp_path):
    from vertaug.demo import run_demo

    written = run_demo(tmp_path / "demo")
    data = json.loads(written["morphometry_json"].read_text())
    assert data["levels"]["L1"]["evaluable"]
    assert written["figure"].stat().st_size > 10_000
    html = written["html"].read_text()
    assert "not a medical device" in html and "Sham-controlled trials" in html and "data:image/png;base64," in html
    comp = json.loads(written["json"].read_text())
    assert comp["level"] == "L1" and comp["model"]["label_counts"]["trabecular"] > 10_000
    assert [c["number"] for c in comp["claims"]] == list(range(1, 9))
    metrics = {m["key"]: m for m in comp["metrics"]}
    # the demo's L1 carries a virtual grade-2 wedge fracture (L1 of the bundled CT measures a borderline grade-1 wedge,
    # 0.224 with the default endplate surfaces since issue 23: measured after the cut 0.361, amplitude 3.41 mm; with
    # the per-line CT fit before, 0.241 and 0.290 at 3.02 mm; 0.298 before that); each injection ends by a recorded
    # clinical rule: VP at the first leak visible on fluoroscopy (through the sampled veins and their extra-osseous
    # drainage, route S) after 2.51 of the 4 mL planned (2.26 on the former cut), KP (2 x 2 mL balloons) at the
    # planned volume, the cavity's 4.00 mL (the cavity is the balloons' space since issue 20's bookkeeping; it
    # leaked visibly after 4.09-4.31 mL before, into the gap and the bone around it)
    out = comp["outcomes"]
    assert out["VP"]["metrics"]["stop_reason"] == "leak visible (leaked volume above the fluoroscopy detection limit)"
    assert metrics["injected_ml"]["vp"] == pytest.approx(2.51, rel=0.1)
    assert metrics["injected_ml"]["kp"] == pytest.approx(4.00, rel=0.05)
    assert out["KP"]["metrics"]["stop_reason"] == "volume reached"
    assert comp["inputs"]["fracture"]["grade"] == 2 and "morphometry_before" in comp["inputs"]
    assert metrics["peak_temperature_c"]["vp"] > 45.0 and metrics["stiffness_n_per_mm"]["kp"] > 0
    assert set(comp["mechanics_states"]) == {"pre-treatment", "VP", "KP"}
    assert written["VP_lateral"].stat().st_size > 10_000 and written["key_frames"].suffix == ".png"
    assert written["nifti_cement_VP"].exists() and written["nifti_max_temperature_c_KP"].exists()


def test_phantom_tissue_map_has_every_structure():
    ph = make_phantom(fracture="wedge", grade=2, cortical_defect=True, cleft=True)
    present = set(np.unique(ph.tissue.data).tolist())
    assert {0, 1, 2, 3, 4, 5, 6, 7, 8} <= present


def test_totalseg_method_on_a_wedge_phantom():
    """``method="totalseg"``: heights at 15/50/85 % of the AP chord of the body eroded by 3 mm (TotalSegmentator's spine
    report), single chords of the mask: on a grade-2 wedge (D-shaped body 31 mm deep, hinge at 15 % of the depth) the
    eroded chord runs 3..28 mm from the posterior wall, so the lines sit at 21.8 / 50 / 78.2 % of the depth and read
    H = Hp (1 - 0.325 max(0, u - 0.15) / 0.70): 24.21 / 20.94 / 17.66 mm, deformity 0.270 (grade 2, not the phantom's
    0.325: the positions differ), within one voxel."""
    from vertaug.anatomy.morphometry import TS_EROSION_MM

    ph = make_phantom(fracture="wedge", grade=2, spacing_mm=1.0, partial_volume=True)
    m = measure_volumes(ph.ct, ph.labels, ph.body, method="totalseg")["L1"]
    depth, hp, d = 31.0, 25.0, GRADE_DEFORMITY[2]
    chord = depth - 2 * TS_EROSION_MM
    for key, frac in (("posterior", 0.15), ("middle", 0.5), ("anterior", 0.85)):
        u = (TS_EROSION_MM + frac * chord) / depth
        want = hp * (1 - d * max(0.0, u - 0.15) / 0.70)
        assert getattr(m, f"height_{key}_mm") == pytest.approx(want, abs=1.0), key
    assert (m.genant_type, m.genant_grade) == ("wedge", 2)
    assert m.endplate_method == "mask (TotalSegmentator spine report)"
    assert m.ratio_min_max < 0.8  # TotalSegmentator's own flag


def test_bundled_ct_l1_under_both_methods(example):
    """L1 of the bundled CT: a (borderline) grade-1 wedge under the default and under the TotalSegmentator-style
    heights (measured 0.239 +- 0.034 with the default endplate surfaces and issue 23's wall curve, 0.224 with the
    median walls before it, 0.241 with the per-line CT fit the surfaces replaced;
    0.237 TotalSegmentator-style; the established tool's report quoted in issue 24 flags ~22 %)."""
    for method, want in (("vertaug", 0.239), ("totalseg", 0.237)):
        m = measure_spine(example["ct"], example["seg"], body=example["body"], method=method)["L1"]
        assert (m.genant_type, m.genant_grade) == ("wedge", 1), method
        assert m.deformity == pytest.approx(want, abs=0.01), method
        assert m.grade_borderline
