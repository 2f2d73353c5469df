"""Kyphoplasty must-show figures (issue 7): ours beside the published cadaver / clinical figures, and the ratio.

Run: python benchmarks/kyphoplasty_must_show.py [--spacing-mm 1.0] [--quick]
No parameter is tuned to the published figures; the "peer" column is the published value (no peer code exists).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vertaug.anatomy.io import load_ct, load_labels
from vertaug.anatomy.phantom import make_phantom
from vertaug.demo import example_paths
from vertaug.model.trajectory import plan_trajectories
from vertaug.model.vertebra import vertebra_from_ct, vertebra_from_phantom
from vertaug.physics import balloon as bl
from vertaug.physics.flow import ROUTES
from vertaug.model.heights import height_change
from vertaug.procedures.kyphoplasty import Kyphoplasty, fill_with_cement, run_kyphoplasty


def row(name, ours, peer, unit):
    ratio = ours / peer if peer not in (0, None) and np.isfinite(ours) else float("nan")
    print(f"  {name:55s} ours {ours:10.4g} {unit:6s} published {peer:10.4g} {unit:6s} ratio {ratio:6.3f}")


def leaks(res):
    return {r: float(res.leaked_m3[r][-1] * 1e6) for r in ROUTES}


def fmt(d):
    return " ".join(f"{k}={v:.3g}" for k, v in d.items()) + f" total={sum(d.values()):.3g} mL"


def heights_section(s):
    print(f"\n1. Height restored, wedge grade 2 phantom (L1, {s} mm voxels), % of the lost anterior height")
    v = vertebra_from_phantom(make_phantom(fracture="wedge", grade=2, cortical_defect=True, spacing_mm=s))
    for approach in ("bipedicular", "unipedicular"):
        t = time.perf_counter()
        o = run_kyphoplasty(v, Kyphoplasty(approach=approach))
        m = o.metrics
        print(f"  KP {approach}: balloon {m['balloon_volume_ml']:.2f} mL at {m['balloon_final_pressure_psi']:.0f} psi, "
              f"lift {m['endplate_lift_max_mm']:.1f} mm, Ha {m['height_anterior_mm_before']:.1f} -> inflated "
              f"{m['height_anterior_mm_inflated']:.1f} -> after {m['height_anterior_mm']:.1f} mm, wedge "
              f"{m['wedge_angle_deg_before']:.1f} -> {m['wedge_angle_deg']:.1f} deg, recoil {m['deflation_recoil_mm']:.3g} mm"
              f" ({time.perf_counter() - t:.0f} s)")
        row(f"KP {approach} height restored", m["height_restored_pct_of_lost"], 97.0, "%")
        if approach == "bipedicular":
            vp = fill_with_cement(v, np.concatenate([t.tip_voxels for t in plan_trajectories(v)]),
                                  m["injected_ml"], "low")
            hm = height_change(v, v.labels).to_dict()
            print(f"  VP same volume ({m['injected_ml']:.2f} mL): the cement moves no endplate in this model "
                  f"(no fluid-structure coupling); mass balance {vp.mass_balance_error.max():.1e}")
            row("VP height restored", hm["height_restored_pct_of_lost"], 30.0, "%")
    truth = v.extra["truth"]["levels"]["L1"]
    print(f"  phantom truth: Ha {truth['height_anterior_mm']:.2f} mm, Hp {truth['height_posterior_mm']:.2f} mm")


def pv_section(s):
    print(f"\n2. Balloon pressure-volume, osteoporotic phantom (L1, 80 HU, no fracture, {s} mm), one balloon")
    v = vertebra_from_phantom(make_phantom(fracture="none", spacing_mm=s))
    tr = plan_trajectories(v, approach="unipedicular")
    r = bl.inflate(v, [tr[0].tip_ijk], volume_ml=bl.BALLOON_MAX_ML)
    p295 = float(np.interp(2.95, r.volume_ml, r.pressure_pa))
    print("  V (mL) : p (MPa)  " + "  ".join(f"{a:.2f}:{b / 1e6:.2f}" for a, b in
                                           zip(r.volume_ml[::max(1, len(r.volume_ml) // 12)],
                                               r.pressure_pa[::max(1, len(r.volume_ml) // 12)])))
    row("pressure at 2.95 mL (cadaver 0.85 MPa)", p295 / 1e6, 0.846, "MPa")
    row("pressure at 2.95 mL vs clinical 175 psi", p295 / bl.PSI_PA, 175.0, "psi")
    plateau = np.median(r.pressure_pa[2:]) / 1e6  # [0] start, [1] drilled seed at p = 0
    print(f"  plateau (median after the seed) {plateau:.3f} MPa = yield of the phantom's trabecular bone "
          f"{np.median(v.yield_pa[v.labels == 1]) / 1e6:.3f} MPa; stop: {r.stop_reason}")


def leak_section(label, v, volumes):
    print(f"\n3. Leakage, same vertebra, same cement volume: {label}")
    tr = plan_trajectories(v)
    tips = np.concatenate([t.tip_voxels for t in tr])
    for cement in ("low", "high"):
        for vol in volumes:
            kp = run_kyphoplasty(v, Kyphoplasty(cement=cement, cement_ml=vol), trajectories=tr)
            vol_ml = kp.metrics["injected_ml"]
            vp = fill_with_cement(v, tips, vol_ml, cement)
            lk, lv = kp.metrics["leaked_ml_by_route"], leaks(vp)
            print(f"  {cement:4s} {vol_ml:5.2f} mL  KP {fmt(lk)} | VP {fmt(lv)} | KP cavity "
                  f"{kp.metrics['cavity_volume_ml']:.2f} mL, mass balance KP {kp.metrics['cement_mass_balance_error_max']:.1e}"
                  f" VP {vp.mass_balance_error.max():.1e}, shell {kp.metrics['shell_mass_balance_error']:.1e}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--spacing-mm", type=float, default=1.0)
    ap.add_argument("--quick", action="store_true", help="skip the real CT")
    a = ap.parse_args()
    s = a.spacing_mm
    heights_section(s)
    pv_section(s)
    v = vertebra_from_phantom(make_phantom(fracture="wedge", grade=2, cortical_defect=True, spacing_mm=s))
    leak_section(f"wedge grade 2 phantom with an anterior cortical defect ({s} mm)", v, (3.0, None))
    if not a.quick:
        p = example_paths()
        ct = load_ct(p["ct"])
        for defect in ("anterior", None):
            v = vertebra_from_ct(ct, load_labels(p["seg"], ct), "L1", body=load_labels(p["body"], ct), spacing_mm=s,
                                 cortical_defect=defect)
            leak_section(f"bundled real L1 ({s} mm; Genant grade {v.morphometry.genant_grade}; cortical defect "
                         f"{defect})", v, (3.0, None))


if __name__ == "__main__":
    main()
