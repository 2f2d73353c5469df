"""Thermal solver benchmark and the validation table of docs/cement.md.

    python benchmarks/bench_thermal.py [--voxel-mm 1] [--dt 2.5 10]   # one implicit step: ours vs peers, same run
    python benchmarks/bench_thermal.py --validate # porcine bolus and ASTM F451-type mould cases (several minutes)

Problem: the Crank-Nicolson matrix C/dt + L/2 of the porcine bolus case (validate/geometries.py: a porcine-like body
with a 3 mL bolus in a 37 C bath) at ``--voxel-mm``, for each step size of ``--dt`` (the exotherm's adaptive steps run
2.5-10 s), a right-hand side from a known temperature field and the start a perturbed copy of it (a warm start, as in
time stepping), relative residual 1e-10 (the exotherm's SOLVER_RTOL) for every solver. Each solver from a cold start:

* ours: thermal._Solver "cg" (Jacobi-PCG on the 7-diagonal DIA matrix: what "auto" picks at these steps) and "gmg"
  (the structured Galerkin geometric multigrid of physics/gmg_pressure.py, float32 V-cycle, float64 residuals);
* peers: pyamg smoothed aggregation (SA) and Ruge-Stuben (RS), setup + ml.solve(accel="cg"), as a user calls them.

Each line: setup, one solve (best of 3 after the setup), iterations, time per iteration, the tracemalloc peak of setup
+ solve (matrix excluded) and the error against the known field. The floor: one float64 7-point matvec's bytes
(x, y and 4 coefficient arrays) at the bandwidth of a CSR matvec measured here. Last line: the speed-up of ours (the
default, cg) against pyamg SA, setup + one solve, at the largest step.
"""

from __future__ import annotations

import argparse
import gc
import os
import time
import tracemalloc

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np
import scipy.sparse as sp

from vertaug.physics import thermal
from vertaug.report import figures_cement as figs
from vertaug.validate import geometries as fc

RTOL = 1e-10


def _matrix(case, dt_s=1.0, theta=0.5):
    k, rho_c, _perf, _phi = thermal.mix_properties(
        case.labels, case.cement_fraction, case.kwargs["cement"], case.table
    )
    vol = float(np.prod(case.spacing_m))
    lmat, _ = thermal.assemble_conduction(k, case.spacing_m)
    return (sp.diags(rho_c.ravel() * vol / dt_s) + theta * lmat).tocsr()


def _timed(fn):
    gc.collect()
    tracemalloc.start()
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, wall, peak


def _best(fn, repeat=3):
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def _ours(a, b, x0, x_true, method, shape):
    def setup():
        return thermal._Solver(a, method, rtol=RTOL, shape=shape)

    s, t_setup, peak = _timed(setup)
    (x, t_solve), _, peak2 = _timed(lambda: _best(lambda: s.solve(b, x0)))
    return {"setup": t_setup, "solve": t_solve, "its": s.iterations / 3, "peak": max(peak, peak2),
            "err": float(np.abs(x - x_true).max())}


def _pyamg(a, b, x0, x_true, kind):
    import pyamg

    def setup():
        return pyamg.smoothed_aggregation_solver(a) if kind == "sa" else pyamg.ruge_stuben_solver(a)

    ml, t_setup, peak = _timed(setup)
    res = []
    (x, t_solve), _, peak2 = _timed(lambda: _best(lambda: (res.clear(), ml.solve(b, x0=x0, tol=RTOL, accel="cg",
                                                                                   residuals=res))[1]))
    return {"setup": t_setup, "solve": t_solve, "its": len(res) - 1, "peak": max(peak, peak2),
            "err": float(np.abs(x - x_true).max())}


def _line(name, r):
    per = r["solve"] / max(r["its"], 1)
    return (f"  {name:<26s} setup {r['setup']:7.3f} s  solve {1e3 * r['solve']:8.1f} ms  {r['its']:5.1f} its "
            f"{1e3 * per:6.2f} ms/it  peak {r['peak'] / 2**20:6.0f} MiB  max err {r['err']:.1e} K")


