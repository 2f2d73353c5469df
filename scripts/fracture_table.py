"""The 36-row table of docs/anatomy.md: every Genant type x grade on L1..L4 of the bundled CT, measured back.

    PYTHONPATH=src python3 scripts/fracture_table.py > table.md

Each row fractures one level with ``anatomy.fracture.fracture_level`` (seed 0, endplate break, no cleft) and measures
the result with the morphometry that ``vertaug morpho`` prints; bone mass is the sum of max(BMD, 0) x voxel volume
over the level's body (materials calibration), before and after.
"""

from __future__ import annotations

import time

from vertaug.anatomy.fracture import GRADE_DEFORMITY, KINDS, fracture_level
from vertaug.anatomy.io import load_ct, load_labels
from vertaug.anatomy.morphometry import measure_volumes
from vertaug.demo import example_paths
from vertaug.errors import FractureError


def main() -> None:
    p = example_paths()
    ct = load_ct(p["ct"])
    seg, body = load_labels(p["seg"], ct), load_labels(p["body"], ct)
    print("| level | asked | measured | Ha / Hm / Hp (mm) | deformity wedge / biconcave / crush | amplitude | "
          "bone mass before -> after (mg) | band correction | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    misses = 0
    for level in ("L1", "L2", "L3", "L4"):
        for kind in KINDS:
            for grade in GRADE_DEFORMITY:
                t = time.perf_counter()
                try:
                    f = fracture_level(ct, seg, level, kind, grade, body=body)
                except FractureError as exc:  # a level that already measures the asked deformity
                    misses += 1
                    print(f"| {level} | {kind} {grade} | refused: {str(exc).split(' Fix:')[0]} | | | | | | |")
                    continue
                dt = time.perf_counter() - t
                m = measure_volumes(f.ct, f.seg, f.body)[level]
                hit = (m.genant_type, m.genant_grade) == (kind, grade)
                misses += not hit
                amp = f"{f.amplitude:.3f} (strain)" if kind == "crush" else f"{f.amplitude:.2f} mm"
                print(f"| {level} | {kind} {grade} | {'' if hit else '**'}{m.genant_type} {m.genant_grade}"
                      f"{'' if hit else '**'} | {m.height_anterior_mm:.1f} / {m.height_middle_mm:.1f} / "
                      f"{m.height_posterior_mm:.1f} | {m.deformity_wedge:.3f} / {m.deformity_biconcave:.3f} / "
                      f"{m.deformity_crush:.3f} | {amp} | {f.bone_mass_before_mg:.1f} -> {f.bone_mass_after_mg:.1f} "
                      f"| {100 * f.mass_correction_fraction:+.1f} % | {dt:.1f} |", flush=True)
    print(f"\n{36 - misses} of 36 measure the requested type and grade.")


if __name__ == "__main__":
    main()
