"""Clinical scores pinned on worked examples, at and either side of every band boundary."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from vertaug.clinical import scores as sc
from vertaug.errors import ParameterError

# ------------------------------------------------------------------------------------------------------ Genant / QM


@pytest.mark.parametrize(
    "deformity,grade",
    [(0.0, 0), (0.1999, 0), (0.20, 1), (0.2499, 1), (0.25, 2), (0.3999, 2), (0.40, 2), (0.4001, 3), (0.95, 3)],
)
def test_genant_grade_band_edges(deformity, grade):
    assert sc.genant_grade(deformity) == grade


@pytest.mark.parametrize("ratio,grade", [(0.81, 0), (0.80, 1), (0.76, 1), (0.75, 2), (0.60, 2), (0.59, 3)])
def test_genant_sq_wedge_edges_from_ratios(ratio, grade):
    # 1 - 0.80 is 0.19999999999999996 in floating point: it must still count as 20 %.
    g = sc.genant_sq(ratio, 1.0, 1.0, 1.0)
    assert g.grade == grade
    assert g.type == ("wedge" if grade else "none")
    assert g.deformity == pytest.approx(1 - ratio, abs=1e-12)
    assert g.complete


def test_genant_types_and_crush_reference():
    assert sc.genant_sq(0.95, 0.70, 1.0, 1.0).type == "biconcave"
    # Crush: Hp is 30 % below the harmonic combination of the two neighbour ratios.
    g = sc.genant_sq(1.0, 1.0, 0.70, 0.70)
    assert (g.type, g.grade) == ("crush", 2) and g.deformity == pytest.approx(0.30)
    # Neighbour ratios 0.6 and 0.9: Hp / mean(Hp_above, Hp_below) = 2 / (1/0.6 + 1/0.9) = 0.72.
    g = sc.genant_sq(1.0, 1.0, 0.6, 0.9)
    assert g.deformity == pytest.approx(0.28, abs=1e-12) and g.grade == 2
    # Ha taller than Hp (lumbar lordosis) gives no negative deformity.
    assert sc.genant_sq(1.1, 1.0, 1.0, 1.0).deformity == 0.0


def test_genant_unknowns_stay_unknown():
    g = sc.genant_sq()
    assert g.grade is None and g.type is None and not g.complete
    g = sc.genant_sq(0.7, 0.9)  # no neighbours: crush cannot be assessed
    assert g.grade == 2 and not g.complete
    assert any("lower bound" in r for r in g.reasons)
    assert any("outside T4-L4" in r for r in sc.genant_sq(0.9, level="L5").reasons)


def test_genant_bad_ratio_raises():
    with pytest.raises(ParameterError, match="ratio_ha_hp"):
        sc.genant_sq(-0.2)
    with pytest.raises(ParameterError, match="deformity"):
        sc.genant_grade(1.5)


def test_qm_sixpoint():
    assert sc.qm_sixpoint(0.80, 1.0, 1.0, 1.0).status == "met"
    assert sc.qm_sixpoint(0.8001, 1.0, 1.0, 1.0).status == "unmet"
    assert sc.qm_sixpoint(0.9, 0.9, None, None).status == "unknown"
    r = sc.qm_sixpoint(0.9, 0.9, 0.75, None)
    assert r.status == "met" and r.reduced == ("Hp/Hp(above)",)


@pytest.mark.parametrize(
    "hu,cls", [(200, "normal"), (160.1, "normal"), (160, "osteopenia"), (110.1, "osteopenia"), (110, "osteoporosis"),
               (89.9, "osteoporosis")]
)
def test_ct_density_class(hu, cls):
    assert sc.ct_density_class(hu) == cls


def test_ct_density_unknown_and_bad():
    assert sc.ct_density_class(None) is None
    with pytest.raises(ParameterError, match="hu"):
        sc.ct_density_class(float("nan"))


# --------------------------------------------------------------------------------------------- OF classification


@pytest.mark.parametrize(
    "kw,cls",
    [
        (dict(tension_band_failure=True), "OF5"),
        (dict(tension_band_failure=False, both_endplates=True), "OF4"),
        (dict(tension_band_failure=False, both_endplates=False, one_endplate=True, posterior_wall_distinct=True), "OF3"),
        (dict(tension_band_failure=False, both_endplates=False, one_endplate=True, posterior_wall_distinct=False), "OF2"),
        (dict(tension_band_failure=False, both_endplates=False, one_endplate=True, posterior_wall_fraction=0.21), "OF3"),
        (dict(tension_band_failure=False, both_endplates=False, one_endplate=True, posterior_wall_fraction=0.20), "OF2"),
        (dict(tension_band_failure=False, both_endplates=False, one_endplate=False, oedema=True), "OF1"),
        (dict(tension_band_failure=False, both_endplates=False, one_endplate=False, oedema=False), "none"),
    ],
)
def test_of_classification_decision_order(kw, cls):
    r = sc.of_classification(**kw)
    assert r.of_class == cls and r.possible == (cls,)


def test_of_classification_tension_band_wins_over_everything():
    r = sc.of_classification(tension_band_failure=True, both_endplates=True, one_endplate=True, oedema=True)
    assert r.of_class == "OF5"


def test_of_classification_unknowns_keep_all_allowed_classes():
    r = sc.of_classification()
    assert r.of_class is None and r.possible == ("OF5", "OF4", "OF2", "OF3", "OF1", "none")
    r = sc.of_classification(both_endplates=True)  # tension band unknown
    assert r.of_class is None and r.possible == ("OF5", "OF4")
    r = sc.of_classification(tension_band_failure=False, both_endplates=False, one_endplate=True)
    assert r.possible == ("OF2", "OF3")


def test_of_classification_bad_input():
    with pytest.raises(ParameterError, match="oedema"):
        sc.of_classification(oedema="yes")
    with pytest.raises(ParameterError, match="contradicts"):
        sc.of_classification(posterior_wall_distinct=True, posterior_wall_fraction=0.1)


def test_of_inputs_from_morphology():
    assert sc.of_inputs_from_morphology(None, None)[0] == {"both_endplates": None, "one_endplate": None}
    assert sc.of_inputs_from_morphology(0, "none")[0] == {"both_endplates": None, "one_endplate": None}
    assert sc.of_inputs_from_morphology(2, "wedge")[0] == {"both_endplates": None, "one_endplate": True}
    assert sc.of_inputs_from_morphology(3, "crush")[0] == {"both_endplates": True, "one_endplate": None}


# ------------------------------------------------------------------------------------------------------- OF score

_ALL_KNOWN = dict(t_score=-2.0, hu=120, deformity_progression=True, vas=6, neuro_deficit=False,
                  mobilisation_possible=True, asa_gt3=False, mfi_gt2=False, anticoagulation=False)


@pytest.mark.parametrize(
    "changes,score,band",
    [
        # OF2: 4 + density 0 + progression 1 + pain 1 + neuro 0 + mobile -1 + health 0 = 5
        (dict(), 5, "conservative"),
        (dict(hu=90), 6, "conservative or surgery"),  # HU <= 90 adds 1
        (dict(hu=90, mobilisation_possible=False), 8, "surgery"),
        (dict(hu=90, asa_gt3=True, mobilisation_possible=False), 7, "surgery"),
        (dict(hu=90.1), 5, "conservative"),
        (dict(t_score=-3.0), 5, "conservative"),  # the card says T < -3
        (dict(t_score=-3.01), 6, "conservative or surgery"),
        (dict(vas=4.99), 3, "conservative"),  # VAS < 5 gives -1
        (dict(vas=5.0), 5, "conservative"),
        (dict(neuro_deficit=True), 7, "surgery"),
        (dict(asa_gt3=True, mfi_gt2=True, anticoagulation=True), 3, "conservative"),  # health at most -2
    ],
)
def test_of_score_worked_examples_and_band_edges(changes, score, band):
    s, b, reasons = sc.of_score("OF2", **{**_ALL_KNOWN, **changes})
    assert (s, b) == (score, band)
    assert reasons[0] == "morphology: OF2 (2 x 2) -> +4"


def test_of_score_class_spellings_and_range():
    assert sc.of_score(4, **_ALL_KNOWN).score == 9
    assert sc.of_score("of4", **_ALL_KNOWN).score == 9
    r = sc.of_score("OF5", **_ALL_KNOWN)
    assert r.score == r.score_min == r.score_max == 11 and r.band == "surgery"


def test_of_score_unknowns_count_zero_but_widen_the_range():
    r = sc.of_score("OF3")
    assert r.score == 6 and r.card_band == "conservative or surgery"
    # 6 + density 0..1 + progression -1..1 + pain -1..1 + neuro 0..2 + mobilisation -1..1 + health -2..0
    assert (r.score_min, r.score_max) == (1, 12)
    assert r.band == "indeterminate"
    assert sum("unknown" in x for x in r.reasons) >= 6
    # Enough known to fix the band even with unknowns left: OF5 with good findings stays surgery.
    r = sc.of_score("OF5", vas=8, mobilisation_possible=False, neuro_deficit=True)
    assert r.band == "surgery" and r.score_min > 6


def test_of_score_bad_inputs():
    with pytest.raises(ParameterError, match="vas"):
        sc.of_score("OF2", vas=11)
    with pytest.raises(ParameterError, match="vas"):
        sc.of_score("OF2", vas=-1)
    with pytest.raises(ParameterError, match="Unknown OF class"):
        sc.of_score("OF6")
    with pytest.raises(ParameterError, match="Unknown OF class"):
        sc.of_score("A3")
    with pytest.raises(ParameterError, match="neuro_deficit"):
        sc.of_score("OF2", neuro_deficit="no")
    s, band, reasons = sc.of_score(None)
    assert s is None and band == "unknown" and "OF class unknown" in reasons[0]


# ------------------------------------------------------------------------------------------------------------ SINS


@pytest.mark.parametrize(
    "kw,score,band",
    [
        (dict(level="L3", pain="occasional", lesion="mixed", alignment="normal", collapse="<50", posterolateral="none"),
         6, "stable"),
        (dict(level="L3", pain="occasional", lesion="mixed", alignment="normal", collapse="<50",
              posterolateral="unilateral"), 7, "potentially unstable"),
        (dict(level="T8", pain="mechanical", lesion="lytic", alignment="deformity", collapse=">50",
              posterolateral="unilateral"), 12, "potentially unstable"),
        (dict(level="L3", pain="mechanical", lesion="lytic", alignment="deformity", collapse=">50",
              posterolateral="unilateral"), 13, "unstable"),
        (dict(level="L1", pain="mechanical", lesion="lytic", alignment="subluxation", collapse=">50",
              posterolateral="bilateral"), 18, "unstable"),
        (dict(level="S3", pain="none", lesion="blastic", alignment="normal", collapse="none", posterolateral="none"),
         0, "stable"),
    ],
)
def test_sins_band_edges(kw, score, band):
    s, b, _ = sc.sins(**kw)
    assert (s, b) == (score, band)


@pytest.mark.parametrize("level,pts", [("C1", 3), ("C2", 3), ("C3", 2), ("C6", 2), ("C7", 3), ("T2", 3), ("T3", 1),
                                       ("T10", 1), ("T11", 3), ("L1", 3), ("L2", 2), ("L4", 2), ("L5", 3), ("S1", 3)])
def test_sins_location(level, pts):
    assert sc.sins_location_points(level) == pts


def test_sins_unknowns():
    r = sc.sins(level="L1")
    assert r.score is None and (r.score_min, r.score_max) == (3, 18) and r.band == "unknown"
    # Only the lesion unknown (0..2): 2+1+0+2+0 = 5 -> 5..7 spans two bands.
    r = sc.sins(level="L3", pain="occasional", alignment="normal", collapse="<50", posterolateral="none")
    assert r.score is None and (r.score_min, r.score_max) == (5, 7) and r.band == "unknown"
    # 0 + 0..2 + ... = 0..2: stable whatever the lesion.
    r = sc.sins(level="S2", pain="none", alignment="normal", collapse="none", posterolateral="none")
    assert r.score is None and r.band == "stable"


def test_sins_bad_inputs():
    with pytest.raises(ParameterError, match="pain"):
        sc.sins(pain="terrible")
    with pytest.raises(ParameterError, match="SINS location"):
        sc.sins_location_points("X9")


@pytest.mark.parametrize("d,cat", [(0.6, ">50"), (0.5, ">50"), (0.49, "<50"), (0.2, "<50"), (0.19, None),
                                   (None, None)])
def test_sins_collapse_from_deformity(d, cat):
    assert sc.sins_collapse_from_deformity(d)[0] == cat


# ----------------------------------------------------------------------------------------------------- eligibility


def _status(items, prefix):
    return {c: s for c, s, _ in items if c.startswith(prefix)}


@pytest.mark.parametrize(
    "kw,criterion,status",
    [
        (dict(pain_weeks=6), "VERTOS II/IV: pain <= 6 weeks", "met"),
        (dict(pain_weeks=6.01), "VERTOS II/IV: pain <= 6 weeks", "unmet"),
        (dict(vas=5), "VERTOS II/IV: VAS >= 5", "met"),
        (dict(vas=4.9), "VERTOS II/IV: VAS >= 5", "unmet"),
        (dict(height_loss_fraction=0.15), "VERTOS II/IV: height loss >= 15 %", "met"),
        (dict(height_loss_fraction=0.149), "VERTOS II/IV: height loss >= 15 %", "unmet"),
        (dict(t_score=-1.0), "VERTOS II/IV: T-score <= -1", "met"),
        (dict(t_score=-0.9), "VERTOS II/IV: T-score <= -1", "unmet"),
        (dict(height_loss_fraction=0.20), "RAND/UCLA: unfavourable condition (one of several, not each required): height loss >= 20 %", "met"),
        (dict(height_loss_fraction=0.19), "RAND/UCLA: unfavourable condition (one of several, not each required): height loss >= 20 %", "unmet"),
        (dict(), "VERTOS II/IV: VAS >= 5", "unknown"),
    ],
)
def test_eligibility_edges(kw, criterion, status):
    items = {c: s for c, s, _ in sc.eligibility(**kw)}
    assert items[criterion] == status


def test_eligibility_nice_and_summary():
    nice = sc.eligibility(checklist="nice")
    assert len(nice) == 3 and {s for _, s, _ in nice} == {"unknown"}
    assert sc.eligibility_summary(nice) == "unknown"
    ok = sc.eligibility(checklist="nice", pain_refractory=True, mri_oedema=True, focal_tenderness=True)
    assert sc.eligibility_summary(ok) == "met"
    no = sc.eligibility(checklist="nice", pain_refractory=True, mri_oedema=None, focal_tenderness=False)
    assert _status(no, "NICE")["NICE TA279: pain confirmed at the fracture level (examination and imaging)"] == "unmet"
    assert sc.eligibility_summary(no) == "unmet"
    vertos = sc.eligibility(checklist="vertos", pain_weeks=3, vas=8, focal_tenderness=True, height_loss_fraction=0.3,
                            mri_oedema=True, t_score=-2.7)
    assert sc.eligibility_summary(vertos) == "met" and len(vertos) == 6
    assert len(sc.eligibility()) == 3 + 6 + 4 + 1


def test_eligibility_bad_inputs():
    with pytest.raises(ParameterError, match="vas"):
        sc.eligibility(vas=12)
    with pytest.raises(ParameterError, match="checklist"):
        sc.eligibility(checklist="medicare")
    with pytest.raises(ParameterError, match="mri_oedema"):
        sc.eligibility(mri_oedema=1)
    with pytest.raises(ParameterError, match="pain_weeks"):
        sc.eligibility(pain_weeks=-2)


# --------------------------------------------------------------------------------------------- morphometry glue


def _level(**kw):
    base = dict(level="L1", label=31, evaluable=True, reason="", height_anterior_mm=18.0, height_middle_mm=22.0,
                height_posterior_mm=25.0, ratio_ha_hp=0.72, ratio_hm_hp=0.88, ratio_hp_above=0.97,
                ratio_hp_below=0.95, deformity=0.28, genant_grade=2, genant_type="wedge", hu_mean=85.0,
                wedge_angle_deg=9.0)
    base.update(kw)
    return SimpleNamespace(**base)


def test_morphology_from_level_reads_attributes_and_nans():
    m = sc.morphology_from_level(_level(hu_mean=math.nan))
    assert m.ratio_ha_hp == 0.72 and m.hu_mean is None and m.level == "L1"
    m = sc.morphology_from_level(SimpleNamespace(label="T12"))  # nothing measured
    assert m.level == "T12" and m.ratio_ha_hp is None
    m = sc.morphology_from_level(_level(evaluable=False, reason="touches the image border"))
    assert m.evaluable is False and m.ratio_ha_hp is None and m.reason == "touches the image border"


def test_assess_worked_case():
    m = sc.morphology_from_level(_level())
    a = sc.assess(m, vas=7, pain_weeks=4, neuro_deficit=False, tension_band_failure=False,
                  posterior_wall_distinct=False, mobilisation_possible=False, deformity_progression=None)
    assert a.genant.grade == 2 and a.genant.type == "wedge"
    assert a.density_class == "osteoporosis"
    # Wedge grade 2 -> one endplate; both-endplate involvement unknown -> OF4 or OF2.
    assert a.of_class.of_class is None and a.of_class.possible == ("OF4", "OF2")
    assert a.of_score.score is None
    # OF2 card: 4 + 1 (85 HU) + 0 (progression unknown) + 1 (VAS 7) + 0 + 1 (not mobile) + 0 = 7 ... OF4 adds 4.
    assert any("card score 7 if OF2 ... 11 if OF4" in r for r in a.of_score.reasons)
    assert a.sins.score is None and a.sins.score_min == 3 + 2  # L1 location and < 50 % collapse known
    elig = {c: s for c, s, _ in a.eligibility}
    assert elig["VERTOS II/IV: height loss >= 15 %"] == "met"
    assert elig["VERTOS II/IV: pain <= 6 weeks"] == "met"


def test_assess_decided_class_and_no_ct():
    a = sc.assess(sc.morphology_from_level(_level()), vas=7, tension_band_failure=False, posterior_wall_distinct=False,
                  of_class="OF2", mobilisation_possible=False, deformity_progression=True, neuro_deficit=False,
                  asa_gt3=False, mfi_gt2=False, anticoagulation=False)
    assert a.of_score.score == 4 + 1 + 1 + 1 + 0 + 1 and a.of_score.band == "surgery"
    a = sc.assess(level="L2", vas=3)  # flags only, no CT
    assert a.genant.grade is None and a.of_score.score is None and a.of_score.band == "indeterminate"
    assert a.sins.score_min == 2


def test_print_assessment_renders():
    from rich.console import Console

    con = Console(record=True, width=200)
    sc.print_assessment(sc.assess(sc.morphology_from_level(_level()), vas=7), con)
    text = con.export_text()
    assert "Genant SQ" in text and "grade 2 (wedge)" in text and "NICE TA279" in text


def test_morphology_for_spine():
    spine = SimpleNamespace(levels={"L1": _level(), "L2": _level(level="L2")})
    assert sc.morphology_for(spine, "l1").ratio_ha_hp == 0.72
    from vertaug.errors import LevelNotFoundError

    with pytest.raises(LevelNotFoundError, match="L4"):
        sc.morphology_for(spine, "L4")


def test_eligibility_summary_ignores_optional_rand_conditions():
    items = sc.eligibility(checklist="rand", vas=7, mri_oedema=True, height_loss_fraction=0.1,
                           deformity_progression=False)
    assert sc.eligibility_summary(items) == "met"


# ------------------------------------------------------------------------------------------------------------- CLI

DATA = __import__("pathlib").Path(sc.__file__).parents[1] / "data" / "totalseg-example"


def _cli(*args):
    from typer.testing import CliRunner

    from vertaug.cli import app

    return CliRunner().invoke(app, ["score", *args], env={"COLUMNS": "240"})


def test_cli_flags_only():
    r = _cli("--level", "L2", "--vas", "7", "--pain-weeks", "3", "--no-neuro-deficit")
    assert r.exit_code == 0, r.output
    assert "Genant SQ" in r.output and "VERTOS II/IV: VAS >= 5" in r.output and "not a medical device" in r.output


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--level", "L1", "--vas", "12"], "vas"),
        (["--level", "L1", "--of-class", "OF7"], "Unknown OF class"),
        (["--level", "L1", "--sins-pain", "awful"], "pain"),
        (["--level", "Q9"], "not a vertebral level"),
        ([str(DATA / "example_ct.nii.gz"), "--level", "L1"], "both CT and SEG"),
    ],
)
def test_cli_bad_input_is_a_clear_error(args, needle):
    r = _cli(*args)
    assert r.exit_code == 2
    assert needle in r.output


def test_cli_on_bundled_ct_l1():
    from vertaug.anatomy.morphometry import measure_spine

    ct, seg, body = (DATA / f for f in ("example_ct.nii.gz", "totalseg.nii.gz", "totalseg_vertebrae_body.nii.gz"))
    lv = measure_spine(ct, seg, body=body).levels["L1"]
    r = _cli(str(ct), str(seg), "--level", "L1", "--body", str(body), "--vas", "7", "--pain-weeks", "4",
             "--mri-oedema", "--no-tension-band-failure")
    assert r.exit_code == 0, r.output
    expected = sc.genant_sq(lv.ratio_ha_hp, lv.ratio_hm_hp, None if math.isnan(lv.ratio_hp_above) else lv.ratio_hp_above,
                            lv.ratio_hp_below)
    assert f"grade {expected.grade}" in r.output
    assert expected.grade == lv.genant_grade  # the scores module agrees with the morphometry module
    assert f"{lv.hu_mean:.0f}" in r.output


@pytest.mark.parametrize("d", [0.0, 0.1999, 0.2, 0.2499, 0.25, 0.3999, 0.4, 0.4001, 0.7, 1 - 0.8, 1 - 0.75, 1 - 0.6])
def test_genant_edges_agree_with_morphometry_module(d):
    from vertaug.anatomy.morphometry import genant_grade as morph_grade

    assert sc.genant_grade(d) == morph_grade(d)
