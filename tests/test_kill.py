"""SIGKILL of `vertaug compare`: no process of ours left after 5 s, and the hidden partial folder is swept by the next
run (issue 23). A hidden `.NAME.partial-PID-*` folder never looks like a finished report."""

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
            spawned = [c for c in children if "spawn_main" in " ".join(c.cmdline())]
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
    assert not alive, f"processes left after SIGKILL of compare: {[p.pid for p in alive]}"
    assert not out.exists()
    assert sweep_stale_partials(out) == partial and not list(tmp_path.glob(".report.partial-*"))
