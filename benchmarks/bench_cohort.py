"""Cohort throughput: Dask LocalCluster with 1 and 2 workers vs an in-process serial loop (the peer figure).

Run:  python benchmarks/bench_cohort.py [--cases 8] [--samples 5] [--spacing-mm 2] [--work-ms 300]

Prints, for the same synthetic phantom cohort (cases x samples tasks of the default pre-treatment task):
  * serial (no Dask) tasks/min, Dask 1-worker and 2-worker tasks/min (cluster start-up excluded, shown apart),
    and the ratios;
  * the same with a fixed amount of extra CPU work per task (``--work-ms``, dense LU solves calibrated once to that
    many ms of CPU time in this process): a stand-in for compare(), whose physics costs seconds per sample, so that
    the scaling figure measures parallel compute and not the ~1 ms default task drowned in per-task overhead;
  * the per-task cost split into the model build of a case (first sample on a worker) and a further sample, from the
    ``cpu_s`` column the runner records, plus the client + scheduler CPU time per task;
  * the cost of one task on the bundled real CT (L1, 1 mm model grid);
  * the projected wall time of a 1,000-patient x 50-sample study on 64 cores from those costs:
        T = (P * t_build + P * S * t_sample) / (W * e) + P * S * t_sched
    P patients, S samples, W = 64 workers, t_build and t_sample CPU seconds per task (``cpu_s``: what a task costs on
    a core of its own; wall times here are inflated by the other users of this machine), e the parallel efficiency
    measured with 2 workers (speedup / 2, at most 1) and e = 1,
    t_sched the serial overhead per task (the one client writes every part; measured as the
    CPU time of this process per task: client, Parquet writing and the LocalCluster's in-process scheduler).
The machine running this is shared (2 cores); the load average is printed with the numbers.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one BLAS thread per process, as Dask's nanny sets for workers
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import shutil
import tempfile
import time
from functools import partial
from importlib.resources import files
from pathlib import Path

WORK_N = 160  # size of the dense systems of the emulated work


def _work_unit(rng_seed: int = 0) -> float:
    import numpy as np

    a = np.random.default_rng(rng_seed).random((WORK_N, WORK_N)) + WORK_N * np.eye(WORK_N)
    return float(np.linalg.solve(a, np.ones(WORK_N)).sum())


def _calibrate(work_ms: float) -> int:
    """Number of work units that take ``work_ms`` of CPU time in this process (best of 5)."""
    best = float("inf")
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(20):
            _work_unit()
        best = min(best, (time.process_time() - t0) / 20)
    return max(1, round(work_ms * 1e-3 / best))


def heavy_task(case, sample, units: int = 0):
    """The default task plus ``units`` dense solves (fixed work, not fixed time)."""
    from vertaug.cohort.run import default_task

    for i in range(units):
        _work_unit(i)
    return default_task(case, sample)


def _task_costs(out: Path, column: str = "elapsed_s") -> tuple[float, float, float]:
    """(median first-sample cost, median further-sample cost, sum) of ``column`` (wall or CPU s) in ``out``."""
    import numpy as np

    from vertaug.cohort.run import load_results

    rows = load_results(out).to_pylist()
    seen, first, rest = set(), [], []
    for r in sorted(rows, key=lambda r: (r["worker_pid"], r["case_id"], r["sample"])):
        k = (r["worker_pid"], r["case_id"])
        (rest if k in seen else first).append(r[column])
        seen.add(k)
    return float(np.median(first)), float(np.median(rest)) if rest else float("nan"), float(sum(first + rest))


def _dask_run(manifest: Path, out: Path, samples: int, workers: int, task_fn, keep_malloc_trim: bool = False):
    from vertaug.cohort.run import local_cluster, run_cohort

    t0 = time.perf_counter()
    client, cluster = local_cluster(workers, keep_malloc_trim=keep_malloc_trim)
    client.run(lambda: __import__("vertaug.cohort.run"))  # imports on the workers, outside the timed run
    startup = time.perf_counter() - t0
    try:
        c0 = time.process_time()  # this process: client, writing, and the LocalCluster's scheduler
        r = run_cohort(manifest, out, samples=samples, seed=0, client=client, progress=False, task_fn=task_fn)
        client_cpu_s = time.process_time() - c0
    finally:
        client.close()
        cluster.close()
    return r, startup, client_cpu_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=8)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--spacing-mm", type=float, default=2.0)
    ap.add_argument("--work-ms", type=float, default=300.0)
    args = ap.parse_args()

    from vertaug.cohort.manifest import write_manifest
    from vertaug.cohort.run import run_cohort
    from vertaug.cohort.synthetic import write_synthetic_cohort

    tmp = Path(tempfile.mkdtemp(prefix="bench_cohort_"))
    try:
        manifest = write_synthetic_cohort(tmp / "m.csv", args.cases, seed=0, spacing_mm=args.spacing_mm)
        n = args.cases * args.samples
        print(f"cohort: {args.cases} synthetic cases x {args.samples} samples = {n} tasks, phantoms at "
              f"{args.spacing_mm:g} mm; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")

        units = _calibrate(args.work_ms) if args.work_ms > 0 else 0
        variants = [("default task", partial(heavy_task, units=0))]
        if units:
            variants.append((f"default task + {args.work_ms:g} ms of CPU time ({units} solves)",
                             partial(heavy_task, units=units)))
        measured = {}
        for name, fn in variants:
            tag = "heavy" if "CPU" in name else "light"
            print(f"-- {name}")
            rs = run_cohort(manifest, tmp / f"serial-{tag}", samples=args.samples, seed=0, scheduler="serial",
                            progress=False, task_fn=fn)
            t_build, t_sample, _ = _task_costs(tmp / f"serial-{tag}", "cpu_s")
            print(f"serial (peer, no Dask):  {rs.tasks_per_min:8.1f} tasks/min  ({rs.elapsed_s:.2f} s)")
            print(f"  CPU per task: first sample of a case (model build) {1e3 * t_build:.0f} ms, further sample "
                  f"{1e3 * t_sample:.1f} ms")
            runs = {}
            for w in (1, 2):
                r, startup, client_cpu = _dask_run(manifest, tmp / f"dask{w}-{tag}", args.samples, w, fn)
                runs[w] = (r, client_cpu)
                assert r.n_written == n and r.n_failed == 0 and r.n_lost == 0, r
                share = _task_costs(tmp / f"dask{w}-{tag}", "cpu_s")[2] / _task_costs(tmp / f"dask{w}-{tag}")[2]
                print(f"dask {w} worker(s):       {r.tasks_per_min:8.1f} tasks/min  ({r.elapsed_s:.2f} s; cluster "
                      f"start {startup:.1f} s)  ratio to serial {r.tasks_per_min / rs.tasks_per_min:.2f}; "
                      f"tasks got {share:.2f} core each (CPU / wall)")
            if tag == "heavy":  # the same 1-worker run with Dask's default worker environment
                r, _, _ = _dask_run(manifest, tmp / f"dask1-{tag}-trim", args.samples, 1, fn, keep_malloc_trim=True)
                trim_ms = 1e3 * _task_costs(tmp / f"dask1-{tag}-trim", "cpu_s")[1]
                ours_ms = 1e3 * _task_costs(tmp / f"dask1-{tag}", "cpu_s")[1]
                print(f"dask 1 worker, Dask's MALLOC_TRIM_THRESHOLD_=65536 kept: {r.tasks_per_min:8.1f} tasks/min; "
                      f"CPU per further sample {trim_ms:.0f} ms (ours {ours_ms:.0f} ms)")
            overhead = min(c for _, c in runs.values()) / n
            speedup = runs[2][0].tasks_per_min / runs[1][0].tasks_per_min
            eff = min(1.0, speedup / 2.0)
            print(f"2 vs 1 worker speed-up {speedup:.2f} (efficiency {eff:.2f}); client + scheduler CPU per task "
                  f"(submit, bookkeeping, Parquet part) {1e3 * overhead:.1f} ms")
            measured[tag] = (t_build, t_sample, overhead, eff)
        t_build, t_sample, overhead, _ = measured["light"]
        eff = measured.get("heavy", measured["light"])[3]

        # one real CT case: the bundled TotalSegmentator example, L1 at 1 mm
        data = Path(str(files("vertaug") / "data" / "totalseg-example"))
        m_ct = write_manifest([{"case_id": "CT", "level": "L1", "ct": str(data / "example_ct.nii.gz"),
                                "seg": str(data / "totalseg.nii.gz"),
                                "body": str(data / "totalseg_vertebrae_body.nii.gz"), "spacing_mm": 1.0}],
                              tmp / "ct.csv")
        run_cohort(m_ct, tmp / "ct", samples=2, seed=0, scheduler="serial", progress=False)
        ct_build, ct_sample, _ = _task_costs(tmp / "ct", "cpu_s")
        print(f"real CT case (bundled example, L1, 1 mm): CPU for the model build {ct_build:.2f} s, further sample "
              f"{1e3 * ct_sample:.1f} ms")

        patients, per, cores = 1000, 50, 64
        print(f"projection from CPU time per task, W = 64 dedicated cores, e = {eff:.2f} (measured 2-worker "
              f"efficiency on this shared machine) and e = 1; serial overhead {1e3 * overhead:.1f} ms/task")
        for label, b, smp in (("phantom 2 mm", t_build, t_sample), ("real CT 1 mm", ct_build, ct_sample)):
            h = [((patients * b + patients * per * smp) / (cores * e) + patients * per * overhead) / 3600
                 for e in (eff, 1.0)]
            print(f"projected 1,000 patients x 50 samples on 64 cores ({label}, default task): "
                  f"{h[0]:.2f} h (e measured), {h[1]:.2f} h (e = 1)")
        for t_cmp in (10.0, 60.0):
            h = (patients * per * t_cmp / cores + patients * per * overhead) / 3600
            print(f"  if compare() costs {t_cmp:g} s per sample: {h:.1f} h at e = 1")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
