"""The trial on a Dask cluster run the way a cluster runs: a `dask scheduler` process and two `dask worker` processes
on this machine (random free port, processes ended by their ids); a worker SIGKILLed mid-trial."""

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
from typer.testing import CliRunner

from vertaug.cli import app
from vertaug.trial.population import DEFAULT_POPULATION

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow

runner = CliRunner()


def phantom_population(tmp_path, spacing_mm: float = 2.0):
    """The shipped population with every CT source at weight 0 (phantoms only: seconds per patient) at ``spacing_mm``."""
    text = DEFAULT_POPULATION.read_text().replace("spacing_mm = 1.5", f"spacing_mm = {spacing_mm:g}")
    head, tail = text.rsplit("[[source]]", 1)  # the last source is the phantom
    text = head.replace("weight = 1.0", "weight = 0.0") + "[[source]]" + tail
    path = tmp_path / "phantoms.toml"
    path.write_text(text.replace("../../../tests", str(DEFAULT_POPULATION.parents[3] / "tests")))
    return path


def _rows(out):
    import pyarrow.parquet as pq

    return pq.read_table(out / "results.parquet").to_pylist()


def test_tiny_trial_on_a_spawned_scheduler_and_two_workers(tmp_path):
    from vertaug.cohort.spawn import spawned_cluster

    pop = phantom_population(tmp_path)
    with spawned_cluster(2) as cluster:
        assert re.fullmatch(r"tcp://127\.0\.0\.1:\d+", cluster.address) and len(cluster.worker_pids) == 2
        r = runner.invoke(app, ["trial", "--population", str(pop), "--patients", "2", "--seed", "3", "--out",
                                str(tmp_path / "out"), "--scheduler", cluster.address, "--no-progress"])
        assert r.exit_code == 0, r.output
        pids = (cluster.scheduler_pid, *cluster.worker_pids)
    rows = _rows(tmp_path / "out")
    assert sorted((x["case_id"], x["procedure"]) for x in rows) == [(p, a) for p in ("p00000", "p00001")
                                                                     for a in ("KP", "VP")]
    assert all(x["status"] == "ok" for x in rows) and {x["worker_pid"] for x in rows} <= set(cluster.worker_pids)
    assert not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]


def test_sigkill_of_a_worker_mid_trial_every_patient_once_and_rerun_resumes(tmp_path):
    """4 patients on the scheduler + 2 workers; after the first part file, one worker process is SIGKILLed: the trial
    ends with every patient and arm exactly once (the killed worker's task recomputed by the other), nothing lost;
    the same command again computes nothing and leaves every part file as it was."""
    from vertaug.cohort.spawn import spawned_cluster

    pop, out = phantom_population(tmp_path), tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    with spawned_cluster(2) as cluster:
        cmd = [sys.executable, "-c", "from vertaug.cli import app; app()", "trial", "--population", str(pop),
               "--patients", "4", "--seed", "4", "--out", str(out), "--scheduler", cluster.address, "--no-progress"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None and not list((out / "parts").glob("*.parquet")):
            time.sleep(0.1)
        done_before = len(list((out / "parts").glob("*.parquet")))
        assert proc.poll() is None and 0 < done_before < 4, "the trial was not caught mid-run"
        os.kill(cluster.worker_pids[0], signal.SIGKILL)
        at_kill = len(list((out / "parts").glob("*.parquet")))
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, log[-3000:]
        assert re.search(r"4 patients: 0 already done, 4 written \(0 failed\), 0 lost", " ".join(log.split())), log
        rows = _rows(out)
        assert sorted((x["case_id"], x["procedure"]) for x in rows) == sorted(
            (f"p{i:05d}", a) for i in range(4) for a in ("VP", "KP"))
        assert all(x["status"] == "ok" for x in rows)
        # every patient not yet written at the kill ran on the other worker (one allowed for a result in transit)
        survivor = {x["case_id"] for x in rows if x["worker_pid"] == cluster.worker_pids[1]}
        assert len(survivor) >= 4 - at_kill - 1 and {x["worker_pid"] for x in rows} <= set(cluster.worker_pids)
        parts = {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.parquet")}
        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert "4 patients: 4 already done, 0 written" in " ".join(again.stdout.split())
    assert {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.parquet")} == parts
    assert len(_rows(out)) == 8
