"""A Dask cluster the way a cluster runs it: one ``dask scheduler`` process and ``dask worker`` processes, on this machine.

:func:`spawned_cluster` starts ``python -m dask scheduler --host 127.0.0.1 --port P`` on a free port ``P`` and
``n_workers`` processes ``python -m dask worker tcp://127.0.0.1:P --nthreads 1 --no-nanny``, waits until the scheduler
sees every worker, yields a :class:`SpawnedCluster` (its address, for ``--scheduler`` / ``run_trial(scheduler=...)``,
and the process ids) and ends the processes it started, by their ids, when the block exits. A worker is its own process
(``--no-nanny``): a SIGKILL of it is a lost worker the scheduler must recover from, not a restart by a nanny. Each
worker runs one task at a time (one thread) with one BLAS thread, like the workers of :func:`vertaug.cohort.run.local_cluster`.

Used by tests/test_trial_cluster.py and benchmarks/bench_trial.py. The processes inherit this process's environment
with ``PYTHONPATH`` set to this interpreter's ``sys.path`` (so they import the same vertaug).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

__all__ = ["SpawnedCluster", "free_port", "spawned_cluster"]

#: seconds to wait for the scheduler to answer and every worker to register
START_TIMEOUT_S = 120.0
#: seconds a process is given to exit after SIGTERM before it is SIGKILLed
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SpawnedCluster:
    address: str  # tcp://127.0.0.1:PORT
    scheduler_pid: int
    worker_pids: tuple[int, ...]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), OMP_NUM_THREADS="1",
                OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")


def _wait_for_workers(address: str, n_workers: int, procs: list) -> None:
    from distributed import Client

    deadline = time.monotonic() + START_TIMEOUT_S
    with Client(address, timeout=START_TIMEOUT_S) as client:
        while len(client.scheduler_info()["workers"]) < n_workers:
            dead = [p.args for p in procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"the spawned Dask cluster did not start: {dead or 'timeout'}")
            time.sleep(0.2)


def _stop(procs: list) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


@contextlib.contextmanager
def spawned_cluster(n_workers: int = 2, log_dir=None):
    """``with spawned_cluster(2) as c: run_trial(..., scheduler=c.address)``: scheduler and worker processes."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = _env()
    names = ["scheduler"] + [f"worker{i}" for i in range(n_workers)]
    logs = [open(os.path.join(log_dir, f"{n}.log"), "w") if log_dir else subprocess.DEVNULL  # noqa: SIM115
            for n in names]
    procs = []
    try:
        procs.append(subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1", "--port",
                                       str(port), "--no-dashboard"], env=env, stdout=logs[0], stderr=logs[0]))
        for i in range(n_workers):
            procs.append(subprocess.Popen([sys.executable, "-m", "dask", "worker", address, "--nthreads", "1",
                                           "--no-nanny", "--no-dashboard", "--name", f"worker{i}"],
                                          env=env, stdout=logs[i + 1], stderr=logs[i + 1]))
        _wait_for_workers(address, n_workers, procs)
        yield SpawnedCluster(address, procs[0].pid, tuple(p.pid for p in procs[1:]))
    finally:
        _stop(procs[1:])
        _stop(procs[:1])
        for f in logs if log_dir else ():
            f.close()
