"""Trial throughput: the same patients on a local Dask cluster of 1 and 2 workers and on a `dask scheduler` + 2
`dask worker` processes started on this machine (the way a cluster runs).

Run:  python benchmarks/bench_trial.py [--patients 6] [--seed 1] [--spacing-mm 1.5] [--phantoms] [--keep DIR]

Each configuration runs ``vertaug.trial.runner.run_trial`` on the same patients (the shipped population, or phantoms
only with ``--phantoms``) into a fresh folder; the cluster is started before the clock and closed after it, so the
figure is the trial's: patients/min = patients / wall. Printed per configuration: wall (s), patients/min, the CPU
seconds per patient (sum of the runner's ``cpu_s``: what a patient costs on a core of its own), the mean wall seconds
of a patient's task (``elapsed_s``) and the cluster start-up time apart. The machine is shared: the load average
before and after each run is printed with it, and the 2-worker figures measure the neighbours as much as Dask.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path


@contextlib.contextmanager
def _local(n: int):
    from vertaug.cohort.run import local_cluster

    client, cluster = local_cluster(n)
    try:
        yield {"client": client}
    finally:
        client.close()
        cluster.close()


@contextlib.contextmanager
def _spawned(n: int):
    from vertaug.cohort.spawn import spawned_cluster

    with spawned_cluster(n) as c:
        yield {"scheduler": c.address}


CONFIGS = {"local cluster, 1 worker": (_local, 1), "local cluster, 2 workers": (_local, 2),
           "dask scheduler + 2 dask worker processes": (_spawned, 2)}


def _population(phantoms: bool, spacing_mm: float):
    from vertaug.trial.population import load_population

    pop = load_population()
    if phantoms:
        pop = replace(pop, sources=tuple(s for s in pop.sources if s.phantom))
    return replace(pop, spacing_mm=spacing_mm)


def run_one(name: str, pop, patients: int, seed: int, out: Path) -> dict:
    from vertaug.cohort.run import load_results
    from vertaug.trial.runner import run_trial

    make, n = CONFIGS[name]
    t0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    with make(n) as how:
        started = time.perf_counter() - t0
        t1 = time.perf_counter()
        run, _ = run_trial(out, pop, patients=patients, seed=seed, progress=False, **how)
        wall = time.perf_counter() - t1
    rows = load_results(out).to_pylist()
    per_patient = {r["case_id"]: r for r in rows}  # cpu_s and elapsed_s are the task's, repeated on its rows
    cpu = sum(r["cpu_s"] for r in per_patient.values())
    return {"config": name, "patients": run.n_tasks, "failed": run.n_failed, "lost": run.n_lost, "wall_s": wall,
            "patients_per_min": 60.0 * run.n_tasks / wall, "cpu_s_per_patient": cpu / len(per_patient),
            "task_wall_s_mean": sum(r["elapsed_s"] for r in per_patient.values()) / len(per_patient),
            "startup_s": started, "load_before": load0, "load_after": os.getloadavg()[0]}


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--spacing-mm", type=float, default=1.5)
    ap.add_argument("--phantoms", action="store_true", help="phantom patients only (seconds each)")
    ap.add_argument("--keep", type=Path, help="keep the trial folders here")
    args = ap.parse_args(argv)
    pop = _population(args.phantoms, args.spacing_mm)
    root = Path(tempfile.mkdtemp(prefix="bench_trial_")) if args.keep is None else args.keep
    results = []
    print(f"{args.patients} patients (seed {args.seed}, {'phantoms' if args.phantoms else 'shipped population'}, "
          f"{args.spacing_mm:g} mm), {os.cpu_count()} CPUs")
    print("| configuration | patients/min | wall s | CPU s per patient | task wall s (mean) | failed | lost | "
          "start-up s | load avg before/after |")
    print("|---|---|---|---|---|---|---|---|---|")
    try:
        for i, name in enumerate(CONFIGS):
            r = run_one(name, pop, args.patients, args.seed, root / f"run{i}")
            results.append(r)
            print(f"| {name} | {r['patients_per_min']:.2f} | {r['wall_s']:.1f} | {r['cpu_s_per_patient']:.1f} | "
                  f"{r['task_wall_s_mean']:.1f} | {r['failed']} | {r['lost']} | {r['startup_s']:.1f} | "
                  f"{r['load_before']:.1f}/{r['load_after']:.1f} |", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return results


if __name__ == "__main__":
    main()
