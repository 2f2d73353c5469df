"""Your own CT through the API: morphometry of every level, then VP vs KP on one level.

Uses the CT bundled with vertaug (TotalSegmentator's example, Apache-2.0); replace the three paths with yours (a NIfTI
file or a DICOM folder, TotalSegmentator's multilabel output and, optionally, its ``vertebrae_body`` output). The model is
built at 1.5 mm to run in seconds (``vertaug compare`` uses 1 mm), without exotherm and FE
(``run_study(..., thermal=True, mechanics=True)`` adds them). Run: ``python examples/own_ct.py``.
"""

from vertaug.anatomy.io import load_ct, load_labels
from vertaug.anatomy.morphometry import measure_volumes
from vertaug.demo import example_paths
from vertaug.model.vertebra import vertebra_from_ct
from vertaug.procedures.kyphoplasty import Kyphoplasty
from vertaug.procedures.vertebroplasty import Vertebroplasty
from vertaug.study import run_study


def main(level: str = "L1") -> dict[str, float]:
    paths = example_paths()
    ct = load_ct(paths["ct"])
    seg = load_labels(paths["seg"], ct, "segmentation")
    body = load_labels(paths["body"], ct, "vertebrae_body segmentation")
    spine = measure_volumes(ct, seg, body)
    for name, m in spine.levels.items():
        if m.evaluable:
            print(f"{name}: Ha {m.height_anterior_mm:5.1f}  Hp {m.height_posterior_mm:5.1f} mm  "
                  f"Genant {m.genant_grade}  {m.hu_mean:4.0f} HU ({m.density_class})")
    model = vertebra_from_ct(ct, seg, level, body=body, spacing_mm=1.5)
    study = run_study(model, Vertebroplasty(volume_ml=4.0), Kyphoplasty(balloon_ml=2.0), thermal=False,
                      mechanics=False)
    m = spine[level]
    return {"height_anterior_mm": m.height_anterior_mm, "height_posterior_mm": m.height_posterior_mm,
            "model_height_posterior_mm": study.vp.outcome.heights.before.posterior_mm,
            "body_volume_ml": model.body_volume_ml,
            "VP_fill_fraction": study.vp.outcome.injection.fill_fraction_of_body,
            "KP_cavity_ml": study.kp.outcome.balloon.cavity_volume_ml}


if __name__ == "__main__":
    for key, value in main().items():
        print(f"{key:28s} {value:10.3f}")
