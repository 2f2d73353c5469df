"""A 4 mL bipedicular vertebroplasty on the bundled real L1 at 1 mm: time to run, leakage by route, PNG of the cement.

Run:  python benchmarks/bench_vertebroplasty.py [--cement low|high] [--volume-ml 4] [--out docs/figures]

Prints the model build time and the procedure time separately (target for the procedure: < 10 s on the 2-core
machine), the leakage table by route (Yeom: B basivertebral, S segmental, C cortical, D disc) and the pressures,
and writes vp_l1_<cement>.png: mid-sagittal and axial CT slices through the cannula tips with the cement fraction.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cement", default="low")
    ap.add_argument("--volume-ml", type=float, default=4.0)
    ap.add_argument("--out", default="docs/figures")
    a = ap.parse_args()

    from vertaug.anatomy.io import load_ct, load_labels
    from vertaug.demo import example_paths
    from vertaug.model.vertebra import vertebra_from_ct
    from vertaug.procedures.vertebroplasty import Vertebroplasty, run_vertebroplasty

    ex = example_paths()
    t0 = time.perf_counter()
    ct = load_ct(ex["ct"])
    v = vertebra_from_ct(ct, load_labels(ex["seg"], ct), "L1", body=load_labels(ex["body"], ct), spacing_mm=1.0)
    t_model = time.perf_counter() - t0
    t0 = time.perf_counter()
    o = run_vertebroplasty(v, Vertebroplasty(volume_ml=a.volume_ml, cement=a.cement))
    t_vp = time.perf_counter() - t0
    m = o.metrics
    print(f"L1 at 1 mm, {v.labels.shape} voxels, {int(np.isin(v.labels, (1, 7)).sum())} porous; "
          f"model build {t_model:.1f} s")
    print(f"VP {a.volume_ml:g} mL bipedicular, {a.cement}-viscosity cement from {o.inputs['start_time_s']:.0f} s: "
          f"procedure {t_vp:.1f} s ({len(o.series['t_s']) - 1} steps)")
    print("| route | leaked mL |")
    print("|---|---|")
    for r, x in m["leaked_ml_by_route"].items():
        print(f"| {r} | {x:.3g} |")
    print(f"injected {m['injected_ml']:.3f} mL, fill fraction of body {m['fill_fraction_of_body']:.3f}, "
          f"max plunger pressure {m['max_injection_pressure_pa'] / 1e3:.1f} kPa "
          f"(cannula {m['max_injection_pressure_cannula_pa'] / 1e3:.1f}, bone {m['max_injection_pressure_bone_pa'] / 1e3:.1f}; "
          f"cannula share {m['cannula_share_of_pressure']:.3f}), mass balance {m['cement_mass_balance_error_max']:.1e}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tips = np.array(o.inputs["tips_ijk"])
    i_mid = int(round(v.landmarks.centroid_ijk[0]))
    k_tip = int(round(tips[:, 2].mean()))
    cf = o.cement_fraction
    fig, axs = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, img, c, title, xl, yl in (
        (axs[0], v.hu[i_mid].T, cf[i_mid].T, f"mid-sagittal (i = {i_mid})", "anterior (mm)", "superior (mm)"),
        (axs[1], v.hu[:, :, k_tip].T, cf[:, :, k_tip].T, f"axial through the tips (k = {k_tip})", "right (mm)",
         "anterior (mm)"),
    ):
        ax.imshow(img, cmap="gray", origin="lower", vmin=-200, vmax=1000)
        im = ax.imshow(np.ma.masked_less(c, 0.02), cmap="autumn", origin="lower", vmin=0, vmax=float(cf.max()),
                       alpha=0.8)
        ax.set_title(title)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
    fig.colorbar(im, ax=axs, label="cement volume fraction")
    fig.suptitle(f"VP {a.volume_ml:g} mL {a.cement}-viscosity, bipedicular, real L1 at 1 mm (vertaug)")
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"vp_l1_{a.cement}.png"
    fig.savefig(path, dpi=80)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
