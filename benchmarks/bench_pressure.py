"""Benchmark: one pressure solve of the injection (7-point finite volumes, heterogeneous k), ours vs peers.

Run:  python benchmarks/bench_pressure.py [--n 128] [--n-direct 32] [--model05]

Problem: an n^3 block of trabecular voxels (label 1), k log-uniform over two decades (contrast 100, seeded), exit
faces (label 6, reservoir) on the whole x = 0 face, the cannula tip at the centre; the matrix and right-hand side
are those that vertaug.physics.flow.inject assembles at its first step (marrow mobility everywhere). rtol 1e-8 for
every iterative solver (||b - A x|| <= 1e-8 ||b||). In the same run:

* ours, cold: PressureSolver("rs") = Ruge-Stuben setup + our CG (no BLAS dot), and the same with "sa";
* ours, in sequence: the next step of an injection (a 6 mm ball of cement around the tip: mobility / 1500) solved
  with the kept interpolation (Galerkin refresh) and the previous pressure as the start: what each step costs;
* peer: plain pyamg smoothed aggregation, setup + ml.solve(accel="cg"), as a user would call it;
* peer: scipy.sparse.linalg.spsolve (SuperLU) on a smaller n_direct^3 grid (it cannot finish 128^3 here: see
  peer timings 2026, docs/references.md), with ours on the same small grid for the ratio.

Time per CG iteration is set against the bytes one iteration must move at ~30 GB/s (peer timings 2026, docs/references.md).
"""

from __future__ import annotations

import argparse
import time

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
    return A, A2, b


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def relres(A, x, b):
    return float(np.linalg.norm(b - A @ x) / np.linalg.norm(b))


def ours(A, A2, b, backend="rs"):
    s = PressureSolver(backend, rtol=RTOL)
    x, t_cold = timed(lambda: s.solve(A, b))
    its_cold = s.stats.iterations[-1]
    setup_cold = s.stats.setup_s
    x2, t_next = timed(lambda: s.solve(A2, b, x0=x))
    return dict(t_cold=t_cold, setup=setup_cold, its=its_cold, t_next=t_next, its_next=s.stats.iterations[-1],
                res=relres(A, x, b), res_next=relres(A2, x2, b), setups=s.stats.n_setups)


def pyamg_sa(A, b):
    import pyamg

    def run():
        ml = pyamg.smoothed_aggregation_solver(A)
        res = []
        x = ml.solve(b, tol=RTOL, accel="cg", residuals=res)
        return x, len(res) - 1

    (x, its), t = timed(run)
    return dict(t=t, its=its, res=relres(A, x, b))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--n-direct", type=int, default=32)
    ap.add_argument("--model05", action="store_true", help="also the 0.5 mm L1 model (builds the model, ~1 min)")
    a = ap.parse_args()

    if a.n <= 0:
        a.model05 = True
    A, A2, b = problem(max(a.n, 8))
    N, nnz = A.shape[0], A.nnz
    print(f"grid {a.n}^3: {N} unknowns, {nnz} nonzeros, rtol {RTOL:g}")
    p = pyamg_sa(A, b)
    print(f"  peer pyamg SA + CG:          {p['t']:7.2f} s  ({p['its']} its, relres {p['res']:.1e})")
    for backend in ("rs", "sa"):
        o = ours(A, A2, b, backend)
        print(f"  ours ({backend} + our CG), cold:   {o['t_cold']:7.2f} s  (setup {o['setup']:.2f} s, {o['its']} its, "
              f"relres {o['res']:.1e})")
        print(f"  ours ({backend}), next step:       {o['t_next']:7.2f} s  ({o['its_next']} its, refresh + warm start, "
              f"relres {o['res_next']:.1e}, full setups {o['setups']})")
        print(f"  ratio peer / ours ({backend}): cold {p['t'] / o['t_cold']:.2f}x, per step {p['t'] / o['t_next']:.2f}x")
    solve_part = o["t_next"]
    per_it = solve_part / max(o["its_next"], 1)
    bytes_matvec = nnz * 12 + N * 8 * 2
    print(f"  per CG iteration in sequence: {1e3 * per_it:.1f} ms incl. the refresh; one CSR A@x moves "
          f"{bytes_matvec / 1e6:.0f} MB = {1e3 * bytes_matvec / 30e9:.1f} ms at 30 GB/s (the V-cycle moves ~5-10x that)")

    Ad, _, bd = problem(a.n_direct)
    xd, t_direct = timed(lambda: spla.spsolve(Ad.tocsc(), bd))
    od = ours(Ad, Ad, bd)
    print(f"grid {a.n_direct}^3 ({Ad.shape[0]} unknowns):")
    print(f"  peer scipy spsolve:          {t_direct:7.2f} s  (relres {relres(Ad, xd, bd):.1e})")
    print(f"  ours cold:                   {od['t_cold']:7.2f} s  ratio spsolve / ours {t_direct / od['t_cold']:.1f}x")

    if a.model05:
        from vertaug.anatomy.io import load_ct, load_labels
        from vertaug.demo import example_paths
        from vertaug.model.vertebra import vertebra_from_ct
        from vertaug.model.trajectory import plan_trajectories

        ex = example_paths()
        ct = load_ct(ex["ct"])
        v = vertebra_from_ct(ct, load_labels(ex["seg"], ct), "L1", body=load_labels(ex["body"], ct), spacing_mm=0.5)
        tr = plan_trajectories(v, approach="bipedicular")
        tip = flow._tip_mask([tuple(x) for t in tr for x in np.asarray(t.tip_voxels)], v.labels.shape)
        m = v.materials
        kt, kl = m.permeability_transverse_m2, m.permeability_m2
        g = flow._build_grid(v.labels, v.spacing_m, v.phi, (kt, kt, kl), tip)
        asm = flow._Assembler(g)
        Am = asm.matrix(g.f_tg / MU_M, g.e_tg / MU_M)
        bm = np.bincount(g.ti, np.full(g.ti.size, 5e-8 / g.ti.size), g.cells.size)
        # the next step: cement within 3 mm of the cannula tips
        ijk = np.array(np.unravel_index(g.cells, v.labels.shape)).T.astype(float)
        tips = np.array([t.tip_ijk for t in tr])
        d_mm = np.min(np.linalg.norm(ijk[:, None, :] - tips[None], axis=2), axis=1) * 0.5
        lam = np.where(d_mm < 3.0, 1 / MU_C, 1 / MU_M)
        Am2 = asm.matrix(g.f_tg * np.minimum(lam[g.fi], lam[g.fj]), g.e_tg * lam[g.ei])
        om = ours(Am, Am2, bm)
        pm = pyamg_sa(Am, bm)
        print(f"0.5 mm L1 model ({Am.shape[0]} unknowns):")
        print(f"  ours cold {om['t_cold']:.2f} s ({om['its']} its); next step {om['t_next']:.2f} s; "
              f"peer pyamg SA {pm['t']:.2f} s ({pm['its']} its); ratio {pm['t'] / om['t_cold']:.2f}x cold, "
              f"{pm['t'] / om['t_next']:.2f}x per step")


if __name__ == "__main__":
    main()
