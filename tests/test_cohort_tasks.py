"""Cohort tasks: VP and KP of one case under one sample (procedures_task, compare_task), end to end through run_cohort."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vertaug.cohort.manifest import Case
from vertaug.cohort.run import Task, case_vertebra, execute_task, load_results, run_cohort
from vertaug.cohort.sampling import INPUT_NAMES, case_samples
from vertaug.cohort.tasks import compare_task, procedure_specs, procedures_task, sampled_vertebra
from vertaug.errors import ParameterError
from vertaug.physics.flow import VENOUS_PRESSURE_PA

WEDGE = {"fracture": "wedge", "grade": 2, "cortical_defect": True}
#: 1.5 mm: the coarsest grid on which the anterior cortical defect lets cement out (route C); at 2 mm nothing leaks.
CASE = Case("W15", "L1", phantom=dict(WEDGE, spacing_mm=1.5), spacing_mm=1.5)
#: One fixed sample: 6 mL (3 mL per balloon: the balloons reach and lift the depressed endplate), low viscosity.
SAMPLE = {"sample": 0, "permeability_scale": 1.0, "cement_preset": "low_viscosity", "cement_start_time_min": 4.0,
          "volume_ml": 6.0, "rate_ml_s": 0.05, "bmd_slope_mg_cm3_per_hu": 1.0}
COLUMNS = ("injected_ml", "leaked_ml", "leaked_ml_B", "leaked_ml_S", "leaked_ml_C", "leaked_ml_D", "leak_fraction",
           "fill_fraction_of_body", "max_injection_pressure_pa", "max_injection_pressure_bone_pa", "injection_time_s",
           "height_restored_mm", "height_anterior_mm", "wedge_angle_deg", "balloon_final_pressure_pa", "stop_reason", "note")


@pytest.fixture(scope="module")
def rows():
    vp, kp = procedures_task(CASE, dict(SAMPLE))
    return {"VP": vp, "KP": kp}


def test_vp_and_kp_rows_hold_real_numbers(rows):
    vp, kp = rows["VP"], rows["KP"]
    assert vp["procedure"] == "VP" and kp["procedure"] == "KP"
    for r in (vp, kp):
        assert set(COLUMNS) <= set(r)
        assert all(v is None or isinstance(v, (str, bool, int, float)) for v in r.values())  # scalars only
        assert not set(r) & (set(INPUT_NAMES) | {"case_id", "sample", "level", "status"})  # the runner's keys
        assert 0.0 <= r["leaked_ml"] <= r["injected_ml"]
        assert r["leaked_ml"] == pytest.approx(sum(r[f"leaked_ml_{x}"] for x in "BSCD"), rel=1e-12, abs=1e-15)
        assert r["leak_fraction"] == pytest.approx(r["leaked_ml"] / r["injected_ml"], rel=1e-12)
        assert 0.0 < r["fill_fraction_of_body"] < 1.0
        assert r["max_injection_pressure_pa"] > r["max_injection_pressure_bone_pa"] > 0.0  # plunger = cannula + bone
        assert r["injection_time_s"] == pytest.approx(r["injected_ml"] / 0.05, rel=0.02)
        assert len(r["note"]) <= 300
        assert r["permeability_scale_applied"] is True  # scale 1: trivially kept
    # at 0.05 mL/s until a clinical rule ends it. VP: the leak through the phantom's veins becomes visible on
    # fluoroscopy (0.1 mL) after 2.77 mL; KP: the planned 6 mL go in and leak 0.079 mL through the veins and the
    # defect, under the fluoroscopy limit, above the CT's (measured with the extra-osseous veins; before them VP
    # stopped after 1.44 mL, KP after 4.86 mL at the visible leak). KP's cavity is the balloons' space, 5.48 mL
    # (2026-12-01, issue 20: the opened gap under the plate beyond the balloons, 0.84 mL, no longer counts as cavity),
    # so 0.52 mL of the 6 mL enter the compacted shell: leak 0.064 -> 0.079 mL, bone pressure 149 -> 217 Pa above
    # the venous pressure
    assert vp["stop_reason"].startswith("leak visible") and vp["leak_on_fluoroscopy"] and vp["leak_on_ct"]
    assert vp["injected_ml"] < 6.0 and 0.1 <= vp["leaked_ml"] < 0.2
    assert kp["stop_reason"] == "volume reached" and kp["leak_on_ct"] and not kp["leak_on_fluoroscopy"]
    assert kp["injected_ml"] == pytest.approx(6.0) and kp["leaked_ml"] == pytest.approx(0.079, rel=0.1)
    assert kp["injected_ml"] > 2.0 * vp["injected_ml"]
    # the 1.5 mm phantom leaks through the plexus' anterolateral exits (route S): VP 0.103 mL; KP 0.061 mL, and
    # 0.018 mL through the defect (route C) (before 2026-12-01: 0.051 and 0.013 mL)
    # (tests/test_kyphoplasty.py; before the extra-osseous veins KP leaked > 0.1 mL through S and < 1e-3 through C)
    assert vp["leaked_ml_S"] > 0.1 and vp["leaked_ml_C"] < 1e-3
    assert kp["leaked_ml_S"] == pytest.approx(0.061, rel=0.1) and kp["leaked_ml_C"] == pytest.approx(0.018, rel=0.2)
    # heights (model.heights, sub-voxel sampling along the level's axes): VP moves no endplate; the 3 mL balloons
    # lift the depressed anterior endplate by several voxels. Phantom truth: anterior 16.9 mm (grade-2 wedge of 25 mm)
    assert vp["height_restored_mm"] == 0.0 and vp["height_anterior_mm"] == pytest.approx(16.875, abs=1.5)
    assert kp["height_restored_mm"] >= 1.5
    assert kp["height_anterior_mm"] == pytest.approx(vp["height_anterior_mm"] + kp["height_restored_mm"])
    assert kp["wedge_angle_deg"] < vp["wedge_angle_deg"]
    # balloon: KP only; the open cavity takes the cement at a lower bone pressure than intact bone
    assert math.isnan(vp["balloon_final_pressure_pa"]) and math.isnan(vp["balloon_ml"])
    assert kp["balloon_ml"] == pytest.approx(3.0) and kp["balloon_final_pressure_pa"] > 1e5
    # (above the venous pressure, measured 217 vs 493 Pa; 149 vs 493 before 2026-12-01)
    assert kp["max_injection_pressure_bone_pa"] - VENOUS_PRESSURE_PA < 0.5 * (vp["max_injection_pressure_bone_pa"]
                                                                            - VENOUS_PRESSURE_PA)


def test_same_sample_same_rows_and_cached_model_untouched(rows):
    v = case_vertebra(CASE)
    k0 = v.materials.permeability_m2.copy()
    again = procedures_task(CASE, dict(SAMPLE))
    for r in again:
        old = rows[r["procedure"]]
        assert set(r) == set(old)
        for key, val in r.items():
            if key == "procedure_s":
                continue
            assert val == old[key] or (isinstance(val, float) and math.isnan(val) and math.isnan(old[key])), key
    assert np.array_equal(case_vertebra(CASE).materials.permeability_m2, k0)  # the cached model is not modified


def test_sampled_materials_scale_trabecular_permeability_and_follow_the_bmd_slope():
    v = case_vertebra(CASE)
    s = sampled_vertebra(v, dict(SAMPLE, permeability_scale=0.5, bmd_slope_mg_cm3_per_hu=1.2))
    ref = sampled_vertebra(v, dict(SAMPLE, permeability_scale=1.0, bmd_slope_mg_cm3_per_hu=1.2))
    from vertaug.model.labels import CANCELLOUS, VEIN_CHANNEL

    trab = v.labels == 1
    rest = ~np.isin(v.labels, CANCELLOUS)
    ch = v.labels == VEIN_CHANNEL
    for f in ("permeability_m2", "permeability_transverse_m2"):
        a, b = getattr(s.materials, f), getattr(ref.materials, f)
        assert np.allclose(a[trab], 0.5 * b[trab], rtol=1e-6)  # k = scale * k(BV/TV) in the bone
        assert np.array_equal(a[rest], b[rest])  # vein exits, defect: geometric k; cortex, canal: 0
        assert np.count_nonzero(a[rest]) > 0
        # vein channels: the tube's k is geometric, only the bone around it is scaled
        assert np.all(a[ch] <= b[ch]) and np.all(a[ch] > 0.5 * b[ch])
    assert np.allclose(s.materials.bmd_mg_cm3[trab], 1.2 * v.hu[trab], rtol=1e-5)
    assert s.materials.calibration.slope_mg_cm3_per_hu == 1.2
    # denser bone (higher slope) is less permeable: k(BV/TV) falls
    assert float(np.mean(ref.materials.permeability_m2[trab])) < float(np.mean(v.materials.permeability_m2[trab]))


def test_lower_permeability_raises_the_vp_bone_pressure():
    lo = procedures_task(CASE, dict(SAMPLE, permeability_scale=0.5))[0]
    hi = procedures_task(CASE, dict(SAMPLE, permeability_scale=2.0))[0]
    assert lo["procedure"] == hi["procedure"] == "VP"
    # Darcy: the bone pressure above the venous 3.3 kPa falls with k (4x k here; less than 4x in pressure: the
    # veins, cleft and defect are open channels whose k is scaled too, the cement front is not the same)
    p_lo, p_hi = (r["max_injection_pressure_bone_pa"] - VENOUS_PRESSURE_PA for r in (lo, hi))
    assert p_lo > 2.0 * p_hi > 0.0
    assert lo["max_injection_pressure_pa"] > hi["max_injection_pressure_pa"]
    # (the leaked volumes are not compared: both injections stop when their leak through the veins becomes visible
    # on fluoroscopy, 0.1 mL, so the stopping rule, not the bone, sets them)
    assert lo["stop_reason"].startswith("leak visible") and hi["stop_reason"].startswith("leak visible")


def test_lower_permeability_raises_the_kp_bone_pressure():
    lo = procedures_task(CASE, dict(SAMPLE, permeability_scale=0.5))[1]
    hi = procedures_task(CASE, dict(SAMPLE, permeability_scale=2.0))[1]
    assert "permeability_scale not applied" in lo["note"] or lo["permeability_scale_applied"]
    assert lo["permeability_scale_applied"] and hi["permeability_scale_applied"]
    # the KP cavity drains into a vein channel of the phantom's sampled veins (seed 0); with the extra-osseous veins
    # behind its exits the cavity is no longer held at the venous pressure, and Darcy shows again: lower k, higher
    # bone pressure (measured 249 vs 177 Pa above venous at k x 0.5 vs x 2; without the extra-osseous veins both sat
    # 25 Pa above it). Before 2026-12-01 (issue 20) 187 vs 97 Pa: the cavity then counted the gap opened under the
    # plate (5.9 mL); now it is the balloons' space, 5.48 mL, and the 0.52 mL beyond it pass the compacted shell and
    # the vein channels, whose tube conductance is not scaled with k: our reading (not isolated) of why the ratio
    # falls from 1.9 to 1.4 (of 4 in k). Since the cement waits in the syringe at 23 C until the injection (4 min
    # here; procedures/injection.py) it enters thinner: 196 vs 166 Pa (the k x 0.5 fill ends on a visible leak at
    # 5.97 of 6 mL)
    p_lo, p_hi = (r["max_injection_pressure_bone_pa"] - VENOUS_PRESSURE_PA for r in (lo, hi))
    assert p_lo > p_hi > 0.0
    assert p_lo == pytest.approx(196.0, rel=0.1) and p_hi == pytest.approx(166.0, rel=0.1)
    assert p_lo < 1e3  # the open cavity: far below the VP bone pressure


def test_specs_and_bad_input():
    vp, kp = procedure_specs(dict(SAMPLE, cement_preset="high_viscosity", cement_start_time_min=2.5,
                                  volume_ml=7.5, rate_ml_s=0.1))
    assert (vp.cement, vp.volume_ml, vp.rate_ml_s, vp.start_time_s) == ("high", 7.5, 0.1, 150.0)
    # balloons clipped to the default device's rated 3 mL (Kyphon Xpander 15/3; was 4 mL before issue 20)
    assert (kp.cement, kp.cement_ml, kp.balloon_ml, kp.start_time_s) == ("high", 7.5, 3.0, 150.0)
    assert procedure_specs(dict(SAMPLE, volume_ml=12.0))[1].balloon_ml == 3.0
    with pytest.raises(ParameterError, match="cement_preset"):
        procedure_specs(dict(SAMPLE, cement_preset="medium"))
    with pytest.raises(ParameterError, match="permeability_scale"):
        sampled_vertebra(case_vertebra(CASE), dict(SAMPLE, permeability_scale=0.0))
    # a procedure that fails raises; the runner turns it into one failed row
    (row,) = execute_task(procedures_task, Task(CASE, dict(SAMPLE, volume_ml=0.0), 0))
    assert row["status"] == "failed" and row["error_type"] == "ParameterError" and "volume_ml" in row["error"]


def test_run_cohort_two_cases_two_samples_two_procedures(tmp_path):
    cases = [Case(f"W{g}", "L1", phantom={**WEDGE, "grade": g, "spacing_mm": 2.0},
                  spacing_mm=2.0) for g in (1, 2)]
    r = run_cohort(cases, tmp_path / "out", samples=2, seed=3, task_fn=procedures_task, scheduler="serial",
                   progress=False)
    assert (r.n_tasks, r.n_written, r.n_failed) == (4, 4, 0)
    rows = load_results(tmp_path / "out").to_pylist()
    assert sorted((x["case_id"], x["sample"], x["procedure"]) for x in rows) == sorted(
        (c, s, p) for c in ("W1", "W2") for s in (0, 1) for p in ("VP", "KP"))
    assert all(x["status"] == "ok" for x in rows)
    for x in rows:
        s = case_samples(x["case_id"], 2, seed=3)[x["sample"]]
        assert x["volume_ml"] == s["volume_ml"]
        tol = 1e-6 if x["procedure"] == "VP" else 0.05 * s["volume_ml"]
        # the planned volume, unless a recorded clinical rule ended the injection first
        assert x["injected_ml"] <= s["volume_ml"] + tol
        if x["injected_ml"] < s["volume_ml"] - tol:
            assert x["stop_reason"] != "volume reached"
        assert 0.0 <= x["leaked_ml"] <= x["injected_ml"]


@pytest.mark.slow
def test_compare_task_adds_exotherm_and_stiffness():
    case = Case("W20", "L1", phantom=dict(WEDGE, spacing_mm=2.0), spacing_mm=2.0)
    vp, kp = compare_task(case, dict(SAMPLE))
    for r in (vp, kp):
        # PMMA peaks well above body temperature (adiabatic rise 37 + 71 C; exotherm.py); the canal stays near 37 C
        assert 60.0 < r["peak_temperature_c"] < 130.0
        assert 37.0 <= r["peak_temperature_canal_c"] < 45.0
        assert r["necrosis_volume_ml"] > 0.0
        # cement stiffens and strengthens the fractured level (same pre-treatment values in both rows); VP's injection
        # stops at its first visible leak (1.35 mL), hence the smaller margin (measured strength 1.18 x pre)
        assert r["stiffness_n_per_mm"] > 1.1 * r["pre_stiffness_n_per_mm"] > 0.0
        assert r["strength_n"] > 1.1 * r["pre_strength_n"] > 0.0
    assert vp["pre_stiffness_n_per_mm"] == kp["pre_stiffness_n_per_mm"] and vp["pre_strength_n"] == kp["pre_strength_n"]
    plain = procedures_task(case, dict(SAMPLE))
    for a, b in zip(plain, (vp, kp)):
        assert a["leaked_ml"] == b["leaked_ml"] and a["max_injection_pressure_pa"] == b["max_injection_pressure_pa"]
