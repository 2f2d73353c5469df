"""Cohort runner: samples, manifest, resumable Parquet output, failures recorded, Dask with a killed worker."""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from vertaug.cohort.manifest import read_manifest, write_manifest
from vertaug.cohort.run import default_task, finished_keys, load_results, local_cluster, run_cohort
from vertaug.cohort.sampling import UNCERTAIN_INPUTS, case_samples
from vertaug.cohort.synthetic import synthetic_cases, write_synthetic_cohort
from vertaug.errors import FileFormatError, ParameterError

pa = pytest.importorskip("pyarrow")

PHANTOM = "fracture=wedge;grade=2;trabecular_hu=90;spacing_mm=2"


# ----------------------------------------------------------------------------------------------------- sampling


def test_latin_hypercube_has_one_point_per_stratum_of_every_input():
    n = 16
    s = case_samples("P1", n, seed=3)
    for p in UNCERTAIN_INPUTS:
        if p.kind == "choice":
            counts = [sum(x[p.name] == o for x in s) for o in p.options]
            assert counts == [n // len(p.options)] * len(p.options)  # LHS: 8 strata map to each of 2 options
            continue
        x = np.array([r[p.name] for r in s])
        u = (x - p.low) / (p.high - p.low) if p.kind == "uniform" else np.log(x / p.low) / np.log(p.high / p.low)
        assert sorted(np.floor(u * n).astype(int)) == list(range(n)), p.name


def test_samples_depend_on_seed_and_case_only():
    a = case_samples("P1", 5, seed=7)
    assert a == case_samples("P1", 5, seed=7)
    assert a != case_samples("P1", 5, seed=8)
    assert a != case_samples("P2", 5, seed=7)
    fixed = case_samples("P1", 5, seed=7, fixed={"volume_ml": 4.0})
    assert [r["volume_ml"] for r in fixed] == [4.0] * 5
    assert [r["rate_ml_s"] for r in fixed] == [r["rate_ml_s"] for r in a]  # pinning one input keeps the others


def test_permeability_scale_range_is_two_lognormal_sigmas_of_baroud_2004():
    p = {q.name: q for q in UNCERTAIN_INPUTS}["permeability_scale"]
    sigma = math.sqrt(math.log(1 + (1.72 / 4.45) ** 2))  # 0.3732
    assert p.low == pytest.approx(0.4741, abs=1e-4) and p.high == pytest.approx(2.1092, abs=1e-4)
    assert p.low * p.high == pytest.approx(1.0, rel=1e-12) and math.log(p.high) == pytest.approx(2 * sigma)


def test_bad_sample_count_is_a_parameter_error():
    with pytest.raises(ParameterError, match="samples"):
        case_samples("P1", 0, seed=0)


# ----------------------------------------------------------------------------------------------------- manifest


def test_manifest_paths_are_relative_to_its_folder_and_errors_name_the_line(tmp_path):
    m = write_manifest([{"case_id": "A", "level": "L1", "ct": "ct.nii.gz", "seg": "seg.nii.gz", "volume_ml": 3.0},
                        {"case_id": "B", "level": "L2", "phantom": "fracture=crush;grade=1"}], tmp_path / "m.csv")
    a, b = read_manifest(m)
    assert a.ct == str(tmp_path / "ct.nii.gz") and a.fixed == {"volume_ml": 3.0} and a.procedures == ("VP", "KP")
    assert b.phantom == {"fracture": "crush", "grade": 1, "level": "L2"}
    write_manifest([{"case_id": "A", "level": "L1", "phantom": "grade=x"}], tmp_path / "bad.csv")
    with pytest.raises(ParameterError, match="line 2.*grade='x' is not a int"):
        read_manifest(tmp_path / "bad.csv")
    write_manifest([{"case_id": "A", "level": "L1", "phantom": "grade=1"},
                    {"case_id": "A", "level": "L1", "phantom": "grade=1"}], tmp_path / "dup.csv")
    with pytest.raises(ParameterError, match="more than once"):
        read_manifest(tmp_path / "dup.csv")
    write_manifest([{"case_id": "A", "level": "L1", "ct": "x.nii", "seg": "y.nii", "phantom": "grade=1"}],
                   tmp_path / "both.csv")
    with pytest.raises(ParameterError, match="either ct and seg, or phantom"):
        read_manifest(tmp_path / "both.csv")
    with pytest.raises(FileFormatError, match="does not exist"):
        read_manifest(tmp_path / "none.csv")


def test_synthetic_cohort_is_deterministic_and_covers_grades_types():
    a = synthetic_cases(30, seed=5)
    assert a == synthetic_cases(30, seed=5)
    assert {c["grade"] for c in a} == {1, 2, 3}
    assert {c["fracture"] for c in a} == {"wedge", "biconcave", "crush"}
    assert all(40.0 <= c["trabecular_hu"] <= 180.0 for c in a)


# ------------------------------------------------------------------------------------------ serial run, failures


def test_missing_file_is_a_recorded_failure_and_rerun_writes_nothing(tmp_path):
    write_synthetic_cohort(tmp_path / "syn.csv", 1, seed=2, nifti_dir=tmp_path / "nii")
    (syn,) = read_manifest(tmp_path / "syn.csv")
    m = write_manifest([
        {"case_id": "CT", "level": syn.level, "ct": syn.ct, "seg": syn.seg, "body": syn.body, "spacing_mm": 2.0},
        {"case_id": "PH", "level": syn.level, "phantom": "fracture={fracture};grade={grade};trabecular_hu="
         "{trabecular_hu};cortical_defect={cortical_defect};cleft={cleft};spacing_mm=2;seed=0".format(
             **synthetic_cases(1, seed=2)[0])},
        {"case_id": "MISSING", "level": syn.level, "ct": "nowhere/ct.nii.gz", "seg": "nowhere/seg.nii.gz",
         "body": "nowhere/body.nii.gz", "spacing_mm": 2.0},
    ], tmp_path / "m.csv")
    out = tmp_path / "out"
    r = run_cohort(m, out, samples=3, seed=1, scheduler="serial", progress=False)
    assert (r.n_tasks, r.n_written, r.n_failed, r.n_skipped) == (9, 9, 3, 0)
    rows = load_results(out).to_pylist()
    failed = [x for x in rows if x["status"] == "failed"]
    assert {x["case_id"] for x in failed} == {"MISSING"} and len(failed) == 3
    assert failed[0]["error_type"] == "FileFormatError" and "nowhere/ct.nii.gz" in failed[0]["error"]
    ok = {(x["case_id"], x["sample"]): x for x in rows if x["status"] == "ok"}
    assert len(ok) == 6
    for s in range(3):
        ct, ph = ok[("CT", s)], ok[("PH", s)]
        # the NIfTI path and the phantom path measure the same volumes: identical morphometry
        for k in ("height_anterior_mm", "height_middle_mm", "height_posterior_mm", "genant_grade"):
            assert ct[k] == pytest.approx(ph[k], abs=1e-9)
        # BMD = slope * HU on the uniform phantom trabecular bone
        assert ph["bmd_trabecular_mg_cm3_mean"] == pytest.approx(
            ph["bmd_slope_mg_cm3_per_hu"] * ph["hu_trabecular_mean"], rel=1e-5)
    # the permeability scale multiplies k(BV/TV) of the sampled calibration
    from vertaug.model.materials import permeability_from_bvtv_m2

    ph = ok[("PH", 0)]
    k0 = float(permeability_from_bvtv_m2(np.float64(ph["bvtv_trabecular_mean"])))
    assert ph["permeability_trabecular_m2_mean"] == pytest.approx(ph["permeability_scale"] * k0, rel=1e-4)
    before = {p: p.stat().st_mtime_ns for p in (out / "parts").iterdir()}
    r2 = run_cohort(m, out, samples=3, seed=1, scheduler="serial", progress=False)
    assert (r2.n_written, r2.n_skipped) == (0, 9)
    assert {p: p.stat().st_mtime_ns for p in (out / "parts").iterdir()} == before
    with pytest.raises(ParameterError, match="samples=3, not 4"):
        run_cohort(m, out, samples=4, seed=1, scheduler="serial", progress=False)
    # fix the case (its files appear) and run the recorded failures again: each task is rewritten once, in place
    (tmp_path / "nowhere").mkdir()
    for col in ("ct", "seg", "body"):
        (tmp_path / "nowhere" / f"{col}.nii.gz").write_bytes(Path(getattr(syn, col)).read_bytes())
    r3 = run_cohort(m, out, samples=3, seed=1, scheduler="serial", progress=False, retry_failed=True)
    assert (r3.n_written, r3.n_failed, r3.n_skipped) == (3, 0, 6)
    rows = load_results(out).to_pylist()
    assert len(rows) == 9 and all(x["status"] == "ok" for x in rows)
    fixed = {x["sample"]: x for x in rows if x["case_id"] == "MISSING"}
    for k in ("height_anterior_mm", "body_volume_ml", "exit_volume_ml"):  # the same files as case CT
        assert fixed[0][k] == pytest.approx(ok[("CT", 0)][k], abs=1e-9)


def _leaky_task(case, sample):
    """A stand-in for compare(): VP leaks 0.1 of the volume, KP a fixed 0.5 mL."""
    return [{"procedure": "VP", "leaked_ml": 0.1 * sample["volume_ml"]}, {"procedure": "KP", "leaked_ml": 0.5}]


def test_summary_probability_that_vp_leaks_more(tmp_path):
    from vertaug.cohort.summary import summarize

    m = write_manifest([{"case_id": "A", "level": "L1", "phantom": "grade=1;fracture=wedge"}], tmp_path / "m.csv")
    run_cohort(m, tmp_path / "out", samples=20, seed=4, task_fn=_leaky_task, scheduler="serial", progress=False)
    s = summarize(tmp_path / "out")
    expected = np.mean([x["volume_ml"] > 5.0 for x in case_samples("A", 20, seed=4)])
    # LHS on U[2.4, 7.5] mL: 5 mL lies at u = 0.51, in stratum 10 of 20, so 9 or 10 samples lie above it
    assert expected in (0.45, 0.5)
    assert s.p_vp_leaks_more["A"]["p"] == pytest.approx(expected, abs=1e-12) and s.p_vp_leaks_more["A"]["n"] == 20
    lo, hi = s.p_vp_leaks_more["A"]["low95"], s.p_vp_leaks_more["A"]["high95"]
    assert lo < expected < hi
    assert s.metrics["leaked_ml"]["KP"]["p50"] == pytest.approx(0.5)
    assert Path(s.figure).stat().st_size > 5000


# ------------------------------------------------------------------------------------------ Dask, a killed worker


def _slow_default_task(case, sample):
    time.sleep(0.4)
    return default_task(case, sample)


def test_local_cluster_worker_killed_mid_run_every_row_exactly_once(tmp_path):
    pytest.importorskip("distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    m = write_synthetic_cohort(tmp_path / "m.csv", 4, seed=0, spacing_mm=2.0)
    out = tmp_path / "out"
    client, cluster = local_cluster(2)  # 2 single-threaded worker processes on 127.0.0.1
    assert len(client.scheduler_info()["workers"]) == 2 and client.scheduler.address.startswith("tcp://127.0.0.1:")
    env = client.run(lambda: (os.environ.get("MALLOC_TRIM_THRESHOLD_"), os.environ.get("OMP_NUM_THREADS")))
    assert set(env.values()) == {(None, "1")}  # glibc's dynamic mmap threshold kept, one BLAS thread
    killed: dict = {}

    def killer():
        while len(finished_keys(out)) < 4:
            time.sleep(0.02)
        busy = {}
        while not busy:  # a worker that holds a task now
            busy = {w: ks for w, ks in client.processing().items() if ks}
        addr = min(busy)
        killed["pid"] = client.run(os.getpid, workers=[addr])[addr]
        killed["keys"] = {k.split("-", 3)[3] for k in busy[addr]}
        killed["done_before"] = len(finished_keys(out))
        os.kill(killed["pid"], signal.SIGKILL)
        killed["sent"] = True

    try:
        t = threading.Thread(target=killer, daemon=True)
        t.start()
        r = run_cohort(m, out, samples=5, seed=0, task_fn=_slow_default_task, client=client, progress=False)
        t.join(timeout=5)
        assert killed.get("sent") and killed["done_before"] < 20  # killed mid-run
        assert (r.n_tasks, r.n_written, r.n_lost, r.n_failed) == (20, 20, 0, 0)
        rows = load_results(out).to_pylist()
        keys = [(x["case_id"], x["sample"], x["procedure"]) for x in rows]
        expected = {(f"SYN{c:04d}", s, "pre") for c in range(4) for s in range(5)}
        assert len(keys) == 20 and set(keys) == expected  # every row once: no loss, no duplicate
        by_key = {f"{x['case_id']}__s{x['sample']:05d}": x for x in rows}
        assert any(by_key[k]["worker_pid"] != killed["pid"] for k in killed["keys"])  # recomputed elsewhere
        mtimes = {p: p.stat().st_mtime_ns for p in (out / "parts").iterdir()}
        r2 = run_cohort(m, out, samples=5, seed=0, task_fn=_slow_default_task, client=client, progress=False)
        assert (r2.n_written, r2.n_skipped) == (0, 20)
        assert {p: p.stat().st_mtime_ns for p in (out / "parts").iterdir()} == mtimes
        # two parts lost (deleted): a run attached by address, as `--scheduler tcp://...`, redoes exactly those two
        for k in ("SYN0001__s00003", "SYN0002__s00000"):
            (out / "parts" / f"{k}.parquet").unlink()
        r3 = run_cohort(m, out, samples=5, seed=0, task_fn=_slow_default_task, scheduler=cluster.scheduler_address,
                        progress=False)
        assert (r3.n_written, r3.n_skipped, r3.scheduler) == (2, 18, cluster.scheduler_address)
        rows = load_results(out).to_pylist()
        assert sorted((x["case_id"], x["sample"], x["procedure"]) for x in rows) == sorted(expected)
    finally:
        client.close()
        cluster.close()


# -------------------------------------------------------------------------------------------------------- CLI


def test_cli_cohort_synthetic_serial_then_resume(tmp_path):
    from typer.testing import CliRunner

    from vertaug.cli import app

    runner = CliRunner()
    args = ["cohort", str(tmp_path / "m.csv"), "--out", str(tmp_path / "out"), "--samples", "2", "--scheduler",
            "serial", "--no-progress"]
    r = runner.invoke(app, args + ["--synthetic", "2"])
    assert r.exit_code == 0, r.output
    assert "4 tasks: 0 already done, 4 written (0 failed)" in r.output
    assert load_results(tmp_path / "out").num_rows == 4 and (tmp_path / "out" / "summary.json").exists()
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and "4 tasks: 4 already done, 0 written" in r.output
    r = runner.invoke(app, args[:-3] + ["--task", "vertaug.nothing:here", "--scheduler", "serial"])
    assert r.exit_code == 2 and "cannot be imported" in r.output
