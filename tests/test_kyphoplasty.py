"""Kyphoplasty procedure: Outcome contents, mass balance, heights, KP vs VP at the same cement volume, bad input."""

import json

import numpy as np
import pytest
from scipy import ndimage

from vertaug.anatomy.phantom import make_phantom
from vertaug.errors import ParameterError
from vertaug.model.trajectory import plan_trajectories
from vertaug.model.vertebra import vertebra_from_phantom
from vertaug.physics import balloon as bl
from vertaug.procedures.kyphoplasty import Kyphoplasty, fill_with_cement, run_kyphoplasty
from vertaug.procedures.outcome import Outcome
from vertaug.procedures.vertebroplasty import Vertebroplasty, run_vertebroplasty


@pytest.fixture(scope="module")
def wedge():
    return vertebra_from_phantom(make_phantom(fracture="wedge", grade=2, cortical_defect=True, spacing_mm=2.0))


@pytest.fixture(scope="module")
def kp(wedge):
    return run_kyphoplasty(wedge, Kyphoplasty())


def test_outcome_contents_and_mass_balance(wedge, kp):
    assert isinstance(kp, Outcome) and kp.procedure == "kyphoplasty"
    m = kp.metrics
    # fill_ratio 1: the cavity volume, unless a stopping rule ended the fill first (here: the leak through the
    # phantom's veins becomes visible on fluoroscopy)
    if kp.injection.stop_reason == "volume reached":
        assert m["injected_ml"] == pytest.approx(m["cavity_volume_ml"], rel=1e-9)
    else:
        assert m["injected_ml"] < m["cavity_volume_ml"] and m["leaked_ml"] >= kp.injection.fluoro_detection_limit_ml
    assert m["cement_mass_balance_error_max"] < 1e-6
    assert m["shell_mass_balance_error"] < 1e-9
    in_bone = kp.series["in_bone_ml"][-1]
    leaked = sum(kp.series[f"leaked_ml_{r}"][-1] for r in "BSCD")
    assert in_bone + leaked == pytest.approx(m["injected_ml"], rel=1e-9)
    # cement volume on the grid = cement in bone
    vox_ml = wedge.voxel_volume_m3 * 1e6
    assert kp.cement_fraction.shape == kp.model_after.labels.shape
    assert float(kp.cement_fraction[kp.model_after.labels == 7].sum() + kp.cement_fraction[
        kp.model_after.labels == 1].sum()) * vox_ml == pytest.approx(in_bone, rel=0.05)  # tip voxels: cannula
    assert np.all((kp.cement_fraction >= 0) & (kp.cement_fraction <= 1 + 1e-6))
    json.dumps(kp.summary())
    assert kp.metric("not_a_metric") != kp.metric("not_a_metric")  # NaN for a missing metric


def test_heights_before_inflated_after(kp):
    m = kp.metrics
    # phantom truth 16.875 mm; 2 mm voxels (model.heights: the morphometry's measurement with CT endplates on the
    # model's HU, moved with the lift)
    assert m["height_anterior_mm_before"] == pytest.approx(16.875, abs=2.0)
    # the posterior wall is not lifted; its measured height: 24.37 -> 24.42 mm with the endplate surfaces (the
    # morphometry's default since issue 23; 24.40 -> 24.41 with the median walls before the wall curve; the per-line fit's lines, placed about the body's centroid: 25.69 -> 25.08)
    assert m["height_posterior_mm"] == pytest.approx(m["height_posterior_mm_before"], abs=1.0)
    # what comes out on this 2 mm phantom (not tuned): 4.07 of 6.97 mm, 58.4 % of the lost height, kept after deflation
    # (the plate rotates back about its posterior hinge, physics/balloon.hinged_target; the lift stops where the plate
    # leaves the 15/3 balloon's rated shape; heights along the canal-based anterior axis, 1.4 deg off the image's +y
    # on these 2 mm voxels); wedge angle 18.3 -> 7.97 deg. Heights with the endplate surfaces and issue 23's wall curve:
    # Ha / Hp before 17.41 / 24.37 mm (truth 16.875 / 25.0); with the median walls before it 17.47 / 24.40 mm, 3.99 mm,
    # 57.5 %, 7.96 deg. With the per-line CT fit before issue 23: 4.15 of 8.67 mm,
    # 47.9 %, 20.7 -> 9.65 deg; with mask-face heights: 4.25 mm, 53.1 %, 9.46 deg; before the hinged lift: 4.0 mm, 50 %.
    assert m["height_restored_mm_inflated"] == pytest.approx(4.07, abs=0.01)
    assert m["height_restored_pct_of_lost"] == pytest.approx(58.4, abs=0.1)
    assert m["wedge_angle_deg"] == pytest.approx(7.96, abs=0.05) and m["wedge_angle_deg_before"] > 17.5
    # the membrane's space is one region here (one balloon) and the cavity (with the gap under the plate) one void
    assert m["balloon_space_regions"] == 1 and m["cavity_regions"] == 1
    assert m["balloon_space_ml"] == pytest.approx(m["balloon_volume_ml"], rel=0.02)
    assert m["balloon_space_filled_pct"] > 90.0
    # the membrane fills its shape by crushing the phantom's dense fracture band: within the 700 psi rating
    assert m["balloon_final_pressure_psi"] == pytest.approx(604.3, rel=1e-3)


