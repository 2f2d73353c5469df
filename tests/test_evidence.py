"""The evidence table: every row parses and is cited; the report's claims are backed by rows."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from vertaug.clinical import evidence as ev
from vertaug.errors import FileFormatError, ParameterError

ROWS = ev.load_evidence()


def test_table_is_not_trivial_and_ids_unique():
    assert len(ROWS) >= 40
    assert len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_every_row_is_cited_levelled_and_consistent(row):
    assert row.citation and row.journal and 1990 <= row.year <= 2026
    assert row.evidence_level in ev.EVIDENCE_LEVELS
    assert row.design and row.metric in ev.METRICS and row.direction in ev.DIRECTIONS
    assert row.source, "every row names where its figure was seen"
    if row.ci_low is not None:
        assert row.ci_low <= row.effect <= row.ci_high
    # A row that claims a VP-KP difference must carry both values, an effect, or the p-value of the test.
    if row.direction in ("vp>kp", "kp>vp"):
        assert (row.vp_value is not None and row.kp_value is not None) or row.effect is not None or row.p_value
    if row.direction in ("vp>kp", "kp>vp") and row.vp_value is not None and row.kp_value is not None:
        assert (row.vp_value > row.kp_value) == (row.direction == "vp>kp")


def test_every_metric_has_rows():
    for m in ev.METRICS:
        assert ev.rows_for(m), m


@pytest.mark.parametrize("claim", sorted(ev.REPORT_CLAIMS))
def test_report_claims_are_backed(claim):
    rows = ev.rows_supporting(claim)
    assert rows, claim
    assert any(r.verified for r in rows)


def test_claim_numbers():
    # Leakage: VP > KP in every leakage row, including the one RCT (KAVIAR, CT-detected 81.6 % vs 73.4 %).
    leak = ev.rows_for("leakage")
    assert all(r.direction == "vp>kp" for r in leak)
    kaviar = next(r for r in leak if r.id == "kaviar2014_leakage")
    assert (kaviar.vp_value, kaviar.kp_value, kaviar.design) == (81.6, 73.4, "RCT")
    # Angle: KP corrects more (Xing 2013 MD -2.64 deg, CI -4.66..-0.61 excludes 0).
    xing = next(r for r in ev.rows_for("kyphotic_angle") if r.id == "xing2013_angle")
    assert xing.ci_high < 0
    # Pain: VP ~ KP (Wang 2018 WMD 0.04 points); VP ~ sham (INVEST CI spans 0).
    wang = next(r for r in ev.rows_for("pain_vas") if r.id == "wang2018_vas")
    assert abs(wang.effect) < 0.5
    invest = next(r for r in ev.rows_for("sham") if r.id == "invest2009_rmdq")
    assert invest.ci_low < 0 < invest.ci_high and invest.n == 131


def test_sham_trials_named_in_issue_are_present():
    cites = " ".join(r.citation for r in ev.rows_for("sham"))
    for name in ("INVEST", "Buchbinder", "VERTOS IV", "VAPOUR"):
        assert name in cites
    # VAPOUR is the positive one and must be shown as such, not averaged away.
    vapour = next(r for r in ev.rows_for("sham") if "VAPOUR" in r.citation)
    assert vapour.direction == "vp>comparator" and (vapour.vp_value, vapour.comparator_value) == (44, 21)


def test_mortality_is_association_only_and_guidelines_present():
    assert all(r.association_only for r in ev.rows_for("mortality"))
    guide = " ".join(r.journal + " " + r.citation for r in ev.rows_for("guideline"))
    for name in ("TA279", "ASBMR", "Barr", "Hirsch"):
        assert name in guide


def test_rows_for_orders_best_evidence_first():
    sham = ev.rows_for("sham")
    assert sham[0].evidence_level == "1a"
    assert ev.rows_for("leakage", verified_only=True) == [r for r in ev.rows_for("leakage") if r.verified]


def test_pooled():
    p = ev.pooled("leakage")
    assert p is not None and p.direction == "vp>kp"
    assert p.unit == "%" and p.vp_range == (41.0, 54.7) and p.kp_range == (9.0, 18.4)
    pain = ev.pooled("pain_vas")  # VAS changes (points) and relief rates (%) are not mixed in one range
    assert pain.unit == "points" and pain.vp_range == (-4.55, -3.88) and pain.kp_range == (-5.07, -4.05)
    rr = [e for e in p.effects if e[1].startswith("RR")]
    assert rr and rr[0][2:] == (0.62, 0.47, 0.80)
    assert ev.pooled("height").direction == "mixed"  # Beall 2018 finds no KP-VP height difference
    assert ev.pooled("procedure_time") is None  # only an RCT, no meta-analysis


def test_unknown_metric_and_claim_raise():
    with pytest.raises(ParameterError, match="metric"):
        ev.rows_for("happiness")
    with pytest.raises(ParameterError, match="claim"):
        ev.rows_supporting("kp_cures_everything")


def _write_variant(tmp_path: Path, change) -> Path:
    src = Path(ev.__file__).with_name("evidence.csv")
    with open(src, newline="") as f:
        rows = list(csv.DictReader(f))
    change(rows)
    out = tmp_path / "ev.csv"
    with open(out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return out


@pytest.mark.parametrize(
    "field,value,match",
    [
        ("evidence_level", "A+", "evidence_level"),
        ("vp_value", "about 40", "not a number"),
        ("verified", "maybe", "true/false"),
        ("citation", "", "citation"),
        ("direction", "vp>>kp", "direction"),
        ("year", "", "year"),
    ],
)
def test_bad_rows_are_rejected(tmp_path, field, value, match):
    def change(rows):
        rows[0][field] = value

    with pytest.raises(FileFormatError, match=match):
        ev.load_evidence(_write_variant(tmp_path, change))


def test_mortality_row_without_association_flag_rejected(tmp_path):
    def change(rows):
        for r in rows:
            if r["metric"] == "mortality":
                r["association_only"] = "false"

    with pytest.raises(FileFormatError, match="association_only"):
        ev.load_evidence(_write_variant(tmp_path, change))
