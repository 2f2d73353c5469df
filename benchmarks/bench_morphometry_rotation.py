"""Benchmark: L1..L5 of the bundled CT under resampled rigid rotations (issue 23's must-show).

The CT, the label map and the body map are rotated by 5, 10 and 20 deg about each world axis onto a new grid of the
same spacing (CT linear, labels nearest neighbour: tests/test_morphometry_anatomy.py ``_resampled``) and measured
again. Prints the unrotated heights, grades and times, then for each rotation the largest height change, L1's
deformity and every level whose Genant grade or type changed.

Run: PYTHONPATH=src:tests python benchmarks/bench_morphometry_rotation.py [--endplates surface|ct|mask]
"""

from __future__ import annotations

import argparse
import time

from test_morphometry_anatomy import ROTATIONS, _resampled, _rotation

from vertaug.anatomy.io import load_ct, load_labels
from vertaug.anatomy.morphometry import measure_volumes
from vertaug.demo import example_paths

LUMBAR = ("L1", "L2", "L3", "L4", "L5")
KEYS = ("anterior", "middle", "posterior")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--endplates", default="surface", choices=("surface", "ct", "mask"))
    args = ap.parse_args()
    ex = example_paths()
    ct = load_ct(ex["ct"])
    vols = (ct, load_labels(ex["seg"], ct), load_labels(ex["body"], ct))
    t0 = time.perf_counter()
    base = measure_volumes(*vols, endplates=args.endplates)
    print(f"endplates={args.endplates}: unrotated in {time.perf_counter() - t0:.1f} s")
    for name in LUMBAR:
        m = base[name]
        print(f"  {name} Ha/Hm/Hp {m.height_anterior_mm:.2f} / {m.height_middle_mm:.2f} / {m.height_posterior_mm:.2f}"
              f" mm, grade {m.genant_grade} {m.genant_type} ({m.deformity:.3f} +- {m.deformity_uncertainty:.3f})")
    worst = 0.0
    for axis, deg in ROTATIONS:
        t0 = time.perf_counter()
        rot = measure_volumes(*_resampled(vols, _rotation(axis, deg)), endplates=args.endplates)
        dh = {(n, k): abs(getattr(rot[n], f"height_{k}_mm") - getattr(base[n], f"height_{k}_mm"))
              for n in LUMBAR for k in KEYS}
        where = max(dh, key=dh.get)
        worst = max(worst, dh[where])
        changed = [f"{n} {rot[n].genant_grade} {rot[n].genant_type} ({rot[n].deformity:.3f})" for n in LUMBAR
                   if (rot[n].genant_grade, rot[n].genant_type) != (base[n].genant_grade, base[n].genant_type)]
        print(f"axis {axis} {deg:2d} deg: largest height change {dh[where]:.2f} mm ({where[0]} {where[1]}), L1 deformity"
              f" {rot['L1'].deformity:.3f}, grade changes: {', '.join(changed) or 'none'} ({time.perf_counter() - t0:.1f} s)")
    print(f"largest height change over all rotations: {worst:.2f} mm")


if __name__ == "__main__":
    main()