def bench_solvers(voxel_mm: float = 1.0, steps_s=(2.5, 10.0)):
    case = fc.porcine_bolus_case(voxel_mm=voxel_mm)
    shape = case.labels.shape
    rng = np.random.default_rng(0)
    speed = None
    for dt in steps_s:
        a = _matrix(case, dt)
        n = a.shape[0]
        x_true = 37.0 + 10.0 * rng.standard_normal(n)
        b = a @ x_true
        x0 = x_true + 0.1 * rng.standard_normal(n)
        x = np.ones(n)
        t_mv = _best(lambda a=a, x=x: a @ x, 10)[1]
        bw = (a.nnz * 12 + n * 8 * 2 + (n + 1) * 4) / t_mv
        print(f"porcine case {voxel_mm:g} mm, dt {dt:g} s (Crank-Nicolson): {shape} = {n} unknowns, nnz {a.nnz}, "
              f"rtol {RTOL:g}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        rows = {"ours: Jacobi-PCG (default)": _ours(a, b, x0, x_true, "cg", shape),
                "ours: GMG + CG": _ours(a, b, x0, x_true, "gmg", shape),
                "peer: pyamg SA + CG": _pyamg(a, b, x0, x_true, "sa"),
                "peer: pyamg RS + CG": _pyamg(a, b, x0, x_true, "rs")}
        for name, r in rows.items():
            print(_line(name, r))
        mf = n * 8 * 6 / bw
        for name in ("ours: Jacobi-PCG (default)", "ours: GMG + CG"):
            r = rows[name]
            per = r["solve"] / max(r["its"], 1)
            print(f"  {name}: {1e3 * per:.2f} ms per iteration = {per / mf:.1f}x the matrix-free 7-point floor "
                  f"({n * 48 / 1e6:.0f} MB at {bw / 1e9:.1f} GB/s: {1e3 * mf:.2f} ms), {r['peak'] / n:.0f} B/unknown")
        ours, sa = rows["ours: Jacobi-PCG (default)"], rows["peer: pyamg SA + CG"]
        speed = (sa["setup"] + sa["solve"]) / (ours["setup"] + ours["solve"])
    print(f"speedup vs pyamg SA: {speed:.1f}x")


def validate():
    rows = []
    for ml in (3.0, 2.0, 1.0):
        case = fc.porcine_bolus_case(ml)
        t0 = time.perf_counter()
        res = fc.run_case(case, 1800.0, 1.0)
        core = res.probe_temperature_c["core"]
        print(
            f"porcine {ml:g} mL (voxelised {case.cement_volume_ml:.2f} mL): core peak {core.max():.1f} C, "
            f"core > 45 C {res.probe_time_above_c('core', 45.0):.0f} s, anterior cortex "
            f"{res.probe_temperature_c['anterior cortex'].max():.1f} C, posterior cortex "
            f"{res.probe_temperature_c['posterior cortex'].max():.1f} C, canal wall {res.canal_wall_peak_c:.1f} C "
            f"({res.canal_wall_time_above_50c_s:.0f} s > 50 C), necrosis {res.necrosis_volume_ml:.2f} mL, "
            f"energy error {res.energy_balance_error_rel:.1e}  [{time.perf_counter() - t0:.0f} s]",
            flush=True,
        )
        rows.append((ml, res))
        if ml == 3.0:
            figs.plot_probe_temperatures(res, "porcine_probes.png", case.name)
    peaks = {}
    for height, mould in ((6.0, "ptfe"), (6.0, "pu_foam"), (40.0, "ptfe")):
        case = fc.astm_mould_case(height, mould)
        res = fc.run_case(case, 3600.0, 2.0)
        c = res.probe_temperature_c["centre"]
        peaks[(height, mould)] = c.max()
        print(
            f"mould {mould} {height:g} mm: centre peak {c.max():.1f} C at {res.t_s[c.argmax()] / 60:.1f} min, "
            f"energy error {res.energy_balance_error_rel:.1e}",
            flush=True,
        )
    print(
        f"PU foam - PTFE (6 mm): {peaks[(6.0, 'pu_foam')] - peaks[(6.0, 'ptfe')]:+.1f} C (reported ~ +50 C)"
    )
    print(f"40 mm - 6 mm (PTFE): {peaks[(40.0, 'ptfe')] - peaks[(6.0, 'ptfe')]:+.1f} C (reported ~ +75 C)")
    figs.plot_cure_curves("cure_curves.png")
    return rows, peaks


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--validate", action="store_true")
    parser.add_argument("--voxel-mm", type=float, default=1.0)
    parser.add_argument("--dt", type=float, nargs="+", default=[2.5, 10.0])
    args = parser.parse_args()
    if args.validate:
        validate()
    else:
        bench_solvers(args.voxel_mm, tuple(args.dt))
