"""A batch never loses finished results because one case or one file failed (issue 23, docs/errors.md)."""

import time

import pytest
from typer.testing import CliRunner

from vertaug.cli import CODE_COHORT_INCOMPLETE, app
from vertaug.cohort.manifest import write_manifest
from vertaug.cohort.run import CORRUPT_SUFFIX, load_results, run_cohort
from vertaug.errors import FileFormatError, ParameterError


def quick_task(case, sample):
    """A stand-in for the model: fails on the case named BAD, otherwise one row per procedure."""
    if case.case_id == "BAD":
        raise FileFormatError(f"case {case.case_id}: its CT cannot be read.", "export it again.")
    return [{"procedure": "VP", "x": float(sample["sample"])}, {"procedure": "KP", "x": 1.0}]


def _manifest(tmp_path, ids=("A", "BAD", "C")):
    return write_manifest([{"case_id": i, "level": "L1", "phantom": "fracture=wedge;grade=2;spacing_mm=2"}
                           for i in ids], tmp_path / "m.csv")


def test_corrupt_part_is_renamed_rerun_and_the_others_kept(tmp_path):
    m, out = _manifest(tmp_path), tmp_path / "out"
    r = run_cohort(m, out, samples=2, seed=0, task_fn=quick_task, scheduler="serial", progress=False)
    assert (r.n_written, r.n_failed) == (6, 2)
    bad = out / "parts" / "A__s00001.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    kept = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.parquet") if p != bad}
    with pytest.warns(UserWarning, match="unreadable part file"):
        r2 = run_cohort(m, out, samples=2, seed=0, task_fn=quick_task, scheduler="serial", progress=False)
    assert (r2.n_written, r2.n_skipped) == (1, 5)
    assert (out / "parts" / f"A__s00001.parquet{CORRUPT_SUFFIX}").exists()
    assert {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.parquet") if p != bad} == kept
    rows = load_results(out).to_pylist()
    assert len(rows) == 2 * 2 * 2 + 2  # A and C: 2 samples x 2 procedures; BAD: one failed row per sample
    failed = [x for x in rows if x["status"] == "failed"]
    assert {x["case_id"] for x in failed} == {"BAD"} and "cannot be read" in failed[0]["error"]


def test_load_results_skips_an_unreadable_part(tmp_path):
    m, out = _manifest(tmp_path, ("A", "C")), tmp_path / "out"
    run_cohort(m, out, samples=1, seed=0, task_fn=quick_task, scheduler="serial", progress=False)
    (out / "parts" / "C__s00000.parquet").write_bytes(b"\0" * 100)
    assert {x["case_id"] for x in load_results(out).to_pylist()} == {"A"}


@pytest.mark.parametrize("text", ['{"samples": 1, "se', "[1, 2]", "\udcff"])
def test_corrupt_cohort_json_is_an_input_error_naming_it(tmp_path, text):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cohort.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(FileFormatError, match="cohort.json"):
        run_cohort(_manifest(tmp_path), out, samples=1, task_fn=quick_task, scheduler="serial", progress=False)


def test_cli_cohort_with_a_failed_case_writes_the_others_and_exits_4(tmp_path):
    m, out = _manifest(tmp_path), tmp_path / "out"
    r = CliRunner().invoke(app, ["cohort", str(m), "--out", str(out), "--samples", "1", "--scheduler", "serial",
                                 "--no-progress", "--task", "test_cohort_reliability:quick_task"])
    assert r.exit_code == CODE_COHORT_INCOMPLETE == 4, r.output
    assert "1 task(s) failed" in r.output and "--retry-failed" in r.output
    rows = load_results(out).to_pylist()
    assert {x["case_id"] for x in rows if x["status"] == "ok"} == {"A", "C"}
    assert (out / "results.parquet").exists()


def test_unreachable_scheduler_is_one_error_after_the_timeout(tmp_path, monkeypatch):
    from vertaug.cohort import run

    monkeypatch.setattr(run, "SCHEDULER_TIMEOUT_S", 1.0)
    t0 = time.perf_counter()
    with pytest.raises(ParameterError, match="No Dask scheduler answered"):
        run_cohort(_manifest(tmp_path), tmp_path / "out", samples=1, task_fn=quick_task,
                   scheduler="tcp://127.0.0.1:9", progress=False)
    assert time.perf_counter() - t0 < 15
