"""``vertaug demo``: the pipeline on the bundled real CT (TotalSegmentator example, Apache-2.0).

Writes into the output folder: ``report.html`` (self-contained), ``comparison.json``, ``morphometry.json`` and
``morphometry.txt`` (all levels), figures of the level and its voxel model, and NIfTI overlays on the CT's grid.
"""

from __future__ import annotations

import io
import time
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


def run_demo(out: str | Path, console: Console | None = None, spacing_mm: float = 1.0) -> dict[str, Path]:
    from rich.progress import Progress

    from .anatomy.io import load_ct, load_labels
    from .anatomy.morphometry import measure_volumes
    from .model.vertebra import vertebra_from_ct
    from .report.compare import compare, write_outputs
    from .report.figures import model_slices_figure, sagittal_level_figure
    from .report.morpho_table import morphometry_table, write_morphometry_json

    console = console or Console()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = example_paths()
    written: dict[str, Path] = {}
    timings: dict[str, float] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("loading the bundled CT", total=4)
        t0 = time.perf_counter()
        ct = load_ct(paths["ct"])
        seg = load_labels(paths["seg"], ct, "segmentation")
        body = load_labels(paths["body"], ct, "vertebrae_body segmentation")
        progress.update(task, advance=1, description="morphometry of every level")
        spine = measure_volumes(ct, seg, body)
        timings["morphometry"] = time.perf_counter() - t0
        progress.update(task, advance=1, description=f"voxel model of {DEMO_LEVEL} at {spacing_mm:g} mm")
        t0 = time.perf_counter()
        vertebra = vertebra_from_ct(ct, seg, DEMO_LEVEL, body=body, spacing_mm=spacing_mm)
        timings["model"] = time.perf_counter() - t0
        progress.update(task, advance=1, description="report")
        written["morphometry_json"] = write_morphometry_json(spine, out / "morphometry.json")
        written["figure"] = sagittal_level_figure(ct, seg, spine, DEMO_LEVEL, out / f"{DEMO_LEVEL}_sagittal.png")
        written["model_figure"] = model_slices_figure(vertebra, out / f"{DEMO_LEVEL}_model.png")
        inputs = {"ct": paths["ct"].name, "seg": paths["seg"].name, "body": paths["body"].name, "level": DEMO_LEVEL,
                  "spacing_mm": spacing_mm, "numbering": "v2"}
        comparison = compare(vertebra, spine, inputs=inputs, timings_s=timings)
        figures = {"patient": [(written["figure"], f"{DEMO_LEVEL}: mid-sagittal CT with the three heights"),
                               (written["model_figure"], f"{DEMO_LEVEL}: voxel model (tissue labels over CT)")]}
        written.update(write_outputs(comparison, out, ct=ct, seg=seg, figures=figures))
        progress.update(task, advance=1)
    table = morphometry_table(spine, title=f"Morphometry of the bundled CT ({paths['ct'].name})")
    console.print(table)
    txt = Console(record=True, width=160, file=io.StringIO())
    txt.print(table)
    (out / "morphometry.txt").write_text(txt.export_text() + "\n" + DISCLAIMER + "\n")
    written["morphometry_txt"] = out / "morphometry.txt"
    console.print(f"[dim]{DISCLAIMER}[/]")
    console.print(f"report: [bold]{written['html']}[/]; all outputs in [bold]{out}[/]: "
                  + ", ".join(sorted(p.name for p in written.values())))
    return written
