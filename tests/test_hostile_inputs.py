"""Hostile inputs through the command line: exit 2, one line naming the problem and the fix, no traceback, no output
left behind, no long work first, and a memory ceiling for the bomb cases (docs/errors.md)."""

import os

import pytest
from hostile_cases import CASES, EXPECT, run_case

#: Peak of traced allocations allowed before the error (the issue's ceiling for the bomb cases).
MEMORY_CEILING_MB = 500


@pytest.fixture(autouse=True)
def _no_long_work(monkeypatch):
    """The run of compare / fracture / cohort / validate must not start: a stub that fails the test if reached."""
    from vertaug.anatomy import fracture
    from vertaug.cohort import run as cohort_run
    from vertaug.report import pipeline
    from vertaug.validate import run as validate_run

    def reached(*a, **k):
        raise AssertionError("long work started before the input was checked")

    monkeypatch.setattr(pipeline, "run_pipeline", reached)
    monkeypatch.setattr(fracture, "fracture_level", reached)
    monkeypatch.setattr(cohort_run, "_run_dask", reached)
    monkeypatch.setattr(cohort_run, "execute_task", reached)
    monkeypatch.setattr(validate_run, "run_validation", reached)


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_one_clean_line(name, tmp_path):
    if name.endswith("read_only") and os.geteuid() == 0:
        pytest.skip("root may write to a read-only folder")
    before = {p.name for p in tmp_path.iterdir()}
    code, out, exc, peak_mb = run_case(name, tmp_path)
    assert exc is None, f"{name}: traceback {type(exc).__name__}: {exc}\n{out}"
    assert code == 2, f"{name}: exit {code}\n{out}"
    if out.startswith("Usage:"):  # typer's own check of an option's type: its usage box, naming the option
        assert EXPECT[name] in out.lower(), out
    else:
        lines = [ln for ln in out.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        assert len(errors) == 1 and len(lines) == 1, f"{name}: expected one error line, got:\n{out}"
        line = errors[0].lower()
        assert EXPECT[name] in line, f"{name}: the message does not name the problem ({EXPECT[name]!r}):\n{out}"
        assert "fix:" in line, f"{name}: no fix given:\n{out}"
    assert "\x1b" not in out and "Traceback" not in out
    assert peak_mb < MEMORY_CEILING_MB, f"{name}: {peak_mb:.0f} MB allocated before the error"
    made = {p.name for p in tmp_path.iterdir()} - before
    leftovers = [m for m in made if m in ("out", "r", "report") or ".partial-" in m]
    assert not [m for m in leftovers if m not in _inputs_of(name)], f"{name}: left {leftovers} behind"


def _inputs_of(name):
    """Names a case itself creates as part of its hostile input (an existing file at --out, an old cohort folder)."""
    return {"compare_out_existing_file": {"report"}, "fracture_out_existing_file": {"out"},
            "cohort_out_existing_file": {"out"}, "validate_out_existing_file": {"out"},
            "cohort_json_corrupt": {"out"}, "cohort_json_not_object": {"out"}}.get(name, set())


def test_markup_and_escapes_in_paths_are_shown_literally(tmp_path):
    code, out, exc, _ = run_case("path_with_markup", tmp_path)
    assert exc is None and code == 2 and "[/]" in out and "[link=file:x.invalid]ct.nii.gz" in out
    code, out, exc, _ = run_case("path_with_ansi", tmp_path)
    assert exc is None and code == 2 and "\\x1b[31mred" in out


def test_at_least_forty_cases():
    assert len(CASES) >= 40


def test_two_equal_series_are_listed_and_series_picks_one(tmp_path):
    from hostile_cases import _dicom_series

    from vertaug.anatomy.io import load_ct
    from vertaug.errors import FileFormatError

    _dicom_series(tmp_path / "dcm", uid="1.2.3.4")
    _dicom_series(tmp_path / "dcm", uid="1.2.3.5", start=100.0)
    with pytest.raises(FileFormatError, match=r"1\.2\.3\.4 \(3 slices.*1\.2\.3\.5 \(3 slices"):
        load_ct(tmp_path / "dcm")
    a, b = load_ct(tmp_path / "dcm", "1.2.3.4"), load_ct(tmp_path / "dcm", "1.2.3.5")
    assert b.affine_mm[2, 3] - a.affine_mm[2, 3] == pytest.approx(100.0)
    with pytest.raises(FileFormatError, match="choose one of"):
        load_ct(tmp_path / "dcm", "9.9")
