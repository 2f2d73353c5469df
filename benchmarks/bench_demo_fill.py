"""Benchmark: the demo's two injections (VP and KP, fractured L1 at 1 mm) replayed, one source tree against another.

Run:  python benchmarks/bench_demo_fill.py capture DIR
      python benchmarks/bench_demo_fill.py compare DIR --trees BEFORE_SRC AFTER_SRC [--rounds 2] [--repeats 1]

``capture`` runs the demo's pipeline (``vertaug demo --workers 1 --samples 0 --no-fluoro``, without exotherms and
FE) and writes the arguments of each ``flow.inject`` call to DIR with cloudpickle (the viscosity laws are closures;
reading the files needs cloudpickle too). ``compare`` replays each call in a fresh process per tree
(``PYTHONPATH=TREE``), alternating the trees round by round, and prints the CPU (process) seconds of ``flow.inject``
(the best of ``--repeats`` timed calls after a warm-up one), the steps and CG iterations; the best of the rounds is
the figure on a shared machine. The last round's results are compared field by field: the largest relative pressure
and saturation differences (max |diff| / max |x|).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")


def capture(folder: Path) -> None:
    try:  # the procedures' viscosity laws are closures, which the standard pickle cannot write
        import cloudpickle
    except ImportError:
        sys.exit("capture needs cloudpickle (pip install cloudpickle), and so does compare to read what it wrote.")

    from vertaug.physics import flow

    folder.mkdir(parents=True, exist_ok=True)
    original, calls = flow.inject, []

    def recording(*args, **kwargs):
        (folder / f"inject_{len(calls)}.pkl").write_bytes(cloudpickle.dumps((args, kwargs)))
        calls.append(len(calls))
        return original(*args, **kwargs)

    flow.inject = recording  # before the procedures import it by name
    from vertaug.demo import run_demo

    with tempfile.TemporaryDirectory() as out:
        run_demo(Path(out) / "demo", fluoro=False, thermal=False, mechanics=False, workers=1, samples=0)
    print(f"captured {len(calls)} injections in {folder}")


_REPLAY = r"""
import os, pickle, sys, time
for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(v, "1")
import numpy as np
from vertaug.physics import flow
args, kwargs = pickle.loads(open(sys.argv[1], "rb").read())
flow.inject(*args, **kwargs)  # warm-up: imports, first-call costs
cpu = float("inf")
for _ in range(int(sys.argv[3])):  # the best of these repeats in this process
    c0 = time.process_time()
    res = flow.inject(*args, **kwargs)
    cpu = min(cpu, time.process_time() - c0)
np.savez(sys.argv[2], S=res.saturation, p=res.pressure_pa, injected=res.injected_m3, tip=res.tip_pressure_pa,
         vol=res.volume_balance_error, mass=res.mass_balance_error)
print(f"{cpu:.3f} {res.n_steps} {sum(res.solver_iterations)} {res.stop_reason}")
"""


def _replay(tree: str, pkl: Path, out: Path, repeats: int) -> tuple[str, str, str, str]:
    env = dict(os.environ, PYTHONPATH=tree)
    r = subprocess.run([sys.executable, "-c", _REPLAY, str(pkl), str(out), str(repeats)], env=env, capture_output=True,
                       text=True, check=True)
    cpu, steps, its, stop = r.stdout.strip().split(" ", 3)
    return cpu, steps, its, stop


def _rel(a, b) -> float:
    import numpy as np

    m = np.isfinite(a) & np.isfinite(b)
    return float(np.max(np.abs(a[m] - b[m])) / max(np.max(np.abs(a[m])), 1e-300))


def compare(folder: Path, trees: list[str], rounds: int, repeats: int) -> None:
    import numpy as np

    pkls = sorted(folder.glob("inject_*.pkl"))
    best = {}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(rounds):
            for pkl in pkls:
                for t, tree in enumerate(trees):
                    out = Path(tmp) / f"{pkl.stem}_{t}.npz"
                    cpu, steps, its, stop = _replay(tree, pkl, out, repeats)
                    load = os.getloadavg()[0]
                    print(f"round {rnd + 1} {pkl.stem} tree {t} ({tree}): inject CPU {float(cpu):.2f} s, {steps} steps, "
                          f"{its} CG its, {stop}, load {load:.1f}", flush=True)
                    key = (pkl.stem, t)
                    best[key] = min(best.get(key, float("inf")), float(cpu))
        for pkl in pkls:
            line = " / ".join(f"{best[(pkl.stem, t)]:.2f}" for t in range(len(trees)))
            print(f"{pkl.stem}: best CPU {line} s", end="")
            if len(trees) == 2:
                a, b = (np.load(Path(tmp) / f"{pkl.stem}_{t}.npz") for t in range(2))
                print(f"; rel diff pressure {_rel(a['p'], b['p']):.2e}, saturation {_rel(a['S'], b['S']):.2e}, "
                      f"injected {_rel(a['injected'], b['injected']):.2e}, tip pressure {_rel(a['tip'], b['tip']):.2e}; "
                      f"largest volume balance error {a['vol'].max():.2e} / {b['vol'].max():.2e}, "
                      f"cement {a['mass'].max():.2e} / {b['mass'].max():.2e}")
            else:
                print()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["capture", "compare"])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--trees", nargs="+", default=["src"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=1, help="timed injections per process (its best is the round's)")
    a = ap.parse_args()
    capture(a.folder) if a.what == "capture" else compare(a.folder, a.trees, a.rounds, a.repeats)


if __name__ == "__main__":
    main()
