"""Side-by-side metrics, claims check and overlays of the comparison report."""

import math

import numpy as np
import pytest

from vertaug.anatomy.io import Volume
from vertaug.report.claims import check_claims
from vertaug.report.compare import deposit_to_ct, metric_rows, resample_to_ct


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


@pytest.mark.slow
def test_readme_compare_without_body_plans_the_cannulas(example):
    """`vertaug compare CT SEG --level L1 --out DIR` (README) on the bundled data, without --body: both pedicles of
    L1 are found (the body taken from the vertebra label ends in front of the right pedicle's base, whose first
    section is less than half the next one: the pedicle run starts behind it) and are as wide as with the body map."""
    from vertaug.anatomy.io import load_ct, load_labels
    from vertaug.model.trajectory import plan_trajectories
    from vertaug.model.vertebra import vertebra_from_ct

    ct = load_ct(example["ct"])
    seg = load_labels(example["seg"], ct)
    without = {t.side: t for t in plan_trajectories(vertebra_from_ct(ct, seg, "L1"), "bipedicular")}
    with_body = {t.side: t for t in plan_trajectories(vertebra_from_ct(ct, seg, "L1",
                                                                       body=load_labels(example["body"], ct)))}
    assert set(without) == {"left", "right"}
    for side, t in without.items():
        assert t.pedicle_width_mm == pytest.approx(with_body[side].pedicle_width_mm, abs=1.0)
        assert not t.warnings


def test_deposit_to_ct_conserves_volume_on_a_coarser_and_a_finer_grid():
    rng = np.random.default_rng(0)
    field = np.zeros((30, 30, 30), np.float32)
    field[5:25, 6:22, 7:19] = rng.uniform(0.0, 1.0, (20, 16, 12)).astype(np.float32)
    m_aff = np.diag([1.0, 1.0, 1.0, 1.0])
    m_aff[:3, 3] = [15.0, 15.0, 15.0]
    for step in (3.0, 0.7):
        ct = Volume(np.zeros((int(70 / step),) * 3, np.float32), np.diag([step, step, step, 1.0]), "ct")
        out = deposit_to_ct(field, m_aff, ct)
        assert out.sum() * step ** 3 == pytest.approx(field.sum() * 1.0, rel=1e-5)
        assert out.max() <= 1.0 + 0.05  # a fraction of each CT voxel (nearest neighbour on the finer grid, rescaled)


def test_ranges_decide_favoured_and_small_values_print_as_none():
    ctx = {"voxel_ml": 1e-3, "spacing_mm": 1.0, "ap_depth_mm": 35.0, "injected_ml": 4.0, "kp_lift_mm": 0.0}
    vp = {"leaked_ml": 5e-35, "strength_n": 6408.0, "peak_temperature_c": 90.2, "stiffness_n_per_mm": 62920.0}
    kp = {"leaked_ml": 1e-16, "strength_n": 6210.0, "peak_temperature_c": 93.0, "stiffness_n_per_mm": 62198.0}
    rows = {r.key: r for r in metric_rows(vp, kp, ctx=ctx)}
    assert rows["leaked_ml"].vp_text == rows["leaked_ml"].kp_text == "none"
    assert rows["leaked_ml"].diff_text == "0" and rows["leaked_ml"].favoured == "equal"
    assert rows["leaked_ml"].reason.startswith("no leak out of the body")
    # a leak measured after different injected volumes says so beside the volume
    unequal = {**ctx, "kp_injected_ml": 3.4, "injected_ml": 1.3}
    r = metric_rows({"leaked_ml": 0.105}, {"leaked_ml": 0.109}, ctx=unequal)[0]
    assert "injected different volumes (VP 1.30, KP 3.40 mL)" in r.reason
    from vertaug.report.uncertainty import FE_RESOLUTION_REL

    rel = FE_RESOLUTION_REL["strength_n"]
    for factor, expected in ((1.5, "equal"), (2.5, "VP")):  # the range of the difference is ~2 x rel x value
        r = metric_rows({"strength_n": 6000.0}, {"strength_n": 6000.0 * (1 - factor * rel)}, ctx=ctx)[0]
        assert r.favoured == expected, (factor, r)
    assert rows["peak_temperature_c"].favoured == "VP"  # 2.8 C, beyond +/-1.2 C
    lo, hi = rows["peak_temperature_c"].difference - rows["peak_temperature_c"].diff_u, \
        rows["peak_temperature_c"].difference + rows["peak_temperature_c"].diff_u
    assert lo > 0 and hi > 0
    assert any(not t.within for t in rows["peak_temperature_c"].trust)  # the porcine bolus miss is shown


