"""Benchmark: the parts of the cement fill that the fourth pass of issue 26 changed, this tree against a git revision.

Run:  python benchmarks/bench_fill.py [--before REV] [--repeats 7]

Runs the demo's vertebroplasty (bundled L1 at 1 mm) once with this tree, recording every 10th pressure solve's
coarsest-level matrix and every 10th saturation step's triangular Newton systems, then times in one process,
alternating the two codes (a shared machine's load moves from one minute to the next): the coarsest LU, factorised
and applied as often as a V-cycle per CG iteration of that injection needs it, with SuperLU's defaults (COLAMD,
partial pivoting: before) and with gmg_pressure.COARSE_LU_OPTIONS; and the recorded Newton solves with the
``_LowerTriangle`` of ``--before`` (default 4632a01, main before this pass) loaded from git and with this tree's.
Prints the median CPU (process) seconds of ``--repeats`` runs and the load average.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from vertaug.physics import flow, gmg_pressure


def flow_at(rev: str, folder: Path):
    """physics/flow.py as of git revision ``rev``, imported as a private module of the package."""
    root = Path(__file__).resolve().parents[1]
    text = subprocess.run(["git", "show", f"{rev}:src/vertaug/physics/flow.py"], cwd=root, check=True,
                          capture_output=True, text=True).stdout
    (folder / "flow_before.py").write_text(text)
    spec = importlib.util.spec_from_file_location("vertaug.physics._flow_before", folder / "flow_before.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def record():
    """(coarse matrices, V-cycles per solve, triangles [(rows, cols, n, [(offdiag, diag, b), ...])]) of the VP."""
    from vertaug.anatomy.io import load_ct, load_labels
    from vertaug.demo import example_paths
    from vertaug.model.vertebra import vertebra_from_ct
    from vertaug.procedures.vertebroplasty import Vertebroplasty, run_vertebroplasty

    coarse, triangles, cycles = [], [], []
    build, solve, tri = gmg_pressure.build_hierarchy, gmg_pressure.GMGHierarchy.solve, flow._LowerTriangle

    def build_rec(*a, **k):
        h = build(*a, **k)
        coarse.append(sp.csc_matrix(h.levels[-1].matrix().astype(np.float64)))
        return h

    def solve_rec(self, *a):
        x, its = solve(self, *a)
        cycles.append(its)
        return x, its

    class TriangleRec(tri):
        def __init__(self, rows, cols, n):
            super().__init__(rows, cols, n)
            triangles.append((rows.copy(), cols.copy(), n, []))

        def solve(self, offdiag, diag, b):
            triangles[-1][3].append((offdiag.copy(), diag.copy(), b.copy()))
            return super().solve(offdiag, diag, b)

    gmg_pressure.build_hierarchy, gmg_pressure.GMGHierarchy.solve, flow._LowerTriangle = build_rec, solve_rec, TriangleRec
    try:
        ex = example_paths()
        ct = load_ct(ex["ct"])
        v = vertebra_from_ct(ct, load_labels(ex["seg"], ct), "L1", body=load_labels(ex["body"], ct), spacing_mm=1.0)
        c0 = time.process_time()
        run_vertebroplasty(v, Vertebroplasty())
        print(f"VP at 1 mm (this tree): {time.process_time() - c0:.2f} s CPU, {len(cycles)} pressure solves, "
              f"{sum(cycles)} CG iterations", flush=True)
    finally:
        gmg_pressure.build_hierarchy, gmg_pressure.GMGHierarchy.solve, flow._LowerTriangle = build, solve, tri
    return coarse[::10], round(float(np.mean(cycles))) + 2, triangles[::10]  # + the first cycle of each round


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="4632a01")
    ap.add_argument("--repeats", type=int, default=7)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = flow_at(a.before, Path(tmp))
    coarse, cycles, triangles = record()
    rhs = np.random.default_rng(0).standard_normal((cycles, max(c.shape[0] for c in coarse)))

    def lu(options):
        for c in coarse:
            f = spla.splu(c, **options)
            for r in rhs:
                f.solve(r[: c.shape[0]])

    def newton(cls):
        for rows, cols, n, calls in triangles:
            t = cls(rows, cols, n)
            for offdiag, diag, b in calls:
                t.solve(offdiag, diag, b.copy())

    cases = {"coarsest LU, SuperLU defaults (before)": lambda: lu({}),
             "coarsest LU, COARSE_LU_OPTIONS": lambda: lu(gmg_pressure.COARSE_LU_OPTIONS),
             f"Newton triangles, {a.before}": lambda: newton(before._LowerTriangle),
             "Newton triangles, this tree": lambda: newton(flow._LowerTriangle)}
    cpu = {k: [] for k in cases}
    for _ in range(a.repeats):
        for k, f in cases.items():
            c0 = time.process_time()
            f()
            cpu[k].append(time.process_time() - c0)
    print(f"{len(coarse)} coarse levels ({coarse[0].shape[0]}-{coarse[-1].shape[0]} cells) x {cycles} solves each; "
          f"{len(triangles)} saturation steps, {sum(len(t[3]) for t in triangles)} Newton solves; "
          f"load average {os.getloadavg()[0]:.1f}")
    for k, v in cpu.items():
        print(f"  {k:<48s} median {np.median(v) * 1e3:8.1f} ms CPU (best {min(v) * 1e3:.1f})")


if __name__ == "__main__":
    main()
