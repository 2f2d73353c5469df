"""Benchmark: one inner CG iteration of the pressure multigrid, this tree against an earlier git revision, one process.

Run:  python benchmarks/bench_pressure_iteration.py [--before REV] [--n 128] [--repeats 5]

Loads physics/gmg_pressure.py and physics/chebyshev.py of ``--before`` (default ``HEAD~1``) from git into private
modules and times, alternating the two codes, ``--repeats`` runs of 10 inner CG iterations (V-cycle + product +
vector updates, random right-hand side) of each on the heterogeneous block of bench_pressure.py; the best run of each
in CPU (process) and wall time, against the matrix-free 7-point floor (x, y and 4 coefficient arrays of 8 B per
unknown at the bandwidth of a float64 CSR matvec measured here, best of 10). Then one full solve (rtol 1e-8) of each:
iterations, CPU seconds and the relative difference of the two solutions. Alternating in one process puts both codes
under the same load, which on a shared machine moves from one minute to the next.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_pressure  # the same problem as the solver bench

from vertaug.physics import gmg_pressure

ITERATIONS = 10


def module_at(rev: str, folder: Path) -> types.ModuleType:
    """gmg_pressure (with its chebyshev) as of git revision ``rev``, written into ``folder`` and imported as a
    private module."""
    root = Path(__file__).resolve().parents[1]

    def load(path, name, text):
        (folder / f"{name}.py").write_text(text)
        spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        return mod

    def show(path):
        return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=root, check=True, capture_output=True,
                              text=True).stdout

    load("chebyshev", "_before_chebyshev", show("src/vertaug/physics/chebyshev.py"))
    src = show("src/vertaug/physics/gmg_pressure.py").replace("from vertaug.physics.chebyshev import",
                                                                "from _before_chebyshev import")
    return load("gmg_pressure", "_before_gmg_pressure", src)


def iteration(h, r0):
    """(wall s, CPU s) per inner CG iteration over ITERATIONS iterations from the right-hand side r0."""
    r = np.zeros(h.levels[0].shape, h.levels[0].neg.dtype)
    r.reshape(-1)[h.pattern.box_index] = r0
    c0, t0 = time.process_time(), time.perf_counter()
    _, its = h._inner_cg(r, 0.0, ITERATIONS)
    return (time.perf_counter() - t0) / its, (time.process_time() - c0) / its


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="HEAD~1")
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    A, _, b, vox = bench_pressure.problem(a.n)
    with tempfile.TemporaryDirectory() as tmp:
        codes = {f"before ({a.before})": module_at(a.before, Path(tmp)), "this tree": gmg_pressure}
    hs = {name: m.build_hierarchy(A, *vox) for name, m in codes.items()}
    r0 = np.random.default_rng(1).standard_normal(A.shape[0])
    runs = {name: [] for name in hs}
    load0 = os.getloadavg()[0]
    for _ in range(a.repeats):
        for name, h in hs.items():
            runs[name].append(iteration(h, r0))
    t_mv = bench_pressure.matvec_floor_cpu(A)
    bw = (A.nnz * 12 + A.shape[0] * 16 + (A.shape[0] + 1) * 4) / t_mv
    floor = A.shape[0] * 48 / bw
    print(f"grid {a.n}^3, {A.shape[0]} unknowns; load average {load0:.1f} -> {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} cores; floor {1e3 * floor:.2f} ms CPU (CSR matvec {1e3 * t_mv:.1f} ms, "
          f"{bw / 1e9:.1f} GB/s)")
    for name, v in runs.items():
        wall, cpu = min(w for w, _ in v), min(c for _, c in v)
        print(f"  {name:<22s} per CG iteration, best of {a.repeats} x {ITERATIONS}: {1e3 * cpu:6.2f} ms CPU = "
              f"{cpu / floor:.2f}x the floor, {1e3 * wall:6.2f} ms wall")
    xs = {}
    for name, h in hs.items():
        c0 = time.process_time()
        xs[name], its = h.solve(A, b, None, bench_pressure.RTOL, 500)
        print(f"  {name:<22s} solve: {its} its, {time.process_time() - c0:.3f} s CPU, relres "
              f"{bench_pressure.relres(A, xs[name], b):.1e}")
    x0, x1 = xs.values()
    print(f"  |x_after - x_before| / |x_before| = {np.linalg.norm(x1 - x0) / np.linalg.norm(x0):.1e}")


if __name__ == "__main__":
    main()