def test_model_after_is_valid(wedge, kp):
    v = kp.model_after
    assert v.labels.dtype == np.uint8 and v.labels.shape == wedge.labels.shape
    cement = kp.cement_fraction > 1e-6
    body_or_exit = v.body_mask
    assert np.all(body_or_exit[cement])  # no cement outside the body: leaks are counted, not placed on the grid
    assert not np.any(ndimage.binary_dilation(np.isin(v.labels, (0, 4, 8))) & kp.fields["balloon_cavity"])
    assert "cement_fraction" not in v.extra  # the cement lives in the Outcome, not in a side channel of the model


def test_vp_restores_no_height_and_kp_fills_at_lower_bone_pressure(wedge, kp):
    tips = np.concatenate([t.tip_voxels for t in plan_trajectories(wedge)])
    vp = fill_with_cement(wedge, tips, kp.metrics["injected_ml"], "high")
    assert vp.mass_balance_error.max() < 1e-6
    # the cement moves no voxel: VP leaves the labels (and so the heights) as they were
    assert bl.body_heights_mm(wedge.labels, wedge.spacing_m)["height_anterior_mm"] == pytest.approx(18.0)
    vp_run = run_vertebroplasty(wedge, Vertebroplasty(volume_ml=1.0))
    assert vp_run.heights.restored_mm == 0.0 and vp_run.heights.after == vp_run.heights.before
    # the open cavity takes the cement at a lower bone pressure than the intact bone (gauge, incl. 3.3 kPa venous)
    assert kp.metrics["max_injection_pressure_bone_pa"] < 0.9 * float(np.max(vp.tip_pressure_pa))


@pytest.mark.slow
def test_leakage_same_volume_with_cortical_defect():
    """1.5 mm phantom with an anterior cortical defect, low-viscosity cement, the KP cavity volume in both.

    Pinned numbers as the model gives them, with the phantom's sampled veins (seed 0), their extra-osseous drainage
    (procedures.injection.exit_veins) and the rated 15/3 balloons (5.48 mL cavity, the membrane's space; 0.84 mL of
    gap opened under the plate beyond it): the cement that reaches the basivertebral plexus leaves through route S,
    VP 0.40 mL, KP 0.025 mL (the balloon tamps the veins of its compacted shell closed and the cavity fills at a
    pressure near the venous one), and through route B in VP only (0.021 mL); the anterior defect (route C) takes
    0.004 mL in KP and nothing in VP. Before 2026-12-01 the cavity counted the gap too (5.9 mL): S 0.46 (VP), 0.042
    (KP), B 0.062 (VP), C 0.009 (KP). Before the extra-osseous veins the same run gave S 1.99 (VP) and 0.45 mL (KP). Injector limit and stopping rules off here (the whole volume),
    on in the default plan below.
    """
    v = vertebra_from_phantom(make_phantom(fracture="wedge", grade=2, cortical_defect=True, spacing_mm=1.5))
    tr = plan_trajectories(v)
    free = dict(injector="none", stop_at_posterior_quarter=False, stop_at_visible_leak=False)  # the whole volume
    kp = run_kyphoplasty(v, Kyphoplasty(cement="low", **free), trajectories=tr)
    vp = fill_with_cement(v, np.concatenate([t.tip_voxels for t in tr]), kp.metrics["injected_ml"], "low")
    k = kp.metrics["leaked_ml_by_route"]
    vp_ml = {r: float(vp.leaked_m3[r][-1] * 1e6) for r in "BSCD"}
    assert k["S"] == pytest.approx(0.0246, rel=0.1)
    assert vp_ml["S"] == pytest.approx(0.400, rel=0.1)
    assert vp_ml["B"] == pytest.approx(0.021, rel=0.1) and k["B"] < 1e-6
    assert k["C"] == pytest.approx(0.0039, rel=0.2) and vp_ml["C"] < 1e-3
    assert k["D"] < 1e-6 and vp_ml["D"] < 1e-6
    # the default plan: the whole cavity volume goes in; the leak, 0.03 mL, shows on CT, not on fluoroscopy (0.1 mL)
    from vertaug.physics.flow import STOP_VOLUME

    kp_stop = run_kyphoplasty(v, Kyphoplasty(cement="low"), trajectories=tr)
    assert kp_stop.injection.stop_reason == STOP_VOLUME
    assert kp_stop.injection.leak_on_ct and not kp_stop.injection.leak_on_fluoroscopy
    assert kp_stop.metrics["leaked_ml"] == pytest.approx(0.0285, rel=0.1)


def test_no_fracture_height_change_zero():
    v = vertebra_from_phantom(make_phantom(fracture="none", spacing_mm=2.0))
    o = run_kyphoplasty(v, Kyphoplasty(balloon_ml=2.0, cement_ml=1.0))
    assert o.metrics["height_restored_mm"] == 0.0
    assert o.metrics["height_restored_pct_of_lost"] != o.metrics["height_restored_pct_of_lost"]  # NaN
    assert any("no fracture" in n for n in o.notes)
    assert o.metrics["injected_ml"] == pytest.approx(1.0)


