"""Vertebroplasty vs kyphoplasty on a synthetic grade-2 wedge fracture of L1: the study chain in a dozen lines.

A phantom has exactly known geometry (anatomy/phantom.py), so this runs anywhere in a few seconds (2 mm voxels, no
exotherm). Each injection ends by a clinical rule (the planned volume, cement in the posterior quarter, a leak visible on
fluoroscopy, or the hand injector stalling); ``stop_reason`` says which. Run: ``python examples/phantom_vp_vs_kp.py``.
"""

from vertaug.anatomy.phantom import make_phantom
from vertaug.model.vertebra import vertebra_from_phantom
from vertaug.procedures.kyphoplasty import Kyphoplasty
from vertaug.procedures.vertebroplasty import Vertebroplasty
from vertaug.study import run_study


def main() -> dict[str, float]:
    phantom = make_phantom(level="L1", fracture="wedge", grade=2, spacing_mm=2.0)
    model = vertebra_from_phantom(phantom)
    study = run_study(model, Vertebroplasty(volume_ml=3.0), Kyphoplasty(balloon_ml=3.0, cement_ml=3.0),
                      thermal=False, mechanics=True)
    out = {}
    for name, run in study.runs.items():
        o = run.outcome
        out[f"{name}_injected_ml"] = o.injection.injected_ml
        out[f"{name}_stopped_by_leak"] = float(o.injection.stop_reason.startswith("leak visible"))
        out[f"{name}_leaked_ml"] = o.injection.leaked_ml
        out[f"{name}_max_bone_pressure_kpa"] = o.injection.max_injection_pressure_bone_pa / 1e3
        out[f"{name}_height_restored_mm"] = o.heights.restored_mm
        out[f"{name}_stiffness_n_per_mm"] = run.mechanics.stiffness_n_per_mm
    out["pre_stiffness_n_per_mm"] = study.pre_mechanics.stiffness_n_per_mm
    out["height_lost_mm"] = study.kp.outcome.heights.lost_mm
    return out


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key:32s} {value:10.3f}")
