"""Benchmark: the pressure solver inside the demo's procedures (VP and KP on the bundled L1 at 1 mm), GMG vs AMG.

Run:  python benchmarks/bench_procedure_pressure.py [gmg] [sa] [rs]

Runs run_vertebroplasty and run_kyphoplasty with flow.inject's pressure solver forced to each backend named (rtol
flow.PRESSURE_RTOL, as flow.inject uses) and prints per procedure: wall and CPU (process) seconds, the number of pressure solves
and multigrid setups, the setup and solve seconds, and the CG iterations. CPU time is the steadier figure on a
shared machine.
"""

from __future__ import annotations

import sys
import time

from vertaug.anatomy.io import load_ct, load_labels
from vertaug.demo import example_paths
from vertaug.model.vertebra import vertebra_from_ct
from vertaug.physics import flow
from vertaug.physics.solvers import PressureSolver
from vertaug.procedures.kyphoplasty import run_kyphoplasty
from vertaug.procedures.vertebroplasty import Vertebroplasty, run_vertebroplasty


def main(backends):
    ex = example_paths()
    ct = load_ct(ex["ct"])
    v = vertebra_from_ct(ct, load_labels(ex["seg"], ct), "L1", body=load_labels(ex["body"], ct), spacing_mm=1.0)
    made = []

    def forced(backend):
        def make(_backend, rtol=flow.PRESSURE_RTOL, **kw):
            s = PressureSolver(backend, rtol=rtol, **kw)
            made.append(s)
            return s
        return make

    procedures = (("VP", lambda: run_vertebroplasty(v, Vertebroplasty())), ("KP", lambda: run_kyphoplasty(v)))
    original = flow.PressureSolver
    try:
        for be in backends:
            flow.PressureSolver = forced(be)
            for name, run in procedures:
                made.clear()
                t0, c0 = time.perf_counter(), time.process_time()
                run()
                st = [s.stats for s in made]
                print(f"{be}: {name} wall {time.perf_counter() - t0:.2f} s CPU {time.process_time() - c0:.2f} s; "
                      f"pressure solves {sum(s.n_solves for s in st)}, setups {sum(s.n_setups for s in st)}, "
                      f"setup {sum(s.setup_s for s in st):.2f} s, solve {sum(s.solve_s for s in st):.2f} s wall, "
                      f"CG its {sum(sum(s.iterations) for s in st)}", flush=True)
    finally:
        flow.PressureSolver = original


if __name__ == "__main__":
    main(sys.argv[1:] or ["gmg", "sa"])
