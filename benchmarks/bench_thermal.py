"""Thermal solver benchmark and the validation table of docs/cement.md.

    python benchmarks/bench_thermal.py            # per-step linear solve: ours (Jacobi-PCG) vs peers, same matrix, same run
    OPENBLAS_NUM_THREADS=1 python benchmarks/bench_thermal.py --no-lu   # fair to pyamg on a shared machine
    python benchmarks/bench_thermal.py --validate # porcine bolus and ASTM F451-type mould cases (several minutes)

Peers: scipy splu (factorised once, solve reused) and pyamg smoothed aggregation + CG (hierarchy reused), both on the
backward-Euler matrix of the porcine case (1 mm voxels, dt 1 s), same right-hand side, relative residual 1e-13 (AMG 1e-10:
its stopping rule is on the preconditioned residual).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from vertaug.physics import thermal
from vertaug.report import figures_cement as figs
from vertaug.validate import geometries as fc


def _matrix(case, dt_s=1.0):
    k, rho_c, _perf, _phi = thermal.mix_properties(
        case.labels, case.cement_fraction, case.kwargs["cement"], case.table
    )
    vol = float(np.prod(case.spacing_m))
    lmat, _ = thermal.assemble_conduction(k, case.spacing_m)
    return (sp.diags(rho_c.ravel() * vol / dt_s) + lmat).tocsr()


def _time(fn, repeat):
    t0 = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return (time.perf_counter() - t0) / repeat, out


def bench_solvers(repeat: int = 20, with_lu: bool = True):
    case = fc.porcine_bolus_case()
    a = _matrix(case)
    n = a.shape[0]
    rng = np.random.default_rng(0)
    x_true = 37.0 + rng.standard_normal(n)
    b = a @ x_true
    x0 = x_true + 0.1 * rng.standard_normal(n)  # warm start, as in time stepping
    print(f"porcine case: {case.labels.shape} = {n} unknowns, nnz {a.nnz}")
    t_setup = time.perf_counter()
    ours = thermal._Solver(a, "cg")
    t_setup = time.perf_counter() - t_setup
    t_ours, x = _time(lambda: ours.solve(b, x0), repeat)
    err_ours = np.abs(x - x_true).max()
    t_lu_setup = t_lu = err_lu = float("nan")
    if with_lu:
        t_lu_setup = time.perf_counter()
        lu = spla.splu(a.tocsc())
        t_lu_setup = time.perf_counter() - t_lu_setup
        t_lu, x = _time(lambda: lu.solve(b), repeat)
        err_lu = np.abs(x - x_true).max()
    import pyamg

    t_amg_setup = time.perf_counter()
    ml = pyamg.smoothed_aggregation_solver(a, symmetry="symmetric")
    t_amg_setup = time.perf_counter() - t_amg_setup
    t_amg, x = _time(lambda: ml.solve(b, x0=x0, tol=1e-10, accel="cg"), repeat)
    err_amg = np.abs(x - x_true).max()
    bytes_per_iter = a.nnz * 12 + n * 8 * 8  # CSR values+indices, ~8 vector passes per PCG iteration
    print(f"{'solver':32s} {'setup s':>9s} {'solve ms':>9s} {'max err K':>10s} {'ratio peer/ours':>16s}")
    print(f"{'ours: Jacobi-PCG':32s} {t_setup:9.3f} {t_ours * 1e3:9.2f} {err_ours:10.1e} {1.0:16.2f}")
    print(
        f"{'peer: scipy splu (reused)':32s} {t_lu_setup:9.3f} {t_lu * 1e3:9.2f} {err_lu:10.1e} {t_lu / t_ours:16.2f}"
    )
    print(
        f"{'peer: pyamg SA + CG (reused)':32s} {t_amg_setup:9.3f} {t_amg * 1e3:9.2f} {err_amg:10.1e} {t_amg / t_ours:16.2f}"
    )
    iters = max(ours.iterations / repeat, 1)
    print(
        f"ours: {iters:.1f} PCG iterations per solve; bandwidth bound ~{iters * bytes_per_iter / 30e9 * 1e3:.2f} ms "
        f"at 30 GB/s"
    )


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
    parser.add_argument(
        "--no-lu", action="store_true", help="skip the splu peer (its factorisation takes minutes)"
    )
    args = parser.parse_args()
    if args.validate:
        validate()
    else:
        bench_solvers(with_lu=not args.no_lu)
