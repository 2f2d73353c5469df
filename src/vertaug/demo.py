"""``vertaug demo``: the pipeline on the bundled real CT (TotalSegmentator example, Apache-2.0).

Writes into the output folder: ``report.html`` (self-contained), ``comparison.json``, ``morphometry.json`` and
``morphometry.txt`` (all levels), figures of the level and its voxel model, and NIfTI overlays on the CT's grid.
"""

from __future__ import annotations

import io
from importlib.resources import files
from pathlib import Path

from rich.console import Console

from . import DISCLAIMER

#: The level the demo treats.
DEMO_LEVEL = "L1"


def example_paths() -> dict[str, Path]:
    """Paths of the bundled example CT, its TotalSegmentator labels and vertebrae_body map."""
    root = Path(str(files("vertaug") / "data" / "totalseg-example"))
    return {
        "ct": root / "example_ct.nii.gz",
        "seg": root / "totalseg.nii.gz",
        "body": root / "totalseg_vertebrae_body.nii.gz",
        "dicom": root / "dicom",
        "notice": root / "NOTICE.md",
    }


#: The demo's virtual fracture of L1: an acute grade-2 wedge (the commonest osteoporotic type) with a broken superior
#: endplate (AO OF3-like; a path to the disc), no cleft, no wall break (anatomy/fracture.py).
DEMO_FRACTURE = dict(kind="wedge", grade=2, endplate_break=True, cleft=False, cortical_break=None, seed=0)

#: Demo plans: the same cement volume (about 4 mL) for both, each procedure with its usual cement and approach.
DEMO_VP = dict(volume_ml=4.0, rate_ml_s=0.05, approach="bipedicular", cement="low")
DEMO_KP = dict(balloon_ml=2.0, approach="bipedicular", cement="high", fill_ratio=1.0)


def injection_line(inj) -> str:
    """The VP injection as the closing note reads it: plunger pressure (cannula + bone), the rule that ended it, and
    hand injection in vivo beside it (physics/cannula.py: Krebs et al. 2005)."""
    from .physics.cannula import HAND_INJECTION_PEAK_MEAN_PA, HAND_INJECTION_PEAK_SD_PA, INJECTORS

    return (f"VP plunger pressure {inj.max_injection_pressure_pa / 1e6:.3f} MPa (cannula "
            f"{inj.max_injection_pressure_cannula_pa / 1e6:.3f} + bone {inj.max_injection_pressure_bone_pa / 1e6:.3f} "
            f"MPa), injection ended: {inj.stop_reason} ({inj.injected_ml:.2f} mL); hand injection in vivo: peak "
            f"{HAND_INJECTION_PEAK_MEAN_PA / 1e6:.2f} +/- {HAND_INJECTION_PEAK_SD_PA / 1e6:.2f} MPa, max "
            f"{INJECTORS['hand'][0] / 1e6:.2f} MPa (Krebs et al. 2005)")


def run_demo(out: str | Path, console: Console | None = None, spacing_mm: float = 1.0, fluoro: bool = True,
             thermal: bool = True, mechanics: bool = True, workers: int = 1, fracture: bool = True,
             samples: int = 0) -> dict[str, Path]:
    """The pipeline on L1 of the bundled CT; ``fracture`` (default) first fractures L1 virtually (DEMO_FRACTURE);
    ``samples``: parameter samples for the rows' 5-95 % ranges (report.sampling)."""
    from .anatomy.io import load_ct, load_labels
    from .procedures.kyphoplasty import Kyphoplasty
    from .procedures.vertebroplasty import Vertebroplasty
    from .report.morpho_table import morphometry_table
    from .report.pipeline import run_pipeline
    from .report.summary import print_comparison

    console = console or Console()
    out = Path(out)
    if workers >= 2:
        from .study import start_worker_server

        start_worker_server()  # the workers' imports while the level is fractured here
    paths = example_paths()
    ct = load_ct(paths["ct"])
    seg = load_labels(paths["seg"], ct, "segmentation")
    body = load_labels(paths["body"], ct, "vertebrae_body segmentation")
    fr = None
    if fracture:
        from .anatomy.fracture import fracture_level

        fr = fracture_level(ct, seg, DEMO_LEVEL, body=body, **DEMO_FRACTURE)
        console.print(f"[bold]Simulated fracture of a real vertebra:[/] {fr.summary_line()}")
    run = run_pipeline(ct, seg, DEMO_LEVEL, out, body=body, spacing_mm=spacing_mm, vp=Vertebroplasty(**DEMO_VP),
                       kp=Kyphoplasty(**DEMO_KP), thermal=thermal, mechanics=mechanics, fluoro=fluoro,
                       inputs={"ct": paths["ct"].name, "seg": paths["seg"].name, "body": paths["body"].name},
                       console=console, workers=workers, fracture=fr, samples=samples)
    comparison, written = run.comparison, dict(run.paths)
    table = morphometry_table(comparison.spine, title=f"Morphometry of the bundled CT ({paths['ct'].name})")
    console.print(table)
    txt = Console(record=True, width=160, file=io.StringIO())
    txt.print(table)
    (out / "morphometry.txt").write_text(txt.export_text() + "\n" + DISCLAIMER + "\n")
    written["morphometry_txt"] = out / "morphometry.txt"
    print_comparison(comparison, console)
    console.print(injection_line(run.study.vp.outcome.injection))
    console.print(f"[dim]{DISCLAIMER}[/]")
    console.print(f"report: [bold]{written['html']}[/] ({len(written)} files in {out})")
    return written
