"""Benchmark: the exotherm of the demo's VP and KP outcomes (procedures.exotherm.exotherm_after), CPU and accuracy.

Run:  python benchmarks/bench_exotherm.py [--spacing-mm 1.0] [--repeats 2] [--control MAX_C MAX_CURE DT_MAX_S DT_S ...]

Builds L1 with the demo's fracture and runs the demo's VP and KP plans as benchmarks/bench_arm.py does (not timed),
then times ``exotherm_after`` on each outcome (CPU and wall, best CPU of ``--repeats``) with the default step control
and with each ``--control`` (a step-control row: largest change per step in C and in cure degree, largest and base
step in s). Each row prints steps, CPU, peak temperature and its time, the volume that reached 50 C, the necrosis
volume and the energy balance error; the load average is printed beside the times (shared machine: CPU time is the
steadier figure). Issue 26: the accuracy of a step control is read against a 4x tighter one (0.5 0.0125 20 0.625).
"""

from __future__ import annotations

import argparse
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np


def _outcomes(spacing_mm: float) -> dict:
    from bench_arm import _Clock, _model

    from vertaug.demo import DEMO_KP, DEMO_VP
    from vertaug.procedures.kyphoplasty import Kyphoplasty
    from vertaug.procedures.vertebroplasty import Vertebroplasty
    from vertaug.study import procedure_runner, seeded_global_rng

    v, tr = _model(spacing_mm, _Clock())
    out = {}
    for name, plan in (("VP", Vertebroplasty(**DEMO_VP)), ("KP", Kyphoplasty(**DEMO_KP))):
        _, run = procedure_runner(plan)
        with seeded_global_rng():
            out[name] = run(v, plan, trajectories=tr)
    return out


def _row(label: str, outcome, repeats: int, kw: dict) -> str:
    from vertaug.procedures.exotherm import exotherm_after

    best = None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        s = exotherm_after(outcome, **kw)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        best = (wall, cpu) if best is None or cpu < best[1] else best
    m = s.metrics
    reached_ml = float((s.max_temperature_c > 50.0).sum()) * float(np.prod(outcome.model_after.spacing_m)) * 1e6
    return (f"  {label:<28s} {len(s.t_s) - 1:5d} {best[1]:7.2f} {best[0]:7.2f} {os.getloadavg()[0]:5.2f} "
            f"{m.peak_temperature_c:9.3f} {m.peak_time_after_mixing_min:8.3f} {reached_ml:8.3f} "
            f"{m.necrosis_volume_ml:8.4f} {m.thermal_energy_balance_error:9.1e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spacing-mm", type=float, default=1.0)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--control", nargs=4, type=float, action="append", default=[],
                    metavar=("MAX_C", "MAX_CURE", "DT_MAX_S", "DT_S"))
    a = ap.parse_args()
    outcomes = _outcomes(a.spacing_mm)
    rows = [("default", {})] + [(" / ".join(f"{v:g}" for v in c),
                                 {"max_change_c": c[0], "max_cure_change": c[1], "dt_max_s": c[2], "dt_s": c[3]})
                                for c in a.control]
    print(f"exotherm_after at {a.spacing_mm:g} mm, load average {os.getloadavg()[0]:.2f} at the start")
    print(f"  {'arm, control (C/cure/s/s)':<28s} {'steps':>5s} {'CPU s':>7s} {'wall s':>7s} {'load':>5s} {'peak C':>9s} "
          f"{'peak min':>8s} {'>=50C mL':>8s} {'necr. mL':>8s} {'energy err':>9s}")
    for name, outcome in outcomes.items():
        for label, kw in rows:
            print(_row(f"{name} {label}", outcome, a.repeats, kw), flush=True)


if __name__ == "__main__":
    main()
