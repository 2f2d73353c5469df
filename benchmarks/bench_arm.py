"""Benchmark: one trial arm at 1.5 mm (procedure + exotherm + voxel FE), per arm and per stage.

Run:  python benchmarks/bench_arm.py [--spacing-mm 1.5] [--arms VP KP]

Model: L1 of the bundled CT with the demo's virtual fracture (vertaug.demo.DEMO_FRACTURE), built at ``--spacing-mm``
(the trial's default spacing is 1.5 mm). Arms: the demo's plans (DEMO_VP: 4 mL low-viscosity bipedicular; DEMO_KP:
2 mL balloons, high-viscosity fill), each run as the study runs it (vertaug.study.run_procedure with thermal and
mechanics): the fill, the cement exotherm with its thermal damage, the FE stiffness and strength of the result.
Each stage is timed in wall and CPU (process) seconds: the machine is shared, CPU time is the steadier figure. The
model build is timed apart (a trial builds one model per patient, shared by its arms). Last line: the per-arm times.
Target (issue 26): <= 3 s per arm.
"""

from __future__ import annotations

import argparse
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


class _Clock:
    def __init__(self):
        self.rows = []

    def run(self, name, fn):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        self.rows.append((name, time.perf_counter() - t0, time.process_time() - c0))
        return out


def _model(spacing_mm: float, clock: _Clock):
    from vertaug.anatomy.fracture import fracture_level
    from vertaug.anatomy.io import load_ct, load_labels
    from vertaug.demo import DEMO_FRACTURE, DEMO_LEVEL, example_paths
    from vertaug.model.trajectory import plan_trajectories
    from vertaug.model.vertebra import vertebra_from_ct

    def build():
        ex = example_paths()
        ct = load_ct(ex["ct"])
        seg, body = load_labels(ex["seg"], ct), load_labels(ex["body"], ct)
        f = fracture_level(ct, seg, DEMO_LEVEL, body=body, **DEMO_FRACTURE)
        v = vertebra_from_ct(f.ct, f.seg, DEMO_LEVEL, body=f.body, spacing_mm=spacing_mm, fracture_zone=f.zone)
        return v, plan_trajectories(v, approach="bipedicular")

    return clock.run("model build (fracture, model, trajectories)", build)


def _arm(name, plan, v, tr, clock: _Clock):
    from vertaug.procedures.exotherm import exotherm_after
    from vertaug.study import fe_state, procedure_runner, seeded_global_rng

    _, run = procedure_runner(plan)
    with seeded_global_rng():
        outcome = clock.run(f"{name}: procedure", lambda: run(v, plan, trajectories=tr))
        ex = clock.run(f"{name}: exotherm", lambda: exotherm_after(outcome))
        st = clock.run(f"{name}: voxel FE", lambda: fe_state(outcome.model_after, outcome.cement_fraction, name, []))
    inj = outcome.injection
    stiff = getattr(st, "stiffness_n_per_mm", float("nan"))
    return (f"{name}: injected {inj.injected_ml:.2f} mL, {len(outcome.series['t_s']) - 1} fill steps; exotherm "
            f"{len(ex.t_s) - 1} steps, peak {ex.metrics.peak_temperature_c:.2f} C, necrosis "
            f"{ex.metrics.necrosis_volume_ml:.3f} mL; FE stiffness {stiff:.0f} N/mm")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spacing-mm", type=float, default=1.5)
    ap.add_argument("--arms", nargs="+", default=["VP", "KP"], choices=["VP", "KP"])
    a = ap.parse_args()
    from vertaug.demo import DEMO_KP, DEMO_VP
    from vertaug.procedures.kyphoplasty import Kyphoplasty
    from vertaug.procedures.vertebroplasty import Vertebroplasty

    clock = _Clock()
    load0 = os.getloadavg()[0]
    v, tr = _model(a.spacing_mm, clock)
    plans = {"VP": Vertebroplasty(**DEMO_VP), "KP": Kyphoplasty(**DEMO_KP)}
    summaries = [_arm(name, plans[name], v, tr, clock) for name in a.arms]
    print(f"L1 (demo fracture) at {a.spacing_mm:g} mm: {v.labels.shape} voxels; load average {load0:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} cores")
    for s in summaries:
        print("  " + s)
    print(f"  {'stage':<46s} {'wall s':>7s} {'CPU s':>7s}")
    for name, wall, cpu in clock.rows:
        print(f"  {name:<46s} {wall:7.2f} {cpu:7.2f}")
    per_arm = []
    for name in a.arms:
        rows = [r for r in clock.rows if r[0].startswith(f"{name}:")]
        per_arm.append(f"{name} {sum(r[1] for r in rows):.2f} s wall / {sum(r[2] for r in rows):.2f} s CPU")
    print("per-arm time (procedure + exotherm + FE): " + ", ".join(per_arm))


if __name__ == "__main__":
    main()