def test_evidence_numbers_and_p_values_read_as_written():
    from vertaug.report.compare import _span
    from vertaug.report.html import num, p_text

    assert num(9837.0) == "9,837" and num(1.7) == "1.7" and num(None) == ""
    assert p_text("<0.001") == "p < 0.001" and p_text("0.03") == "p = 0.03"
    assert _span((1.7, 1.7)) == "1.7" and _span((1.2, 1.7)) == "1.2-1.7"


def test_terminal_table_fits_80_columns_without_cutting_numbers():
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from vertaug.report.summary import print_comparison

    ctx = {"voxel_ml": 1e-3, "spacing_mm": 1.0, "ap_depth_mm": 35.0, "injected_ml": 4.0, "kp_lift_mm": 0.0}
    vp = {"injected_ml": 4.0, "leaked_ml": 0.0, "max_injection_pressure_pa": 3.1e4, "strength_n": 6408.0,
          "stiffness_n_per_mm": 62920.0, "peak_temperature_canal_c": 37.1, "cost_usd": 3319.0}
    kp = {"injected_ml": 4.0, "leaked_ml": 0.0, "max_injection_pressure_pa": 3.8e5, "strength_n": 6210.0,
          "stiffness_n_per_mm": 621980.0, "peak_temperature_canal_c": 37.1, "cost_usd": 8100.0}
    from vertaug.report.sampling import ParameterRanges

    keys = ("max_injection_pressure_pa", "strength_n", "stiffness_n_per_mm")
    ranges = ParameterRanges(3, 2.0, (), {t: {k: 1.0 for k in keys} for t in ("VP", "KP")},
                             {t: {k: (0.8, 1.0, 1.3) for k in keys} for t in ("VP", "KP")}, 0.0, True)
    c = SimpleNamespace(level="L1", rows=metric_rows(vp, kp, ctx=ctx, ranges=ranges), states={}, ranges=ranges)
    buf = io.StringIO()
    print_comparison(c, Console(file=buf, width=80, color_system=None))
    text = buf.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    # the sampled range under the difference: KP/VP ratios 0.8..1.3 on both sides, paired
    assert "+559060 ±13,698" in text and "+458429 to +710006" in text
    assert "-198 ±189" in text and "-251 to -162" in text  # ... and a range that with +/-189 spans zero: neither
    assert "…" not in text and "621980" in text and "3,319" in text


def test_a_virtual_fracture_is_said_first_with_the_heights_before_and_after():
    from types import SimpleNamespace

    from vertaug.report.compare import fracture_lead

    after = SimpleNamespace(evaluable=True, height_anterior_mm=18.2, height_posterior_mm=28.9)
    c = SimpleNamespace(level="L1", spine=SimpleNamespace(levels={"L1": after}), inputs={
        "fracture": {"type": "wedge", "grade": 2, "deformity_target": 0.3, "deformity_measured": 0.31, "cleft": True},
        "morphometry_before": {"height_anterior_mm": 25.5, "height_posterior_mm": 30.8}})
    text = fracture_lead(c)
    assert text.startswith("This is a simulated fracture of a real vertebra")
    assert "wedge fracture, Genant grade 2" in text and "31 %" in text and "gas cleft" in text
    assert "Ha 25.5" in text and "Ha 18.2" in text
    assert fracture_lead(SimpleNamespace(level="L1", spine=None, inputs={})) == ""