def test_bad_input():
    with pytest.raises(ParameterError, match="above the device maximum"):
        Kyphoplasty(balloon_ml=None, max_pressure_pa=750 * bl.PSI_PA)  # the 15/3 balloon: 700 psi
    with pytest.raises(ParameterError, match="Unknown balloon device"):
        Kyphoplasty(balloon_device="kyphon-99/9")
    with pytest.raises(ParameterError, match="balloon_ml"):
        Kyphoplasty(balloon_ml=2.5, balloon_device="kyphon-express-15/2")  # above the rated 2 mL
    with pytest.raises(ParameterError, match="fracture mobility"):
        Kyphoplasty(fracture_mobility="healing")
    with pytest.raises(ParameterError, match="exactly one"):
        Kyphoplasty(balloon_ml=3.0, max_pressure_pa=1e6)
    with pytest.raises(ParameterError, match="exactly one"):
        Kyphoplasty(balloon_ml=None)
    with pytest.raises(ParameterError, match="balloon_ml"):
        Kyphoplasty(balloon_ml=12.0)
    with pytest.raises(ParameterError, match="approach"):
        Kyphoplasty(approach="transpedicular")
    with pytest.raises(ParameterError):
        Kyphoplasty(cement="medium")
    with pytest.raises(ParameterError, match="device_max_pressure_pa"):
        Kyphoplasty(device_max_pressure_pa=1000 * bl.PSI_PA)
    v = vertebra_from_phantom(make_phantom(fracture="none", spacing_mm=2.0))
    with pytest.raises(ParameterError, match="larger than the trabecular volume"):
        run_kyphoplasty(v, Kyphoplasty(balloon_ml=3.0, approach="bipedicular"), trajectories=plan_trajectories(v) * 5)


def test_cavity_cement_figure(kp, tmp_path):
    """The report's cavity figure draws the balloon space and the cavity over the cement; nothing without a cavity."""
    from dataclasses import replace

    from vertaug.report.figures_cavity import cavity_cement_figure

    path = cavity_cement_figure(kp, tmp_path / "cavity.png")
    assert path is not None and path.stat().st_size > 10_000
    no_cavity = replace(kp, fields={k: v for k, v in kp.fields.items() if k != "balloon_cavity"})
    assert cavity_cement_figure(no_cavity, tmp_path / "none.png") is None


def test_cavity_must_show_on_a_phantom(wedge, kp):
    """Issue 20's must-show on the 2 mm wedge phantom, bipedicular 2 x 3 mL (seconds): the cavity is the balloons'
    space, one face-connected region (scipy.ndimage.label's default, the cement's connectivity: flow.inject exchanges
    cement across voxel faces only), its volume the balloon's final volume (within 10 %; equal here: the 0.026 mm
    deflation recoil is below a voxel), and >= 90 % of its voxels more than half full of cement after the fill. The
    space opened under the plate beyond the membrane's rated shape is reported apart (not cavity). Values as they came
    out (2026-12-01): 5.496 mL in one region, 98.5 % filled (98.8 % since the cement waits in the syringe at room
    temperature until the injection, procedures/injection.py), 5.42 mL of the 5.50 mL injected inside it; gap 0.92 mL (0.888 mL with model/heights on CT endplates, which reads
    the fragment's depression 8.67 mm instead of 8.0 and lifts 285 columns, not 272)."""
    m = kp.metrics
    cav = kp.fields["balloon_cavity"]
    vvox_ml = wedge.voxel_volume_m3 * 1e6
    assert ndimage.label(cav)[1] == 1 == m["cavity_regions"]
    assert m["cavity_volume_ml"] == pytest.approx(float(cav.sum()) * vvox_ml)
    assert abs(m["cavity_volume_ml"] / m["balloon_volume_ml"] - 1.0) <= 0.10
    assert m["cavity_volume_ml"] == pytest.approx(m["balloon_volume_ml"], abs=1e-9)  # no voxel lost on deflation here
    assert m["cavity_filled_pct"] >= 90.0
    assert m["cavity_filled_pct"] == pytest.approx(98.8, abs=0.1)
    # the fill goes into the cavity first: the planned volume (fill_ratio 1 x the cavity) goes in and stays in it
    assert kp.injection.stop_reason == "volume reached"
    assert float(kp.cement_fraction[cav].sum()) * vvox_ml > 0.95 * m["injected_ml"]
    gap = kp.fields["fracture_gap"]
    assert not np.any(gap & cav) and m["fracture_gap_ml"] == pytest.approx(float(gap.sum()) * vvox_ml)
    # 1.144 mL with the morphometry's endplate surfaces and issue 23's wall curve setting the heights the lift is
    # measured by (1.128 mL with the median walls before the curve; 0.888 mL with the per-line CT fit before those)
    assert m["fracture_gap_ml"] == pytest.approx(1.144, abs=1e-9)
