"""Parameter ranges of the report (report.sampling): the transfer of coarse samples, paired quantiles of the
difference, "favoured" only when that range excludes zero, and the sampled model's materials."""

import math

import numpy as np
import pytest

from vertaug.report.compare import metric_rows
from vertaug.report.sampling import (
    SAMPLED_INPUTS,
    ParameterRanges,
    nominal_sample,
    sampled_model,
    sampled_plans,
    transfer,
)


def _ranges(nominal: dict, values: dict, transferred: bool = True) -> ParameterRanges:
    n = len(next(iter(values["VP"].values())))
    return ParameterRanges(n, 2.0, tuple({"sample": i} for i in range(n)), nominal, values, 0.0, transferred)


def test_transfer_is_a_ratio_a_rise_above_body_temperature_or_a_shift():
    assert transfer("stiffness_n_per_mm", 60000.0, 50000.0, 55000.0) == pytest.approx(66000.0)
    # temperatures: the rise above 37 C scales (a 10 % larger rise on the coarse model -> 10 % on the fine one)
    assert transfer("peak_temperature_c", 97.0, 87.0, 92.0) == pytest.approx(37.0 + 60.0 * 55.0 / 50.0)
    # a coarse nominal under the detection limit: the change is added, not multiplied
    assert transfer("leaked_ml", 0.0, 0.0, 0.004, limit=0.008) == pytest.approx(0.004)
    assert transfer("leaked_ml", 0.05, 0.001, 0.002, limit=0.008) == pytest.approx(0.051)


def test_quantiles_of_the_difference_are_paired_and_values_under_the_limit_are_zero():
    # KP - VP per sample is constant (+10) although each procedure spreads over 100..300: paired, not independent
    r = _ranges({"VP": {"x": 200.0}, "KP": {"x": 210.0}},
                {"VP": {"x": (100.0, 200.0, 300.0)}, "KP": {"x": (110.0, 210.0, 310.0)}}, transferred=False)
    q = r.quantiles("x", 200.0, 210.0)
    assert q["diff"] == pytest.approx((10.0, 10.0, 10.0))
    assert q["vp"][0] == pytest.approx(110.0) and q["vp"][2] == pytest.approx(290.0)  # 5/95 % by interpolation
    leak = _ranges({"VP": {"leaked_ml": 0.01}, "KP": {"leaked_ml": 0.01}},
                   {"VP": {"leaked_ml": (0.0001, 0.01, 0.02)}, "KP": {"leaked_ml": (0.01, 0.01, 0.01)}})
    q = leak.quantiles("leaked_ml", 0.05, 0.05, limit=0.001)
    # sample 1: 0.05 * 0.0001 / 0.01 = 0.0005 mL, under one voxel: 0 (else the 5 % point would be 0.00545)
    assert q["vp"][0] == pytest.approx(0.1 * 0.05)


def test_favoured_only_when_the_sampled_range_of_the_difference_excludes_zero():
    ctx = {"voxel_ml": 1e-3, "spacing_mm": 1.0, "ap_depth_mm": 35.0, "injected_ml": 4.0, "kp_lift_mm": 0.0}
    vp, kp = {"strength_n": 6000.0}, {"strength_n": 6600.0}  # +10 %: beyond the numerical range (~3 %)
    assert metric_rows(vp, kp, ctx=ctx)[0].favoured == "KP"
    # the samples move KP from 0.85x to 1.1x of its nominal value and VP not: the difference spans zero
    spans = _ranges({"VP": {"strength_n": 5000.0}, "KP": {"strength_n": 5500.0}},
                    {"VP": {"strength_n": (5000.0,) * 4}, "KP": {"strength_n": (4675.0, 5000.0, 5500.0, 6050.0)}})
    row = metric_rows(vp, kp, ctx=ctx, ranges=spans)[0]
    assert row.favoured == "equal"
    lo, hi = row.difference_range
    assert lo < 0 < hi
    y = [6600.0 * x / 5500.0 for x in (4675.0, 5000.0)]  # the two smallest transferred samples: 5610, 6000 N
    assert row.kp_q[0] == pytest.approx(y[0] + 0.15 * (y[1] - y[0]), rel=1e-9)  # numpy: position 0.05 * (4 - 1)
    assert row.sampled_text("kp") and row.sampled_text("diff").startswith("-")
    narrow = _ranges({"VP": {"strength_n": 5000.0}, "KP": {"strength_n": 5500.0}},
                     {"VP": {"strength_n": (4900.0, 5000.0, 5100.0)}, "KP": {"strength_n": (5400.0, 5500.0, 5600.0)}})
    row = metric_rows(vp, kp, ctx=ctx, ranges=narrow)[0]
    assert row.favoured == "KP" and row.difference_range[0] > 0


