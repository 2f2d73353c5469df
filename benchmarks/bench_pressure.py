"""Benchmark: one pressure solve of the injection (7-point finite volumes, heterogeneous k), ours vs peers.

Run:  python benchmarks/bench_pressure.py [--n 128] [--n-direct 32]

Problem: an n^3 block of trabecular voxels (label 1), k log-uniform over two decades (contrast 100, seeded), exit
faces (label 6, reservoir) on the whole x = 0 face, the cannula tip at the centre; the matrix and right-hand side
are those that vertaug.physics.flow.inject assembles at its first step (marrow mobility everywhere). rtol 1e-8 for
every iterative solver (||b - A x|| <= 1e-8 ||b||). In the same run, each from a cold start:

* ours: PressureSolver("gmg"): the structured Galerkin geometric multigrid of physics/gmg_pressure.py + our CG;
  then the next step of an injection (a 6 mm ball of cement around the tip: mobility / 1500, contrast 1.5e3) with
  the kept coarsening and the previous pressure as the start: what each step of an injection costs;
* peer: plain pyamg smoothed aggregation (SA) and Ruge-Stuben (RS), setup + ml.solve(accel="cg"), as a user calls
  them; and PressureSolver("sa"), the project's solver before the GMG;
* peer: scipy.sparse.linalg.spsolve (SuperLU) on a smaller n_direct^3 grid, with ours on the same grid.

Each line gives wall and CPU (process) seconds: the machine is shared, CPU time is the steadier figure. Peak memory:
the tracemalloc peak of the solve (numpy, scipy and pyamg arrays are traced), matrix and right-hand side excluded.
Time per CG iteration is set against one CSR matvec measured here (the bandwidth floor of an assembled operator)
and against the bytes a matrix-free 7-point stencil would stream (x, y and 4 coefficient arrays, 8 B each, at the
measured CSR bandwidth): once from the cold solve's wall time, once in CPU time (best of 3 x 10 inner iterations
against the best of 10 matvecs), which a loaded machine disturbs least. The last line is the speed-up against pyamg SA (wall time, cold).
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc

# one BLAS thread for every solver: pyamg's setup goes through BLAS, and a threaded BLAS on a shared 2-core machine
# waits for cores (see physics/solvers._dot); without this the peer's wall time is inflated, not ours
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import scipy.sparse.linalg as spla

from vertaug.physics import flow
from vertaug.physics.solvers import PressureSolver

MU_M, MU_C = 0.067, 100.0
RTOL = 1e-8


def problem(n: int, seed: int = 0, k_mean: float = 4e-9):
    rng = np.random.default_rng(seed)
    lab = np.ones((n, n, n), np.uint8)
    lab[0] = 6
    k = k_mean * 10.0 ** rng.uniform(-1.0, 1.0, lab.shape)
    tip = np.zeros(lab.shape, bool)
    tip[n // 2, n // 2, n // 2] = True
    g = flow._build_grid(lab, (1e-3,) * 3, np.full(lab.shape, 0.8), (k, k, k), tip)
    asm = flow._Assembler(g)
    A = asm.matrix(g.f_tg / MU_M, g.e_tg / MU_M)
    b = np.bincount(g.ti, np.full(g.ti.size, 1e-8 / g.ti.size), g.cells.size)
    # the next step: a 6 mm ball of cement around the tip
    ijk = np.array(np.unravel_index(g.cells, lab.shape)).T
    ball = np.linalg.norm(ijk - n // 2, axis=1) < 6
    lam = np.where(ball, 1 / MU_C, 1 / MU_M)
    A2 = asm.matrix(g.f_tg * np.minimum(lam[g.fi], lam[g.fj]), g.e_tg * lam[g.ei])
    return A, A2, b, (g.shape, g.cells)


def timed(fn):
    """(result, wall s, CPU s, peak traced bytes) of fn()."""
    gc.collect()
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, wall, cpu, peak


def relres(A, x, b):
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def ours(A, A2, b, voxels, backend="gmg"):
    s = PressureSolver(backend, rtol=RTOL, direct_max_unknowns=0)
    x, wall, cpu, peak = timed(lambda: s.solve(A, b, voxels=voxels))
    setup, its = s.stats.setup_s, s.stats.iterations[-1]
    x2, wall2, cpu2, _ = timed(lambda: s.solve(A2, b, x0=x, voxels=voxels))
    return dict(wall=wall, cpu=cpu, peak=peak, setup=setup, its=its, wall_next=wall2, cpu_next=cpu2, its_next=s.stats.iterations[-1],
                res=relres(A, x, b), res_next=relres(A2, x2, b))


def pyamg_peer(A, b, kind="sa"):
    import pyamg

    def run():
        t0 = time.perf_counter()
        if kind == "sa":
            ml = pyamg.smoothed_aggregation_solver(A)
        else:
            ml = pyamg.ruge_stuben_solver(A)
        t_setup = time.perf_counter() - t0
        res = []
        x = ml.solve(b, tol=RTOL, accel="cg", residuals=res)
        return x, len(res) - 1, t_setup

    (x, its, setup), wall, cpu, peak = timed(run)
    return dict(wall=wall, cpu=cpu, peak=peak, setup=setup, its=its, res=relres(A, x, b))


def matvec_floor(A, repeats=10):
    """Seconds of one CSR matvec (best of ``repeats``) and the bandwidth it reaches."""
    x = np.ones(A.shape[0])
    best = min(timed(lambda: A @ x)[1] for _ in range(repeats))
    bytes_csr = A.nnz * 12 + A.shape[0] * 8 * 2 + (A.shape[0] + 1) * 4
    return best, bytes_csr / best


def iteration_cpu(A, voxels, iterations=10, repeats=3):
    """CPU seconds of one inner CG iteration of ours (V-cycle + product + vector updates), best of ``repeats`` runs
    of ``iterations`` iterations on a random right-hand side: the per-iteration cost without set-up or refinement."""
    from vertaug.physics.gmg_pressure import build_hierarchy

    h = build_hierarchy(A, *voxels)
    fine = h.levels[0]
    rng = np.random.default_rng(1)
    best = np.inf
    for _ in range(repeats):
        r = np.zeros(fine.shape, fine.neg.dtype)
        r.reshape(-1)[h.pattern.box_index] = rng.standard_normal(A.shape[0])
        c0 = time.process_time()
        _, its = h._inner_cg(r, 0.0, iterations)
        best = min(best, (time.process_time() - c0) / its)
    return best


def matvec_floor_cpu(A, repeats=10):
    """CPU seconds of one CSR matvec, best of ``repeats``."""
    x = np.ones(A.shape[0])
    best = np.inf
    for _ in range(repeats):
        c0 = time.process_time()
        A @ x
        best = min(best, time.process_time() - c0)
    return best


def line(name, r):
    its = r["its"]
    per = (r["wall"] - r["setup"]) / max(its, 1)
    return (f"  {name:<28s} {r['wall']:7.2f} s wall {r['cpu']:7.2f} s CPU  setup {r['setup']:6.2f} s  {its:3d} its "
            f"{1e3 * per:7.1f} ms/it  peak {r['peak'] / 2**20:7.0f} MiB  relres {r['res']:.1e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--n-direct", type=int, default=32)
    a = ap.parse_args()

    A, A2, b, vox = problem(a.n)
    N, nnz = A.shape[0], A.nnz
    print(f"grid {a.n}^3: {N} unknowns, {nnz} nonzeros, rtol {RTOL:g}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    t_mv, bw = matvec_floor(A)
    o = ours(A, A2, b, vox)
    sa = pyamg_peer(A, b, "sa")
    rs = pyamg_peer(A, b, "rs")
    old = ours(A, A2, b, vox, backend="sa")
    print(line("ours (gmg + CG), cold", o))
    print(f"  ours (gmg), next step:       {o['wall_next']:7.2f} s wall {o['cpu_next']:7.2f} s CPU  "
          f"({o['its_next']} its, kept coarsening + warm start, relres {o['res_next']:.1e})")
    print(line("peer pyamg SA + CG", sa))
    print(line("peer pyamg RS + CG", rs))
    print(line("before: PressureSolver('sa')", old))
    print(f"  before, next step:           {old['wall_next']:7.2f} s wall {old['cpu_next']:7.2f} s CPU "
          f"({old['its_next']} its, Galerkin refresh + warm start)")
    per_it = (o["wall"] - o["setup"]) / max(o["its"], 1)
    mf_bytes = N * 8 * 6
    print(f"  one CSR matvec {1e3 * t_mv:.1f} ms ({bw / 1e9:.1f} GB/s); ours per CG iteration {1e3 * per_it:.1f} ms = "
          f"{per_it / t_mv:.1f} CSR matvecs = {per_it / (mf_bytes / bw):.1f}x the matrix-free 7-point floor "
          f"({mf_bytes / 1e6:.0f} MB at {bw / 1e9:.1f} GB/s: {1e3 * mf_bytes / bw:.1f} ms)")
    it_cpu, mv_cpu = iteration_cpu(A, vox), matvec_floor_cpu(A)
    bw_cpu = (nnz * 12 + N * 8 * 2 + (N + 1) * 4) / mv_cpu
    print(f"  CPU time (steadier under load): one CSR matvec {1e3 * mv_cpu:.1f} ms ({bw_cpu / 1e9:.1f} GB/s); ours per CG "
          f"iteration {1e3 * it_cpu:.1f} ms (best of 3 x 10 iterations) = {it_cpu / (mf_bytes / bw_cpu):.1f}x the "
          f"matrix-free floor ({1e3 * mf_bytes / bw_cpu:.1f} ms); load average {os.getloadavg()[0]:.1f}")
    print(f"  memory: ours {o['peak'] / N:.0f} B/unknown, pyamg SA {sa['peak'] / N:.0f} B/unknown "
          f"(ratio {sa['peak'] / max(o['peak'], 1):.1f}x)")

    Ad, Ad2, bd, voxd = problem(a.n_direct)
    xd, t_direct, _, _ = timed(lambda: spla.spsolve(Ad.tocsc(), bd))
    od = ours(Ad, Ad2, bd, voxd)
    print(f"grid {a.n_direct}^3 ({Ad.shape[0]} unknowns):")
    print(f"  peer scipy spsolve:          {t_direct:7.2f} s  (relres {relres(Ad, xd, bd):.1e})")
    print(f"  ours cold:                   {od['wall']:7.2f} s  ratio spsolve / ours {t_direct / od['wall']:.1f}x")
    print(f"speedup vs pyamg SA: {sa['wall'] / o['wall']:.1f}x (CPU {sa['cpu'] / o['cpu']:.1f}x)")


if __name__ == "__main__":
    main()
