"""Benchmark: Genant type and grade of 100 random phantoms (issue 24 target: >= 95 % right).

Each phantom (``vertaug.anatomy.phantom``) is an L1 with its neighbours, drawn from a seeded generator: grade 0-3
uniformly (grade 0 is "none"; grades 1-3 take a type among wedge, biconcave and crush uniformly), trabecular density
60-250 HU, noise 0-30 HU (standard deviation, white), endplate thickness 0.35-1.0 mm, and the slice lattice shifted by
a uniform fraction of a slice against the anatomy (so endplates fall anywhere within a slice), the CT through a
Gaussian slice profile of FWHM one slice (``partial_volume=True``). The morphometry is the default one
(``measure_volumes``: CT endplate surfaces, body map given). Prints the confusion matrices of type and of grade, the
% with both right, each miss with its deformities, and the time.

Run: python benchmarks/bench_morphometry.py [--n 100] [--seed 0] [--slice-mm 1.0] [--endplates surface|ct|mask]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vertaug.anatomy.morphometry import measure_volumes
from vertaug.anatomy.phantom import make_phantom

TYPES = ("none", "wedge", "biconcave", "crush")


def draw(rng: np.random.Generator, slice_mm: float) -> dict:
    grade = int(rng.integers(0, 4))
    kind = "none" if grade == 0 else str(rng.choice(TYPES[1:]))
    return dict(fracture=kind, grade=grade, trabecular_hu=float(rng.uniform(60.0, 250.0)),
                noise_hu=float(rng.uniform(0.0, 30.0)), endplate_mm=float(rng.uniform(0.35, 1.0)),
                spacing_mm=1.0, slice_mm=slice_mm, slice_offset_mm=float(rng.uniform(0.0, slice_mm) * 0.999),
                partial_volume=True, seed=int(rng.integers(0, 2**31)))


def confusion(true: list, got: list, names: tuple) -> str:
    idx = {n: i for i, n in enumerate(names)}
    m = np.zeros((len(names), len(names) + 1), int)  # last column: not evaluable
    for t, g in zip(true, got):
        m[idx[t], idx.get(g, len(names))] += 1
    w = max(len(str(n)) for n in (*names, "n/e")) + 2
    lines = ["true \\ measured".ljust(w + 4) + "".join(str(n).rjust(w) for n in (*names, "n/e"))]
    lines += [str(n).ljust(w + 4) + "".join(str(v).rjust(w) for v in row) for n, row in zip(names, m)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--slice-mm", type=float, default=1.0)
    ap.add_argument("--endplates", default="surface", choices=("surface", "ct", "mask"))
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    true_t, got_t, true_g, got_g, misses = [], [], [], [], []
    t0 = time.perf_counter()
    for k in range(args.n):
        spec = draw(rng, args.slice_mm)
        ph = make_phantom(**spec)
        m = measure_volumes(ph.ct, ph.labels, ph.body, endplates=args.endplates)["L1"]
        true_t.append(spec["fracture"])
        true_g.append(spec["grade"])
        got_t.append(m.genant_type if m.evaluable else "not evaluable")
        got_g.append(m.genant_grade if m.evaluable else -1)
        if (got_t[-1], got_g[-1]) != (true_t[-1], true_g[-1]):
            misses.append(f"#{k}: {spec['fracture']} g{spec['grade']} -> {got_t[-1]} g{got_g[-1]} (wedge "
                          f"{m.deformity_wedge:.3f}, biconcave {m.deformity_biconcave:.3f}, crush {m.deformity_crush:.3f};"
                          f" {spec['trabecular_hu']:.0f} HU, noise {spec['noise_hu']:.0f} HU, endplate "
                          f"{spec['endplate_mm']:.2f} mm, offset {spec['slice_offset_mm']:.2f} mm)")
    dt = time.perf_counter() - t0
    right = sum((a, b) == (c, d) for a, b, c, d in zip(true_t, true_g, got_t, got_g))
    print(f"{args.n} phantoms, seed {args.seed}, {args.slice_mm:g} mm slices, endplates={args.endplates}, "
          f"{dt:.0f} s ({dt / args.n:.1f} s each)")
    print("\nGenant type:\n" + confusion(true_t, got_t, TYPES))
    print("\nGenant grade:\n" + confusion(true_g, got_g, (0, 1, 2, 3)))
    print(f"\ntype and grade right: {right}/{args.n} = {100.0 * right / args.n:.1f} % (target >= 95 %)")
    for line in misses:
        print("  miss " + line)


if __name__ == "__main__":
    main()