def test_sampled_inputs_are_the_cohorts_with_their_sources():
    from vertaug.cohort.sampling import UNCERTAIN_INPUTS, case_samples

    names = {p.name for p in SAMPLED_INPUTS}
    assert names == {"permeability_scale", "cement_start_time_min", "bmd_slope_mg_cm3_per_hu"}
    assert all(p.source for p in SAMPLED_INPUTS) and set(SAMPLED_INPUTS) <= set(UNCERTAIN_INPUTS)
    a = case_samples("L1", 4, 0, inputs=SAMPLED_INPUTS)
    assert a == case_samples("L1", 4, 0, inputs=SAMPLED_INPUTS)  # seeded
    for p in SAMPLED_INPUTS:
        vals = sorted(s[p.name] for s in a)
        assert p.low <= vals[0] and vals[-1] <= p.high
        # Latin hypercube: one sample in each quarter of the input's probability
        u = [(math.log(v / p.low) / math.log(p.high / p.low)) if p.kind == "loguniform" else
             (v - p.low) / (p.high - p.low) for v in vals]
        assert [int(x * 4) for x in u] == [0, 1, 2, 3]


def test_sampled_model_scales_permeability_and_follows_the_calibration():
    from vertaug.anatomy.phantom import make_phantom
    from vertaug.model.labels import TRABECULAR
    from vertaug.model.vertebra import vertebra_from_ct
    from vertaug.procedures.kyphoplasty import Kyphoplasty
    from vertaug.procedures.vertebroplasty import Vertebroplasty

    ph = make_phantom(fracture="wedge", grade=2)
    v = vertebra_from_ct(ph.ct, ph.labels, "L1", body=ph.body, numbering=ph.numbering, spacing_mm=2.0)
    tb = v.labels == TRABECULAR
    same = sampled_model(v, nominal_sample(Vertebroplasty(), Kyphoplasty()))
    np.testing.assert_allclose(same.k[tb], v.k[tb], rtol=1e-12)
    np.testing.assert_allclose(same.E[tb], v.E[tb], rtol=1e-12)
    k2 = sampled_model(v, {"permeability_scale": 2.0, "bmd_slope_mg_cm3_per_hu": 1.0})
    np.testing.assert_allclose(k2.k[tb], 2.0 * v.k[tb], rtol=1e-12)
    denser = sampled_model(v, {"permeability_scale": 1.0, "bmd_slope_mg_cm3_per_hu": 1.3})
    assert np.median(denser.E[tb]) > np.median(v.E[tb]) and np.median(denser.k[tb]) < np.median(v.k[tb])
    vp, kp = sampled_plans(Vertebroplasty(), Kyphoplasty(), {"cement_start_time_min": 6.0})
    assert vp.start_time_s == kp.start_time_s == 360.0


def test_the_samples_inject_through_the_reports_cannula_paths_on_the_coarser_grid():
    from vertaug.anatomy.phantom import make_phantom
    from vertaug.model.trajectory import plan_trajectories
    from vertaug.model.vertebra import vertebra_from_ct
    from vertaug.report.sampling import carried_trajectories

    ph = make_phantom(fracture="wedge", grade=2)
    fine, coarse = (vertebra_from_ct(ph.ct, ph.labels, "L1", body=ph.body, numbering=ph.numbering, spacing_mm=s)
                    for s in (1.0, 2.0))
    paths = {"bipedicular": plan_trajectories(fine, "bipedicular")}
    carried = carried_trajectories(paths, fine, coarse)["bipedicular"]
    assert len(carried) == 2
    for t, c in zip(paths["bipedicular"], carried):
        for a, b in ((t.tip_ijk, c.tip_ijk), (t.entry_ijk, c.entry_ijk)):  # same points in the world (mm)
            wa = fine.affine_mm[:3, :3] @ np.asarray(a) + fine.affine_mm[:3, 3]
            wb = coarse.affine_mm[:3, :3] @ np.asarray(b) + coarse.affine_mm[:3, 3]
            np.testing.assert_allclose(wa, wb, atol=1e-9)
        assert len(c.tip_voxels) >= 1 and coarse.body_mask[tuple(c.tip_voxels.T)].all()
        # the tip voxels lie within one coarse voxel of the tip
        assert np.linalg.norm(c.tip_voxels - np.asarray(c.tip_ijk), axis=1).max() <= 1.0


def test_cli_default_is_the_modules():
    from vertaug.cli import _DEFAULT_SAMPLES
    from vertaug.report.sampling import DEFAULT_SAMPLES

    assert _DEFAULT_SAMPLES == DEFAULT_SAMPLES
