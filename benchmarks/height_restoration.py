"""Height restoration (issue 20): KP and VP on the wedge phantoms (grades 1-3) and the demo's fractured L1.

Run: PYTHONPATH=src python benchmarks/height_restoration.py [--spacing-mm 1.5] [--skip-l1]
Prints one row per case: height lost, KP restored (mm, %), wedge angle change, balloon final volume and pressure, the
cavity (the balloons' space; mL, connected regions by scipy.ndimage.label with face and with edge/corner contact) with
the share of its voxels more than half full of cement, the gap opened under the plate beyond the balloon, the cement
injected and leaked, and VP restored. Nothing here is tuned; docs/kyphoplasty.md holds the measured table.
"""

from __future__ import annotations

import argparse
import time

from vertaug.anatomy.phantom import make_phantom
from vertaug.model.vertebra import vertebra_from_phantom
from vertaug.procedures.kyphoplasty import Kyphoplasty, run_kyphoplasty
from vertaug.procedures.vertebroplasty import Vertebroplasty, run_vertebroplasty


def demo_l1():
    """The demo's fractured L1 (DEMO_FRACTURE) as a 1 mm voxel model."""
    from vertaug.anatomy.fracture import fracture_level
    from vertaug.anatomy.io import load_ct, load_labels
    from vertaug.demo import DEMO_FRACTURE, DEMO_LEVEL, example_paths
    from vertaug.model.vertebra import vertebra_from_ct

    p = example_paths()
    ct = load_ct(p["ct"])
    seg, body = load_labels(p["seg"], ct, "segmentation"), load_labels(p["body"], ct, "body")
    f = fracture_level(ct, seg, DEMO_LEVEL, body=body, **DEMO_FRACTURE)
    return vertebra_from_ct(f.ct, f.seg, DEMO_LEVEL, body=f.body, spacing_mm=1.0, fracture_zone=f.zone)


def kp_row(name, v, kp: Kyphoplasty, vp: Vertebroplasty | None):
    t = time.perf_counter()
    m = run_kyphoplasty(v, kp).metrics
    line = (f"| {name} | {m['height_posterior_mm_before'] - m['height_anterior_mm_before']:.2f} | "
            f"{m['height_restored_mm']:.2f} ({m['height_restored_pct_of_lost']:.0f} %) | "
            f"{m['wedge_angle_deg'] - m['wedge_angle_deg_before']:+.1f} | {m['balloon_volume_ml']:.2f} mL, "
            f"{m['balloon_final_pressure_pa'] / 6894.757:.0f} psi (max {m['balloon_max_pressure_pa'] / 6894.757:.0f}) | "
            f"{m['cavity_volume_ml']:.2f} ({m['cavity_regions']:.0f}; {m['balloon_space_regions_touching']:.0f}), "
            f"{m['cavity_filled_pct']:.1f} % | {m['fracture_gap_ml']:.2f}, {m['fracture_gap_filled_pct']:.0f} % | "
            f"{m['injected_ml']:.2f}, leak {m['leaked_ml']:.3f} | recoil {m['deflation_recoil_mm']:.3g} mm |")
    if vp is not None:
        mv = run_vertebroplasty(v, vp).metrics
        line += f" {mv['height_restored_mm']:.2f} ({mv['height_restored_pct_of_lost']:.0f} %) |"
    print(line + f" ({time.perf_counter() - t:.0f} s)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spacing-mm", type=float, default=1.5)
    ap.add_argument("--skip-l1", action="store_true")
    a = ap.parse_args()
    print("| case | lost mm | KP restored mm (%) | KP angle change deg | balloon final volume, pressure | cavity mL "
          "(regions: face; edge/corner), > 50 % cement | gap beyond the balloon mL, > 50 % | cement mL, leaked mL | "
          "deflation | VP restored mm (%) |")
    for g in (1, 2, 3):
        v = vertebra_from_phantom(make_phantom(level="L1", fracture="wedge", grade=g, spacing_mm=a.spacing_mm))
        kp_row(f"phantom grade {g}", v, Kyphoplasty(), Vertebroplasty())
    if not a.skip_l1:
        from vertaug.demo import DEMO_KP, DEMO_VP

        v = demo_l1()
        kp_row("L1 virtual grade-2 wedge, defaults", v, Kyphoplasty(), None)
        kp_row("L1, demo plans (KP 2 x 2 mL, VP 4 mL)", v, Kyphoplasty(**DEMO_KP), Vertebroplasty(**DEMO_VP))


if __name__ == "__main__":
    main()
