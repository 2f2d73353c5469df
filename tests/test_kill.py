"""SIGKILL of `vertaug compare` and of `vertaug cohort`: no process of ours left after 5 s (issue 23); compare's hidden
partial folder is swept by the next run, the cohort resumes. A hidden `.NAME.partial-PID-*` folder never looks like a finished report."""

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from vertaug.report.pipeline import sweep_stale_partials


@pytest.mark.slow
def test_sigkill_of_compare_leaves_no_process_and_the_partial_is_swept(tmp_path):
    out = tmp_path / "report"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, "-c", "from vertaug.cli import app; app()", "compare", "--phantom",
                             "wedge:2", "--level", "L1", "--out", str(out), "--no-thermal", "--no-mechanics",
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    children = []
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            children = parent.children(recursive=True)
            # the pool's workers: forked by the fork server (study.worker_pool), or spawned where there is none
            spawned = [c for c in children if any(w in " ".join(c.cmdline()) for w in ("spawn_main", "forkserver"))]
        except psutil.NoSuchProcess:
            continue
        partial = list(tmp_path.glob(".report.partial-*"))
        if spawned and partial:
            break
        time.sleep(0.2)
    assert spawned and partial, "the run never started its second process"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _gone, alive = psutil.wait_procs(children, timeout=5)
    alive = [p for p in alive if not _is_zombie(p)]  # a zombie has exited: it waits for init to reap it
    assert not alive, f"processes left after SIGKILL of compare: {[p.pid for p in alive]}"
    assert not out.exists()
    assert sweep_stale_partials(out) == partial and not list(tmp_path.glob(".report.partial-*"))


def _is_zombie(p: psutil.Process) -> bool:
    try:
        return p.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _alive_in_session(sid: int) -> list[psutil.Process]:
    """Processes of session ``sid`` that still run (a zombie has exited: it only waits for init to reap it)."""
    alive = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.pid != sid and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(p)
        except (psutil.NoSuchProcess, ProcessLookupError, PermissionError):
            pass
    return alive


@pytest.mark.slow
def test_sigkill_of_a_cohort_leaves_no_process_no_complete_folder_and_resumes(tmp_path):
    """`vertaug cohort` on a local Dask cluster, SIGKILLed after its first part files: its workers exit (Dask's
    parent-alive pipe, distributed.process), no results.parquet, every part file whole; a rerun adds each missing
    task once and keeps the parts written before the kill."""
    import pyarrow.parquet as pq

    from vertaug.cohort.manifest import write_manifest

    manifest = write_manifest([{"case_id": f"W{g}", "level": "L1", "phantom": f"fracture=wedge;grade={g};spacing_mm=2"}
                               for g in (1, 2, 3)], tmp_path / "m.csv")
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", "from vertaug.cli import app; app()", "cohort", str(manifest), "--out", str(out),
           "--samples", "2", "--task", "vertaug.cohort.tasks:procedures_task", "--workers", "2", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    parts = []
    while time.monotonic() < deadline and proc.poll() is None and not parts:
        parts = sorted((out / "parts").glob("*.parquet"))
        time.sleep(0.1)
    workers = _alive_in_session(proc.pid)
    assert parts and proc.poll() is None and len(parts) < 6, "the cohort was not caught mid-run"
    assert any("spawn_main" in " ".join(p.cmdline()) for p in workers), "no worker process to outlive the parent"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    end = time.monotonic() + 5
    while _alive_in_session(proc.pid) and time.monotonic() < end:
        time.sleep(0.1)
    alive = _alive_in_session(proc.pid)
    assert not alive, f"processes left 5 s after SIGKILL of the cohort: {[p.pid for p in alive]}"
    assert not (out / "results.parquet").exists()
    kept = {p.name: p.stat().st_mtime_ns for p in sorted((out / "parts").glob("*.parquet"))}
    for name in kept:
        assert pq.read_table(out / "parts" / name).num_rows == 2, name  # whole: VP and KP
    rerun = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    rows = pq.read_table(out / "results.parquet").to_pylist()
    keys = sorted((r["case_id"], r["sample"], r["procedure"]) for r in rows)
    assert keys == sorted((f"W{g}", s, p) for g in (1, 2, 3) for s in (0, 1) for p in ("KP", "VP"))
    assert all(r["status"] == "ok" for r in rows)
    assert {p.name: p.stat().st_mtime_ns for p in (out / "parts").glob("*.parquet") if p.name in kept} == kept
